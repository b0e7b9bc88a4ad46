"""Pooling on CPU: windows reduced into output rows held as vectors.

For a max/sum pooling block over (n, c, i, j) with window taps (ry, rx): its padding stays a
materialized buffer (inlined, it would put a bounds test on every tap), the (batch, channel)
loops run in parallel, and per output row the taps are the outer loops and the row the inner,
vectorized one. Global pools and anything else take the generic schedule.
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
    if len(loops) != 6:
        return []
    done = [sch.get(block).name_hint]
    n, c, i, j, ry, rx = loops
    sch.reorder(n, c, i, ry, rx, j)
    lanes = max(preset.vector_bits // 32, 4)
    ow = int(sch.get(j).extent)
    if ow > 4 * lanes and ow % lanes:
        sch.split(j, [None, lanes])
    consumers = sch.get_consumers(block)
    if len(consumers) == 1 and not generic._is_reduction(sch, consumers[0]):
        try:
            sch.reverse_compute_at(consumers[0], i)
            sch.vectorize(sch.get_loops(consumers[0])[-1])
            done.append(sch.get(consumers[0]).name_hint)
        except Exception:  # noqa: BLE001 - the divisor block reads more than one row: leave it
            pass
    nc = sch.fuse(n, c)
    if par:
        sch.parallel(nc)
    if contiguous_reads(sch, block, 3):
        sch.vectorize(sch.get_loops(block)[-1])  # strided rows: LLVM's own vectorizer does better
    sch.decompose_reduction(block, ry)
    for pad in sch.get_producers(block):
        pl = sch.get_loops(pad)
        if len(pl) == 4:
            try:
                if par:
                    sch.parallel(sch.fuse(*pl[:2]))
            except Exception:  # noqa: BLE001 - not a plain padding copy: leave it serial
                pass
            done.append(sch.get(pad).name_hint)
    return done


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
    par = worth_parallel(kernel)
    done = schedule_pool_block(sch, blocks[0], preset, par)
    if not done:
        return generic.schedule(func, kernel, preset)
    generic.schedule_remaining(sch, preset, done, par)
    return sch.mod["main"]
