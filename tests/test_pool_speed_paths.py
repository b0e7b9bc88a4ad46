"""The vector paths of schedules/pool.py `strided_columns` against the numpy interpreter, on rows
that do not divide the vector width: a short strided pool pass (under two vectors) in whole
vectors of 8 (or 4) columns and one overlapping vector at the row's end, its row pass computed
in those vectors (no padding, no ceil-mode edge) or kept as a pass of its own (edges cut), and
short stride-1 rows in one vector plus an overlapping one; longer rows (LLVM's loops) alongside.
NaN and infinities in the windows. Host and x86-avx2 (the rewrite is x86's)."""
import warnings

import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.runtime import load
from edgec.targets import schedules

CASES = [  # (input shape, op, attrs)
    ((1, 3, 27, 27), "max_pool2d", {"kernel": [3, 3], "strides": [2, 2]}),  # 13 columns: 8 + 8 overlapping
    ((1, 2, 11, 19), "max_pool2d", {"kernel": [3, 3], "strides": [2, 2]}),  # 9 columns
    ((1, 2, 9, 11), "max_pool2d", {"kernel": [3, 3], "strides": [2, 2]}),  # 5 columns: vectors of 4
    ((1, 2, 7, 7), "max_pool2d", {"kernel": [3, 3], "strides": [2, 2]}),  # 3 columns: scalar
    ((1, 3, 23, 29), "max_pool2d", {"kernel": [2, 2], "strides": [2, 2]}),  # 14 columns
    ((1, 3, 23, 37), "max_pool2d", {"kernel": [2, 2], "strides": [2, 2]}),  # 18 columns: LLVM's
    ((1, 2, 17, 40), "max_pool2d", {"kernel": [3, 3], "strides": [3, 3]}),  # stride 3, 13 columns
    ((1, 2, 13, 29), "max_pool2d", {"kernel": [3, 5], "strides": [2, 2], "dilations": [1, 2]}),
    ((1, 3, 27, 27), "max_pool2d", {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),  # edges cut
    ((1, 3, 13, 21), "max_pool2d", {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 3, 26, 26), "max_pool2d", {"kernel": [3, 3], "strides": [2, 2], "ceil_mode": True}),
    ((1, 3, 21, 21), "max_pool2d", {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),
    ((1, 3, 13, 13), "max_pool2d", {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),  # 8 + 5
    ((1, 2, 23, 25), "avg_pool2d", {"kernel": [2, 2], "strides": [2, 2]}),
    ((1, 2, 23, 21), "avg_pool2d", {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 13, 13), "avg_pool2d", {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),
]


def _graph():
    g, feed = Graph("pools"), {}
    rng = np.random.default_rng(3)
    for k, (shape, op, attrs) in enumerate(CASES):
        x = g.add_input(f"x{k}", shape)
        y, = g.add_node(op, [x], attrs)
        g.outputs.append(y)
        v = rng.standard_normal(shape).astype(np.float32)
        flat = v.reshape(-1)  # NaN and infinities at a window's first, middle and last columns
        flat[[1, 12, 30, 31, flat.size - 2]] = [np.nan, np.inf, -np.inf, np.nan, np.nan]
        feed[f"x{k}"] = v
    return g, feed


@pytest.mark.parametrize("preset,parallel", [("host", True), ("x86-avx2", True), ("x86-avx2", False)])
def test_vector_pool_paths_match_reference(tmp_path, monkeypatch, preset, parallel):
    g, feed = _graph()
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if parallel else float("inf"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    assert not [str(w.message) for w in caught if "falling back" in str(w.message)]
    got = load(str(tmp_path / "m.edgec")).run(feed)
    want = interpret(g, feed)
    for case, o, a in zip(CASES, g.outputs, got):
        np.testing.assert_allclose(a, want[o], rtol=1e-5, atol=1e-6, err_msg=str(case))
        assert np.isnan(want[o]).any(), case  # the NaN inputs reach the output: the check covers them


def _scheduled(tmp_path, monkeypatch, preset, shape, op, attrs):
    """The TVMScript of the pool kernel of a one-pool graph as scheduled for PRESET."""
    g = Graph("one")
    y, = g.add_node(op, [g.add_input("x", shape)], attrs)
    g.outputs = [y]
    seen, schedule = [], schedules.schedule

    def keep(func, kernel, p):
        seen.append(schedule(func, kernel, p))
        return seen[-1]
    monkeypatch.setattr(schedules, "schedule", keep)
    compile_graph(g, targets.get(preset), str(tmp_path / "one.edgec"), progress=False)
    return seen[0].script()


@pytest.mark.parametrize("preset", ["x86-avx2", "rpi4"])
def test_strided_pool_is_shuffled_vectors(tmp_path, monkeypatch, preset):
    """SqueezeNet's 3x3 s2 pool at 27 on AVX2: per output row, the rows' max over whole vectors of
    17 input columns (no row buffer), shuffled into the taps of 8 output columns. NEON (not
    measured there) keeps LLVM's loops."""
    attrs = {"kernel": [3, 3], "strides": [2, 2]}
    text = _scheduled(tmp_path, monkeypatch, preset, (1, 4, 27, 27), "max_pool2d", attrs)
    if preset == "rpi4":
        assert "T.Shuffle" not in text
        return
    lanes = 8
    body = text.split("T.sblock_alloc_buffer")[1]
    assert "T.Shuffle" in body and "pool_rows[" not in body, text
    assert f'T.Broadcast(T.float32("nan"), {lanes})' in body and f"T.float32x{2 * lanes + 1}]" in body, text
