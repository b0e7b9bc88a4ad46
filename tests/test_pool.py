"""Pooling kernels (schedules/pool.py over the separable computes of compiler/lower/nn.py) against
the numpy reference, on rows that do not divide the vector width: padding on either side, ceil
mode, dilation, strides 1-3, count_include_pad, NaN and infinities in max windows; standalone and
fused after a conv; on host and x86-avx2, and on rpi4 under qemu against onnxruntime."""
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import api, targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.runtime import load
from edgec.targets import schedules

CASES = {  # name: (op, attrs)
    "max3s2": ("max_pool2d", {"kernel": [3, 3], "strides": [2, 2]}),
    "max3s2p1": ("max_pool2d", {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "max3s2ceil": ("max_pool2d", {"kernel": [3, 3], "strides": [2, 2], "ceil_mode": True}),
    "max3s1p1": ("max_pool2d", {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),
    "max2s2ceil": ("max_pool2d", {"kernel": [2, 2], "strides": [2, 2], "ceil_mode": True}),
    "max3d2": ("max_pool2d", {"kernel": [3, 3], "strides": [1, 1], "dilations": [2, 2], "pads": [2, 1, 2, 3]}),
    "max2x3asym": ("max_pool2d", {"kernel": [2, 3], "strides": [2, 3], "pads": [0, 2, 1, 1], "ceil_mode": True}),
    "avg3s1p1": ("avg_pool2d", {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),
    "avg3s1p1incl": ("avg_pool2d", {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
                                    "count_include_pad": True}),
    "avg3s2p1ceil": ("avg_pool2d", {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": True}),
    "avg5s3d2": ("avg_pool2d", {"kernel": [5, 4], "strides": [3, 2], "dilations": [2, 1], "pads": [2, 0, 3, 2]}),
    "avg2s2": ("avg_pool2d", {"kernel": [2, 2], "strides": [2, 2]}),
    "gap": ("global_avg_pool", {}),
    "gmp": ("global_max_pool", {}),
}


def _run(tmp_path, g, preset, feed, monkeypatch, parallel=True):
    """Compile G for PRESET with parallel regions forced on (or off) and run it on FEED."""
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if parallel else float("inf"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    fallbacks = [str(w.message) for w in caught if "falling back" in str(w.message)]
    assert not fallbacks, fallbacks
    m = load(str(tmp_path / "m.edgec"))
    return m, m.run(feed)


def _input(shape, seed=1):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)  # NaN and infinities at a few places (windows' first, middle and last taps)
    flat[[5, 77, 300, 301, 1000]] = [np.nan, np.inf, -np.inf, np.nan, np.nan]
    return x


@pytest.mark.parametrize("preset,parallel", [("host", True), ("host", False), ("x86-avx2", True)])
def test_pool_matches_reference(tmp_path, monkeypatch, preset, parallel):
    """Every case at once (one kernel each) on a 23 x 37 plane of 5 channels."""
    g = Graph("pools")
    x = g.add_input("x", (1, 5, 23, 37))
    for name, (op, attrs) in CASES.items():
        y, = g.add_node(op, [x], attrs, source=[name])
        g.outputs.append(y)
    feed = {"x": _input((1, 5, 23, 37))}
    m, got = _run(tmp_path, g, preset, feed, monkeypatch, parallel)
    assert sum(k["kind"] == "pool" for k in m.kernels) == len(CASES)
    want = interpret(g, feed)
    for name, o, a in zip(CASES, g.outputs, got):
        assert a.shape == want[o].shape, name
        np.testing.assert_allclose(a, want[o], rtol=1e-4, atol=1e-5, err_msg=name)
        assert np.isnan(want[o]).any(), name  # the NaN inputs reach every output: the check covers them


@pytest.mark.parametrize("pool", ["max3s2p1", "avg3s1p1", "max2s2ceil", "gap"])
def test_pool_fused_after_conv(tmp_path, monkeypatch, pool):
    """conv + bias + relu + pool in one kernel (the pool reads the conv's written-back rows)."""
    rng = np.random.default_rng(0)
    g = Graph("convpool")
    x = g.add_input("x", (1, 6, 19, 26))
    w = g.add_const((rng.standard_normal((20, 6, 3, 3)) / 5).astype(np.float32))
    b = g.add_const(rng.standard_normal(20).astype(np.float32))
    y, = g.add_node("conv2d", [x, w, b], {"pads": [1, 1, 1, 1]})
    r, = g.add_node("relu", [y])
    op, attrs = CASES[pool]
    p, = g.add_node(op, [r], attrs)
    g.outputs = [p]
    feed = {"x": rng.standard_normal((1, 6, 19, 26)).astype(np.float32)}
    m, got = _run(tmp_path, g, "host", feed, monkeypatch)
    assert [k["ops"][-1] for k in m.kernels] == [op], [k["ops"] for k in m.kernels]
    np.testing.assert_allclose(got[0], interpret(g, feed)[p], rtol=1e-4, atol=1e-5)


ONNX_POOLS = [("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2])),
              ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 2], ceil_mode=1)),
              ("MaxPool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])),
              ("AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])),
              ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                                   count_include_pad=1))]


@pytest.mark.arm
def test_pools_on_rpi4_match_onnxruntime(tmp_path, monkeypatch):
    """The same kernels compiled for rpi4 (NEON) and run under qemu, standalone and fused after a conv."""
    import arm_env
    from test_arm import check, onnxruntime_outputs
    arm_env.require_tools()
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((12, 5, 3, 3)) / 4).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"])]
    outs = []
    for k, (op, attrs) in enumerate(ONNX_POOLS):
        nodes.append(helper.make_node(op, ["x"], [f"y{k}"], **attrs))
        outs.append(f"y{k}")
    nodes.append(helper.make_node("MaxPool", ["r"], ["fused"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4))
    outs.append("fused")
    graph = helper.make_graph(nodes, "pools", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 23, 37])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], [w])
    model = str(tmp_path / "pools.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), model)
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0)
    art = api.compile(model, "rpi4", str(tmp_path / "m.edgec"), progress=False)
    inputs = {"x": rng.standard_normal((1, 5, 23, 37)).astype(np.float32)}
    expected = onnxruntime_outputs(model, inputs)
    check(arm_env.run_artifact(art, inputs.values(), tmp_path, len(expected)), expected)


@pytest.mark.parametrize("preset,parallel", [("host", True), ("host", False), ("x86-avx2", True)])
@pytest.mark.parametrize("hw", [(7, 7), (8, 8), (14, 14), (3, 40)], ids=["one-reduction", "no-leftover", "leftover", "flat"])
def test_global_pools_over_planes_of_any_size(tmp_path, monkeypatch, preset, parallel, hw):
    """Global average and max pools (rows of partial results as vectors, then the leftover
    elements; planes under two rows of them one reduction), NaN and infinities included."""
    g = Graph("global")
    x = g.add_input("x", (2, 11) + hw)
    g.outputs = [g.add_node(op, [x])[0] for op in ("global_avg_pool", "global_max_pool")]
    feed = {"x": np.random.default_rng(3).standard_normal((2, 11) + hw).astype(np.float32)}
    feed["x"][0, 2, 0, 1], feed["x"][1, 4, -1, -1], feed["x"][1, 7, 1, 0] = np.nan, np.inf, -np.inf
    _, got = _run(tmp_path, g, preset, feed, monkeypatch, parallel)
    want = interpret(g, feed)
    for o, a in zip(g.outputs, got):
        np.testing.assert_allclose(a, want[o], rtol=1e-5, atol=1e-6, err_msg=o)
