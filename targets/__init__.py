"""Target presets: a named TVM target, how to link its library, and what it needs.

A preset is data: the TVM target dict, the architecture of the code, how `export_library`
links it (native, cross gcc, Android NDK), the vector width schedules should use, and the
host tools it needs. `get(name)` returns one; `PRESETS` lists them for `edgec targets`.
"""
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TargetError


@dataclass
class Preset:
    name: str
    description: str
    tvm: dict  # TVM target dict (see ../shared/docs/tvm-0.27-notes.md: targets are dicts)
    arch: str  # x86_64, aarch64
    device: str = "cpu"  # cpu or cuda
    cross_cc: str = ""  # compiler used to link the library ("" = host default)
    vector_bits: int = 256
    threads: int = 0  # 0 = all cores of the running machine
    vector_regs: int = 0  # vector registers (0: 32 with AVX-512 or on aarch64, else 16)
    l1_kib: int = 32  # L1 data cache per core (schedules size their cache blocks from these)
    l2_kib: int = 256  # L2 per core (a share of it where cores share one)
    fma_bits: int = 0  # width of the FMA units (0: vector_bits); Zen 4 runs AVX-512 in two 256-bit halves
    tools: list = field(default_factory=list)  # host executables the preset needs

    def tvm_target(self):
        import tvm
        return tvm.target.Target(dict(self.tvm))

    @property
    def regs(self):
        return self.vector_regs or (32 if self.vector_bits >= 512 or self.arch == "aarch64" else 16)

    @property
    def fma_width(self):
        """Bits of a vector the FMA units take per instruction and cycle: an AVX-512 core with
        256-bit units (Zen 4) has AVX2's FMA rate, so a rule that pays for AVX-512's doubled FMA rate
        (schedules/winograd.py) is not for it."""
        return self.fma_bits or self.vector_bits

    def missing_tools(self):
        return [t for t in self.tools if not shutil.which(t)]

    def to_json(self):
        return {"name": self.name, "tvm": self.tvm, "arch": self.arch, "device": self.device,
                "vector_bits": self.vector_bits}


def host_arch():
    arch = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def _host():
    import tvm
    cpu = tvm.target.codegen.llvm_get_system_cpu()
    arch = host_arch()
    flags = _cpu_flags()
    bits = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    return Preset("host", f"this machine ({cpu}, {os.cpu_count()} cores)",
                  {"kind": "llvm", "mcpu": cpu, "num-cores": os.cpu_count() or 1}, arch, vector_bits=bits,
                  l1_kib=_cache_kib(1, 32), l2_kib=_cache_kib(2, 256), fma_bits=_fma_bits(bits))


def _fma_bits(vector_bits):
    """The FMA units' width on this machine: AMD's family 25 (Zen 3, Zen 4) executes a 512-bit
    FMA as two 256-bit halves; the rest as wide as their vectors."""
    info = cpu_info("vendor_id", "cpu family")
    if info.get("vendor_id") == "AuthenticAMD" and info.get("cpu family") == "25":
        return min(vector_bits, 256)
    return vector_bits


def cpu_info(*keys):
    """{key: value} of the first processor's KEYS in /proc/cpuinfo (those it has)."""
    out = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in keys and key.strip() not in out:
                    out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def _cache_kib(level, default):
    """This machine's data/unified cache of LEVEL per core in KiB (shared caches divided by their cores)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for idx in sorted(os.listdir(base)):
            info = {f: Path(base, idx, f).read_text().strip() for f in ("level", "type", "size", "shared_cpu_list")}
            if int(info["level"]) == level and info["type"] in ("Data", "Unified"):
                size = info["size"].upper()
                kib = int(size[:-1]) * {"K": 1, "M": 1024}[size[-1]]
                cores = sum(int(b or a) - int(a) + 1 for a, _, b in
                            (part.partition("-") for part in info["shared_cpu_list"].split(",")))
                return max(1, kib // cores)
    except (OSError, ValueError, KeyError, IndexError):
        pass
    return default


def _cpu_flags():
    info = cpu_info("flags", "Features")
    return set((info.get("flags") or info.get("Features") or "").split())


PRESETS = {
    "x86-avx2": Preset("x86-avx2", "x86-64 with AVX2 + FMA (Haswell and newer)",
                       {"kind": "llvm", "mcpu": "haswell"}, "x86_64", vector_bits=256, l1_kib=32, l2_kib=256),
    "x86-avx512": Preset("x86-avx512", "x86-64 with AVX-512 (Skylake-SP and newer)",
                         {"kind": "llvm", "mcpu": "skylake-avx512"}, "x86_64", vector_bits=512, l1_kib=32,
                         l2_kib=1024),
    "x86-zen4": Preset("x86-zen4", "AMD Zen 4 (EPYC 9004, Ryzen 7000): AVX-512 on 256-bit FMA units",
                       {"kind": "llvm", "mcpu": "znver4"}, "x86_64", vector_bits=512, l1_kib=32, l2_kib=1024,
                       fma_bits=256),
}


def register(preset):
    PRESETS[preset.name] = preset
    return preset


def get(name):
    if isinstance(name, Preset):
        return name
    if name == "host":
        return _host()
    try:
        return PRESETS[name]
    except KeyError:
        raise TargetError(f"unknown target '{name}'; known: {', '.join(names())}") from None


def names():
    return ["host"] + sorted(PRESETS)


from . import arm, cuda  # noqa: E402,F401  (register the ARM and CUDA presets)
