"""The real-world corpus (generate.py): each model compiles for the host and matches its reference
at rtol 1e-4 / atol 1e-5. The default run checks a small sample; `pytest -m corpus` runs them all
(slow: tens of minutes). Torch models need torch + torchvision (`EDGEC_TORCH_PYTHON` may name a
Python that has them)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import generate  # noqa: E402

FULL = [pytest.param(n, f, marks=pytest.mark.corpus, id=f"{n}-{f}") for n, f in generate.entries()]
SAMPLE = [pytest.param(n, f, id=f"{n}-{f}-sample") for n, f in generate.entries() if n in generate.SAMPLE and f == "onnx"]


def _needs(name):
    if name in generate.KERAS_APPS or name in generate.KERAS_RNN:
        pytest.importorskip("tf2onnx", reason="Keras/TensorFlow/tf2onnx not installed (the keras extra)")
    else:
        py = os.environ.get("EDGEC_TORCH_PYTHON")
        if py is None and importlib.util.find_spec("torchvision") is None:
            pytest.skip("torch/torchvision not installed (the torch extra, or EDGEC_TORCH_PYTHON)")
        if py is not None and subprocess.run([py, "-c", "import torchvision"], capture_output=True).returncode:
            pytest.skip(f"EDGEC_TORCH_PYTHON={py} cannot import torchvision")


@pytest.mark.parametrize("name,fmt", SAMPLE + FULL)
def test_corpus_model(name, fmt, tmp_path, request):
    if "sample" not in request.node.callspec.id and "corpus" not in request.config.getoption("markexpr", ""):
        pytest.skip("full corpus (tens of minutes): run it with -m corpus")
    _needs(name)
    row = generate.run_one(name, fmt, tmp_path, {})
    assert row["status"] == "pass", row


def test_failed_build_is_one_row_per_format(tmp_path):
    """A build or export failure is recorded (once built, never retried) with the subprocess's
    exception line, not its last log line; a failed ONNX export leaves the other formats' rows."""
    run = subprocess.CompletedProcess([], 1, "", "2026 - INFO - Loading\nTraceback (most recent call last):\n"
                                      "MemoryError: std::bad_alloc\n2026 - INFO - Optimizing ONNX model\n")
    assert generate._failure(run, 12).startswith("MemoryError: std::bad_alloc; address space limited to 12 GiB")
    assert generate._failure(subprocess.CompletedProcess([], -9, "", "INFO - Optimizing")) == "killed by signal 9"
    cache = {"m": {"keras": tmp_path / "absent.keras", "onnx": RuntimeError("tf2onnx failed (killed by signal 9)")}}
    row = generate.run_one("m", "onnx", tmp_path, cache)
    assert row["status"] == "error" and row["reason"] == "RuntimeError: tf2onnx failed (killed by signal 9)"
    assert "does not exist" in generate.run_one("m", "keras", tmp_path, cache)["reason"]  # the .keras row ran
    cache = {"b": ValueError("no such model")}
    assert generate.run_one("b", "h5", tmp_path, cache)["reason"] == "ValueError: no such model"
