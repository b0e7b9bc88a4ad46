"""The generic CPU schedule for any kernel: inline injective producers, parallelize the outer
spatial loops, and vectorize the innermost spatial loop (moved inside reductions)."""
import tvm
from tvm import tirx
from tvm.s_tir import Schedule

_MIN_PARALLEL = 16  # fuse outer spatial loops until at least this many iterations


def _iter_types(sch, block):
    return [iv.iter_type for iv in sch.get(block).iter_vars]


def _is_reduction(sch, block):
    return any(t == tirx.IterVar.CommReduce for t in _iter_types(sch, block))


def _loop_extent(sch, loop):
    ext = sch.get(loop).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


def schedule(func, kernel, preset):
    sch = Schedule(tvm.IRModule({"main": func}))
    blocks = sch.get_child_blocks(sch.get_sblock("root") if _has_root(sch) else None)
    outputs = {sch.get(b).name_hint for b in sch.get_output_blocks("root")} if _has_root(sch) else set()
    # 1. inline cheap injective producers (padding, bias, casts) into their consumers
    for b in blocks:
        name = sch.get(b).name_hint
        if name in outputs or _is_reduction(sch, b):
            continue
        try:
            sch.compute_inline(b)
        except Exception:  # noqa: BLE001 - not inlinable (e.g. used by two consumers with reduction)
            pass
    # 2. epilogues after a reduction: fold into the consumer chain where possible
    for b in sch.get_child_blocks(sch.get_sblock("root")):
        if _is_reduction(sch, b):
            continue
        try:
            sch.reverse_compute_inline(b)
        except Exception:  # noqa: BLE001
            pass
    lanes = max(preset.vector_bits // 32, 4)
    from . import worth_parallel
    par = worth_parallel(kernel)
    for b in sch.get_child_blocks(sch.get_sblock("root")):
        _schedule_block(sch, b, lanes, par)
    return sch.mod["main"]


def _has_root(sch):
    try:
        sch.get_sblock("root")
        return True
    except Exception:  # noqa: BLE001
        return False


def _schedule_block(sch, block, lanes, parallel=True):
    loops = sch.get_loops(block)
    if not loops or any(_loop_extent(sch, l) == 0 for l in loops):
        return  # nothing to run (zero-size tensor): leave the empty loop nest alone
    types = _iter_types(sch, block)
    if len(types) != len(loops):
        return
    spatial = [l for l, t in zip(loops, types) if t == tirx.IterVar.DataPar]
    reduce = [l for l, t in zip(loops, types) if t == tirx.IterVar.CommReduce]
    if not spatial:
        return
    while not reduce and len(spatial) >= 2 and (_loop_extent(sch, spatial[-1]) or 4) < 4:
        # a short last axis (an NHWC image's 3 channels) joins the one before it, so the vector loop
        # has lanes to fill: MobileNetV2's int8 input quantize (1x224x224x3) ran scalar, 0.078 ms
        spatial[-2:] = [sch.fuse(*spatial[-2:])]
    inner = None
    if len(spatial) >= 2 or (spatial and not reduce):
        inner = spatial[-1]
        ext = _loop_extent(sch, inner)
        if ext is None or ext < 4:
            inner = None
    outer = spatial[:-1] if inner is not None else spatial
    if reduce and inner is not None:
        sch.reorder(*outer, *reduce, inner)
    # parallel over the leading spatial loops
    fused, total = [], 1
    for l in outer:
        ext = _loop_extent(sch, l)
        if ext is None:
            break
        fused.append(l)
        total *= ext
        if total >= _MIN_PARALLEL:
            break
    if fused and parallel and total > 1:  # (a parallel loop of one iteration still forks the pool)
        p = sch.fuse(*fused) if len(fused) > 1 else fused[0]
        sch.parallel(p)
    if inner is not None:
        ext = _loop_extent(sch, inner)
        if ext > lanes:
            _, v = sch.split(inner, [None, lanes])
            sch.vectorize(v)
        else:
            sch.vectorize(inner)


def schedule_remaining(sch, preset, names, par=True):
    """The blocks a specialised schedule left (those not named by a prefix in NAMES, which
    also covers a reduction's _init): inline what can be inlined, give the rest the generic
    parallel/vector treatment."""
    lanes = max(preset.vector_bits // 32, 4)
    for b in sch.get_child_blocks(sch.get_sblock("root")):
        if any(sch.get(b).name_hint.startswith(n) for n in names):
            continue
        if not _is_reduction(sch, b):
            try:
                sch.compute_inline(b)
                continue
            except Exception:  # noqa: BLE001 - not inlinable: scheduled where it is
                pass
        _schedule_block(sch, b, lanes, par)
