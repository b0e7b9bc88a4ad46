"""concat on CPU: a copy. The loops after the concat axis fuse into one contiguous inner loop (in
which the choice of input is invariant, so LLVM unswitches it and vectorizes a plain copy); the
loops up to the concat axis run in parallel when the tensor is big enough (`worth_parallel`)."""
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
    if worth_parallel(kernel):
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
