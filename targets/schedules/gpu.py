"""GPU schedules: TVM's dlight rules (GEMM, GEMV, reductions, then a thread-binding fallback).
Without them TVM would silently emit host code only (see the TVM 0.27 notes)."""
import tvm
from tvm.s_tir import dlight as dl

_RULES = None


def schedule(func, kernel, preset):
    if kernel["kind"] == "recurrent":  # GPU loop kernels come scheduled (compiler/lower/recurrent.py)
        return func.with_attr("tirx.is_scheduled", True)
    global _RULES
    if _RULES is None:
        _RULES = dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                         dl.gpu.GeneralReduction(), dl.gpu.Fallback())
    mod = _RULES(tvm.IRModule({"main": func}))  # runs inside `with target:` (compiler/build.py)
    return mod["main"]
