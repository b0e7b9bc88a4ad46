"""Pooling on CPU, over the separable compute of compiler/lower/nn.py: `pool_rows` combines the
window's rows into one row, the pool block combines that row's windows (taps unrolled in both).

Per (batch, channel) plane -- the parallel loop -- and output row, the row buffer is computed just
before the output row that reads it (it stays in L1). LLVM vectorizes both loops: the row pass
reads whole input rows (contiguous), the pool pass strided rows (interleaved loads and shuffles;
TVM's own vectorizer would gather them element by element). Where the row pass clamps column
indices (left/right padding) or an average's divisor changes (edge columns), the loop is cut into
edges and an inside whose reads are plain (`inside` annotations of the compute). The average's
divisor is inlined into the pool pass. Global pools and anything else take the generic schedule.
"""
import tvm
from tvm import tirx
from tvm.sym import pattern
from tvm.s_tir import Schedule

from . import generic, rule, worth_parallel

POOL_BLOCKS = ("max_pool2d", "pool_sum")


def schedule_pool_block(sch, block, preset, par=True):
    """Schedule one pooling BLOCK in SCH; returns the names of the blocks it scheduled."""
    loops = sch.get_loops(block)
    rows = [b for b in sch.get_producers(block) if sch.get(b).name_hint.startswith("pool_rows")]
    if len(loops) != 4 or len(rows) != 1:
        return []
    rows = rows[0]
    done = [sch.get(block).name_hint, sch.get(rows).name_hint]
    n, c, i, j = loops
    nc = sch.fuse(n, c)
    consumers = sch.get_consumers(block)
    if len(consumers) == 1:
        try:
            sch.reverse_compute_inline(consumers[0])
        except Exception:  # noqa: BLE001 - the divisor block reads more than one row: leave it
            pass
    _rows_at(sch, block, rows, i, preset)
    if par:
        sch.parallel(nc)
    return done


def schedule_pool_under(sch, block, preset, loop):
    """Schedule pooling BLOCK (a consumer of the block that makes its input) under LOOP of that
    producer, whose iterations each make whole channels of the input: each iteration pools its own
    channels while they are in cache (a conv's channel block). Returns the names of the blocks it
    scheduled, [] where BLOCK is not the separable pool; raises where TVM cannot place it (seen:
    rows clamped by padding, a stride-1 window's rows)."""
    rows = [b for b in sch.get_producers(block) if sch.get(b).name_hint.startswith("pool_rows")]
    if len(sch.get_loops(block)) != 4 or len(rows) != 1:
        return []
    rows = rows[0]
    sch.reverse_compute_at(rows, loop)
    sch.reverse_compute_at(block, loop)
    _rows_at(sch, block, rows, sch.get_loops(block)[-2], preset)
    return [sch.get(block).name_hint, sch.get(rows).name_hint]


def _rows_at(sch, block, rows, i, preset):
    """The row pass ROWS computed at output row loop I of pooling BLOCK, both vectorized."""
    sch.compute_at(rows, i)
    lanes = max(preset.vector_bits // 32, 4)
    _vectorize_short(sch, _partition_edges(sch, rows), lanes)
    unit_stride = contiguous_reads(sch, block, 3)
    inside = _partition_edges(sch, block)
    if unit_stride:
        _vectorize_short(sch, inside, lanes)


def _partition_edges(sch, block):
    """Cut the innermost loop of BLOCK at the range of columns its "inside" annotation names from
    the edges: inside, the row buffer's reads are not clamped (contiguous, vectorizable) and an
    average's divisor is one constant. Returns the inside loop."""
    inside = sch.get(block).annotations.get("inside")
    if inside is None:
        return sch.get_loops(block)[-1]
    lo, hi = (int(v) for v in inside)
    u = sch.get_loops(block)[-1]
    width = int(sch.get(u).extent)
    parts = [p for p in (lo, hi - lo, width - hi) if p > 0]
    if len(parts) > 1:
        return sch.loop_partition(u, parts[:-1] + [None])[1 if lo > 0 else 0]
    return u


def _vectorize_short(sch, loop, lanes):
    """Vectorize a short row (up to 4 vectors) whole: LLVM unrolls such a loop before its loop
    vectorizer sees it and leaves it scalar (longer rows: LLVM vectorizes them, tail included).
    TVM keeps a loop with isnan (max pooling's NaN test) scalar: no change there."""
    if int(sch.get(loop).extent) <= 4 * lanes:
        sch.vectorize(loop)


def contiguous_reads(sch, block, axis):
    """Whether BLOCK's reads step by one element along their last dimension as its iteration
    variable AXIS (the output column) steps by one. A strided row (stride-2 pooling or depthwise
    conv) vectorized by TVM becomes element-wise gathers; left to LLVM's loop vectorizer it
    becomes interleaved loads and shuffles (measured ~3x faster for a stride-2 3x3 max pool)."""
    var = sch.get(block).iter_vars[axis].var
    for region in sch.get(block).reads:
        coef = pattern.detect_linear_equation(region.region[-1].min, [var])
        if len(coef) and not (isinstance(coef[0], tirx.IntImm) and int(coef[0]) in (0, 1)):
            return False
    return True


@rule("pool")
def schedule(func, kernel, preset):
    sch = Schedule(tvm.IRModule({"main": func}))
    blocks = [b for b in sch.get_child_blocks(sch.get_sblock("root")) if sch.get(b).name_hint in POOL_BLOCKS]
    if len(blocks) != 1:
        return generic.schedule(func, kernel, preset)
    # a pool streams its input and output (a few compares per element): judged by those bytes, a
    # memory-bound schedule's (SqueezeNet's 3x3 s2 max pool of 256 channels @27, 0.92 MB, 0.051 ms
    # on one AVX2 core, ran serial; forking, in model, 2 threads, per-kernel minima of 40
    # alternated rounds: 0.051 -> 0.028 ms)
    par = worth_parallel(kernel, streamed=kernel.get("bytes", 0))
    done = schedule_pool_block(sch, blocks[0], preset, par)
    if not done:
        return generic.schedule(func, kernel, preset)
    generic.schedule_remaining(sch, preset, done, par)
    return sch.mod["main"]
