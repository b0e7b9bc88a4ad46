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


# ---- hardening (issue 13): fixed names, bounded tar reading, schema, params/ELF checks, signing ----
def _members(art):
    with tarfile.open(art) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers()}


def _repack(dst, manifest, files, rehash=True, sig=None):
    """An artifact from MANIFEST and FILES, hashes fixed as an attacker who rewrites members would."""
    import hashlib
    if rehash:
        manifest = dict(manifest, files={n: hashlib.sha256(d).hexdigest() for n, d in files.items()})
    entries = {"manifest.json": json.dumps(manifest).encode(), **({"manifest.sig": sig} if sig else {}), **files}
    with tarfile.open(dst, "w") as t:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return dst


@pytest.mark.parametrize("field,value", [("library", "/lib/x86_64-linux-gnu/libm.so.6"), ("params_file", "/dev/zero")])
def test_manifest_cannot_name_paths(art, tmp_path, field, value):
    members = _members(art)
    m = json.loads(members.pop("manifest.json"))
    bad = _repack(tmp_path / "bad.edgec", dict(m, **{field: value}), members)
    with pytest.raises(ArtifactError, match=f"unknown field '{field}'"):
        load(bad)


def test_truncated_library_rehashed_is_refused_before_dlopen(art, tmp_path):
    """Regression: dlopen of a model.so cut in half (hash rewritten) killed the process with SIGBUS."""
    members = _members(art)
    m = json.loads(members.pop("manifest.json"))
    members["model.so"] = members["model.so"][:len(members["model.so"]) // 2]
    with pytest.raises(ArtifactError, match="model.so .*(truncated|past the end)"):
        load(_repack(tmp_path / "bad.edgec", m, members))


@pytest.mark.parametrize("what", ["garbage", "reordered", "empty"])
def test_params_must_match_the_manifest(art, tmp_path, what):
    members = _members(art)
    m = json.loads(members.pop("manifest.json"))
    if what == "garbage":
        members["params.bin"] = bytes(range(256)) * 40
    elif what == "reordered":
        m["params"] = m["params"][::-1]
    else:
        m["params"] = []
    with pytest.raises(ArtifactError, match="params"):
        load(_repack(tmp_path / "bad.edgec", m, members))


def test_manifest_field_of_wrong_type_is_one_line(art, tmp_path):
    members = _members(art)
    m = json.loads(members.pop("manifest.json"))
    m["inputs"][0]["shape"] = "1,3,8,8"
    with pytest.raises(ArtifactError, match="field 'inputs' must be") as e:
        load(_repack(tmp_path / "bad.edgec", m, members))
    assert "\n" not in str(e.value)


def test_input_spec_that_lies_is_refused_at_run(art, tmp_path):
    members = _members(art)
    m = json.loads(members.pop("manifest.json"))
    m["inputs"][0]["shape"] = [1, 3, 9, 9]
    model = load(_repack(tmp_path / "bad.edgec", m, members))
    with pytest.raises(ArtifactError, match="failed on inputs that match its manifest"):
        model.run(model.random_inputs())


def _tar_with(dst, art, info, data=b""):
    with tarfile.open(art) as tin, tarfile.open(dst, "w", format=tarfile.GNU_FORMAT) as tout:
        for mm in tin.getmembers():
            tout.addfile(mm, tin.extractfile(mm))
        tout.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return dst


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE, tarfile.DIRTYPE])
def test_links_devices_and_folders_are_refused(art, tmp_path, kind):
    info = tarfile.TarInfo("kernels.cu")
    info.type, info.linkname = kind, "/etc/passwd"
    with pytest.raises(ArtifactError, match="not a regular file"):
        load(_tar_with(tmp_path / "bad.edgec", art, info))


def test_sparse_member_claiming_gigabytes_writes_nothing(art, tmp_path):
    from test_fuzz_artifact import gnu_sparse_member, raw_tar
    members = _members(art)
    head = tarfile.TarInfo("manifest.json")
    head.size = len(members["manifest.json"])
    blocks = [head.tobuf() + members["manifest.json"] + bytes((-head.size) % 512),
              gnu_sparse_member("model.so", b"\0" * 1024, 2 ** 31)]
    bad = tmp_path / "bomb.edgec"
    bad.write_bytes(raw_tar(blocks))
    with pytest.raises(ArtifactError, match="not a regular file"):
        load(bad)


def test_tar_without_end_blocks_and_duplicates_are_refused(art, tmp_path):
    data = art.read_bytes()
    with tarfile.open(art) as t:
        last = t.getmembers()[-1]
    end = last.offset_data + (last.size + 511) // 512 * 512
    (tmp_path / "cut.edgec").write_bytes(data[:end])
    with pytest.raises(ArtifactError, match="end-of-archive"):
        load(tmp_path / "cut.edgec")
    info = tarfile.TarInfo("model.so")
    info.size = 4
    with pytest.raises(ArtifactError, match="appears twice"):
        load(_tar_with(tmp_path / "dup.edgec", art, info, b"evil"))


def test_signed_artifact_loads_only_with_a_trusted_key(tmp_path):
    from edgec.runtime import signing
    signing.keygen(str(tmp_path / "key"))
    signing.keygen(str(tmp_path / "other"))
    signed = tmp_path / "signed.edgec"
    compile_graph(tiny_graph(), targets.get("host"), signed, progress=False, sign_key=str(tmp_path / "key"))
    x = np.zeros((1, 3, 8, 8), np.float32)
    with load(signed, trusted_keys=[str(tmp_path / "other.pub"), str(tmp_path / "key.pub")]) as m:
        m.run({"x": x})
    with pytest.raises(ArtifactError, match="not signed by any of the 1 trusted key"):
        load(signed, trusted_keys=[str(tmp_path / "other.pub")])
    members = _members(signed)  # the signature covers the manifest, which covers every member
    m = json.loads(members.pop("manifest.json"))
    sig = members.pop("manifest.sig")
    members["params.bin"] = members["params.bin"][:-4] + b"\0\0\0\0"
    with pytest.raises(ArtifactError, match="not signed by any"):
        load(_repack(tmp_path / "re.edgec", m, members, sig=sig), trusted_keys=[str(tmp_path / "key.pub")])
    with pytest.raises(ArtifactError, match="is not signed"):
        load(_repack(tmp_path / "unsigned.edgec", m, members), trusted_keys=[str(tmp_path / "key.pub")])


def test_cli_keygen_sign_and_trusted_key(tmp_path):
    from edgec import cli
    key = tmp_path / "k"
    assert cli.main(["keygen", str(key)]) == 0 and (tmp_path / "k.pub").is_file()
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    src = tmp_path / "relu.onnx"
    import onnx
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), src)
    out = tmp_path / "relu.edgec"
    assert cli.main(["compile", str(src), "-o", str(out), "--sign", str(key)]) == 0
    assert cli.main(["run", str(out), "--trusted-key", str(tmp_path / "k.pub")]) == 0
    cli.main(["keygen", str(tmp_path / "k2")])
    assert cli.main(["run", str(out), "--trusted-key", str(tmp_path / "k2.pub")]) == 2


def test_deeply_nested_manifest_is_one_line_error(art, tmp_path):
    """Regression (fuzzer): a manifest nested 100,000 deep raised RecursionError from json.loads."""
    members = _members(art)
    m = json.loads(members.pop("manifest.json"))
    m["model"]["name"] = "DEEP"
    data = json.dumps(m).replace('"DEEP"', "[" * 100000 + "]" * 100000).encode()
    bad = tmp_path / "deep.edgec"
    with tarfile.open(bad, "w") as t:
        for name, blob in {"manifest.json": data, **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load(bad)


def test_package_checks_signature_before_bundling(art, tmp_path):
    from edgec.runtime import signing
    from edgec.targets.package import package
    signing.keygen(str(tmp_path / "key"))
    with pytest.raises(ArtifactError, match="is not signed"):
        package(art, tmp_path / "b.tar.gz", [str(tmp_path / "key.pub")])
