"""CUDA GPU presets, and the device code compiled ahead of time with nvcc.

Kernels get GPU schedules (targets/schedules/gpu.py). TVM 0.27 keeps the device code of a CUDA
build as CUDA C++ source, which a GPU machine would have to compile when loading (NVRTC or nvcc
there). edgec compiles it at `edgec compile` time instead: nvcc makes a fatbin holding the cubin
for the preset's GPU architecture plus its PTX (which the driver JIT-compiles for newer GPUs),
and `pack_imports` puts that fatbin into the library in place of the source. Loading then needs
only the NVIDIA driver and the CUDA runtime library (see runtime/cuda.py).

nvcc is found through CUDA_PATH, CUDA's standard install folder, the PyPI package
`nvidia-cuda-nvcc` (nvidia/cu13/bin), then PATH.
"""
import contextlib
import glob
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field

from ..errors import TargetError
from . import Preset, host_arch, register

NVCC_PACKAGE = "nvidia-cuda-nvcc"  # PyPI: nvcc, ptxas and headers of CUDA 13
# The same switches TVM's own nvcc mode passes (its generated code uses the half/bfloat16
# operators), without --use_fast_math: approximate division/exp would break parity with onnxruntime.
NVCC_FLAGS = ["-O3", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
              "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
              "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
              "--expt-relaxed-constexpr", "-Xptxas", "-v"]


@dataclass
class CudaPreset(Preset):
    """A GPU of compute capability `gpu_arch` (sm_XY); host code for `host` (default: this machine's arch)."""
    gpu_arch: str = "sm_80"
    host: dict = field(default_factory=lambda: {"kind": "llvm"})
    unsupported: str = ""  # why this GPU cannot run TVM 0.27's CUDA runtime ("" = it can)
    sms: int = 80  # streaming multiprocessors of the preset's typical GPU (passes/split_k.py sizes grids by it)

    def tvm_target(self):
        import tvm
        return tvm.target.Target(dict(self.tvm), host=dict(self.host))

    def missing_tools(self):
        missing = [self.unsupported] if self.unsupported else []
        missing += [t for t in self.tools if t != "nvcc" and not shutil.which(t)]
        if not nvcc_path():
            missing.append(f"nvcc (CUDA 12/13 toolkit: pip install {NVCC_PACKAGE}, or set CUDA_PATH)")
        return missing

    def to_json(self):
        return dict(super().to_json(), gpu_arch=self.gpu_arch, host=self.host)


def _cuda(name, arch, description, sms, host=None, host_arch=host_arch(), cross_cc="", tools=(), unsupported=""):
    register(CudaPreset(name, description, {"kind": "cuda", "arch": arch}, host_arch, device="cuda",
                        cross_cc=cross_cc, vector_bits=0, tools=["nvcc", *tools], gpu_arch=arch,
                        host=host or {"kind": "llvm"}, unsupported=unsupported, sms=sms))


_cuda("cuda", "sm_80", "NVIDIA GPU, Ampere (sm_80: A100) and newer through PTX", 108)
_cuda("cuda-sm75", "sm_75", "NVIDIA GPU, Turing (sm_75: T4, RTX 20xx)", 40)
_cuda("cuda-sm86", "sm_86", "NVIDIA GPU, Ampere (sm_86: RTX 30xx, A10, A40)", 72)
_cuda("cuda-sm89", "sm_89", "NVIDIA GPU, Ada (sm_89: L4, L40, RTX 40xx)", 58)
_cuda("cuda-sm90", "sm_90", "NVIDIA GPU, Hopper (sm_90: H100, H200)", 132)
_JETSON_HOST = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
_cuda("jetson-orin", "sm_87", "NVIDIA Jetson AGX Orin / Orin NX / Orin Nano (sm_87, Cortex-A78AE host)", 16,
      dict(_JETSON_HOST, mcpu="cortex-a78ae"), "aarch64", "aarch64-linux-gnu-gcc", ["aarch64-linux-gnu-gcc"])
_cuda("jetson-xavier", "sm_72", "NVIDIA Jetson AGX Xavier / Xavier NX (sm_72, Carmel host)", 8,
      dict(_JETSON_HOST, mcpu="carmel"), "aarch64", "aarch64-linux-gnu-gcc", ["aarch64-linux-gnu-gcc"],
      unsupported="a CUDA 13 driver for sm_72: CUDA 13 (whose libcudart.so.13 TVM 0.27's runtime links) dropped "
                  "Volta/Xavier, and Xavier's JetPack 5 ships CUDA 11.4")


# ---- nvcc -------------------------------------------------------------------------------------
def nvcc_path():
    """The nvcc executable to use, or "" when none is found."""
    candidates = [os.path.join(os.environ[v], "bin", "nvcc") for v in ("CUDA_PATH", "CUDA_HOME")
                  if os.environ.get(v)]
    candidates.append("/usr/local/cuda/bin/nvcc")
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidates += sorted(glob.glob(os.path.join(root, "cu*", "bin", "nvcc")), reverse=True)
    on_path = shutil.which("nvcc")
    if on_path:
        candidates.append(on_path)
    return next((c for c in candidates if os.access(c, os.X_OK)), "")


@dataclass
class DeviceCode:
    binary: bytes  # fatbin: cubin for sm_XY + PTX compute_XY
    arch: str
    nvcc: str  # nvcc's version line
    kernels: dict  # kernel symbol -> {registers, spill_stores, spill_loads, stack, shared}

    def to_json(self):
        return {"format": "fatbin", "cubin": self.arch, "ptx": self.arch.replace("sm_", "compute_"),
                "compiler": self.nvcc, "bytes": len(self.binary), "kernels": self.kernels}


def compile_device_code(source, preset):
    """nvcc SOURCE (CUDA C++) into a fatbin for PRESET's GPU; returns DeviceCode with ptxas' report."""
    if preset.unsupported:
        raise TargetError(f"target '{preset.name}' cannot be built: it needs {preset.unsupported}")
    nvcc = nvcc_path()
    if not nvcc:
        raise TargetError(f"target '{preset.name}' compiles GPU code with nvcc, which was not found (looked in "
                          f"CUDA_PATH, /usr/local/cuda, the {NVCC_PACKAGE} package, PATH): "
                          f"pip install {NVCC_PACKAGE} (CUDA 13), or set CUDA_PATH to a CUDA 12/13 toolkit")
    sm = preset.gpu_arch.replace("sm_", "")
    with tempfile.TemporaryDirectory(prefix="edgec-nvcc-") as tmp:
        src, out = os.path.join(tmp, "kernels.cu"), os.path.join(tmp, "kernels.fatbin")
        with open(src, "w") as f:
            f.write(source)
        cmd = [nvcc, "--fatbin", *NVCC_FLAGS, "-gencode", f"arch=compute_{sm},code=sm_{sm}",
               "-gencode", f"arch=compute_{sm},code=compute_{sm}", "-o", out, src]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            errors = [line for line in (res.stdout + res.stderr).splitlines() if "error" in line or "fatal" in line]
            raise TargetError(f"nvcc failed on the generated CUDA code for {preset.gpu_arch} "
                              f"({len(errors)} errors; first: {(errors or ['?'])[0].strip()})")
        with open(out, "rb") as f:
            binary = f.read()
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    release = re.search(r"release [\d.]+, V[\d.]+", version)
    return DeviceCode(binary, preset.gpu_arch, f"nvcc {release.group(0) if release else '?'}",
                      ptxas_report(res.stdout + res.stderr))


def ptxas_report(log):
    """{kernel: {registers, spill_stores, spill_loads, stack, shared}} from `ptxas -v` output."""
    report, current = {}, None
    for line in log.splitlines():
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            current = report.setdefault(m.group(1), {})
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and current is not None:
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and current is not None:
            current["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            current["shared"] = int(s.group(1)) if s else 0
    return report


@contextlib.contextmanager
def keep_device_source():
    """While TVM builds: keep the device code as CUDA source even where TVM's CUDA runtime loads
    (on a GPU machine it would otherwise JIT-compile it at build time, with NVRTC from the
    cuda-bindings package), so that compile_device_code makes the fatbin the same way everywhere."""
    old = os.environ.get("TVM_COMPILE_FORCE_FALLBACK")
    os.environ["TVM_COMPILE_FORCE_FALLBACK"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TVM_COMPILE_FORCE_FALLBACK"]
        else:
            os.environ["TVM_COMPILE_FORCE_FALLBACK"] = old


# ---- putting the fatbin into the library ------------------------------------------------------
# TVM serializes a library's imported modules into one blob (src/target/codegen.cc,
# ModuleSerializer): u64 size, the import tree as two u64 vectors, then per module its kind and
# bytes. A CUDA module's bytes are (fmt, function table, code). pack_imports swaps
# ("cuda", source) for ("fatbin", binary) and embeds the blob as TVM's default packing does.
def _u64(data, pos):
    return struct.unpack_from("<Q", data, pos)[0], pos + 8


def _read_str(data, pos):
    n, pos = _u64(data, pos)
    return data[pos:pos + n], pos + n


def _str(b):
    return struct.pack("<Q", len(b)) + b


def replace_cuda_code(blob, source, binary, fmt=b"fatbin"):
    """BLOB (ModuleSerializer bytes, without the size header) with the CUDA module holding SOURCE
    re-tagged as FMT carrying BINARY."""
    rows, pos = _u64(blob, 0)  # import tree: row pointers (one per module, plus one), child indices
    children, pos = _u64(blob, pos + 8 * rows)
    pos += 8 * children
    out, replaced = blob[:pos], 0
    for _ in range(rows - 1):
        kind, pos = _read_str(blob, pos)
        out += _str(kind)
        if kind == b"_lib":
            continue
        data, pos = _read_str(blob, pos)
        if kind == b"cuda":
            fmt_old, p = _read_str(data, 0)
            tail = _str(source)
            if fmt_old != b"cuda" or not data.endswith(tail):
                raise TargetError("unexpected CUDA module layout in TVM's library (format "
                                  f"{fmt_old.decode(errors='replace')}); edgec supports TVM 0.27")
            data = _str(fmt) + data[p:len(data) - len(tail)] + _str(binary)
            replaced += 1
        out += _str(data)
    if pos != len(blob) or replaced != 1:
        raise TargetError(f"unexpected TVM library layout ({replaced} CUDA modules); edgec supports TVM 0.27")
    return out


def pack_imports(source, binary):
    """An `fpack_imports` for export_library that embeds BINARY in place of the CUDA SOURCE."""
    def pack(mod, is_system_lib, prefix, workspace_dir):
        import tvm
        c_text = tvm.get_global_func("runtime.ModulePackImportsToC")(mod, is_system_lib, prefix)
        body = c_text[c_text.index("] = {") + 5:c_text.index("};")]
        blob = bytes.fromhex(body.replace("0x", "").replace(",", "").replace("\n", "").replace(" ", ""))
        size, _ = _u64(blob, 0)
        patched = replace_cuda_code(blob[8:8 + size], source.encode(), binary)
        host = next(m for m in mod._collect_dso_modules() if m.kind == "llvm")
        llvm_target = host.get_function("_get_target_string")()
        obj = tvm.get_global_func("codegen.codegen_blob")(struct.pack("<Q", len(patched)) + patched,
                                                        is_system_lib, llvm_target, prefix)
        path = os.path.join(workspace_dir, f"{prefix}devc.o")
        obj.write_to_file(path)
        return path
    return pack
