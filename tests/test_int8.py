"""INT8: quantized ONNX ops against onnxruntime, the fold_qdq pass, `edgec quantize` and
`compile --quantize int8`, the digits CNN's accuracy after quantization, artifact size.

References: onnxruntime. For QDQ models it runs the graph as written (graph optimizations off):
its fused U8S8 kernels saturate 16-bit pair sums on AVX2 (a documented onnxruntime caveat), so
where a test runs onnxruntime's own QLinearConv the weights stay within [-64, 63], where the
pair sums cannot saturate. Quantized results must be within one quantization step.
"""
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.compiler.interp import interpret
from edgec.compiler.passes import run_passes
from edgec.frontends.onnx import from_onnx
from onnx_cases import execute

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")


def ort_run(model, feeds, fused=False):
    opts = ort.SessionOptions()
    if not fused:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, feeds)


def tensor(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def both(model, feeds):
    """(numpy interpreter outputs, compiled artifact outputs) of MODEL on FEEDS."""
    g = from_onnx(model)
    out = g.outputs
    interp = interpret(run_passes(g), feeds)
    compiled = execute(g, feeds, "tvm")
    return [interp[o] for o in out], [compiled[o] for o in out]


def test_quantize_dequantize_ties_saturation_per_channel():
    """Round half to even, saturation, per-channel (axis 1) scales and zero points, u8 and s8."""
    x = np.array([[[-300.0, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 300.0]] * 3], np.float32).reshape(1, 3, 8)
    scale = np.array([1.0, 0.5, 2.0], np.float32)
    for dtype, tp in (("uint8", TensorProto.UINT8), ("int8", TensorProto.INT8)):
        zp = np.array([0, 3, 128 if dtype == "uint8" else -7], dtype)
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
                 helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)]
        graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8])],
                                  [helper.make_tensor_value_info("q", tp, [1, 3, 8]),
                                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8])],
                                  [tensor("s", scale), tensor("z", zp)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        want = ort_run(model, {"x": x})
        for got in both(model, {"x": x}):
            np.testing.assert_array_equal(got[0], want[0])
            assert got[0].dtype == want[0].dtype
            np.testing.assert_array_equal(got[1], want[1])


def qlinear_conv_model(rng, group, per_channel, c=8, o=8):
    w = rng.integers(-64, 64, (o, c // group, 3, 3)).astype(np.int8)  # no AVX2 pair-sum saturation
    ws = (rng.uniform(0.002, 0.01, o) if per_channel else np.array([0.005])).astype(np.float32)
    inits = [tensor("xs", np.float32(0.02)), tensor("xz", np.uint8(120)), tensor("w", w), tensor("ws", ws),
             tensor("wz", np.zeros(ws.shape, np.int8)), tensor("ys", np.float32(0.05)), tensor("yz", np.uint8(100)),
             tensor("b", rng.integers(-2000, 2000, o).astype(np.int32))]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            pads=[1, 0, 1, 2], strides=[1, 2], group=group)
    graph = helper.make_graph([node], "qconv", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, c, 9, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("group,per_channel,c", [(1, True, 8), (8, False, 8), (2, True, 8), (2, True, 64)])
def test_qlinear_conv_matches_onnxruntime(group, per_channel, c):
    """Grouped convs: fan-in 36 and depthwise 9 run as exact float32 sums (below 2^24), fan-in
    32 x 9 = 288 (255^2 x 288 > 2^24) in int32."""
    rng = np.random.default_rng(group)
    model = qlinear_conv_model(rng, group, per_channel, c, c)
    x = rng.integers(0, 256, (1, c, 9, 10)).astype(np.uint8)
    want = ort_run(model, {"x": x}, fused=True)[0].astype(int)
    for got in both(model, {"x": x}):
        assert np.abs(got[0].astype(int) - want).max() <= 1


@pytest.mark.parametrize("rows,per_column", [((3,), False), ((2, 3), True)])
def test_qlinear_matmul_and_qlinear_add_match_onnxruntime(rows, per_column):
    """A constant B makes the matmul a packed int8 1x1 conv on the rows of A (an N-D A flattened)."""
    from edgec.targets import get as get_preset
    rng = np.random.default_rng(3)
    b = rng.integers(-64, 64, (16, 6)).astype(np.int8)
    bs = rng.uniform(0.005, 0.02, 6).astype(np.float32) if per_column else np.float32(0.01)
    bz = rng.integers(-3, 4, 6).astype(np.int8) if per_column else np.int8(0)
    inits = [tensor("as", np.float32(0.03)), tensor("az", np.uint8(7)), tensor("b", b), tensor("bs", bs),
             tensor("bz", bz), tensor("ys", np.float32(0.04)), tensor("yz", np.uint8(128)),
             tensor("cs", np.float32(0.06)), tensor("cz", np.uint8(90))]
    nodes = [helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["m"]),
             helper.make_node("QLinearAdd", ["m", "ys", "yz", "a2", "as", "az", "cs", "cz"], ["y"],
                              domain="com.microsoft")]
    graph = helper.make_graph(nodes, "qmm", [helper.make_tensor_value_info("a", TensorProto.UINT8, [*rows, 16]),
                                             helper.make_tensor_value_info("a2", TensorProto.UINT8, [*rows, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("com.microsoft", 1)])
    ops = [n.op for n in run_passes(from_onnx(model), preset=get_preset("host")).nodes]
    assert "qconv2d_packed" in ops and "qmatmul" not in ops, ops
    feeds = {"a": rng.integers(0, 256, (*rows, 16)).astype(np.uint8),
             "a2": rng.integers(0, 256, (*rows, 6)).astype(np.uint8)}
    want = ort_run(model, feeds, fused=True)[0].astype(int)
    for got in both(model, feeds):
        assert np.abs(got[0].astype(int) - want).max() <= 1


def float_cnn(seed=0):
    """conv-relu-conv(depthwise)-clip-maxpool(pad)-flatten-gemm: the float model to quantize."""
    rng = np.random.default_rng(seed)
    inits = [tensor("w1", rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3),
             tensor("b1", rng.standard_normal(8).astype(np.float32) * 0.1),
             tensor("w2", rng.standard_normal((8, 1, 3, 3)).astype(np.float32) * 0.3),
             tensor("w3", rng.standard_normal((10, 8 * 4 * 4)).astype(np.float32) * 0.1),
             tensor("b3", rng.standard_normal(10).astype(np.float32)),
             tensor("lo", np.float32(0.0)), tensor("hi", np.float32(0.5))]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=8),
             helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "float_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("per_channel", [False, True])
def test_quantized_model_folds_to_int8_kernels_and_matches_onnxruntime(tmp_path, capsys, per_channel):
    from edgec import cli
    from edgec.quantize import output_steps
    onnx.save(float_cnn(), tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", input=rng.standard_normal((20, 3, 8, 8)).astype(np.float32))
    args = ["quantize", str(tmp_path / "m.onnx"), "--calibration", str(tmp_path / "calib.npz"),
            "-o", str(tmp_path / "m.int8.onnx")] + (["--per-channel", "--method", "percentile"] if per_channel else [])
    assert cli.main(args) in (0, None)
    out = capsys.readouterr().out
    assert "int8 kernels: Conv x2, Flatten x1, Gemm x1, MaxPool x1" in out and ("per-channel" in out) == per_channel, out
    qmodel = onnx.load(tmp_path / "m.int8.onnx")
    folded = run_passes(from_onnx(qmodel))
    ops = [n.op for n in folded.nodes]
    assert ops.count("qconv2d") == 2 and ops.count("qdense") == 1 and "conv2d" not in ops and "dense" not in ops
    pool = next(n for n in folded.nodes if n.op == "qmax_pool2d")
    assert folded.values[pool.inputs[0]].dtype == "uint8"  # int8 between the int8 kernels
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    want = ort_run(qmodel, {"input": x})[0]
    scale = output_steps(tmp_path / "m.int8.onnx")["logits"]
    for got in both(qmodel, {"input": x}):
        assert np.abs(got[0] - want).max() <= scale * 1.0001


def test_concat_of_int8_kernels_runs_on_int8(tmp_path):
    """A fire module (squeeze conv, two expand convs with ReLU, Concat, conv): the expands' requantizes
    write the Concat's scale, the Concat takes uint8, within one output step of onnxruntime; with a
    CPU preset the concat joins the int8 convs' channels-last values (concatenating the last axis)."""
    from edgec import targets
    from edgec.quantize import output_steps, quantize
    rng = np.random.default_rng(4)
    inits = [tensor("w0", rng.standard_normal((4, 3, 1, 1)).astype(np.float32)),
             tensor("w1", rng.standard_normal((6, 4, 1, 1)).astype(np.float32) * 0.5),
             tensor("w3", rng.standard_normal((5, 4, 3, 3)).astype(np.float32) * 0.2),
             tensor("w4", rng.standard_normal((3, 11, 1, 1)).astype(np.float32) * 0.3)]
    nodes = [helper.make_node("Conv", ["input", "w0"], ["c0"]), helper.make_node("Relu", ["c0"], ["s"]),
             helper.make_node("Conv", ["s", "w1"], ["c1"]), helper.make_node("Relu", ["c1"], ["e1"]),
             helper.make_node("Conv", ["s", "w3"], ["c3"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c3"], ["e3"]),
             helper.make_node("Concat", ["e1", "e3"], ["cat"], axis=1), helper.make_node("Conv", ["cat", "w4"], ["out"])]
    graph = helper.make_graph(nodes, "fire", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 7, 7])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 7, 7])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", input=rng.standard_normal((8, 3, 7, 7)).astype(np.float32))
    quantize(str(tmp_path / "m.onnx"), str(tmp_path / "calib.npz"), str(tmp_path / "m.int8.onnx"))
    qmodel = onnx.load(tmp_path / "m.int8.onnx")
    folded = run_passes(from_onnx(qmodel))
    cat = next(n for n in folded.nodes if n.op == "concat")
    assert [folded.values[i].dtype for i in cat.inputs + cat.outputs] == ["uint8"] * 3
    for preset in ("x86-avx2", "rpi4"):
        packed = run_passes(from_onnx(qmodel), preset=targets.get(preset))
        assert [n.attrs.get("axis") for n in packed.nodes if n.op == "concat"] == [3], preset
        assert [(n.attrs.get("in_layout"), n.attrs.get("out_layout")) for n in packed.nodes
                if n.op == "qconv2d_packed"] == [(None, "NHWC"), ("NHWC", "NHWC"), ("NHWC", "NHWC"), ("NHWC", None)]
    x = rng.standard_normal((1, 3, 7, 7)).astype(np.float32)
    want = ort_run(qmodel, {"input": x})[0]
    scale = output_steps(tmp_path / "m.int8.onnx")["out"]
    for got in both(qmodel, {"input": x}):
        assert np.abs(got[0] - want).max() <= scale * 1.0001


def test_qdq_global_average_pool_runs_on_int8():
    """quantize(GlobalAveragePool(dequantize(x))) folds to one int8 op (its conv, if any, then writes
    int8, not a float32 copy): within one step of onnxruntime, as written and with its QLinear
    fusion, interpreted and compiled."""
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["d"]),
             helper.make_node("GlobalAveragePool", ["d"], ["p"]),
             helper.make_node("QuantizeLinear", ["p", "ys", "yz"], ["y"])]
    graph = helper.make_graph(nodes, "qgap", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 6, 5, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
                              [tensor("xs", np.float32(0.05)), tensor("xz", np.uint8(30)),
                               tensor("ys", np.float32(0.03)), tensor("yz", np.uint8(10))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert [n.op for n in run_passes(from_onnx(model)).nodes] == ["qglobal_avg_pool"]
    x = rng.integers(0, 256, (1, 6, 5, 7)).astype(np.uint8)
    for fused in (False, True):
        want = ort_run(model, {"x": x}, fused=fused)[0].astype(int)
        for got in both(model, {"x": x}):
            assert got[0].shape == want.shape and np.abs(got[0].astype(int) - want).max() <= 1
    assert np.ptp(want) > 10 and want.max() < 255


def test_unfoldable_qdq_stays_float_and_exact():
    """A DequantizeLinear feeding a float-only op (Sigmoid) stays: the result is the QDQ graph's."""
    inits = [tensor("s", np.float32(0.05)), tensor("z", np.uint8(128))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("Sigmoid", ["d"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32) * 4
    want = ort_run(model, {"x": x})[0]
    for got in both(model, {"x": x}):
        np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-5)


def test_digits_cnn_int8_accuracy_cli_and_artifact_size(tmp_path):
    """The digits CNN quantized with 100 training images keeps held-out accuracy within 0.5 points
    of float32; one `edgec compile --quantize int8` call; `edgec verify` against the QDQ model;
    int8 weights take a quarter of the float32 bytes (plus block padding)."""
    sys.path.insert(0, EXAMPLES)
    from train_digits_cnn import load_split

    import edgec
    from edgec import cli
    x_train = load_split()[0]
    np.savez(tmp_path / "calib.npz", image=x_train[:100])
    test = np.load(os.path.join(EXAMPLES, "digits_test.npz"))
    src = os.path.join(EXAMPLES, "digits_cnn.onnx")
    out = tmp_path / "d.edgec"
    n = len(test["label"])
    assert cli.main(["compile", src, "--quantize", "int8", "--calibration", str(tmp_path / "calib.npz"),
                     "--input-shape", f"image={n},8,8,1", "-o", str(out)]) in (0, None)
    assert (tmp_path / "d.int8.onnx").exists()
    probs = edgec.load(str(out)).run({"image": test["image"]})[0]
    float_probs = ort.InferenceSession(src).run(None, {"image": test["image"]})[0]
    acc8, acc32 = (probs.argmax(1) == test["label"]).mean(), (float_probs.argmax(1) == test["label"]).mean()
    assert acc8 >= acc32 - 0.005, (acc8, acc32)
    np.savez(tmp_path / "inputs.npz", image=test["image"])
    assert cli.main(["verify", str(tmp_path / "d.int8.onnx"), str(out), "--inputs", str(tmp_path / "inputs.npz")]) == 0
    weights = [a for a in artifact_params(out).values() if a.ndim >= 2 and a.dtype.kind in "iu"]
    assert weights and all(a.dtype.itemsize == 1 for a in weights)  # stored as int8
    int8_weights = sum(a.nbytes for a in weights)
    float_weights = sum(numpy_helper.to_array(t).nbytes for t in onnx.load(src).graph.initializer if len(t.dims) >= 2)
    # a quarter, plus the zero channels that pad packed weights to whole blocks (conv1: 1 -> 4 inputs)
    assert float_weights / int8_weights > 3.85, (int8_weights, float_weights)


def artifact_params(path):
    import json
    import tarfile

    from edgec.runtime.artifact import read_params
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(path) as t:
            t.extractall(tmp, filter="data")
        names = json.load(open(os.path.join(tmp, "manifest.json")))["params"]
        return read_params(os.path.join(tmp, "params.bin"), names, path)


def test_recurrent_layers_stay_float_and_say_so(tmp_path):
    """LSTM has no int8 rule: the report names it as kept float32; the model still compiles and
    verifies against onnxruntime on the QDQ file (its MatMul head is int8)."""
    from edgec import api
    from edgec.quantize import quantize
    rng = np.random.default_rng(0)
    h, d, t = 8, 4, 5
    inits = [tensor("W", rng.standard_normal((1, 4 * h, d)).astype(np.float32) * 0.3),
             tensor("R", rng.standard_normal((1, 4 * h, h)).astype(np.float32) * 0.3),
             tensor("shape", np.array([1, h], np.int64)),
             tensor("M", rng.standard_normal((h, 3)).astype(np.float32))]
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["", "yh"], hidden_size=h),
             helper.make_node("Reshape", ["yh", "shape"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["y"])]
    graph = helper.make_graph(nodes, "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [t, 1, d])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "lstm.onnx")
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((10, 1, d)).astype(np.float32))
    report = quantize(tmp_path / "lstm.onnx", tmp_path / "calib.npz", tmp_path / "lstm.int8.onnx")
    text = "\n".join(report.lines())
    assert "kept float32 (recurrent layers are not quantized): LSTM x1" in text, text
    assert report.quantized.get("MatMul") == 1
    art = api.compile(str(tmp_path / "lstm.int8.onnx"), output=str(tmp_path / "lstm.edgec"), progress=False)
    assert api.verify(str(tmp_path / "lstm.int8.onnx"), art).passed
