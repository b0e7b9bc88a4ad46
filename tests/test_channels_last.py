"""float32 activations channels-last (NHWC) between packed convs (compiler/passes/layout.py, off by
default: CHANNELS_LAST), against the numpy reference of the NCHW graph: odd channels and widths,
stride 2, padding, a residual add + relu epilogue, flat 1x1 tiles, a chunked reduction, the
transposes into NHWC for a 1x1 GEMM's NCHW input and back to NCHW for a graph output, NCHW kept
for a fused pool."""
import warnings

import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.compiler.passes import layout, run_passes
from edgec.runtime import load
from edgec.targets import schedules


@pytest.fixture(autouse=True)
def channels_last(monkeypatch):
    monkeypatch.setattr(layout, "CHANNELS_LAST", True)


def chain(c=19, hw=(13, 11), deep=300):
    """A ResNet-style chain: 3x3 convs, a bottleneck 1x1 with a residual add + relu, a strided 3x3,
    a 1x1 whose output a max pool reads (fused), a deep 3x3 (weights over a quarter of L2: chunked)."""
    rng = np.random.default_rng(0)
    g = Graph("chain")
    x = g.add_input("x", (1, c) + hw)

    def conv(x, o, k, s=1, p=0):
        ci = g.values[x].shape[1]
        w = g.add_const((rng.standard_normal((o, ci, k, k)) / np.sqrt(ci * k * k)).astype("float32"))
        b = g.add_const(rng.standard_normal(o).astype("float32"))
        return g.add_node("conv2d", [x, w, b], {"strides": [s, s], "pads": [p] * 4})[0]
    a0, = g.add_node("relu", [conv(x, 128, 1)])  # a GEMM on NCHW: reads an NHWC transpose of the input
    a, = g.add_node("relu", [conv(a0, 40, 3, 1, 1)])
    b, = g.add_node("relu", [conv(a, 37, 3, 1, 1)])  # odd channels: a partial block
    s, = g.add_node("add", [conv(b, 40, 1), a])  # flat 1x1 (143 pixels: a padded last tile) + residual
    r, = g.add_node("relu", [s])
    d, = g.add_node("relu", [conv(r, 24, 3, 2, 1)])  # stride 2
    e, = g.add_node("relu", [conv(d, deep, 1)])
    f, = g.add_node("relu", [conv(e, 20, 3, 1, 1)])  # 300 input channels: the reduction in chunks
    p, = g.add_node("max_pool2d", [conv(f, 136, 1, 2)], {"kernel": [2, 2], "strides": [2, 2]})  # strided 1x1
    g.outputs = [p, r]
    return g


def test_pass_keeps_resnet_style_chain_channels_last():
    g = run_passes(chain(), preset=targets.get("x86-avx2"))
    convs = [n for n in g.nodes if n.op == "conv2d_packed"]
    layouts = [(n.attrs.get("in_layout", "NCHW"), n.attrs.get("out_layout", "NCHW")) for n in convs]
    assert layouts == [("NHWC", "NHWC")] * 7 + [("NHWC", "NCHW")], layouts
    assert not any("tile" in n.attrs for n in convs)  # the 1x1s run the direct conv
    bridges = [(n.inputs, n.outputs, n.attrs["perm"]) for n in g.nodes if n.op == "transpose"]
    assert bridges == [(["x"], convs[0].inputs[:1], [0, 2, 3, 1]),  # into the first conv
                       (bridges[1][0], [g.outputs[1]], [0, 3, 1, 2])]  # the graph output, back to NCHW
    assert g.values[g.outputs[1]].shape == (1, 40, 13, 11)


def test_group_with_fused_reader_stays_nchw():
    """A conv whose result a fused pool reads (inside its kernel) writes NCHW; so does a single conv
    whose only NHWC gain would be paid back by a transpose of its graph output."""
    g = Graph("pool")
    x = g.add_input("x", (1, 16, 8, 8))
    w = g.add_const(np.ones((32, 16, 3, 3), "float32"))
    y, = g.add_node("relu", [g.add_node("conv2d", [x, w], {"pads": [1] * 4})[0]])
    g.outputs = [y]
    g = run_passes(g, preset=targets.get("x86-avx2"))
    assert not any("out_layout" in n.attrs or n.op == "transpose" for n in g.nodes)


def _compile(tmp_path, g, preset):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    assert not [str(w.message) for w in caught if "falling back" in str(w.message)]
    return tmp_path / "m.edgec"


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("par", ["parallel", "serial"])
def test_channels_last_convs_match_reference(tmp_path, monkeypatch, preset, par):
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if par == "parallel" else float("inf"))
    g = chain()
    m = load(str(_compile(tmp_path, g, preset)))
    feed = {"x": np.random.default_rng(1).standard_normal(g.inputs[0].shape).astype("float32")}
    want = interpret(g, feed)
    for o, got in zip(g.outputs, m.run(feed)):
        np.testing.assert_allclose(got, want[o], rtol=1e-4, atol=1e-4)


def test_channels_last_convs_on_rpi4(tmp_path):
    import arm_env
    arm_env.require_tools()
    g = chain(deep=40)
    feed = np.random.default_rng(1).standard_normal(g.inputs[0].shape).astype("float32")
    want = interpret(g, {"x": feed})
    for o, got in zip(g.outputs, arm_env.run_artifact(_compile(tmp_path, g, "rpi4"), [feed], tmp_path, 2)):
        np.testing.assert_allclose(got, want[o], rtol=1e-4, atol=1e-4)
