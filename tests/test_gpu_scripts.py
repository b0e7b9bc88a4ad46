"""The offline GPU check's two halves (examples/gpu_prepare.py, examples/gpu_run.py) without a GPU:
the compile half for cuda-sm90 (nvcc), and the GPU half's verification, timing and table on a host
artifact, with only the GPU's name and architecture stood in (what `gpu_run` asks the driver)."""
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import edgec
from edgec import targets
from edgec.runtime.artifact import read_manifest

EXAMPLES = Path(__file__).parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import gpu_prepare  # noqa: E402
import gpu_run  # noqa: E402

MODEL = EXAMPLES / "digits_cnn.onnx"


def test_prepare_compiles_for_cuda_with_references_and_packs(tmp_path):
    missing = targets.get("cuda-sm90").missing_tools()
    if missing:
        pytest.skip(f"cuda-sm90 needs {missing} (CI has nvcc)")
    out = tmp_path / "gpu"
    assert gpu_prepare.main([str(out), str(MODEL), "--pack", str(tmp_path / "gpu.tar.xz")]) == 0
    manifest = read_manifest(out / "digits_cnn.edgec")
    assert manifest["target"]["name"] == "cuda-sm90" and manifest["device_code"]["format"] == "fatbin"
    ref = np.load(out / "digits_cnn.ref.npz")
    sess = ort.InferenceSession(str(MODEL))
    feeds = {k[3:]: ref[k] for k in ref.files if k.startswith("in:")}
    assert list(feeds) == [i.name for i in sess.get_inputs()]
    np.testing.assert_array_equal(ref["out:" + sess.get_outputs()[0].name], sess.run(None, feeds)[0])
    with tarfile.open(tmp_path / "gpu.tar.xz") as t:
        assert sorted(t.getnames()) == ["gpu/digits_cnn.edgec", "gpu/digits_cnn.ref.npz"]


def test_prepare_constant_weights_writes_the_graph_beside(tmp_path):
    missing = targets.get("cuda-sm90").missing_tools()
    if missing:
        pytest.skip(f"cuda-sm90 needs {missing} (CI has nvcc)")
    assert gpu_prepare.main([str(tmp_path), str(MODEL), "--constant-weights"]) == 0
    import onnx
    from onnx import numpy_helper
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "digits_cnn_cw.onnx")).graph.initializer]
    big = [w for w in weights if w.dtype == np.float32 and w.size > 16]
    assert big and all(np.all(w == w.flat[0]) for w in big)
    assert (tmp_path / "digits_cnn_cw.edgec").exists() and not (tmp_path / "digits_cnn_cw.ref.npz").exists()


@pytest.fixture
def host_run(tmp_path, monkeypatch):
    """A folder with a host artifact and onnxruntime's reference, and gpu_run told the GPU's name."""
    from edgec.runtime import cuda
    monkeypatch.setattr(cuda, "_driver", lambda: None)
    monkeypatch.setattr(cuda, "gpu_info", lambda driver: ("stand-in", (9, 0)))
    edgec.compile(str(MODEL), output=str(tmp_path / "digits.edgec"), progress=False)
    sess = ort.InferenceSession(str(MODEL))
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "digits.ref.npz", **{f"in:{sess.get_inputs()[0].name}": x,
                                             f"out:{sess.get_outputs()[0].name}": sess.run(None, {"image": x})[0]})
    return tmp_path


def test_run_passes_matching_outputs_and_writes_the_table(host_run):
    assert gpu_run.main([str(host_run), "--out", str(host_run / "t.md"), "--rounds", "1"]) == 0
    table = (host_run / "t.md").read_text()
    assert "| digits | PASS |" in table, table


def test_run_fails_on_a_wrong_reference(host_run):
    ref = dict(np.load(host_run / "digits.ref.npz"))
    key = next(k for k in ref if k.startswith("out:"))
    ref[key] = ref[key] + 1e-3  # beyond atol 1e-5 + rtol 1e-4 of softmax outputs
    np.savez(host_run / "digits.ref.npz", **ref)
    assert gpu_run.main([str(host_run), "--out", str(host_run / "t.md"), "--rounds", "1"]) == 1
    assert "| digits | FAIL |" in (host_run / "t.md").read_text()
