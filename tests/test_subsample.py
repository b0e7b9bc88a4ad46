"""compiler/passes/subsample.py: on x86, a strided 1x1 conv without padding that runs as the GEMM
or the direct conv reads a strided slice of its input; the rewrite (and where it is left alone),
and the compiled kernels against the numpy reference of the graph before the passes (odd sizes,
unequal strides, batch 2, a fused epilogue, two convs sharing one slice)."""
import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.compiler.passes import PIPELINE, run_passes, subsample
from edgec.runtime import load


def _graph(n, c, o, hw, strides, pads=(0, 0, 0, 0), twice=False, relu=False, seed=0):
    rng = np.random.default_rng(seed)
    g = Graph("sub")
    x = g.add_input("x", (n, c) + hw)
    x, = g.add_node("relu", [x])  # (the conv's input is made by a kernel, as in a model)
    outs = []
    for i in range(2 if twice else 1):
        w = g.add_const((rng.standard_normal((o + i, c, 1, 1)) / np.sqrt(c)).astype("float32"))
        b = g.add_const(rng.standard_normal(o + i).astype("float32"))
        y, = g.add_node("conv2d", [x, w, b], {"pads": list(pads), "strides": list(strides)})
        if relu:
            y, = g.add_node("relu", [y])
        outs.append(y)
    g.outputs = outs
    return g


def _ops(g):
    return [n.op for n in g.nodes]


def test_rewrite():
    avx2 = targets.get("x86-avx2")
    g = run_passes(_graph(1, 64, 128, (28, 28), (2, 2)), pipeline=_only(), preset=avx2, check=True)
    conv = [n for n in g.nodes if n.op == "conv2d"][0]
    assert _ops(g) == ["relu", "slice", "conv2d"] and conv.attrs["strides"] == [1, 1]
    assert g.values[conv.inputs[0]].shape == (1, 64, 14, 14)
    shared = run_passes(_graph(1, 64, 128, (28, 28), (2, 2), twice=True), pipeline=_only(), preset=avx2, check=True)
    assert _ops(shared) == ["relu", "slice", "conv2d", "conv2d"]  # one slice for both
    for graph, preset in [(_graph(1, 64, 128, (28, 28), (2, 2)), targets.get("rpi4")),  # (NEON: unmeasured)
                          (_graph(1, 64, 128, (28, 28), (2, 2)), None),
                          (_graph(1, 64, 128, (28, 28), (1, 1)), avx2),
                          (_graph(1, 64, 128, (28, 28), (2, 2), pads=(1, 1, 0, 0)), avx2),
                          (_graph(1, 64, 64, (28, 28), (2, 2)), avx2)]:  # (fewer than 128 out: not the GEMM)
        assert "slice" not in _ops(run_passes(graph, pipeline=_only(), preset=preset)), preset
    for preset in (avx2, targets.get("x86-avx512")):  # (the GEMM; AVX-512's direct 1x1, pack.pointwise_direct)
        assert "slice" in _ops(run_passes(_graph(1, 512, 1024, (28, 28), (2, 2)), pipeline=_only(), preset=preset))


def _only():
    return [p for p in PIPELINE if p.name == subsample.NAME]


CASES = [  # n, c, o, (h, w), strides, two convs, relu after
    (1, 64, 128, (28, 28), (2, 2), False, True),
    (2, 24, 130, (13, 11), (2, 2), True, False),  # odd sizes, batch 2, a shared slice
    (1, 32, 136, (12, 9), (2, 1), False, True),  # unequal strides
    (1, 16, 128, (10, 10), (3, 3), False, False),
    (1, 256, 512, (14, 14), (2, 2), False, True),  # the direct 1x1 on AVX-512 hosts
]


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c[0]}c{c[1]}o{c[2]}h{c[3][0]}w{c[3][1]}s{c[4][0]}{c[4][1]}")
def test_compiled_matches_reference(tmp_path, preset, case):
    n, c, o, hw, strides, twice, relu = case
    g = _graph(n, c, o, hw, strides, twice=twice, relu=relu)
    compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    m = load(str(tmp_path / "m.edgec"))
    assert any(k["ops"] == ["slice"] for k in m.kernels)  # (the rewrite ran)
    rng = np.random.default_rng(1)
    feed = {"x": rng.standard_normal((n, c) + hw).astype("float32")}
    want = interpret(g, feed)  # the strided conv's numpy reference (the graph before the passes)
    for got, name in zip(m.run(feed), g.outputs):
        np.testing.assert_allclose(got, want[name], rtol=1e-4, atol=1e-5)
