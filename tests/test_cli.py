"""The CLI end to end on a small ONNX CNN: compile, run, verify (pass and fail), inspect,
and one-line errors with exit code 2 for user mistakes."""
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def small_cnn(seed=0):
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((10, 8 * 4 * 4)).astype(np.float32) * 0.1, "w2"),
             numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu1"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["logits"], name="fc", transB=1),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)]
    graph = helper.make_graph(nodes, "small_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def edgec(*args):
    return subprocess.run([sys.executable, "-m", "edgec.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    onnx.save(small_cnn(0), d / "cnn.onnx")
    onnx.save(small_cnn(1), d / "cnn_other_weights.onnx")
    r = edgec("compile", d / "cnn.onnx", "--input-shape", "input=2,3,8,8", "-o", d / "cnn.edgec")
    assert r.returncode == 0, r.stderr
    return d


def test_compile_reports_kernels(files):
    r = edgec("inspect", files / "cnn.edgec")
    assert r.returncode == 0 and '"kernels"' in r.stdout and "conv1" in r.stdout


def test_verify_passes_and_prints_statistics(files):
    r = edgec("verify", files / "cnn.onnx", files / "cnn.edgec")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout and "max abs" in r.stdout and "onnxruntime" in r.stdout


def test_verify_fails_for_other_weights(files):
    r = edgec("verify", files / "cnn_other_weights.onnx", files / "cnn.edgec")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL" in r.stdout


def test_run_with_inputs_and_outputs(files):
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.savez(files / "in.npz", input=x)
    r = edgec("run", files / "cnn.edgec", "--inputs", files / "in.npz", "--outputs", files / "out.npz",
              "--repeat", "3")
    assert r.returncode == 0, r.stderr
    import onnxruntime as ort
    ref = ort.InferenceSession(str(files / "cnn.onnx")).run(None, {"input": x})[0]
    np.testing.assert_allclose(np.load(files / "out.npz")["probs"], ref, rtol=1e-4, atol=1e-5)


def _one_line_error(r, *words):
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgec: error:"), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_wrong_input_shape_at_run(files):
    np.savez(files / "bad.npz", input=np.zeros((1, 3, 8, 8), np.float32))
    _one_line_error(edgec("run", files / "cnn.edgec", "--inputs", files / "bad.npz"), "input", "shape")


def test_wrong_input_dtype_at_run(files):
    np.savez(files / "bad64.npz", input=np.zeros((2, 3, 8, 8), np.float64))
    _one_line_error(edgec("run", files / "cnn.edgec", "--inputs", files / "bad64.npz"), "dtype float64")


def test_compile_into_a_missing_folder(files):
    """Before the compile: one line naming the folder, not an internal error after it."""
    _one_line_error(edgec("compile", files / "cnn.onnx", "--input-shape", "input=2,3,8,8", "-o",
                          files / "no" / "such" / "x.edgec"), "no/such", "does not exist")


def test_truncated_onnx(files):
    data = (files / "cnn.onnx").read_bytes()
    (files / "trunc.onnx").write_bytes(data[: len(data) // 2])
    _one_line_error(edgec("compile", files / "trunc.onnx", "-o", files / "x.edgec"), "trunc.onnx")


def test_unsupported_op(files):
    m = small_cnn(0)
    m.graph.node.append(helper.make_node("NonMaxSuppression", ["probs"], ["nms"], name="my_nms"))
    m.graph.output[0].name = "nms"
    onnx.save(m, files / "unsupported.onnx")
    _one_line_error(edgec("compile", files / "unsupported.onnx", "--input-shape", "input=1,3,8,8"),
                    "NonMaxSuppression", "my_nms")


def test_tampered_artifact(files):
    import tarfile
    with tarfile.open(files / "cnn.edgec") as tar:
        member = tar.getmember("model.so")
    data = bytearray((files / "cnn.edgec").read_bytes())
    data[member.offset_data + member.size // 2] ^= 0xFF  # one bit pattern inside the library
    (files / "tampered.edgec").write_bytes(bytes(data))
    _one_line_error(edgec("run", files / "tampered.edgec"), "tampered.edgec")


def test_unknown_target(files):
    _one_line_error(edgec("compile", files / "cnn.onnx", "--target", "pdp11"), "unknown target 'pdp11'")
