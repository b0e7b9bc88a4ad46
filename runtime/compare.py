"""Output comparison with stated tolerances and error statistics (numpy only).

Rule (numpy's allclose): an element passes when |actual - expected| <= atol + rtol * |expected|.
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

    def to_json(self):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def compare(name, actual, expected, rtol=1e-4, atol=1e-5, step=0.0, steps=1):
    """STEP > 0 (a quantized output): an element also passes within STEPS quantization steps."""
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
    if step > 0:
        allowed = np.maximum(allowed, steps * step * (1 + 1e-6))
    bad = (diff > allowed) | nan_mismatch
    excess = diff - allowed
    worst = np.unravel_index(int(np.argmax(excess)), a.shape)
    return OutputReport(name, tuple(a.shape), float(diff.max()), float(rel.max()), float(diff.mean()),
                        tuple(int(i) for i in worst), float(a[worst]), float(e[worst]),
                        int(bad.sum()), int(a.size), not bool(bad.any()), step=float(step),
                        max_steps=float(diff.max() / step) if step > 0 else 0.0)
