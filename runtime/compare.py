"""Output comparison with stated tolerances and error statistics (numpy only).

Element rule (numpy's allclose): an element passes when |actual - expected| <= atol + rtol * |expected|.
Auto rule (`truth` given: the same graph evaluated in float64): float32 engines differ from each other
by their rounding, so an output also passes when edgec's max error against the float64 answer is
within AUTO_FACTOR times the reference's own (`reference_error`): a failure then means a real
difference, not float32 noise. Statistics as Polygraphy reports them: max, mean, median and 99th
percentile of the absolute and relative error, and the cosine similarity.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class OutputReport:
    name: str
    shape: tuple
    max_abs: float
    max_rel: float
    mean_abs: float
    worst_index: tuple
    worst_actual: float
    worst_expected: float
    mismatches: int
    size: int
    passed: bool
    note: str = ""
    step: float = 0.0  # the output's quantization step (an int8 model's output scale), 0 if none
    max_steps: float = 0.0  # max |actual - expected| in steps
    median_abs: float = 0.0
    p99_abs: float = 0.0
    mean_rel: float = 0.0
    median_rel: float = 0.0
    p99_rel: float = 0.0
    cosine: float = 1.0  # cosine similarity of actual and expected
    edgec_error: float = None  # max |actual - float64 answer| (auto rule), None without one
    reference_error: float = None  # max |expected - float64 answer|
    rule: str = "element"  # which rule passed it: element, auto; or the rules that failed it

    def to_json(self):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


AUTO_FACTOR = 4.0


def compare(name, actual, expected, rtol=1e-4, atol=1e-5, step=0.0, steps=1, truth=None):
    """STEP > 0 (a quantized output): an element also passes within STEPS quantization steps.
    TRUTH (float64 evaluation of the same graph): the auto rule applies too (see the module doc)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return OutputReport(name, tuple(actual.shape), float("inf"), float("inf"), float("inf"), (), 0.0, 0.0,
                            int(expected.size), int(expected.size), False,
                            f"shape {list(actual.shape)} != reference {list(expected.shape)}")
    if actual.size == 0:
        return OutputReport(name, actual.shape, 0.0, 0.0, 0.0, (), 0.0, 0.0, 0, 0, True)
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    diff = np.abs(a - e)
    nan_mismatch = np.isnan(a) != np.isnan(e)
    diff = np.where(np.isnan(a) & np.isnan(e), 0.0, diff)
    diff = np.where(nan_mismatch, np.inf, diff)
    rel = diff / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
    allowed = atol + rtol * np.abs(e)
    if step > 0:  # plus the float rounding of the two dequantized values (each within half an ulp)
        ulp = np.finfo(expected.dtype).eps if expected.dtype.kind == "f" else 0.0
        allowed = np.maximum(allowed, steps * step * (1 + 1e-6) + ulp * np.abs(e))
    bad = (diff > allowed) | nan_mismatch
    excess = diff - allowed
    worst = np.unravel_index(int(np.argmax(excess)), a.shape)
    report = OutputReport(name, tuple(a.shape), float(diff.max()), float(rel.max()), float(diff.mean()),
                          tuple(int(i) for i in worst), float(a[worst]), float(e[worst]),
                          int(bad.sum()), int(a.size), not bool(bad.any()), step=float(step),
                          max_steps=float(diff.max() / step) if step > 0 else 0.0, **_stats(a, e, diff, rel))
    if truth is not None and np.shape(truth) == a.shape and not nan_mismatch.any():
        t = np.asarray(truth, dtype=np.float64)
        report.edgec_error = _max_finite(np.abs(a - t))
        report.reference_error = _max_finite(np.abs(e - t))
        auto = report.edgec_error <= AUTO_FACTOR * report.reference_error
        report.rule = "element" if report.passed else "auto" if auto else "element, auto"
        report.passed = report.passed or auto
    elif not report.passed:
        report.rule = "element"
    return report


def _max_finite(x):
    x = np.where(np.isnan(x), 0.0, x)
    return float(x.max()) if x.size else 0.0


def _stats(a, e, diff, rel):
    finite = np.isfinite(diff)
    d, r = diff[finite], rel[finite]
    if not d.size:
        return {}
    norm = float(np.linalg.norm(a[finite]) * np.linalg.norm(e[finite]))
    cosine = float(np.dot(a[finite].ravel(), e[finite].ravel()) / norm) if norm > 0 else float(
        np.array_equal(a[finite], e[finite]))
    return {"median_abs": float(np.median(d)), "p99_abs": float(np.percentile(d, 99)),
            "mean_rel": float(r.mean()), "median_rel": float(np.median(r)), "p99_rel": float(np.percentile(r, 99)),
            "cosine": cosine}
