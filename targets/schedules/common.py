"""Pieces the CPU conv/dense schedules share: fusing the epilogue into the write-back, parallel
loops, vectorizing in pieces, and handing the remaining blocks (a fused pool, elementwise tails) to
their schedules."""
from tvm import tirx

from . import generic
from .pool import POOL_BLOCKS, schedule_pool_block

# storage scope of a register tile's accumulators (cache_write): TVM 0.27 allocates every "local"
# buffer through TVMBackendAllocWorkspace, around every iteration of the loop that holds it (memory
# LLVM must keep: the tile was zeroed and stored there around each reduction); a "global" one under
# 1 KB goes on the stack, which LLVM promotes to registers. AVX2, 1 thread, thread-time minima
# alternated, in ResNet-50: pointwise 64->256 @56 + add 1.48 -> 1.26-1.39 ms, 256->1024 @14 + add
# 1.47 -> 1.36-1.41; int8 in MobileNetV2 (7-bit), 2 threads: 1x1 576->96 @14 + add 0.119 ->
# 0.101-0.109 ms, 960->160 @7 0.079 -> 0.073 (1 thread 1-8% faster)
ACC_SCOPE = "global"
# bytes under which TVM 0.27 puts a "global" buffer on the stack (its kMaxStackAlloca); a larger
# register tile (AVX-512's 24 accumulators: 1.5 KB) is workspace memory, which LLVM keeps in
# registers only where nothing in the loop may read it (see acc_on_stack)
STACK_BYTES = 1024


def acc_on_stack(floats):
    """Whether a register tile of FLOATS accumulators (ACC_SCOPE) is a stack buffer."""
    return floats * 4 < STACK_BYTES


def has_block(sch, name):
    try:
        sch.get_sblock(name)
        return True
    except Exception:  # noqa: BLE001 - TVM raises a ScheduleError
        return False


def divisor(n, most):
    """The largest divisor of N that is at most MOST (1 at least)."""
    return max(d for d in range(1, n + 1) if n % d == 0 and (d <= most or d == 1))


def inside_steps(left, width, stride, extent):
    """The steps [lo, hi) of a copy's column loop (EXTENT steps; step q reads input columns
    q * STRIDE - LEFT + phase, phase < STRIDE) whose every phase reads inside the input's WIDTH
    columns: from ceil(LEFT / STRIDE) to (LEFT + WIDTH) // STRIDE, within [0, EXTENT]."""
    lo = min(extent, -(-left // stride))
    return lo, max(lo, min(extent, (left + width) // stride))


def vectorize(sch, loop, lanes):
    """Vectorize LOOP in pieces of up to 4 vectors (one vector, with a tail, if none divides it)."""
    ext = int(sch.get(loop).extent)
    if ext > lanes:
        loop = sch.split(loop, [None, next((f for f in (4 * lanes, 2 * lanes) if ext % f == 0), lanes)])[1]
    sch.vectorize(loop)


def loops_below(sch, block, at):
    """BLOCK's loops inside loop AT (BLOCK computed at AT)."""
    loops = sch.get_loops(block)
    stmts = [sch.get(loop) for loop in loops]
    at = sch.get(at)
    return next((loops[i + 1:] for i, s in enumerate(stmts) if s.same_as(at)), loops)


def vectorize_below(sch, block, at):
    """Vectorize BLOCK's innermost loop where it lies below loop AT (BLOCK was computed at AT): a
    block whose own loops were all of extent 1 (a one-column row) has none, and vectorizing its
    innermost loop, AT itself, vectorized the reduction under AT with it (wrong results)."""
    inner = sch.get_loops(block)[-1]
    if not sch.get(inner).same_as(sch.get(at)):
        sch.vectorize(inner)


def inline_epilogue(sch, unpack):
    """Fold the elementwise chain after the conv into the write-back block."""
    while True:
        consumers = sch.get_consumers(unpack)
        if len(consumers) != 1 or generic._is_reduction(sch, consumers[0]):
            return
        try:
            sch.reverse_compute_inline(consumers[0])
        except Exception:  # noqa: BLE001 - not injective (e.g. a pool's padding): stop here
            return


def parallel(sch, loop, par):
    if par:
        sch.parallel(loop)


def schedule_rest(sch, preset, names, par=True):
    """Blocks after the epilogue: a fused pool (and its padding) gets the pool schedule, the rest
    the generic treatment. NAMES: prefixes of the blocks already scheduled (a pool among them too)."""
    names = list(names)
    for b in [b for b in sch.get_child_blocks(sch.get_sblock("root"))
              if sch.get(b).name_hint in POOL_BLOCKS and sch.get(b).name_hint not in names]:
        names += schedule_pool_block(sch, b, preset, par)  # may inline blocks after it: listed first
    generic.schedule_remaining(sch, preset, names, par)


LINE_BYTES = 64  # cache line (x86)


def prefetch(buffer, indices, locality, write=False):
    """A software prefetch (for reading, or for WRITE) of the cache line holding BUFFER[INDICES]
    into the cache level LOCALITY names (3: L1, 2: L2), as a statement."""
    addr = tirx.call_intrin("handle", "tirx.address_of", tirx.BufferLoad(buffer, indices))
    return tirx.Evaluate(tirx.call_intrin("void", "tirx.prefetch", addr, int(write), locality, 1))
