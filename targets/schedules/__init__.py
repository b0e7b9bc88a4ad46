"""Schedules: turn a kernel's naive TE loops into parallel, vectorized code for a preset.

`schedule(func, kernel, preset)` is the seam: it picks a schedule by the kernel's anchor kind
(conv2d, dense, pool, elementwise, ...) and the preset, falling back to the generic CPU
schedule. Register a specialised one with `@rule(kind, arch=...)`.
"""
import warnings

import numpy as np
import tvm_ffi
from tvm import tirx

from . import generic

RULES = {}


PARALLEL_MIN_WORK = 10e6  # below this (FLOP_WORK per FLOP, 16 per output element, ...) a kernel runs on one thread
# A FLOP counts as FLOP_WORK: from 2.9 MFLOP (~40 us on one AVX2 core) a kernel forks. MobileNetV2's
# 1x1 convs of 5-10 MFLOP (0.06-0.15 ms on one AVX2 core: 64->384 @14, 192->32 @28 + add) ran on
# one thread while the second idled (2 threads, busy 2-core AVX2 machine, fastest runs: 0.147 ->
# 0.109-0.121 ms). Was 3 (from 3.3 MFLOP): SqueezeNet's 1x1 48->192 @13 (3.15 MFLOP, 0.043 ms on one
# core) stayed serial; forking, in model, 2 threads, per-kernel minima of 40 alternated rounds:
# 0.043 -> 0.026-0.028 ms (x2).
FLOP_WORK = 3.5
# A memory-bound kernel (a depthwise conv) spends its time streaming bytes: 384 channels @14
# depthwise (1.4 MFLOP, far below PARALLEL_MIN_WORK; 0.6 MB read and written) takes ~55 us on one
# AVX2 core, long enough to gain from a second thread. Each byte such a schedule streams counts as
# STREAM_WORK: from 256 KB (~30 us) it forks. Measured on 2 threads (2-core AVX2, in MobileNetV2,
# fastest runs): 960 channels @7 0.081 -> 0.044 ms, 96 @112 stride 2 1.27 -> 0.66 ms; a fork/join of
# the pool costs ~5 us (a 3 us depthwise kernel took 7 us in parallel).
STREAM_WORK = 40
# Every kernel reads its arguments and writes its outputs at least once; a byte of them counts as
# ARGUMENT_WORK (a plain copy's speed, ~25 GB/s on one AVX2 core): from 1 MB a kernel forks. A
# GEMV's weights: MobileNetV2's 1280->1000 dense (2.6 MFLOP, 5 MB) takes 0.45 ms on one AVX2 core.
ARGUMENT_WORK = 10


def worth_parallel(kernel, streamed=0):
    """Whether KERNEL has enough work to pay for a parallel region (a fork/join of the thread pool
    costs microseconds, far more when the cores are shared). STREAMED: the bytes a memory-bound
    schedule reads and writes (0: judge by FLOPs, output size and the arguments' bytes, which
    `schedule` records as kernel["bytes"])."""
    elems = sum(int(np.prod(s)) for s in kernel.get("output_shapes", []))
    return max(FLOP_WORK * kernel.get("flops", 0), 16 * elems, STREAM_WORK * streamed,
               ARGUMENT_WORK * kernel.get("bytes", 0)) >= PARALLEL_MIN_WORK


def buffer_bytes(buf):
    """The bytes of buffer BUF; a symbolic extent counts as 1."""
    n = buf.dtype.bits // 8
    for v in buf.shape:
        n *= int(getattr(v, "value", 1))
    return n


def substitute(expr, mapping):
    """EXPR with each variable of MAPPING (a dict keyed by tirx.Var) replaced by its value."""
    return tvm_ffi.structural_map(expr, [(tirx.Var, lambda v: mapping.get(v, v))])


def argument_bytes(func):
    """The bytes of a PrimFunc's buffer arguments (inputs, weights, outputs)."""
    return sum(buffer_bytes(buf) for buf in func.params if hasattr(buf, "shape"))  # (not scalar arguments)


def rule(kind, arch="*"):
    def deco(fn):
        RULES[(kind, arch)] = fn
        return fn
    return deco


def schedule(func, kernel, preset):
    """Return FUNC scheduled for PRESET; KERNEL is the manifest description of the kernel."""
    if preset.device == "cuda":
        from . import gpu
        return gpu.schedule(func, kernel, preset)
    kernel = dict(kernel, bytes=argument_bytes(func))
    fn = RULES.get((kernel["kind"], preset.arch)) or RULES.get((kernel["kind"], "*")) or generic.schedule
    if int8.handles(kernel):
        fn = int8.schedule
    # A schedule that cannot handle an unusual kernel falls back, loudly, to a simpler one: the
    # generic schedule, then TVM's unscheduled loops. Slower code, never a failed compile.
    for attempt in dict.fromkeys([fn, generic.schedule]):
        try:
            return attempt(func, kernel, preset)
        except Exception as e:  # noqa: BLE001 - TVM's ScheduleError and friends
            warnings.warn(f"kernel {kernel['name']}: schedule {attempt.__module__}.{attempt.__name__} failed "
                          f"({str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}); "
                          "falling back", RuntimeWarning, stacklevel=2)
    return func


from . import concat, conv2d, int8, pool, recurrent  # noqa: E402,F401  (registers the CPU rules)
