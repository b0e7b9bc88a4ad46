"""onnxruntime's QOperator format (quantize_static(quant_format=QOperator)): its com.microsoft ops
(QLinearConcat, QLinearAveragePool, QLinearGlobalAveragePool, QLinearLeakyRelu, QLinearSigmoid,
QLinearSoftmax, QGemm, QLinearAdd) and int8 MaxPool, against onnxruntime running the same model.

Weights are quantized to 7 bits (reduce_range) where onnxruntime's own kernels are the reference:
its AVX2 U8S8 conv kernels saturate 16-bit pair sums with 8-bit weights; with 8-bit weights the
reference is the model's QDQ form (quantize.qdq_form). Every output within one quantization step.
"""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.compiler.passes import run_passes
from edgec.errors import EdgecError
from edgec.frontends.onnx import from_onnx
from edgec.quantize import output_steps
from test_int8 import both, ort_run, tensor

CONTRIB = {"QLinearConcat", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearLeakyRelu",
           "QLinearSigmoid", "QLinearSoftmax", "QGemm", "QLinearAdd"}


def branchy_cnn(seed=0):
    """conv-relu-maxpool, two conv branches (LeakyRelu, Sigmoid) concatenated, a residual add,
    average pool (padded, pads not counted), global average pool, gemm, softmax; outputs the
    logits, the softmax and the pooled features."""
    rng = np.random.default_rng(seed)

    def w(*shape, s=0.3):
        return rng.standard_normal(shape).astype(np.float32) * s
    inits = [tensor("w1", w(8, 3, 3, 3)), tensor("b1", w(8, s=0.1)), tensor("wa", w(6, 8, 1, 1)),
             tensor("wb", w(6, 8, 3, 3)), tensor("wr", w(12, 8, 1, 1)), tensor("wg", w(10, 12, s=0.2)),
             tensor("bg", w(10, s=0.1))]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "wa"], ["ca"]),
             helper.make_node("LeakyRelu", ["ca"], ["la"], alpha=0.2),
             helper.make_node("Conv", ["p1", "wb"], ["cb"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["cb"], ["sb"]),
             helper.make_node("Concat", ["la", "sb"], ["cat"], axis=1),
             helper.make_node("Conv", ["p1", "wr"], ["cr"]),
             helper.make_node("Add", ["cat", "cr"], ["res"]),
             helper.make_node("AveragePool", ["res"], ["ap"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["ap"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["f"]),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["prob"])]
    out = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("logits", "prob", "ap")]
    graph = helper.make_graph(nodes, "branchy", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                               [1, 3, 16, 16])], out, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def qoperator(model, path, rng, reduce_range=True):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    onnx.save(model, path / "f.onnx")
    feeds = iter([{"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(8)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)
    quantize_static(str(path / "f.onnx"), str(path / "q.onnx"), Reader(), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range)
    return onnx.load(path / "q.onnx")


def test_qoperator_model_matches_onnxruntime(tmp_path):
    rng = np.random.default_rng(0)
    qmodel = qoperator(branchy_cnn(), tmp_path, rng)
    ops = {n.op_type for n in qmodel.graph.node}
    assert CONTRIB <= ops, ops  # the quantizer wrote every contrib op this test is about
    assert "MaxPool" in ops and "QLinearConv" in ops
    folded = [n.op for n in run_passes(from_onnx(qmodel)).nodes]
    assert folded.count("qconv2d") == 4 and "conv2d" not in folded, folded  # convs run as int8 kernels
    steps = output_steps(tmp_path / "q.onnx")
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    want = ort_run(qmodel, {"input": x}, fused=True)
    for got in both(qmodel, {"input": x}):
        for name, g, r in zip(("logits", "prob", "ap"), got, want):
            assert g.shape == r.shape
            assert np.abs(g - r).max() <= steps[name] * 1.0001, name
            assert np.ptp(r) > 8 * steps[name], name  # not a constant output


def test_8bit_weights_verify_against_the_qdq_form(tmp_path):
    """With 8-bit weights onnxruntime's own QLinearConv saturates on AVX2 (measured: 11-12 steps off
    on this model); the reference `edgec verify` uses is the QDQ form of the same model, run as
    written, and edgec's exact int8 kernels are within one step of it."""
    from edgec import api
    rng = np.random.default_rng(4)
    qmodel = qoperator(branchy_cnn(1), tmp_path, rng, reduce_range=False)
    steps = output_steps(tmp_path / "q.onnx")
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32) * 2
    name, want = api.reference_outputs(str(tmp_path / "q.onnx"), {"input": x})
    assert "QLinear ops as QDQ" in name
    for got in both(qmodel, {"input": x}):
        for out, g, r in zip(("logits", "prob", "ap"), got, want):
            assert np.abs(g - r).max() <= steps[out] * 1.0001, out
            assert np.ptp(r) > 8 * steps[out], out


def _gap_channels_last(dtype, tp):
    x_zp = np.asarray(30 if dtype == np.uint8 else -5, dtype)
    node = helper.make_node("QLinearGlobalAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"],
                            domain="com.microsoft", channels_last=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", tp, [1, 5, 7, 6])],
                              [helper.make_tensor_value_info("y", tp, None)],
                              [tensor("xs", np.float32(0.05)), tensor("xz", x_zp), tensor("ys", np.float32(0.03)),
                               tensor("yz", np.asarray(10, dtype))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])


@pytest.mark.parametrize("dtype,tp", [(np.uint8, TensorProto.UINT8), (np.int8, TensorProto.INT8)])
def test_channels_last_global_average_pool(dtype, tp):
    model = _gap_channels_last(dtype, tp)
    info = np.iinfo(dtype)
    x = np.random.default_rng(1).integers(info.min, info.max + 1, (1, 5, 7, 6)).astype(dtype)
    want = ort_run(model, {"x": x}, fused=True)[0].astype(int)
    for got in both(model, {"x": x}):
        assert got[0].shape == want.shape == (1, 1, 1, 6)
        assert np.abs(got[0].astype(int) - want).max() <= 1


def test_qgemm_float_output_and_per_column_scales():
    """QGemm without y_scale returns float32; B per output column, C int32 at scale a_s * b_s."""
    rng = np.random.default_rng(2)
    b = rng.integers(-64, 64, (5, 12)).astype(np.int8)
    inits = [tensor("as", np.float32(0.02)), tensor("az", np.uint8(100)), tensor("b", b),
             tensor("bs", rng.uniform(0.01, 0.03, 5).astype(np.float32)), tensor("bz", np.zeros(5, np.int8)),
             tensor("c", rng.integers(-2000, 2000, 5).astype(np.int32))]
    node = helper.make_node("QGemm", ["a", "as", "az", "b", "bs", "bz", "c"], ["y"], domain="com.microsoft",
                            transB=1, alpha=1.0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.UINT8, [3, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
    a = rng.integers(0, 256, (3, 12)).astype(np.uint8)
    want = ort_run(model, {"a": a}, fused=True)[0]
    bs, c = numpy_helper.to_array(inits[3]), numpy_helper.to_array(inits[5])
    ref = 0.02 * bs * ((a.astype(np.int64) - 100) @ b.astype(np.int64).T + c)
    np.testing.assert_allclose(want, ref, rtol=1e-5, atol=1e-5)  # the semantics read from the contrib spec
    for got in both(model, {"a": a}):
        assert got[0].dtype == np.float32
        np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-5)


def test_unsupported_contrib_op_is_a_clear_error():
    node = helper.make_node("QLinearWhere", ["x"], ["y"], domain="com.microsoft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
    with pytest.raises(EdgecError, match="QLinearWhere node .*com.microsoft"):
        from_onnx(model)


def test_profile_labels_int8_kernels_in_gop_per_s(tmp_path, capsys):
    from edgec import api, cli
    qoperator(branchy_cnn(), tmp_path, np.random.default_rng(0))
    art = api.compile(str(tmp_path / "q.onnx"), "host", str(tmp_path / "q.edgec"), progress=False)
    assert cli.main(["profile", art, "--repeat", "2"]) in (0, None)
    out = capsys.readouterr().out
    assert "GOP/s" in out and "int8 kernels" in out, out


def _lstm_model(rng, hidden=24, inputs=10, steps=7, batch=2):
    """A bidirectional LSTM with peepholes, biases and initial states (float32)."""
    def w(*shape):
        return (rng.standard_normal(shape) * 0.4).astype(np.float32)
    inits = [tensor("W", w(2, 4 * hidden, inputs)), tensor("R", w(2, 4 * hidden, hidden)),
             tensor("B", w(2, 8 * hidden)), tensor("h0", w(2, batch, hidden)), tensor("c0", w(2, batch, hidden)),
             tensor("P", w(2, 3 * hidden))]
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "", "h0", "c0", "P"], ["y", "yh", "yc"],
                            hidden_size=hidden, direction="bidirectional")
    graph = helper.make_graph([node], "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             [steps, batch, inputs])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "yh", "yc")],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_quantize_lstm_runs_in_float_on_its_dequantized_weights(tmp_path, per_channel):
    """onnxruntime's quantize_dynamic writes a com.microsoft DynamicQuantizeLSTM (int8 W and R, laid out
    [dirs, input, 4 x hidden]). edgec runs the float LSTM of the dequantized weights, saying so; the
    reference `edgec verify` uses is that float LSTM run by onnxruntime (exact). The weights' layout
    and scales are checked independently of edgec's reading of them: the outputs stay within the
    weights' rounding of the original float model's (onnxruntime). onnxruntime's own kernel also
    rounds X and H to 8 bits every step (measured on this model: 0.02-0.05 off the float model per
    tensor, 0.42 per channel), so it is no reference."""
    import warnings

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgec import api
    from edgec.errors import EdgecWarning
    rng = np.random.default_rng(6)
    onnx.save(_lstm_model(rng), tmp_path / "f.onnx")
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), weight_type=QuantType.QInt8,
                     per_channel=per_channel)
    qmodel = onnx.load(tmp_path / "q.onnx")
    assert [n.op_type for n in qmodel.graph.node] == ["DynamicQuantizeLSTM"]
    x = rng.standard_normal((7, 2, 10)).astype(np.float32)
    name, want = api.reference_outputs(str(tmp_path / "q.onnx"), {"x": x})
    assert "dynamic LSTMs as float" in name
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = both(qmodel, {"x": x})
    assert any(issubclass(c.category, EdgecWarning) and "float32 LSTM" in str(c.message) for c in caught)
    original = ort_run(onnx.load(tmp_path / "f.onnx"), {"x": x})
    for got in results:
        for g, r, f in zip(got, want, original):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
            assert np.abs(g - f).max() < 0.04, np.abs(g - f).max()  # measured 0.024 / 0.008


def _padded_strided_cnn(seed=0):
    """conv-relu, a Keras-style asymmetric zero Pad, a stride-2 conv (no pads of its own), a
    stride-2 depthwise conv after another Pad: ZeroPadding2D before strided convs."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.3
    inits = [tensor("w1", w(8, 3, 3, 3)), tensor("w2", w(8, 8, 3, 3)), tensor("w3", w(8, 1, 3, 3)),
             tensor("p", np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64))]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Pad", ["r1", "p"], ["p1"]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Pad", ["r2", "p"], ["p2"]),
             helper.make_node("Conv", ["p2", "w3"], ["y"], strides=[2, 2], group=8)]
    graph = helper.make_graph(nodes, "padded", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                              [1, 3, 15, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("fmt", ["QOperator", "QDQ"])
def test_zero_pads_before_strided_int8_convs_fold_into_them(tmp_path, fmt):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from edgec import api
    rng = np.random.default_rng(3)
    onnx.save(_padded_strided_cnn(), tmp_path / "f.onnx")
    feeds = iter([{"input": rng.standard_normal((1, 3, 15, 16)).astype(np.float32)} for _ in range(6)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)
    quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), Reader(),
                    quant_format=getattr(QuantFormat, fmt), activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    qmodel = onnx.load(tmp_path / "q.onnx")
    assert sum(n.op_type == "Pad" for n in qmodel.graph.node) == 2
    ops = [n.op for n in run_passes(from_onnx(qmodel)).nodes]
    assert "pad" not in ops and ops.count("qconv2d") == 3, ops  # the pads are the convs' own
    x = rng.standard_normal((1, 3, 15, 16)).astype(np.float32)
    _, want = api.reference_outputs(str(tmp_path / "q.onnx"), {"input": x})
    step = output_steps(tmp_path / "q.onnx")["y"]
    for got in both(qmodel, {"input": x}):
        assert got[0].shape == want[0].shape == (1, 8, 3, 4)
        assert np.abs(got[0] - want[0]).max() <= step * 1.0001 and np.ptp(want[0]) > 8 * step
