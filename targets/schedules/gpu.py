"""GPU schedules: TVM's dlight rules (GEMM, GEMV, reductions, then a thread-binding fallback).
Without them TVM would silently emit host code only (see the TVM 0.27 notes).

One guard on top, for conv kernels: a schedule that gives each thread a local array larger than a
thread's register file (255 registers, so it lives in local memory) is replaced by dlight's
Fallback, a thread per output element with the reduction serial in registers. dlight's
GeneralReduction does that to grouped convolutions: ShuffleNet's grouped 1x1 convs got 952 + 68
floats per thread (4 KB of stack, and spills on sm_90); with Fallback they use under 40 registers
and no stack. Where a dlight rule matches a kernel but fails on it (Matmul's consumer inlining on a
conv whose fused pool is computed in two steps), the kernel gets Fallback too, with a warning.
(Not for dense kernels: dlight's GEMV declares large local buffers that ptxas keeps
in registers, so the size test would wrongly replace its shared-memory reductions.)
"""
import warnings

import numpy as np
import tvm
import tvm_ffi
from tvm import s_tir
from tvm.s_tir import dlight as dl

MAX_LOCAL_FLOATS = 255  # a thread has at most 255 registers: a larger local array is local memory

_RULES = {}


def _rules(name):
    if name not in _RULES:
        _RULES[name] = dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                               dl.gpu.GeneralReduction(), dl.gpu.Fallback()) \
            if name == "default" else dl.ApplyDefaultSchedule(dl.gpu.Fallback())
    return _RULES[name]


def local_floats(func):
    """Elements of the largest "local" (per-thread) buffer of scheduled FUNC, once TVM's lowering has
    compacted each buffer to what one thread touches."""
    compact = tvm.transform.Sequential([s_tir.transform.LowerInitBlock(),
                                        s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
                                        s_tir.transform.ConvertBlocksToOpaque(),
                                        s_tir.transform.CompactBufferAllocation()])
    sizes = [0]

    def visit(block):
        sizes.extend(int(np.prod([int(d) for d in b.shape])) for b in block.alloc_buffers if b.scope() == "local")

    tvm_ffi.structural_walk(compact(tvm.IRModule({"main": func}))["main"].body, [(s_tir.SBlock, visit)], order="post")
    return max(sizes)


def _last_line(e):
    text = str(e).strip()
    return text.splitlines()[-1] if text else type(e).__name__


def schedule(func, kernel, preset):
    if kernel["kind"] == "recurrent":  # GPU loop kernels come scheduled (compiler/lower/recurrent.py)
        return func.with_attr("tirx.is_scheduled", True)
    # runs inside `with target:` (compiler/build.py)
    try:
        scheduled = _rules("default")(tvm.IRModule({"main": func}))["main"]
    except Exception as e:  # noqa: BLE001 - a dlight rule that matched but cannot finish (its asserts)
        warnings.warn(f"kernel {kernel['name']}: dlight's rules failed ({_last_line(e)}); a thread per output "
                      "element instead", RuntimeWarning, stacklevel=2)
        return _rules("fallback")(tvm.IRModule({"main": func}))["main"]
    if kernel["kind"] == "conv2d" and local_floats(scheduled) > MAX_LOCAL_FLOATS:
        scheduled = _rules("fallback")(tvm.IRModule({"main": func}))["main"]
    return scheduled
