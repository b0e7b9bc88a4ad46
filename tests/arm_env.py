"""aarch64 execution on an x86 machine for the `arm` tests: qemu-user, cross tools, emulated Python.

`require_tools()` skips (or, with EDGEC_REQUIRE_ARM=1 as in .ci/run, fails) when the Debian tools are
missing. `emulated_python()` builds, once, under ~/.cache/edgec/aarch64-py311 (EDGEC_CACHE):
  rootfs/  Debian bookworm arm64 python3.11 and its libraries (apt-get download + dpkg-deb -x, with
           a private apt state so the host's apt configuration is untouched)
  site/    aarch64 wheels: apache-tvm, apache-tvm-ffi (pinned), numpy, cloudpickle (pip --target)
  pkg/edgec -> this checkout, so `import edgec.runtime` works
  python3  wrapper that re-enters qemu (TVM's RPC server spawns workers with sys.executable)
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = {"aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu", "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
         "aarch64-linux-gnu-objdump": "binutils-aarch64-linux-gnu", "qemu-aarch64-static": "qemu-user-static"}
QEMU_CPU = "cortex-a72"
SYSROOT = "/usr/aarch64-linux-gnu"
DEBS = ("python3.11 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libgcc-s1 libstdc++6 "
        "libbz2-1.0 libcrypt1 libdb5.3 libexpat1 libffi8 liblzma5 libncursesw6 libnsl2 libreadline8 "
        "libsqlite3-0 libssl3 libtinfo6 libtirpc3 libuuid1 zlib1g libgssapi-krb5-2 libk5crypto3 "
        "libkeyutils1 libkrb5-3 libkrb5support0 libcom-err2").split()
WHEELS = ["apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post1", "numpy", "cloudpickle"]
REPO = Path(__file__).resolve().parent.parent


def require_tools():
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
    if missing:
        msg = f"aarch64 tools missing: sudo apt-get install {' '.join(missing)}"
        if os.environ.get("EDGEC_REQUIRE_ARM"):
            pytest.fail(msg)
        pytest.skip(msg)


def qemu(cmd, **kw):
    """Run aarch64 executable CMD (list) under qemu with the cross sysroot."""
    env = dict(os.environ, QEMU_CPU=QEMU_CPU, QEMU_LD_PREFIX=SYSROOT)
    return subprocess.run(["qemu-aarch64-static", *cmd], env=env, capture_output=True, text=True, **kw)


def run_artifact(artifact, inputs, tmp_path, n_outputs):
    """Package ARTIFACT with `edgec package`, unpack the bundle into TMP_PATH and run it under qemu
    on INPUTS (arrays, in model order); return its outputs."""
    import tarfile

    from edgec import cli
    bundle = Path(tmp_path) / "bundle.tar.gz"
    assert cli.main(["package", str(artifact), "-o", str(bundle)]) == 0
    with tarfile.open(bundle) as t:
        root = Path(tmp_path) / t.getnames()[0].split("/")[0]
        t.extractall(tmp_path, filter="data")
    return run_bundle(root, inputs, tmp_path, n_outputs)


def run_bundle(root, inputs, out_dir, n_outputs, runs=1):
    """Run an unpacked bundle's C++ runner under qemu on INPUTS (arrays, in model order); return
    its outputs. The runner must exit 0 and print its latency line."""
    import numpy as np
    files = []
    for i, x in enumerate(inputs):
        files.append(str(Path(out_dir) / f"in{i}.npy"))
        np.save(files[-1], x)
    res = qemu([str(Path(root) / "bin/edgec-run"), str(Path(root) / "model"), "-i", *files, "-o", str(out_dir),
                "-n", str(runs)], timeout=300)
    assert res.returncode == 0, res.stderr
    assert "latency: median" in res.stdout
    return [np.load(Path(out_dir) / f"output_{i}.npy") for i in range(n_outputs)]


def _cache():
    return Path(os.environ.get("EDGEC_CACHE") or Path.home() / ".cache" / "edgec") / "aarch64-py311"


def _run(cmd, what, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode:
        msg = f"setting up the emulated aarch64 Python failed at {what}: {res.stderr.strip()[-400:]}"
        if os.environ.get("EDGEC_REQUIRE_ARM"):
            pytest.fail(msg)
        pytest.skip(msg + " (needs network once; cached afterwards)")
    return res


def emulated_python():
    """Path of a `python3` wrapper that runs Debian's aarch64 python3.11 under qemu (built once)."""
    require_tools()
    root = _cache()
    wrapper = root / "python3"
    (root / "pkg").mkdir(parents=True, exist_ok=True)
    link = root / "pkg" / "edgec"
    if not (link.is_symlink() and link.resolve() == REPO):
        link.unlink(missing_ok=True)
        link.symlink_to(REPO)
    if wrapper.is_file():
        return wrapper
    apt = root / "apt"
    for d in ("lists/partial", "cache/archives/partial", "debs"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    opts = ["-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
            "-o", f"Dir::State::Lists={apt}/lists", "-o", f"Dir::Cache={apt}/cache",
            "-o", "Dir::State::status=/dev/null", "-o", "Debug::NoDropPrivs=1"]
    _run(["apt-get", *opts, "update", "-qq"], "apt-get update (arm64 lists)")
    _run(["apt-get", *opts, "download", "-qq", *DEBS], "apt-get download", cwd=apt / "debs")
    rootfs = root / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    for deb in sorted((apt / "debs").glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(rootfs)], f"dpkg-deb -x {deb.name}")
    site = root / "site"
    shutil.rmtree(site, ignore_errors=True)
    wheels = root.parent / "wheels"
    _run([sys.executable, "-m", "pip", "install", "-q", "--target", str(site), "--platform", "manylinux_2_28_aarch64",
          "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
          "--find-links", str(wheels), *WHEELS], "pip install of the aarch64 wheels")
    (site / "tvm" / "lib" / "libtvm_compiler.so").unlink(missing_ok=True)  # runtime-only: saves 240 MB
    tmp = wrapper.with_suffix(".tmp")
    tmp.write_text(f"""#!/bin/sh
export QEMU_CPU={QEMU_CPU} QEMU_LD_PREFIX={rootfs} TVM_USE_RUNTIME_LIB=1 PYTHONPATH={site}:{root / 'pkg'}
exec qemu-aarch64-static {rootfs}/usr/bin/python3.11 "$@"
""")
    tmp.chmod(0o755)
    os.replace(tmp, wrapper)
    return wrapper
