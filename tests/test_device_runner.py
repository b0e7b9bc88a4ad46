"""The bundle's C++ runner (targets/device/edgec_run.cc), built natively for this machine, applies the
loader's checks before loading anything: manifest format and fields, member sha256, params.bin
structure and names, a complete ELF library; and its outputs match the numpy reference.
(The aarch64 build of the same source runs under qemu in test_arm.py.)"""
import hashlib
import json
import os
import shutil
import subprocess
import tarfile

import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.targets.package import RUNNER_SRC, cache_dir
from test_artifact import tiny_graph


@pytest.fixture(scope="module")
def runner():
    """edgec-run for this machine, linked against the host's TVM wheels (built once per source)."""
    import tvm
    import tvm_ffi
    if not shutil.which("g++"):
        pytest.skip("needs g++ to build the runner for this machine")
    libs = [os.path.join(os.path.dirname(m.__file__), "lib") for m in (tvm_ffi, tvm)]
    key = hashlib.sha256(RUNNER_SRC.read_bytes() + "".join(libs).encode()).hexdigest()[:16]
    out = cache_dir() / "runner" / f"edgec-run-host-{key}"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["g++", "-std=c++17", "-O1", str(RUNNER_SRC), "-o", f"{out}.tmp",
               f"-I{tvm_ffi.libinfo.find_include_path()}", *[f"-L{d}" for d in libs], "-Wl,--no-as-needed",
               "-ltvm_ffi", "-ltvm_runtime", f"-Wl,-rpath,{':'.join(libs)}"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
        os.replace(f"{out}.tmp", out)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("runner")
    compile_graph(tiny_graph(), targets.get("host"), d / "tiny.edgec", progress=False)
    with tarfile.open(d / "tiny.edgec") as t:
        t.extractall(d / "model", filter="data")
    x = np.random.default_rng(7).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.save(d / "x.npy", x)
    return d / "model", x


def _run(runner, folder, x_file, out):
    return subprocess.run([str(runner), str(folder), "-i", str(x_file), "-o", str(out), "-n", "3"],
                          capture_output=True, text=True, timeout=60)


def test_runner_matches_numpy(runner, model_dir, tmp_path):
    folder, x = model_dir
    res = _run(runner, folder, folder.parent / "x.npy", tmp_path)
    assert res.returncode == 0, res.stderr
    g = tiny_graph()
    np.testing.assert_allclose(np.load(tmp_path / "output_0.npy"), interpret(g, {"x": x})[g.outputs[0]],
                               rtol=1e-4, atol=1e-5)


def _variant(src, dst, edit):
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    files = {n: (dst / n).read_bytes() for n in ("model.so", "params.bin")}
    rehash = edit(manifest, files)
    for n, data in files.items():
        (dst / n).write_bytes(data)
    if rehash:
        manifest["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    (dst / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    return dst


def _flip_param(m, f):
    f["params.bin"] = f["params.bin"][:-1] + bytes([f["params.bin"][-1] ^ 1])


def _half_library(m, f):
    f["model.so"] = f["model.so"][:len(f["model.so"]) // 2]
    return True


def _garbage_params(m, f):
    f["params.bin"] = bytes(range(256)) * 8
    return True


def _params_trailing(m, f):
    f["params.bin"] += b"\0" * 8
    return True


def _params_renamed(m, f):
    m["params"] = [p + "_x" for p in m["params"]]


def _old_format(m, f):
    m["format"] = "edgec-artifact/1"


def _other_arch(m, f):
    m["target"]["arch"] = "riscv64"


CASES = [(_flip_param, "params.bin does not match its sha256"), (_half_library, "model.so.*truncated"),
         (_garbage_params, "params.bin is not a TVM param dict"), (_params_trailing, "trailing bytes"),
         (_params_renamed, "params.bin lacks parameter"), (_old_format, "format is not edgec-artifact/2"),
         (_other_arch, "holds riscv64 code")]


@pytest.mark.parametrize("edit,message", CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_runner_refuses_bad_members(runner, model_dir, tmp_path, edit, message):
    folder, _ = model_dir
    bad = _variant(folder, tmp_path / "m", edit)
    res = _run(runner, bad, folder.parent / "x.npy", tmp_path)
    assert res.returncode == 1 and res.stderr.startswith("edgec-run: error:"), res.stderr
    import re
    assert re.search(message, res.stderr), res.stderr


def test_runner_refuses_broken_manifest(runner, model_dir, tmp_path):
    folder, _ = model_dir
    bad = tmp_path / "m"
    shutil.copytree(folder, bad)
    (bad / "manifest.json").write_text('{"format": "edgec-artifact/2", "files": ')
    res = _run(runner, bad, folder.parent / "x.npy", tmp_path)
    assert res.returncode == 1 and "not valid JSON" in res.stderr, res.stderr
