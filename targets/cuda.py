"""CUDA GPU presets. Kernels get TVM's dlight GPU schedules (thread binding, reductions, GEMM);
the library embeds CUDA C++ source that the GPU machine compiles at load time (NVRTC), so a
machine without a GPU can build CUDA artifacts and a GPU machine runs them."""
from . import Preset, register

for _name, _arch, _desc in [("cuda", "sm_80", "NVIDIA GPU, Ampere (sm_80) and newer"),
                            ("cuda-sm75", "sm_75", "NVIDIA GPU, Turing (sm_75: T4, RTX 20xx)"),
                            ("cuda-sm90", "sm_90", "NVIDIA GPU, Hopper (sm_90: H100, H200)")]:
    register(Preset(_name, _desc, {"kind": "cuda", "arch": _arch}, "x86_64", device="cuda", vector_bits=0))
