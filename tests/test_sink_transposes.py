"""sink_transposes and reduce_as_pool: the transposes tf2onnx leaves around a Keras model's NCHW
convs (to NHWC after each conv, back before the next) sink through the activations, per-channel
scales, squeeze-excitation means and pads between them and cancel; the means become global pools.
Numerics are checked by the pass manager's interpreter before and after each pass, and the compiled
model against the interpreter; forms where sinking would move more data stay as they were."""
import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.compiler.passes import reduce_as_pool, run_passes, sink_transposes
from edgec.runtime import load
from test_passes import apply, ops, w

NHWC, NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def keras_block(c=8, hw=9):
    """conv -> to NHWC -> BN scale [C] -> hard swish (x * relu6(x + 3) / 6) -> squeeze-excitation
    (mean over H, W; 1x1 convs in NCHW between transposes; x * gate) -> zero pad (NHWC) -> to
    NCHW -> depthwise conv: a MobileNetV3 block as tf2onnx writes it."""
    g = Graph("keras")
    x = g.add_input("x", (1, c, hw, hw))
    y, = g.add_node("conv2d", [x, g.add_const(w(c, c, 3, 3))], {"pads": [1] * 4})
    t, = g.add_node("transpose", [y], {"perm": NHWC})
    s, = g.add_node("mul", [t, g.add_const(w(c) + 1)])
    a, = g.add_node("add", [s, g.add_const(np.array(3, np.float32))])
    r, = g.add_node("clip", [a], {"min": 0.0, "max": 6.0})
    h, = g.add_node("mul", [r, g.add_const(np.array(1 / 6, np.float32))])
    hs, = g.add_node("mul", [s, h])
    m, = g.add_node("reduce_mean", [hs], {"axes": [1, 2], "keepdims": True})
    m1, = g.add_node("transpose", [m], {"perm": NCHW})
    e, = g.add_node("conv2d", [m1, g.add_const(w(c, c, 1, 1)), g.add_const(w(c))])
    e1, = g.add_node("transpose", [e], {"perm": NHWC})
    gate, = g.add_node("sigmoid", [e1])
    se, = g.add_node("mul", [hs, gate])
    p, = g.add_node("pad", [se], {"pads": [0, 0, 1, 0, 0, 1, 2, 0], "mode": "constant", "value": 0})
    u, = g.add_node("transpose", [p], {"perm": NCHW})
    z, = g.add_node("conv2d", [u, g.add_const(w(c, 1, 3, 3))], {"groups": c})
    g.outputs = [z]
    return g


def test_keras_block_transposes_cancel():
    g = keras_block()
    after = run_passes(g, check=True)
    assert "transpose" not in ops(after), ops(after)
    assert "global_avg_pool" in ops(after) and "reduce_mean" not in ops(after)
    assert "pad" not in ops(after)  # the sunk pad folded into the depthwise conv


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
def test_keras_block_compiled_matches_the_interpreter(tmp_path, preset):
    g = keras_block(c=12, hw=11)
    compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    feed = {"x": np.random.default_rng(4).standard_normal((1, 12, 11, 11)).astype(np.float32)}
    np.testing.assert_allclose(load(str(tmp_path / "m.edgec")).run(feed)[0], interpret(g, feed)[g.outputs[0]],
                               rtol=1e-4, atol=1e-5)


def test_transposes_compose_and_cancel():
    g = Graph("tt")
    x = g.add_input("x", (1, 3, 4, 5))
    a, = g.add_node("transpose", [x], {"perm": NHWC})
    b, = g.add_node("transpose", [a], {"perm": [0, 2, 1, 3]})  # -> 0, 2, 1, 3 of NHWC
    c, = g.add_node("transpose", [b], {"perm": [0, 3, 2, 1]})
    g.outputs = [g.add_node("relu", [c])[0], g.add_node("relu", [b])[0]]
    after = apply(g, sink_transposes)
    assert ops(after).count("transpose") == 1, ops(after)  # b composed; c = identity of x: gone


@pytest.mark.parametrize("tail", ["output", "reshape"])
def test_transposes_that_would_move_more_stay(tail):
    g = Graph("stay")
    x = g.add_input("x", (1, 3, 4, 5))
    t, = g.add_node("transpose", [x], {"perm": NHWC})
    r, = g.add_node("relu", [t])
    if tail == "output":  # a transpose after the relu would move as much as this one
        g.outputs = [r]
    else:  # the reshape still needs t: sinking into the relu would add a transpose
        g.outputs = [g.add_node("reshape", [t], {"shape": [1, 60]})[0], g.add_node("sigmoid", [r])[0]]
    before = ops(g)
    assert ops(apply(g, sink_transposes)) == before


def test_reductions_over_the_spatial_axes_become_global_pools():
    g = Graph("r")
    x = g.add_input("x", (2, 3, 4, 5))
    g.outputs = [g.add_node("reduce_mean", [x], {"axes": [2, 3], "keepdims": True})[0],
                 g.add_node("reduce_max", [x], {"axes": [-1, -2], "keepdims": True})[0],
                 g.add_node("reduce_mean", [x], {"axes": [2, 3], "keepdims": False})[0],
                 g.add_node("reduce_mean", [x], {"axes": [1, 2], "keepdims": True})[0]]
    assert ops(apply(g, reduce_as_pool)) == ["global_avg_pool", "global_max_pool", "global_avg_pool", "reshape",
                                             "reduce_mean"]


def keras_frontend_se(c=8, hw=9):
    """A squeeze-excitation block as the Keras frontend writes it: NCHW values, transposed to NHWC
    where a layer reads NHWC (GlobalAveragePooling2D without keepdims, Multiply)."""
    g = Graph("se")
    x = g.add_input("x", (1, c, hw, hw))
    a, = g.add_node("relu", [g.add_node("conv2d", [x, g.add_const(w(c, c, 3, 3))], {"pads": [1] * 4})[0]])
    at, = g.add_node("transpose", [a], {"perm": NHWC})
    m, = g.add_node("reduce_mean", [at], {"axes": [1, 2], "keepdims": False})
    r, = g.add_node("reshape", [m], {"shape": [1, 1, 1, c]})
    e, = g.add_node("sigmoid", [g.add_node("conv2d", [g.add_node("transpose", [r], {"perm": NCHW})[0],
                                                      g.add_const(w(c, c, 1, 1))])[0]])
    gate, = g.add_node("transpose", [e], {"perm": NHWC})
    y, = g.add_node("mul", [at, gate])
    z, = g.add_node("conv2d", [g.add_node("transpose", [y], {"perm": NCHW})[0], g.add_const(w(c, c, 1, 1))])
    g.outputs = [z]
    return g


def test_keras_frontend_se_block_moves_only_its_vector():
    g = keras_frontend_se()
    after = run_passes(g, check=True)
    moved = [after.values[n.outputs[0]].shape for n in after.nodes if n.op == "transpose"]
    assert all(np.prod(s) <= 8 for s in moved), moved  # (the C-vector's reshape to NCHW)
    assert "global_avg_pool" in ops(after)
