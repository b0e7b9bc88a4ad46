"""Artifact safety and the runtime: hashes, versions, architecture, tar traversal, input checks,
and loading with the TVM runtime alone (no compiler, no onnx)."""
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import pytest

from edgec import targets
from edgec.compiler import ir
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.errors import ArtifactError, InputError
from edgec.runtime import artifact, load


def tiny_graph():
    g = ir.Graph("tiny")
    x = g.add_input("x", (1, 3, 8, 8))
    rng = np.random.default_rng(0)
    w = g.add_const(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = g.add_const(rng.standard_normal(4).astype(np.float32), "b")
    (y,) = g.add_node("conv2d", [x, w, b], {"pads": [1, 1, 1, 1]}, source=["conv1"])
    (y,) = g.add_node("relu", [y], source=["relu1"])
    (y,) = g.add_node("global_avg_pool", [y], source=["gap"])
    g.outputs = [y]
    return g


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    path = tmp_path_factory.mktemp("art") / "tiny.edgec"
    compile_graph(tiny_graph(), targets.get("host"), path, progress=False)
    return path


def _rewrite(src, dst, edit):
    """Copy artifact SRC to DST, passing each (name, bytes) through EDIT (None drops a member)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            res = edit(m.name, data)
            if res is None:
                continue
            name, data = res
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


def test_runs_and_matches_numpy(art):
    model = load(art)
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    (out,) = model.run({"x": x})
    g = tiny_graph()
    np.testing.assert_allclose(out, interpret(g, {"x": x})[g.outputs[0]], rtol=1e-4, atol=1e-5)


def test_manifest_has_versions_target_hashes_and_layer_map(art):
    m = artifact.read_manifest(art)
    assert m["versions"]["tvm"] and m["versions"]["edgec"] and m["target"]["name"] == "host"
    assert set(m["files"]) == {"model.so", "params.bin"}
    assert all(len(h) == 64 for h in m["files"].values())
    sources = {s for k in m["kernels"] for s in k["sources"]}
    assert {"conv1", "relu1", "gap"} <= sources


def test_tampered_library_is_refused(art, tmp_path):
    bad = tmp_path / "bad.edgec"
    _rewrite(art, bad, lambda n, d: (n, d[:-1] + bytes([d[-1] ^ 1])) if n == "params.bin" else (n, d))
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        load(bad)


def test_missing_member_is_refused(art, tmp_path):
    bad = tmp_path / "bad.edgec"
    _rewrite(art, bad, lambda n, d: None if n == "model.so" else (n, d))
    with pytest.raises(ArtifactError, match="'model.so' is missing"):
        load(bad)


def test_path_traversal_member_is_refused(art, tmp_path):
    bad = tmp_path / "bad.edgec"
    _rewrite(art, bad, lambda n, d: ("../evil.so", d) if n == "model.so" else (n, d))
    with pytest.raises(ArtifactError, match="escape"):
        load(bad)
    assert not (tmp_path / "evil.so").exists()


def test_unlisted_member_is_refused(art, tmp_path):
    bad = tmp_path / "bad.edgec"
    _rewrite(art, bad, lambda n, d: ("extra.so", d) if n == "params.bin" else (n, d))
    with pytest.raises(ArtifactError):
        load(bad)


def _edit_manifest(art, dst, fn):
    def edit(n, d):
        if n != "manifest.json":
            return n, d
        m = json.loads(d)
        fn(m)
        return n, json.dumps(m).encode()
    _rewrite(art, dst, edit)


def test_other_tvm_version_is_refused(art, tmp_path):
    bad = tmp_path / "bad.edgec"
    _edit_manifest(art, bad, lambda m: m["versions"].update(tvm="0.1.0"))
    with pytest.raises(ArtifactError, match="built with TVM 0.1.0"):
        load(bad)


def test_other_architecture_is_refused(art, tmp_path):
    bad = tmp_path / "bad.edgec"
    _edit_manifest(art, bad, lambda m: m["target"].update(arch="riscv64"))
    with pytest.raises(ArtifactError, match="riscv64 code"):
        load(bad)


def test_not_a_tar(tmp_path):
    p = tmp_path / "junk.edgec"
    p.write_bytes(b"not a tar at all" * 10)
    with pytest.raises(ArtifactError, match="not an edgec artifact"):
        load(p)


def test_wrong_input_shape_dtype_name(art):
    model = load(art)
    with pytest.raises(InputError, match=r"input 'x' has shape \[1, 3, 9, 9\]"):
        model.run({"x": np.zeros((1, 3, 9, 9), np.float32)})
    with pytest.raises(InputError, match="dtype float64, expected float32"):
        model.run({"x": np.zeros((1, 3, 8, 8))})
    with pytest.raises(InputError, match="no input"):
        model.run({"y": np.zeros((1, 3, 8, 8), np.float32)})


def test_loads_with_runtime_only_tvm_and_no_onnx(art, tmp_path):
    """A device has only numpy and the TVM runtime: block onnx, onnxruntime and TVM's compiler."""
    x = np.random.default_rng(5).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split('.')[0] in ('onnx', 'onnxruntime', 'tensorflow', 'keras') or \\
                   name.startswith('edgec.compiler') or name.startswith('edgec.frontends') or \\
                   name.startswith('tvm.relax'):
                    raise ImportError('blocked on the device: ' + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        import edgec
        m = edgec.load({str(art)!r})
        out = m.run(np.load({str(tmp_path / 'x.npy')!r}))[0]
        np.save({str(tmp_path / 'out.npy')!r}, out)
        assert 'edgec.compiler' not in sys.modules
    """)
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1")
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    g = tiny_graph()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), interpret(g, {"x": x})[g.outputs[0]],
                               rtol=1e-4, atol=1e-5)
