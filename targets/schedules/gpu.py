"""GPU schedules: TVM's dlight rules (GEMM, GEMV, reductions, then a thread-binding fallback).
Without them TVM would silently emit host code only (see the TVM 0.27 notes).

One guard on top, for conv kernels: a schedule that gives each thread a local array larger than a
thread's register file (255 registers, so it lives in local memory) is replaced by dlight's
Fallback, a thread per output element with the reduction serial in registers. dlight's
GeneralReduction does that to grouped convolutions: ShuffleNet's grouped 1x1 convs got 952 + 68
floats per thread (4 KB of stack, and spills on sm_90); with Fallback they use under 40 registers
and no stack. The same where a schedule needs more than MAX_SHARED_BYTES of shared memory per block (Matmul
staged a conv's fused max pool in shared memory: 144 KB, which ptxas refused). Where a dlight rule
matches a kernel but fails on it (Matmul's consumer inlining on a
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
MAX_SHARED_BYTES = 48 * 1024  # static shared memory of a block (ptxas refuses more without opt-in)

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
    return max([0] + [n for scope, n, _ in _buffers(func) if scope == "local"])


def shared_bytes(func):
    """Bytes of all "shared" buffers of scheduled FUNC (one block's static shared memory)."""
    return sum(n * bits // 8 for scope, n, bits in _buffers(func) if scope == "shared")


def _buffers(func):
    """[(scope, elements, bits per element)] of the buffers FUNC allocates, compacted."""
    compact = tvm.transform.Sequential([s_tir.transform.LowerInitBlock(),
                                        s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
                                        s_tir.transform.ConvertBlocksToOpaque(),
                                        s_tir.transform.CompactBufferAllocation()])
    found = []

    def visit(block):
        found.extend((b.scope(), int(np.prod([int(d) for d in b.shape])), tvm.DataType(b.dtype).bits)
                     for b in block.alloc_buffers)

    tvm_ffi.structural_walk(compact(tvm.IRModule({"main": func}))["main"].body, [(s_tir.SBlock, visit)], order="post")
    return found


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
    if (kernel["kind"] == "conv2d" and local_floats(scheduled) > MAX_LOCAL_FLOATS) \
            or shared_bytes(scheduled) > MAX_SHARED_BYTES:
        scheduled = _rules("fallback")(tvm.IRModule({"main": func}))["main"]
    return scheduled
