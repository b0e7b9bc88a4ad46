"""Schedules: turn a kernel's naive TE loops into parallel, vectorized code for a preset.

`schedule(func, kernel, preset)` is the seam: it picks a schedule by the kernel's anchor kind
(conv2d, dense, pool, elementwise, ...) and the preset, falling back to the generic CPU
schedule. Register a specialised one with `@rule(kind, arch=...)`.
"""
import warnings

import numpy as np

from . import generic

RULES = {}


PARALLEL_MIN_WORK = 10e6  # below this (FLOPs, or 16 per output element) a kernel runs on one thread


def worth_parallel(kernel):
    """Whether KERNEL has enough work to pay for a parallel region (a fork/join of the thread pool
    costs tens of microseconds, far more when the cores are shared)."""
    elems = sum(int(np.prod(s)) for s in kernel.get("output_shapes", []))
    return max(kernel.get("flops", 0), 16 * elems) >= PARALLEL_MIN_WORK


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
