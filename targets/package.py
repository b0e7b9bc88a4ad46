"""`edgec package`: a self-contained device bundle (no Python on the device).

    edgec-bundle-<model>/
      bin/edgec-run                  C++ runner (targets/device/edgec_run.cc), built with the cross compiler
      lib/libtvm_runtime.so, libtvm_ffi.so   from the pinned aarch64 apache-tvm / apache-tvm-ffi wheels
      lib/libtvm_runtime_cuda.so, libcudart.so.13   CUDA artifacts (jetson-orin): TVM's CUDA backend and the
                                     CUDA 13 runtime (PyPI nvidia-cuda-runtime); the driver (libcuda.so.1) is the device's
      model/manifest.json, model.so, params.bin   the artifact's members (the runner checks them as edgec.load does)
      model/inputs.txt               input names, dtypes and shapes, for people
      run.sh, README.txt

The wheels are downloaded once (pip download) into the cache (EDGEC_CACHE, default ~/.cache/edgec);
the runner is built once per source/compiler and cached there too.
"""
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from ..errors import TargetError
from ..runtime import artifact

TVM_VERSION = "0.27.0.post1"
TVM_FFI_VERSION = "0.1.14.post1"
WHEEL_PLATFORM = {"aarch64": "manylinux_2_28_aarch64"}
CUDA_RUNTIME_VERSION = "13.0.96"  # nvidia-cuda-runtime: libcudart.so.13, which libtvm_runtime_cuda.so links
CROSS_CXX = {"aarch64": "aarch64-linux-gnu-g++"}
RUNNER_SRC = Path(__file__).parent / "device" / "edgec_run.cc"
RUNTIME_LIBS = {"libtvm_runtime.so": "tvm/lib/libtvm_runtime.so", "libtvm_ffi.so": "tvm_ffi/lib/libtvm_ffi.so"}
CUDA_LIBS = {"libtvm_runtime_cuda.so": "tvm/lib/libtvm_runtime_cuda.so", "libcudart.so.13": "nvidia/cu13/lib/libcudart.so.13"}


def cache_dir():
    return Path(os.environ.get("EDGEC_CACHE") or Path.home() / ".cache" / "edgec")


def _arch_check(arch):
    if arch not in WHEEL_PLATFORM:
        raise TargetError(f"edgec package makes bundles for {', '.join(WHEEL_PLATFORM)} targets; this "
                          f"artifact holds {arch} code (run it with `edgec run` on this machine instead)")


def runtime_libs(arch, cuda=False):
    """Folder holding libtvm_runtime.so and libtvm_ffi.so for ARCH, and with CUDA libtvm_runtime_cuda.so
    and libcudart.so.13 (downloads the wheels once)."""
    _arch_check(arch)
    libs = dict(RUNTIME_LIBS, **(CUDA_LIBS if cuda else {}))
    out = cache_dir() / "runtime" / (f"{arch}-tvm{TVM_VERSION}-ffi{TVM_FFI_VERSION}"
                                     + (f"-cudart{CUDA_RUNTIME_VERSION}" if cuda else ""))
    if all((out / lib).is_file() for lib in libs):
        return out
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pins = {"apache_tvm-": f"apache-tvm=={TVM_VERSION}", "apache_tvm_ffi-": f"apache-tvm-ffi=={TVM_FFI_VERSION}"}
    if cuda:
        pins["nvidia_cuda_runtime-"] = f"nvidia-cuda-runtime=={CUDA_RUNTIME_VERSION}"
    found = {p: _find_wheel(wheels, p, v.split("==")[1], arch) for p, v in pins.items()}
    if not all(found.values()):
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--platform", WHEEL_PLATFORM[arch], "--platform", f"manylinux2014_{arch}",  # (nvidia's tag)
               "--python-version", "3.11", "-d", str(wheels),
               *[pins[p] for p, w in found.items() if not w]]
        res = subprocess.run(cmd, capture_output=True, text=True)
        found = {p: _find_wheel(wheels, p, v.split("==")[1], arch) for p, v in pins.items()}
        if res.returncode or not all(found.values()):
            last = (res.stderr.strip().splitlines() or ["no wheel found"])[-1]
            raise TargetError(f"cannot download the {arch} runtime wheels ({', '.join(pins.values())}) "
                              f"into {wheels}: {last}; when offline, put the wheels there by hand")
    tmp = Path(tempfile.mkdtemp(prefix="libs-", dir=cache_dir()))
    try:
        for wheel in found.values():
            with zipfile.ZipFile(wheel) as z:
                for lib, member in libs.items():
                    if member in z.namelist():
                        with z.open(member) as src, open(tmp / lib, "wb") as dst:
                            shutil.copyfileobj(src, dst)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after the replace; a half-written copy on failure
    return out


def _find_wheel(folder, prefix, version, arch):
    hits = sorted(p for p in folder.glob(f"{prefix}{version}-*{arch}*.whl"))
    return hits[0] if hits else None


def build_runner(arch):
    """Path of the cross-built `edgec-run` for ARCH (built once per source and runtime)."""
    _arch_check(arch)
    cxx = CROSS_CXX[arch]
    if not shutil.which(cxx):
        raise TargetError(f"building the device runner needs {cxx} (apt-get install g++-aarch64-linux-gnu)")
    libs = runtime_libs(arch)
    import tvm_ffi.libinfo
    include = tvm_ffi.libinfo.find_include_path()
    key = hashlib.sha256(RUNNER_SRC.read_bytes() + str(libs).encode() + cxx.encode()).hexdigest()[:16]
    out = cache_dir() / "runner" / f"edgec-run-{arch}-{key}"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    cmd = [cxx, "-std=c++17", "-O2", "-s", str(RUNNER_SRC), "-o", str(tmp), f"-I{include}",
           f"-L{libs}", "-Wl,--no-as-needed", "-ltvm_ffi", "-ltvm_runtime", "-Wl,-rpath,$ORIGIN/../lib"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise TargetError(f"building edgec-run with {cxx} failed: {res.stderr.strip()[-500:]}")
    os.replace(tmp, out)
    return out


def package(artifact_path, output, trusted_keys=None):
    """Write the device bundle for ARTIFACT_PATH to OUTPUT (.tar.gz); return a summary dict.
    TRUSTED_KEYS: refuse the artifact unless one of these ed25519 public keys signed it (the device
    runner checks hashes, not signatures)."""
    manifest = artifact.read_manifest(artifact_path, trusted_keys)
    target = manifest.get("target", {})
    arch, cuda = target.get("arch", ""), target.get("device", "cpu") == "cuda"
    _arch_check(arch)
    runner, libs = build_runner(arch), runtime_libs(arch, cuda)
    name = manifest.get("model", {}).get("name", Path(artifact_path).stem)
    root = f"edgec-bundle-{_slug(name)}"
    with tempfile.TemporaryDirectory(prefix="edgec-pkg-") as tmp:
        model_dir = Path(tmp) / "model"
        model_dir.mkdir()
        manifest = artifact.extract(artifact_path, model_dir, trusted_keys, with_manifest=True)
        (model_dir / "inputs.txt").write_text("".join(
            f"{i['name']} {i['dtype']} {','.join(map(str, i['shape']))}\n" for i in manifest["inputs"]))
        files = {"bin/edgec-run": (runner, 0o755), "run.sh": (None, 0o755), "README.txt": (None, 0o644)}
        files.update({f"lib/{lib}": (libs / lib, 0o755) for lib in dict(RUNTIME_LIBS, **(CUDA_LIBS if cuda else {}))})
        files.update({f"model/{p.name}": (p, 0o644) for p in sorted(model_dir.iterdir())})
        texts = {"run.sh": RUN_SH, "README.txt": README.format(root=root, name=name, target=target.get("name"),
                                                                 bundle=Path(output).name, inputs=_usage(manifest))
                 + (README_CUDA if cuda else "")}
        with tarfile.open(output, "w:gz") as tar:
            for arc, (src, mode) in sorted(files.items()):
                data = texts[arc].encode() if src is None else Path(src).read_bytes()
                info = tarfile.TarInfo(f"{root}/{arc}")
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
        sizes = {arc: (len(texts[arc]) if src is None else Path(src).stat().st_size) for arc, (src, _) in files.items()}
    return {"output": str(output), "root": root, "bytes": os.path.getsize(output),
            "runtime_bytes": sum(v for k, v in sizes.items() if k.startswith(("lib/", "bin/"))),
            "weights_bytes": sizes["model/params.bin"], "library_bytes": sizes["model/model.so"]}


def _slug(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def _usage(manifest):
    return " ".join(f"{i['name']}.npy" for i in manifest["inputs"])


RUN_SH = """#!/bin/sh
# Run the bundled model: ./run.sh IN.npy ... [-o OUT_DIR] [-n REPEAT]
here=$(dirname "$0")
exec "$here/bin/edgec-run" "$here/model" -i "$@"
"""

README = """{name} compiled by edgec for {target}: runs with the bundled TVM runtime, no Python needed.

On your computer (with the model's inputs saved by numpy.save):
  scp {bundle} pi@raspberrypi.local:
On the device:
  tar xzf {bundle}
  {root}/run.sh {inputs} -o . -n 10

run.sh writes output_0.npy ... into the -o folder and prints the median latency of -n runs.
model/inputs.txt lists the expected input names, dtypes and shapes (in order).
"""

README_CUDA = """
This model runs on the GPU (CUDA). The bundle carries TVM's CUDA backend (lib/libtvm_runtime_cuda.so)
and the CUDA 13 runtime (lib/libcudart.so.13, from PyPI nvidia-cuda-runtime); the device must have
the NVIDIA driver's libcuda.so.1 with CUDA 13 support (on a Jetson: a Jetson Linux / JetPack release
with CUDA 13). Latency includes copying the inputs to the GPU and the outputs back.
"""
