"""New ONNX ops against onnxruntime, compiled (one model with a branch per op, one compile):
ConvTranspose (groups, stride, pads, output_padding, dilation, auto_pad), Resize (nearest,
linear with antialias, cubic, several coordinate transformations), LayerNormalization, Einsum, and
a Loop with a compile-time trip count plus an If with a constant condition (both unrolled), and a
Loop that is a simple RNN (recognized, fused) next to one that is not (unrolled)."""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgec import api
from edgec.compiler.interp import interpret
from edgec.frontends.onnx import from_onnx
from edgec.runtime import load

RTOL, ATOL = 1e-4, 1e-5


def _model():
    rng = np.random.default_rng(0)
    inits, nodes, outs = [], [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def out(name, shape):
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    nodes.append(helper.make_node("ConvTranspose", ["x", const("w1", f32(4, 3, 3, 3)), const("b1", f32(6))], ["ct1"],
                                  strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 1], group=2))
    out("ct1", [1, 6, 13, 15])
    nodes.append(helper.make_node("ConvTranspose", ["x", const("w2", f32(4, 2, 3, 2))], ["ct2"],
                                  dilations=[2, 1], auto_pad="SAME_UPPER", strides=[1, 2]))
    out("ct2", [1, 2, 6, 14])
    empty = const("roi", np.zeros(0, np.float32))
    nodes.append(helper.make_node("Resize", ["x", empty, const("s1", np.array([1, 1, 0.6, 0.45], np.float32))],
                                  ["rz_lin"], mode="linear", antialias=1))
    out("rz_lin", [1, 4, 3, 3])
    nodes.append(helper.make_node("Resize", ["x", empty, "", const("sz", np.array([1, 4, 9, 5], np.int64))],
                                  ["rz_cub"], mode="cubic", coordinate_transformation_mode="align_corners"))
    out("rz_cub", [1, 4, 9, 5])
    nodes.append(helper.make_node("Resize", ["x", empty, const("s2", np.array([1, 1, 2, 1.5], np.float32))],
                                  ["rz_near"], mode="nearest", coordinate_transformation_mode="asymmetric",
                                  nearest_mode="floor"))
    out("rz_near", [1, 4, 12, 10])
    nodes.append(helper.make_node("LayerNormalization", ["x", const("g", f32(7)), const("beta", f32(7))], ["ln"],
                                  epsilon=1e-3))
    out("ln", [1, 4, 6, 7])
    nodes.append(helper.make_node("Einsum", ["x", "x"], ["es"], equation="bhqd,bhkd->bhqk"))
    out("es", [1, 4, 6, 6])
    # Loop: acc = acc * 0.5 + x * i, three iterations, with a per-iteration scan output
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["x", "fi"], ["xi"]),
         helper.make_node("Mul", ["acc_in", "half"], ["acc_h"]),
         helper.make_node("Add", ["acc_h", "xi"], ["acc_out"]),
         helper.make_node("Identity", ["c_in"], ["c_out"]),
         helper.make_node("ReduceSum", ["acc_out"], ["scan_out"], keepdims=0)],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1, 4, 6, 7])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1, 4, 6, 7]),
         helper.make_tensor_value_info("scan_out", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.float32(0.5), "half")])
    nodes.append(helper.make_node("Loop", [const("trip", np.array(3, np.int64)), const("cond", np.array(True)), "x"],
                                  ["loop_acc", "loop_scan"], body=body))
    out("loop_acc", [1, 4, 6, 7])
    out("loop_scan", [3])
    branch = lambda op, name: helper.make_graph(  # noqa: E731
        [helper.make_node(op, ["x"], [name])], name, [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)])
    nodes.append(helper.make_node("If", [const("flag", np.array(False))], ["if_out"],
                                  then_branch=branch("Relu", "t"), else_branch=branch("HardSwish", "e")))
    out("if_out", [1, 4, 6, 7])
    graph = helper.make_graph(nodes, "new_ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 7])],
                              outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_new_ops_match_onnxruntime(tmp_path):
    model = _model()
    onnx.checker.check_model(model)
    path = tmp_path / "new_ops.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 7)).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    names = [o.name for o in model.graph.output]
    interp = interpret(from_onnx(path), {"x": x})
    art = load(api.compile(str(path), output=str(tmp_path / "new_ops.edgec"), progress=False))
    got = art.run({"x": x})
    for name, e, g in zip(names, expected, got):
        np.testing.assert_allclose(interp[name], e, rtol=RTOL, atol=ATOL, err_msg=f"{name} (numpy reference)")
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL, err_msg=f"{name} (compiled)")


def _rnn_loop_model(act):
    """A SimpleRNN as tf2onnx writes it: Loop over a carried counter, weights carried through."""
    rng = np.random.default_rng(2)
    t_len, batch, i_size, hid = 5, 2, 3, 4
    w, r, b = (rng.standard_normal(s).astype(np.float32) for s in ((i_size, hid), (hid, hid), (hid,)))
    vi = helper.make_tensor_value_info
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [helper.make_node("Gather", ["xs", "t"], ["x_t"]), helper.make_node("MatMul", ["x_t", "w"], ["xw"]),
         helper.make_node("MatMul", ["h", "r"], ["hr"]), helper.make_node("Add", ["xw", "hr"], ["s"]),
         helper.make_node("Add", ["s", "b"], ["sb"]), helper.make_node(act, ["sb"], ["h_new"]),
         helper.make_node("Add", ["t", "one"], ["t_new"]), helper.make_node("Less", ["t_new", "len"], ["c_out"]),
         helper.make_node("Identity", ["h_new"], ["y_t"])],
        "body", [vi("i", TensorProto.INT64, []), vi("c", TensorProto.BOOL, []), vi("t", TensorProto.INT64, []),
                 vi("h", f, [batch, hid]), vi("w", f, [i_size, hid]), vi("r", f, [hid, hid]), vi("b", f, [hid])],
        [vi("c_out", TensorProto.BOOL, []), vi("t_new", TensorProto.INT64, []), vi("h_new", f, [batch, hid]),
         vi("w", f, [i_size, hid]), vi("r", f, [hid, hid]), vi("b", f, [hid]), vi("y_t", f, [batch, hid])],
        [numpy_helper.from_array(np.int64(1), "one"), numpy_helper.from_array(np.int64(t_len), "len")])
    inits = [numpy_helper.from_array(v, n) for n, v in (
        ("trip", np.int64(t_len)), ("go", np.array(True)), ("t0", np.int64(0)), ("h0", np.zeros((batch, hid), np.float32)),
        ("W", w), ("R", r), ("B", b))]
    nodes = [helper.make_node("Transpose", ["x"], ["xs"], perm=[1, 0, 2]),
             helper.make_node("Loop", ["trip", "go", "t0", "h0", "W", "R", "B"],
                              ["t_end", "h_end", "w_end", "r_end", "b_end", "ys"], body=body)]
    graph = helper.make_graph(nodes, f"rnn_loop_{act.lower()}", [vi("x", f, [batch, t_len, i_size])],
                              [vi("h_end", f, [batch, hid]), vi("ys", f, [t_len, batch, hid])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_loop_recognized_as_rnn(tmp_path):
    """A tanh cell becomes the fused rnn op; the same loop with relu (not a cell edgec matches)
    is unrolled; both match onnxruntime compiled."""
    x = np.random.default_rng(3).standard_normal((2, 5, 3)).astype(np.float32)
    for act, fused in (("Tanh", True), ("Relu", False)):
        path = tmp_path / f"{act}.onnx"
        onnx.save(_rnn_loop_model(act), path)
        graph = from_onnx(path)
        assert ("rnn" in {n.op for n in graph.nodes}) == fused, act
        expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
        got = load(api.compile(str(path), output=str(tmp_path / f"{act}.edgec"), progress=False)).run({"x": x})
        for e, g in zip(expected, got):
            np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)
