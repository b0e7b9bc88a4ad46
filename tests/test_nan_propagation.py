"""NaN and infinities propagate as onnxruntime propagates them (relu, clip, hard sigmoid, leaky
relu, softmax, elementwise Max/Min): one model with an output per op, compiled once, compared
element by element with NaN in the same places. Max pooling and ReduceMax/Min keep a NaN as
numpy's max does (onnxruntime's SIMD loops drop a NaN or not depending on its position): every NaN
onnxruntime gives is a NaN in edgec too, the other elements are equal, NaN where numpy has NaN."""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgec import api
from edgec.runtime import load

ELEMENTWISE = {
    "relu": lambda: [helper.make_node("Relu", ["x"], ["relu"])],
    "leaky_relu": lambda: [helper.make_node("LeakyRelu", ["x"], ["leaky_relu"], alpha=0.1)],
    "clip": lambda: [helper.make_node("Clip", ["x", "lo", "hi"], ["clip"])],
    "hard_sigmoid": lambda: [helper.make_node("HardSigmoid", ["x"], ["hard_sigmoid"])],
    "maximum": lambda: [helper.make_node("Max", ["x", "c"], ["maximum"])],
    "minimum": lambda: [helper.make_node("Min", ["x", "c"], ["minimum"])],
    "softmax": lambda: [helper.make_node("Softmax", ["x"], ["softmax"], axis=-1)],
    "lstm": lambda: [helper.make_node("Reshape", ["x", "seq_shape"], ["seq"]),
                     helper.make_node("LSTM", ["seq", "W", "R"], ["lstm"], hidden_size=3)],
}
POOLS = {
    "max_pool": lambda: [helper.make_node("MaxPool", ["x"], ["max_pool"], kernel_shape=[2, 2], strides=[2, 2])],
    "global_max_pool": lambda: [helper.make_node("GlobalMaxPool", ["x"], ["global_max_pool"])],
    "reduce_max": lambda: [helper.make_node("ReduceMax", ["x"], ["reduce_max"], axes=[3], keepdims=0)],
    "reduce_min": lambda: [helper.make_node("ReduceMin", ["x"], ["reduce_min"], axes=[3], keepdims=1)],
    "conv_relu_pool": lambda: [helper.make_node("Conv", ["x", "w"], ["cv"], pads=[1, 1, 1, 1]),
                               helper.make_node("Relu", ["cv"], ["cr"]),
                               helper.make_node("MaxPool", ["cr"], ["conv_relu_pool"], kernel_shape=[2, 2],
                                                strides=[2, 2])],
}


def nan_model():
    nodes = [n for make in list(ELEMENTWISE.values()) + list(POOLS.values()) for n in make()]
    w = np.linspace(-1, 1, 36, dtype=np.float32).reshape(2, 2, 3, 3)
    w[0, 1, 1, 1] = np.nan  # one NaN weight: its output channel is NaN wherever the window sees it
    inits = [numpy_helper.from_array(np.float32(-0.5), "lo"), numpy_helper.from_array(np.float32(0.5), "hi"),
             numpy_helper.from_array(np.array([0.25], np.float32), "c"), numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(np.array([4, 2, 4], np.int64), "seq_shape"),
             numpy_helper.from_array(np.linspace(-0.5, 0.5, 48, dtype=np.float32).reshape(1, 12, 4), "W"),
             numpy_helper.from_array(np.linspace(0.4, -0.4, 36, dtype=np.float32).reshape(1, 12, 3), "R")]
    outs = list(ELEMENTWISE) + list(POOLS)
    g = helper.make_graph(nodes, "nan_ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), outs


def test_nan_and_inf_propagate_like_onnxruntime(tmp_path):
    model, outs = nan_model()
    onnx.save(model, tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    x[0, 0, 0, 1], x[0, 0, 1, 1], x[0, 0, 3, 3] = np.nan, np.inf, -np.inf  # one NaN inside a pool window
    x[0, 1, 2] = np.nan  # a row of NaN
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = dict(zip(outs, sess.run(None, {"x": x})))
    art = api.compile(tmp_path / "m.onnx", output=tmp_path / "m.edgec", progress=False)
    actual = dict(zip(outs, load(art).run({"x": x})))
    for name in ELEMENTWISE:
        e, a = expected[name], actual[name]
        assert np.isnan(e).any(), f"{name}: the case must exercise NaN"
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg=f"{name}: NaN positions differ")
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5, equal_nan=True, err_msg=name)
    for name in POOLS:
        e, a = expected[name], actual[name]
        assert not (np.isnan(e) & ~np.isnan(a)).any(), f"{name}: edgec dropped a NaN onnxruntime keeps"
        keep = ~np.isnan(a)
        np.testing.assert_allclose(a[keep], e[keep], rtol=1e-4, atol=1e-5, err_msg=name)
    windows = x.reshape(1, 2, 2, 2, 2, 2).max(axis=(3, 5))  # numpy's max: NaN if the window has one
    np.testing.assert_array_equal(np.isnan(actual["max_pool"]), np.isnan(windows))
    np.testing.assert_array_equal(np.isnan(actual["global_max_pool"]), np.isnan(x.max(axis=(2, 3), keepdims=True)))
    np.testing.assert_array_equal(actual["reduce_max"], x.max(axis=3))
    np.testing.assert_array_equal(actual["reduce_min"], x.min(axis=3, keepdims=True))
