"""CUDA code generation is checked here (no GPU needed); execution only where a GPU exists."""
import tarfile

import numpy as np
import onnx
import pytest

import edgec
from edgec.runtime.artifact import read_manifest

from test_cli import small_cnn


@pytest.fixture(scope="module")
def cuda_art(tmp_path_factory):
    d = tmp_path_factory.mktemp("cuda")
    onnx.save(small_cnn(0), d / "cnn.onnx")
    art = edgec.compile(str(d / "cnn.onnx"), target="cuda", output=str(d / "cnn.edgec"),
                        input_shapes={"input": (2, 3, 8, 8)}, progress=False)
    return d, art


def test_cuda_artifact_holds_a_gpu_kernel_per_kernel(cuda_art):
    d, art = cuda_art
    m = read_manifest(art)
    assert m["target"]["device"] == "cuda" and m["target"]["tvm"]["arch"] == "sm_80"
    with tarfile.open(art) as tar:
        src = tar.extractfile("kernels.cu").read().decode()
    for k in m["kernels"]:
        assert f"{k['name']}_kernel" in src, k["name"]  # dlight bound every kernel to GPU threads
    assert src.count("__global__") >= len(m["kernels"])
    assert "blockIdx.x" in src and "threadIdx.x" in src


def test_cuda_artifact_runs_on_a_gpu(cuda_art):
    import tvm
    if not tvm.cuda(0).exist:
        pytest.skip("no CUDA GPU on this machine: CUDA execution is checked on the GPU machine")
    d, art = cuda_art
    import onnxruntime as ort
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    (out,) = edgec.load(art).run({"input": x})
    ref = ort.InferenceSession(str(d / "cnn.onnx")).run(None, {"input": x})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_loading_a_cuda_artifact_without_gpu_is_a_clear_error(cuda_art):
    import tvm
    if tvm.cuda(0).exist:
        pytest.skip("this machine has a GPU; the no-GPU error cannot be provoked here")
    with pytest.raises(edgec.EdgecError, match="compiled for a CUDA GPU"):
        edgec.load(cuda_art[1])
