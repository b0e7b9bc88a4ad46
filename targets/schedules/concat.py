"""concat on CPU: a copy. The loops after the concat axis fuse into one contiguous inner loop (in
which the choice of input is invariant, so LLVM unswitches it and vectorizes a plain copy); the
loops up to the concat axis run in parallel when the tensor is big enough (`worth_parallel`). Along
the last axis (channels-last int8 activations) the axis loop is cut at the inputs' boundaries, so
each input is a plain vector copy."""
import tvm
from tvm.s_tir import Schedule

from . import generic, rule, worth_parallel


@rule("layout")
def schedule(func, kernel, preset):
    sch = Schedule(tvm.IRModule({"main": func}))
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if len(blocks) != 1 or sch.get(blocks[0]).name_hint != "T_concat":
        return generic.schedule(func, kernel, preset)
    block = blocks[0]
    loops = sch.get_loops(block)
    axis = _concat_axis(sch, block, len(loops))
    outer, inner = loops[:axis + 1], loops[axis + 1:]
    if len(inner) > 1:
        sch.fuse(*inner)
    sizes = [int(p.shape[axis]) for p in func.params[:-1]]
    if axis == len(loops) - 1 and len(sizes) > 1 and min(sizes) > 0 and \
            sum(sizes) == int(sch.get(loops[axis]).extent):  # along the last axis: a loop per input, a plain copy
        outer = outer[:-1]
        lanes = preset.vector_bits // tvm.DataType(str(sch.get(block).writes[0].source.dtype)).bits
        _copy_per_input(sch, loops[axis], sizes, lanes)
    if worth_parallel(kernel) and outer:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    return sch.mod["main"]


def _concat_axis(sch, block, rank):
    """The axis whose index picks the input: the one the reads' index maps differ on."""
    reads = sch.get(block).reads
    for ax in range(rank):
        starts = {str(r.region[ax].min) for r in reads}
        if len(starts) > 1:
            return ax
    return rank - 1


def _copy_per_input(sch, loop, sizes, lanes):
    """Partition the concat axis LOOP at the boundaries of the inputs (SIZES along it, in order):
    each part copies one input with no choice per element (TVM scalarizes a vector loop whose lanes
    choose); parts of up to 4 vectors are vectorized whole (LLVM unrolls such short loops before its
    vectorizer sees them)."""
    for part, n in zip(sch.loop_partition(loop, sizes[:-1] + [None]), sizes):
        if n <= 4 * lanes:
            sch.vectorize(part)
