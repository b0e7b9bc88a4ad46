"""rpi4 parity for the ops added for the real-world corpus (issue 12): the one-model-per-op-branch
model of test_upsample_ops (ConvTranspose with stride / groups / output_padding / dilation, Resize
nearest / linear / cubic, LayerNormalization, Einsum, an unrolled Loop and a folded If) and a Loop that
is recognised as a fused RNN, each compiled for rpi4 and run through the packaged C++ runner under
qemu-aarch64-static; every output is checked against onnxruntime on the host at rtol 1e-4 / atol 1e-5.
Also models of the real-world corpus as their exporter wrote them (tests/corpus/generate.py): a
sample by default, more with `-m corpus`."""
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest

import arm_env
from edgec import api, cli
from edgec.frontends.onnx import from_onnx
from test_arm import check, onnxruntime_outputs
from test_upsample_ops import _model, _rnn_loop_model

sys.path.insert(0, str(Path(__file__).parent / "corpus"))
import generate  # noqa: E402

pytestmark = pytest.mark.arm


def _run_on_rpi4(tmp_path, name, model, x):
    path = str(tmp_path / f"{name}.onnx")
    onnx.save(model, path)
    _run_file_on_rpi4(tmp_path, name, path, x)
    return path


def _run_file_on_rpi4(tmp_path, name, path, x):
    feed = onnx.load(path).graph.input[0].name
    expected = onnxruntime_outputs(path, {feed: x})
    art = api.compile(path, "rpi4", str(tmp_path / f"{name}.edgec"), progress=False)
    bundle = tmp_path / f"{name}.tar.gz"
    assert cli.main(["package", art, "-o", str(bundle)]) == 0
    with tarfile.open(bundle) as t:
        root = tmp_path / t.getnames()[0].split("/")[0]
        t.extractall(tmp_path, filter="data")
    out_dir = tmp_path / f"{name}_out"
    out_dir.mkdir()
    check(arm_env.run_bundle(root, [x], out_dir, len(expected)), expected)


def test_new_ops_on_rpi4_match_onnxruntime(tmp_path):
    arm_env.require_tools()
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 7)).astype(np.float32)
    _run_on_rpi4(tmp_path, "new_ops", _model(), x)


def test_loop_rnn_on_rpi4_matches_onnxruntime(tmp_path):
    arm_env.require_tools()
    x = np.random.default_rng(3).standard_normal((2, 5, 3)).astype(np.float32)
    path = _run_on_rpi4(tmp_path, "rnn_loop", _rnn_loop_model("Tanh"), x)
    assert "rnn" in {n.op for n in from_onnx(path).nodes}  # the loop ran as the fused recurrent kernel


# keras.applications CNNs are left out: with random weights their logits are ~1e-10..1e-18, so an
# rtol/atol check of them on the device would say nothing (the host corpus reads them against the
# max output instead)
@pytest.mark.parametrize("name", ["keras_simplernn", pytest.param("keras_gru", marks=pytest.mark.corpus),
                                  pytest.param("keras_bigru", marks=pytest.mark.corpus)])
def test_corpus_export_on_rpi4_matches_onnxruntime(name, tmp_path):
    """A corpus model as tf2onnx wrote it (the Loop form of a Keras GRU/SimpleRNN), batch 1."""
    arm_env.require_tools()
    pytest.importorskip("tf2onnx", reason="Keras/TensorFlow/tf2onnx not installed (the keras extra)")
    path = generate.build(name, tmp_path)["onnx"]
    if isinstance(path, Exception):
        raise path
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    x = np.random.default_rng(4).standard_normal([d.dim_value or 1 for d in dims]).astype(np.float32)
    _run_file_on_rpi4(tmp_path, name, str(path), x)
