"""conv2d on CPU: direct convolution with a register tile of width positions x a block of output
channels (see compiler/lower/packed.py for the compute and pack.py for the weight layout).

Per (batch, channel block, output row) -- the parallel loop -- the row is cut into tiles of `xt`
pixels; for each tile `xt` accumulator vectors of `block` output channels stay in registers while
the reduction runs over input channel, kernel row, kernel column; each step broadcasts one input
pixel and FMAs it with one packed weight vector. The row is then written back to NCHW with the
bias and the fused epilogue (activations, residual add) applied on the way. Kernels without a
packed conv (depthwise, non-constant weights) use the generic schedule.
"""
import tvm
from tvm.s_tir import Schedule

from . import generic, rule, worth_parallel
from .pack import conv_params, pointwise_tile
from .pool import POOL_BLOCKS, contiguous_reads, schedule_pool_block


L1_SHARE = 0.5  # of the L1 for a pointwise conv's weight panel (reduction chunk x channel block)
L2_SHARE = 0.5  # of the L2 for the input rows of a pointwise conv's pixel chunk
PARALLEL_PARTS = 8  # channel-block groups a cache-blocked pointwise conv spreads over the threads


def width_tile(ow, most):
    """The tile size <= MOST that wastes the fewest lanes on OW pixels (larger wins ties)."""
    if ow <= most:
        return ow
    return min(range(max(1, most // 2), most + 1), key=lambda t: (-(-ow // t) * t - ow, -t))


@rule("conv2d")
def schedule(func, kernel, preset):
    sch = Schedule(tvm.IRModule({"main": func}))
    if _has_block(sch, "conv2d_pointwise"):
        return _pointwise(sch, kernel, preset)
    try:
        conv = sch.get_sblock("conv2d_packed")
    except Exception:  # noqa: BLE001 - no packed conv in this kernel
        return _depthwise(sch, kernel, preset) or generic.schedule(func, kernel, preset)
    unpack = sch.get_sblock("conv2d_unpack")
    _, most = conv_params(preset)
    pads = [b for b in sch.get_producers(conv)]
    _inline_epilogue(sch, unpack)
    par = worth_parallel(kernel)

    n, bi, y, x, oi, rc, ry, rx = sch.get_loops(conv)
    ow = int(sch.get(x).extent)
    xo, xi = sch.split(x, [None, width_tile(ow, most)])
    sch.reorder(n, bi, y, xo, rc, ry, rx, xi, oi)
    acc = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(acc, xo)
    sch.vectorize(sch.get_loops(acc)[-1])
    try:
        sch.reverse_compute_at(unpack, y)
        sch.vectorize(sch.get_loops(unpack)[-1])
    except Exception:  # noqa: BLE001 - grouped index maps: write back as a separate pass
        generic._schedule_block(sch, unpack, max(preset.vector_bits // 32, 4), par)
    _parallel(sch, sch.fuse(n, bi, y), par)
    sch.unroll(xi)
    sch.vectorize(oi)
    sch.decompose_reduction(conv, rc)
    for pad in pads:
        _parallel(sch, sch.fuse(*sch.get_loops(pad)[:2]), par)
    _schedule_rest(sch, preset, ["conv2d_packed", "conv2d_unpack", *[sch.get(p).name_hint for p in pads]], par)
    return sch.mod["main"]


def _has_block(sch, name):
    try:
        sch.get_sblock(name)
        return True
    except Exception:  # noqa: BLE001 - TVM raises a ScheduleError
        return False


def _pointwise(sch, kernel, preset):
    """The pointwise conv as a GEMM over pixels (C = W . X with X the C_in x P input rows): tiles
    of `block` channels x `tile` pixels keep their accumulators in registers (one pixel vector
    load per `block` broadcast FMAs). Cache blocks from the preset: the reduction is cut into
    chunks whose weight panel (kc x block) stays in L1_SHARE of the L1; the pixels into chunks
    whose input rows (kc x chunk) stay in L2_SHARE of the L2 while every channel block passes over
    them. With more than one reduction chunk, partial sums accumulate in the output block buffer
    (its tile reloaded per chunk), and the write-back (bias, epilogue) is a pass of its own; with
    one chunk it runs on each accumulator tile before the next (see _write_back_at)."""
    conv, unpack = sch.get_sblock("conv2d_pointwise"), sch.get_sblock("conv2d_unpack")
    n, o, oh, ow = (int(iv.dom.extent) for iv in sch.get(unpack).iter_vars)
    block, tile = pointwise_tile(preset, o, oh * ow)
    _inline_epilogue(sch, unpack)
    par = worth_parallel(kernel)
    nn, bi, oi, q, rc = sch.get_loops(conv)
    if int(sch.get(oi).extent) != block or int(sch.get(q).extent) % tile:
        raise ValueError("pointwise conv packed for another tile than this preset's")
    padded, channels, blocks = int(sch.get(q).extent), int(sch.get(rc).extent), int(sch.get(bi).extent)
    lanes = max(preset.vector_bits // 32, 4)
    kc = _divisor(channels, preset.l1_kib * 1024 * L1_SHARE // (4 * block))
    chunk = tile * _divisor(padded // tile, preset.l2_kib * 1024 * L2_SHARE // (4 * kc * tile))
    qo, qc, qv, qi = sch.split(q, [None, chunk // tile, tile // lanes, lanes])
    done, fused = ["conv2d_pointwise", "conv2d_unpack"], False
    if kc == channels:
        sch.reorder(nn, qo, bi, qc, rc, oi, qv, qi)
        acc = sch.cache_write(conv, 0, "local")
        sch.reverse_compute_at(acc, qc)
        sch.vectorize(sch.get_loops(acc)[-1])
        fused = _write_back_at(sch, acc, unpack, qc, ow)
        outer = sch.fuse(nn, qo, bi)
        _parallel(sch, outer, par)
        init_at = rc
    else:
        rco, rci = sch.split(rc, [None, kc])
        bo, bi = sch.split(bi, [None, -(-blocks // PARALLEL_PARTS)]) if blocks > PARALLEL_PARTS else (None, bi)
        sch.reorder(*[l for l in (nn, qo, bo) if l is not None], rco, bi, qc, rci, oi, qv, qi)
        outer = sch.fuse(*[l for l in (nn, qo, bo) if l is not None])
        _parallel(sch, outer, par)
        init_at = rco
    sch.unroll(oi)
    sch.unroll(qv)  # one vector register per (channel, vector) accumulator
    sch.vectorize(qi)
    sch.decompose_reduction(conv, init_at)
    if not fused:
        generic._schedule_block(sch, unpack, lanes, par)
    if _has_block(sch, "conv2d_pixels_copy"):
        generic._schedule_block(sch, sch.get_sblock("conv2d_pixels_copy"), lanes, par)
        done.append("conv2d_pixels_copy")
    _schedule_rest(sch, preset, done, par)
    return sch.mod["main"]


def _write_back_at(sch, acc, unpack, qc, ow):
    """Move the write-back (bias, epilogue) into the accumulator tile at loop QC: its pixels
    iterate as one flat index (the GEMM's), it reads the accumulators in place of their copy."""
    sch.transform_block_layout(unpack, lambda nn, f, yy, xx: (nn, f, yy * ow + xx))
    sch.compute_inline(acc)
    sch.reverse_compute_at(unpack, qc)
    sch.vectorize(sch.get_loops(unpack)[-1])
    return True


def _divisor(n, most):
    """The largest divisor of N that is at most MOST (1 at least)."""
    return max(d for d in range(1, n + 1) if n % d == 0 and (d <= most or d == 1))


def _vectorize(sch, loop, lanes):
    """Vectorize LOOP in pieces of up to 4 vectors (one vector, with a tail, if none divides it)."""
    ext = int(sch.get(loop).extent)
    if ext > lanes:
        loop = sch.split(loop, [None, next((f for f in (4 * lanes, 2 * lanes) if ext % f == 0), lanes)])[1]
    sch.vectorize(loop)


def _depthwise(sch, kernel, preset):
    """A conv2d with one input channel per output channel (depthwise): per (batch, channel), the
    channel's padded plane is built (in cache); each output row, in chunks of up to 4 vectors that
    divide it, accumulates over the taps in registers, then the epilogue writes the chunk.
    Returns None for other convs."""
    try:
        conv = sch.get_sblock("conv2d")
    except Exception:  # noqa: BLE001
        return None
    loops = sch.get_loops(conv)
    if len(loops) != 7 or int(sch.get(loops[4]).extent) != 1:
        return None
    pads = list(sch.get_producers(conv))
    par = worth_parallel(kernel)
    n, f, y, x, rc, ry, rx = loops
    ow = int(sch.get(x).extent)
    lanes = max(preset.vector_bits // 32, 4)
    chunk = next((c * lanes for c in (4, 3, 2, 1) if ow % (c * lanes) == 0), None)
    xo, xi = sch.split(x, [None, chunk]) if chunk else (None, x)
    sch.reorder(*[l for l in (n, f, y, xo, rc, ry, rx, xi) if l is not None])
    at = xo if chunk else y
    strided = not contiguous_reads(sch, conv, 3)
    consumers = sch.get_consumers(conv)
    if chunk:  # the chunk's accumulators stay in registers over the taps
        acc = sch.cache_write(conv, 0, "local")
        sch.reverse_compute_at(acc, at)
        sch.vectorize(sch.get_loops(acc)[-1])
    if len(consumers) == 1:
        _inline_epilogue(sch, consumers[0])
        sch.reverse_compute_at(consumers[0], at)
        sch.vectorize(sch.get_loops(consumers[0])[-1])
    nf = sch.fuse(n, f)
    _parallel(sch, nf, par)
    if not strided:  # a strided row (stride 2) is left to LLVM's vectorizer
        sch.vectorize(xi)
    for l in sch.get_loops(conv)[-3:-1]:
        sch.unroll(l)
    sch.decompose_reduction(conv, rc)
    for pad in pads:  # each channel's padded plane just before its conv, while it is in cache
        sch.compute_at(pad, nf)
        _vectorize(sch, sch.get_loops(pad)[-1], lanes)
    names = ["conv2d", *[sch.get(b).name_hint for b in pads + consumers]]
    _schedule_rest(sch, preset, names, par)
    return sch.mod["main"]


def _inline_epilogue(sch, unpack):
    """Fold the elementwise chain after the conv into the write-back block."""
    while True:
        consumers = sch.get_consumers(unpack)
        if len(consumers) != 1 or generic._is_reduction(sch, consumers[0]):
            return
        try:
            sch.reverse_compute_inline(consumers[0])
        except Exception:  # noqa: BLE001 - not injective (e.g. a pool's padding): stop here
            return


def _parallel(sch, loop, par):
    if par:
        sch.parallel(loop)


def _schedule_rest(sch, preset, names, par=True):
    """Blocks after the epilogue: a fused pool (and its padding) gets the pool schedule, the rest
    the generic treatment. NAMES: prefixes of the blocks already scheduled."""
    names = list(names)
    for b in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(b).name_hint in POOL_BLOCKS:
            names += schedule_pool_block(sch, b, preset, par)
    generic.schedule_remaining(sch, preset, names, par)


@rule("dense")
def schedule_dense(func, kernel, preset):
    """dense with a packed weight: per block of output features (parallel), the reduction runs
    over K with the block's accumulator vectors in registers, then the write-back adds the bias
    and the fused epilogue."""
    sch = Schedule(tvm.IRModule({"main": func}))
    try:
        acc = sch.get_sblock("dense_packed")
    except Exception:  # noqa: BLE001 - no packed weight (e.g. both operands computed)
        return generic.schedule(func, kernel, preset)
    unpack = sch.get_sblock("dense_unpack")
    _inline_epilogue(sch, unpack)
    par = worth_parallel(kernel)
    i, jb, ji, k = sch.get_loops(acc)
    sch.reorder(jb, i, k, ji)
    local = sch.cache_write(acc, 0, "local")
    sch.reverse_compute_at(local, i)
    sch.vectorize(sch.get_loops(local)[-1])
    _parallel(sch, jb, par)
    sch.vectorize(ji)
    sch.decompose_reduction(acc, k)
    generic._schedule_block(sch, unpack, max(preset.vector_bits // 32, 4), par)
    _schedule_rest(sch, preset, ["dense_packed", "dense_unpack"], par)
    return sch.mod["main"]
