"""Unit tests of the graph passes on small hand-built graphs: structure before/after and numerics
(numpy interpreter before vs after)."""
import numpy as np
import pytest

from edgec.compiler import lower
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.compiler.passes import (PIPELINE, check_numerics, conv_as_dense, fold_batch_norm, fold_pad, fold_scale, fuse,
                                   remove_identity, run_passes)
from edgec.errors import EdgecError

RNG = np.random.default_rng(0)


def w(*shape):
    return RNG.standard_normal(shape).astype("float32") * 0.5


def bn_params(g, c):
    return [g.add_const(w(c) + 1), g.add_const(w(c)), g.add_const(w(c)),
            g.add_const(np.abs(w(c)) + 0.5)]


def apply(graph, module):
    """Run one pass the way the pass manager does and check numerics before/after."""
    after = module.run(graph.copy())
    after.prune_values()
    after.verify()
    check_numerics(module.NAME, graph, after)
    return after


def ops(graph):
    return [n.op for n in graph.nodes]


def conv_graph(c=3, o=4, hw=8):
    g = Graph("t")
    x = g.add_input("x", (1, c, hw, hw))
    (y,) = g.add_node("conv2d", [x, g.add_const(w(o, c, 3, 3)), g.add_const(w(o))], {"pads": [1] * 4},
                      name="conv", source=["Conv_0"])
    return g, y


# ---- remove_identity ------------------------------------------------------------------------
def test_identity_and_noop_reshape_are_removed_and_output_name_kept():
    g = Graph("t")
    x = g.add_input("x", (2, 3))
    (a,) = g.add_node("relu", [x], name="a")
    (b,) = g.add_node("identity", [a], name="b")
    (c,) = g.add_node("tanh", [b], name="c")
    (d,) = g.add_node("reshape", [c], {"shape": [2, 3]}, name="out", source=["output out"])
    g.outputs = [d]
    after = apply(g, remove_identity)
    assert ops(after) == ["relu", "tanh"] and after.outputs == ["out"]
    assert after.nodes[1].outputs == ["out"] and "output out" in after.nodes[1].source


def test_identity_of_graph_input_to_output_is_kept():
    g = Graph("t")
    x = g.add_input("x", (2, 3))
    (y,) = g.add_node("identity", [x], name="y")
    g.outputs = [y]
    assert ops(apply(g, remove_identity)) == ["identity"]


# ---- fold_batch_norm ------------------------------------------------------------------------
def test_bn_folds_into_conv_and_keeps_its_layer_name():
    g, y = conv_graph()
    (z,) = g.add_node("batch_norm", [y] + bn_params(g, 4), {"epsilon": 1e-3}, name="bn", source=["BN_0"])
    g.outputs = [z]
    after = apply(g, fold_batch_norm)
    assert ops(after) == ["conv2d"]
    assert after.nodes[0].source == ["Conv_0", "BN_0"] and after.outputs == [z]


def test_bn_folds_into_grouped_conv_without_bias_and_into_dense():
    g = Graph("t")
    x = g.add_input("x", (1, 4, 6, 6))
    (y,) = g.add_node("conv2d", [x, g.add_const(w(8, 2, 3, 3))], {"groups": 2}, name="conv")
    (z,) = g.add_node("batch_norm", [y] + bn_params(g, 8), name="bn")
    (f,) = g.add_node("reshape", [z], {"shape": [1, 8 * 16]})
    (d,) = g.add_node("dense", [f, g.add_const(w(5, 128)), g.add_const(w(1, 5))], name="fc")
    (e,) = g.add_node("batch_norm", [d] + bn_params(g, 5), name="bn2")
    g.outputs = [e]
    assert ops(apply(g, fold_batch_norm)) == ["conv2d", "reshape", "dense"]


def test_bn_not_folded_when_conv_output_is_a_graph_output():
    g, y = conv_graph()
    (z,) = g.add_node("batch_norm", [y] + bn_params(g, 4), name="bn", source=["BN_0"])
    g.outputs = [y, z]
    after = apply(g, fold_batch_norm)
    assert ops(after) == ["conv2d", "mul", "add"]
    assert after.nodes[0].outputs == [y] and after.nodes[2].outputs == [z]
    assert after.nodes[1].source == ["BN_0"]


def test_bn_not_folded_when_conv_output_has_another_reader():
    g, y = conv_graph()
    (z,) = g.add_node("batch_norm", [y] + bn_params(g, 4), name="bn")
    (r,) = g.add_node("add", [z, y], name="res")
    g.outputs = [r]
    assert ops(apply(g, fold_batch_norm)) == ["conv2d", "mul", "add", "add"]


def test_standalone_bn_on_input_becomes_scale_and_shift():
    g = Graph("t")
    x = g.add_input("x", (3, 4))
    (z,) = g.add_node("batch_norm", [x] + bn_params(g, 4), name="bn")
    g.outputs = [z]
    assert ops(apply(g, fold_batch_norm)) == ["mul", "add"]


# ---- fold_scale -------------------------------------------------------------------------------
def test_depthwise_scale_and_shift_fold_into_the_conv():
    """tf2onnx's Keras DepthwiseConv2D + BatchNormalization: conv, mul by (C, 1, 1), add (1, C, 1, 1)."""
    g = Graph("t")
    x = g.add_input("x", (1, 6, 7, 7))
    (y,) = g.add_node("conv2d", [x, g.add_const(w(6, 1, 3, 3))], {"groups": 6, "pads": [1] * 4}, name="dw",
                      source=["dw"])
    (m,) = g.add_node("mul", [y, g.add_const(w(6, 1, 1) + 1)], name="bn_mul", source=["bn/mul_1"])
    (a,) = g.add_node("add", [g.add_const(w(1, 6, 1, 1)), m], name="bn_add", source=["bn/add_1"])
    (r,) = g.add_node("clip", [a], {"min": 0.0, "max": 6.0}, name="relu6")
    g.outputs = [r]
    after = apply(g, fold_scale)
    assert ops(after) == ["conv2d", "clip"]
    assert after.nodes[0].source == ["dw", "bn/mul_1", "bn/add_1"] and after.nodes[0].outputs == [a]


def test_scale_folds_into_conv_with_bias_and_into_dense():
    g, y = conv_graph()
    (m,) = g.add_node("mul", [g.add_const(np.float32(0.5)), y], name="half")  # one value, first operand
    (s,) = g.add_node("sub", [m, g.add_const(w(4, 1, 1))], name="shift")
    (f,) = g.add_node("reshape", [s], {"shape": [1, 4 * 64]})
    (d,) = g.add_node("dense", [f, g.add_const(w(5, 256)), g.add_const(w(1, 5))], name="fc")
    (e,) = g.add_node("mul", [d, g.add_const(w(5))], name="scale")
    g.outputs = [e]
    assert ops(apply(g, fold_scale)) == ["conv2d", "reshape", "dense"]


@pytest.mark.parametrize("case", ["other reader", "graph output", "per pixel", "grows the output", "constant minus conv",
                                  "run-time scale", "infinite scale"])
def test_scale_not_folded(case):
    g, y = conv_graph()
    c = {"per pixel": w(1, 1, 8, 8), "grows the output": w(2, 4, 1, 1), "infinite scale": np.full((4, 1, 1), np.inf, "float32"),
         }.get(case, w(4, 1, 1))
    scale = g.add_input("s", (4, 1, 1)) if case == "run-time scale" else g.add_const(c)
    (m,) = g.add_node("sub" if case == "constant minus conv" else "mul",
                      [scale, y] if case == "constant minus conv" else [y, scale], name="m")
    g.outputs = [m, y] if case == "graph output" else [m]
    if case == "other reader":
        (r,) = g.add_node("add", [m, y], name="res")
        g.outputs = [r]
    after = fold_scale.run(g.copy())
    assert "mul" in ops(after) or "sub" in ops(after)
    assert ops(after)[0] == "conv2d" and after.nodes[0].outputs == [y]


# ---- fold_pad ---------------------------------------------------------------------------------
def pad_conv_graph(pads, attrs=None, groups=4, stride=2, nhwc=False):
    """x -> pad -> depthwise 3x3 conv (pads [1, 0, 0, 1]); NHWC: the pad runs between transposes
    (Keras's ZeroPadding2D), on x itself or on transpose(x) when NHWC == 'from_nchw'."""
    g = Graph("t")
    x = g.add_input("x", (1, 4, 9, 11) if nhwc != "input" else (1, 9, 11, 4))
    if nhwc == "from_nchw":
        (x,) = g.add_node("transpose", [x], {"perm": [0, 2, 3, 1]}, name="to_nhwc")
    (y,) = g.add_node("pad", [x], dict({"pads": pads}, **(attrs or {})), name="pad", source=["ZeroPadding2D_0"])
    if nhwc:
        (y,) = g.add_node("transpose", [y], {"perm": [0, 3, 1, 2]}, name="to_nchw")
    cin = g.values[y].shape[1]
    (z,) = g.add_node("conv2d", [y, g.add_const(w(4, cin // groups, 3, 3)), g.add_const(w(4))],
                      {"groups": groups, "strides": [stride] * 2, "pads": [1, 0, 0, 1]}, name="conv", source=["Conv_0"])
    g.outputs = [z]
    return g


@pytest.mark.parametrize("pads, want", [
    ([0, 0, 0, 1, 0, 0, 1, 0], [1, 1, 1, 1]),  # Keras's ZeroPadding2D(((0, 1), (0, 1))) is (b, r)
    ([0, 0, 2, 0, 0, 0, 1, 3], [3, 0, 1, 4]),
])
def test_zero_pad_folds_into_the_conv(pads, want):
    for groups in (4, 1):
        after = apply(pad_conv_graph(pads, groups=groups), fold_pad)
        assert ops(after) == ["conv2d"] and after.nodes[0].attrs["pads"] == want
        assert after.nodes[0].source == ["Conv_0", "ZeroPadding2D_0"]


def test_nhwc_zero_pad_between_transposes_folds_and_the_transposes_cancel():
    nhwc = [0, 2, 0, 0, 0, 1, 3, 0]  # top 2, bottom 1, right 3 on (N, H, W, C)
    after = run_passes(pad_conv_graph(nhwc, nhwc="from_nchw"), check=True)
    assert ops(after) == ["conv2d"]
    assert after.nodes[0].attrs["pads"] == [3, 0, 1, 4] and after.nodes[0].inputs[0] == "x"
    # an NHWC graph input: the transpose stays, on the unpadded tensor
    after = apply(pad_conv_graph(nhwc, nhwc="input"), fold_pad)
    assert ops(after) == ["transpose", "conv2d"] and after.nodes[1].attrs["pads"] == [3, 0, 1, 4]


@pytest.mark.parametrize("pads, attrs", [
    ([0, 0, 1, 1, 0, 0, 1, 1], {"value": 0.5}),  # non-zero value
    ([0, 0, 1, 1, 0, 0, 1, 1], {"mode": "reflect"}),
    ([0, 0, 1, 1, 0, 0, 1, 1], {"mode": "edge"}),
    ([0, 1, 1, 1, 0, 0, 1, 1], {}),  # a channel pad
    ([1, 0, 0, 0, 0, 0, 0, 0], {}),  # a batch pad
    ([0, 0, -1, 1, 0, 0, 1, 1], {}),  # a crop
])
def test_pad_that_is_not_a_spatial_zero_pad_stays(pads, attrs):
    g = pad_conv_graph(pads, attrs, groups=1 if pads[1] else 4)  # a channel pad: the conv reads 5
    assert ops(apply(g, fold_pad)) == ["pad", "conv2d"]


def test_pad_with_another_reader_stays():
    g = pad_conv_graph([0, 0, 1, 1, 0, 0, 1, 1])
    (r,) = g.add_node("relu", [g.nodes[0].outputs[0]])
    g.outputs.append(r)
    assert ops(apply(g, fold_pad)) == ["pad", "conv2d", "relu"]


def test_folded_pad_matches_onnxruntime(tmp_path):
    """ONNX Pad (asymmetric, as tf2onnx exports Keras's ZeroPadding2D) + stride-2 depthwise Conv,
    compiled: no pad kernel is left and the result is onnxruntime's."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from edgec import api
    from edgec.runtime import load
    c = 12
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"]),
             helper.make_node("Conv", ["p", "w", "b"], ["y"], group=c, strides=[2, 2], pads=[0, 0, 0, 0]),
             helper.make_node("Relu", ["y"], ["z"])]
    inits = [numpy_helper.from_array(np.array([0, 0, 0, 1, 0, 0, 1, 2], np.int64), "pads"),
             numpy_helper.from_array(w(c, 1, 3, 3), "w"), numpy_helper.from_array(w(c), "b")]
    graph = helper.make_graph(nodes, "pad_dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 13, 17])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "pad_dw.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    m = load(api.compile(path, output=tmp_path / "m.edgec", progress=False))
    assert not any("pad" in k["ops"] for k in m.kernels), [k["ops"] for k in m.kernels]
    x = RNG.standard_normal((1, c, 13, 17)).astype("float32")
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(m.run({"x": x})[0], want, rtol=1e-4, atol=1e-5)


# ---- conv_as_dense ----------------------------------------------------------------------------
def covering_conv_graph(n=2, c=6, o=5, k=3, hw=3, bias=True, attrs=None, const_w=True):
    g = Graph("t")
    x = g.add_input("x", (n, c, hw, hw))
    wv = g.add_const(w(o, c, k, k)) if const_w else g.add_input("w", (o, c, k, k))
    (y,) = g.add_node("conv2d", [x, wv] + ([g.add_const(w(o))] if bias else []), attrs or {}, name="conv",
                      source=["Conv_0"])
    (r,) = g.add_node("relu", [y], name="relu")
    g.outputs = [r]
    return g


@pytest.mark.parametrize("k, bias", [(1, True), (3, True), (3, False)])
def test_conv_covering_its_input_becomes_dense(k, bias):
    after = apply(covering_conv_graph(k=k, hw=k, bias=bias), conv_as_dense)
    assert ops(after) == ["reshape", "dense", "reshape", "relu"]
    assert after.nodes[1].source == ["Conv_0"] and after.values[after.nodes[2].outputs[0]].shape == (2, 5, 1, 1)


@pytest.mark.parametrize("kw", [dict(hw=4), dict(attrs={"pads": [1, 1, 1, 1]}, hw=1),
                                dict(attrs={"groups": 2}, c=6), dict(const_w=False)])
def test_conv_that_is_not_a_dense_layer_stays(kw):
    args = dict(k=3, hw=3)
    args.update(kw)
    if args.get("attrs", {}).get("groups") == 2:  # grouped: the weight has C/2 input channels
        g = Graph("t")
        x = g.add_input("x", (1, 6, 3, 3))
        (y,) = g.add_node("conv2d", [x, g.add_const(w(4, 3, 3, 3))], {"groups": 2})
        g.outputs = [y]
    else:
        g = covering_conv_graph(**args)
    assert "dense" not in ops(apply(g, conv_as_dense))


def test_head_conv_as_dense_matches_onnxruntime(tmp_path):
    """A classifier head as ONNX writes Keras MobileNet's: GlobalAveragePool, a 1x1 Conv with bias,
    Relu; compiled, the conv is a dense kernel and the result is onnxruntime's."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from edgec import api
    from edgec.runtime import load
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Conv", ["p", "w", "b"], ["y"]),
             helper.make_node("Relu", ["y"], ["z"])]
    inits = [numpy_helper.from_array(w(37, 70, 1, 1), "w"), numpy_helper.from_array(w(37), "b")]
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 70, 5, 5])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "head.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    m = load(api.compile(path, output=tmp_path / "m.edgec", input_shapes={"x": (2, 70, 5, 5)}, progress=False))
    assert any(k["kind"] == "dense" for k in m.kernels) and not any(k["kind"] == "conv2d" for k in m.kernels)
    x = RNG.standard_normal((2, 70, 5, 5)).astype("float32")
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(m.run({"x": x})[0], want, rtol=1e-4, atol=1e-5)


# ---- fuse -------------------------------------------------------------------------------------
def kernels(graph):
    return [(k.name, [n.op for n in k.nodes], k.outputs) for k in lower.partition(graph)]


def assert_convex(graph):
    """Every group's nodes are contiguous in the (verified, topological) node order. Then no path
    can leave a group and re-enter it: a node on such a path would sit between two members."""
    graph.verify()
    by_kernel = {}
    for i, n in enumerate(graph.nodes):
        if n.kernel:
            by_kernel.setdefault(n.kernel, []).append(i)
    for name, idx in by_kernel.items():
        assert idx == list(range(idx[0], idx[-1] + 1)), f"{name} is not convex/contiguous"


def test_convexity_check_rejects_a_group_with_a_path_outside():
    g, y = conv_graph()
    (r,) = g.add_node("relu", [y])
    (t,) = g.add_node("tanh", [y])
    (s,) = g.add_node("add", [r, t])
    g.outputs = [s]
    for n in g.nodes:
        n.kernel = "" if n.op == "tanh" else "bad"  # conv -> tanh -> add leaves the group and returns
    with pytest.raises(AssertionError, match="not convex"):
        assert_convex(g)


def test_conv_relu_maxpool_is_one_kernel_named_after_the_anchor():
    g, y = conv_graph()
    (r,) = g.add_node("relu", [y])
    (p,) = g.add_node("max_pool2d", [r], {"kernel": [2, 2], "strides": [2, 2]})
    (q,) = g.add_node("conv2d", [p, g.add_const(w(2, 4, 1, 1))])
    g.outputs = [q]
    after = apply(g, fuse)
    assert kernels(after) == [("conv2d_relu_maxpool_0", ["conv2d", "relu", "max_pool2d"], [p]),
                              ("conv2d_1", ["conv2d"], [q])]
    assert_convex(after)


def test_residual_add_fuses_into_the_later_conv_and_group_moves_after_its_operands():
    g = Graph("t")
    x = g.add_input("x", (1, 4, 6, 6))
    (a,) = g.add_node("conv2d", [x, g.add_const(w(4, 4, 1, 1))], name="main")
    (b,) = g.add_node("conv2d", [x, g.add_const(w(4, 4, 1, 1))], name="shortcut")  # after main
    (s,) = g.add_node("add", [a, b])
    (r,) = g.add_node("relu", [s])
    g.outputs = [r]
    after = apply(g, fuse)
    assert kernels(after) == [("conv2d_0", ["conv2d"], [b]), ("conv2d_add_relu_1", ["conv2d", "add", "relu"], [r])]
    assert_convex(after)


@pytest.mark.parametrize("act", [("relu", {}), ("leaky_relu", {"alpha": 0.1}), ("clip", {"min": 0.0, "max": 6.0}),
                                 ("sigmoid", {}), ("tanh", {})])
def test_activations_fuse_into_conv_and_dense(act):
    g, y = conv_graph()
    (r,) = g.add_node(act[0], [y], act[1])
    (f,) = g.add_node("reshape", [r], {"shape": [1, 256]})
    (d,) = g.add_node("dense", [f, g.add_const(w(3, 256)), g.add_const(w(3))])
    (t,) = g.add_node(act[0], [d], act[1])
    g.outputs = [t]
    assert [k[1] for k in kernels(apply(g, fuse))] == [["conv2d", act[0]], ["reshape"], ["dense", act[0]]]


def test_value_with_two_readers_or_graph_output_ends_the_group():
    g, y = conv_graph()
    (r,) = g.add_node("relu", [y])
    (a,) = g.add_node("sigmoid", [r])  # r has two readers
    (b,) = g.add_node("tanh", [r])
    (c,) = g.add_node("mul", [a, b])
    (e,) = g.add_node("exp", [c])  # c is a graph output and read by exp
    g.outputs = [c, e]
    after = apply(g, fuse)
    groups = kernels(after)
    assert [k[1] for k in groups] == [["conv2d", "relu"], ["tanh"], ["sigmoid", "mul"], ["exp"]]
    assert all(len(k[2]) == 1 for k in groups)  # one output per kernel
    assert_convex(after)


def test_pool_after_a_non_fusable_op_or_after_elementwise_is_not_fused():
    g = Graph("t")
    x = g.add_input("x", (1, 2, 4, 4))
    (c,) = g.add_node("concat", [x, x], {"axis": 1})
    (p,) = g.add_node("max_pool2d", [c], {"kernel": [2, 2]})
    (r,) = g.add_node("relu", [p])
    (q,) = g.add_node("avg_pool2d", [r], {"kernel": [2, 2]})
    g.outputs = [q]
    assert [k[1] for k in kernels(apply(g, fuse))] == [["concat"], ["max_pool2d", "relu"], ["avg_pool2d"]]


def test_elementwise_that_broadcasts_the_tail_to_a_bigger_shape_is_not_fused():
    g = Graph("t")
    x = g.add_input("x", (1, 4))
    y = g.add_input("y", (3, 4))
    (a,) = g.add_node("relu", [x])
    (b,) = g.add_node("add", [a, y])
    g.outputs = [b]
    assert [k[1] for k in kernels(apply(g, fuse))] == [["relu"], ["add"]]


# ---- pipeline ---------------------------------------------------------------------------------
def test_pipeline_on_a_small_resnet_block_folds_bn_and_fuses():
    g, y = conv_graph(c=4)
    (z,) = g.add_node("batch_norm", [y] + bn_params(g, 4), name="bn", source=["BN_0"])
    (r,) = g.add_node("relu", [z])
    (i,) = g.add_node("identity", [r])
    (s,) = g.add_node("add", [i, "x"])
    (o,) = g.add_node("relu", [s])
    (p,) = g.add_node("global_avg_pool", [o])
    g.outputs = [p]
    out = run_passes(g, check=True)
    assert "batch_norm" not in ops(out) and "identity" not in ops(out)
    assert kernels(out) == [("conv2d_relu_add_relu_gap_0", ["conv2d", "relu", "add", "relu", "global_avg_pool"],
                             [p])]
    assert out.nodes[0].source == ["Conv_0", "BN_0"]


def test_disable_pass_and_unknown_pass():
    g, y = conv_graph()
    (r,) = g.add_node("relu", [y])
    g.outputs = [r]
    assert all(not n.kernel for n in run_passes(g, disable=["fuse"]).nodes)
    with pytest.raises(EdgecError, match="unknown pass"):
        run_passes(g, disable=["nope"])
    assert [p.name for p in PIPELINE][-2:] == ["fuse", "layout"]


def test_check_numerics_catches_a_wrong_rewrite():
    g, y = conv_graph()
    g.outputs = [y]
    bad = g.copy()
    bad.constants[bad.nodes[0].inputs[2]] = bad.constants[bad.nodes[0].inputs[2]] + 1
    with pytest.raises(EdgecError, match="pass broken changed output"):
        check_numerics("broken", g, bad)


def test_matmul_bias_activation_is_one_dense_kernel():
    g = Graph("t")
    x = g.add_input("x", (2, 3, 5))
    (m,) = g.add_node("matmul", [x, g.add_const(w(5, 4))])
    (b,) = g.add_node("add", [m, g.add_const(w(4))])
    (r,) = g.add_node("clip", [b], {"min": 0.0, "max": 6.0})
    g.outputs = [r]
    after = apply(g, fuse)
    assert kernels(after) == [("matmul_add_clip_0", ["matmul", "add", "clip"], [r])]
    assert lower.partition(after)[0].kind == "dense"
