"""conv2d on CPU: direct convolution with a register tile of width positions x a block of output
channels (see compiler/lower/packed.py for the compute and pack.py for the weight layout). Pointwise convs
are scheduled in pointwise.py, depthwise ones in depthwise.py; convs with few input channels over
padded rows (pack.conv_rows_tile) in `schedule_rows`.

Per (batch, channel block, band of output rows) -- the parallel loop -- the reduction runs one
chunk of input channels at a time over the whole band (pack.conv_cache_blocks sizes both from the
caches), so the chunk's weights stay in L1 while every pixel of the band uses them. Each row is
cut into tiles of `xt` pixels, of two or three sizes that cover it exactly (pack.conv_width_tiles;
a flat row: one size, a partial last tile); for each tile `xt` accumulator vectors of `block` output channels
stay in registers while the reduction runs over kernel column, the chunk's input channels, kernel
row; each step broadcasts one input pixel and FMAs it with one packed weight vector. The band's
partial sums wait in the packed buffer between chunks; the band is then written back to NCHW with
the bias and the fused epilogue (activations, residual add) applied on the way. On x86 the band's
tiles prefetch the next chunk's weights (prefetch_next_chunk). Other kernels
without a packed conv (non-constant weights) use the generic schedule.

A channels-last kernel (NHWC input or result, compiler/passes/layout.py) loops over bands of input
(all channels) in half of L2 outside the channel blocks, so every block reuses the band; where a
block's weights fit in half of L2 its reduction runs over all channels per tile and an NHWC result
is written back per tile, a vector of channels per pixel; else chunks of at least 16 channels
(whole cache lines of each pixel) as above.
"""
import tvm
import tvm_ffi
from tvm import tirx
from tvm.ir import TensorLoad
from tvm.s_tir import SBlockRealize, Schedule
from tvm.sym import pattern

from . import depthwise, generic, pointwise, rule, winograd, worth_parallel
from .common import (LINE_BYTES, divisor, has_block, inline_epilogue, inside_steps, parallel, prefetch, schedule_rest,
                     vectorize)
from .pack import conv_cache_blocks, conv_flat_tile, conv_params, conv_rows_chunk, conv_width_tile, conv_width_tiles
from .pack import pointwise_tile, width_tile
from .pack import lanes as pack_lanes
from .pool import POOL_BLOCKS, schedule_pool_under

# the parallel loop's split: TVM gives each of T threads a contiguous run of ceil(iterations / T)
# iterations, and the pool's size is known only at run time. Judged at 2 threads (EVEN_SPLIT: the
# busiest thread's share of the rows x 2), never worse at 4 than the cache's band.
EVEN_SPLIT = 1.1


def _unevenness(outer, oh, b, threads):
    """The busiest of THREADS threads' rows x THREADS / all rows, OUTER x bands of B rows of OH."""
    rows = [min(b, oh - y) for _ in range(outer) for y in range(0, oh, b)]
    step = -(-len(rows) // threads)
    return max(sum(rows[i:i + step]) for i in range(0, len(rows), step)) * threads / sum(rows)


def _ragged_groups(in_channels, group_channels, out_channels, block):
    """Whether a grouped conv (GROUP_CHANNELS input channels a group) has groups that end inside a
    channel block of BLOCK. Its write-back cannot follow the blocks (reverse_compute_at): TVM gives
    each block's write-back BLOCK channels from its first, into the next group's, which another
    iteration of the parallel loop computes (a race: ShuffleNet's 112-channel 1x1 in 4 groups of
    28 in one block of 32, and 40 in 4 groups of 10 on AVX2, wrong in parallel); it is a pass of its
    own (not _write_back_per_band)."""
    groups = in_channels // group_channels
    return groups > 1 and (out_channels // groups) % block != 0


def _write_back_per_band(sch, unpack, band, flat_width, lanes):
    """Place the write-back UNPACK in the loop over BAND (its pixels as the one flat row of
    FLAT_WIDTH-pixel image rows where FLAT_WIDTH: TVM maps a row's range to (yy, xx) wrongly);
    False where TVM refuses (grouped index maps). A flat row of more than MAX_FLAT_VECTOR pixels is
    vectorized in pieces of up to 4 vectors of LANES, not as one vector (see MAX_FLAT_VECTOR)."""
    try:
        if flat_width:
            sch.transform_block_layout(unpack, lambda nn, f, yy, xx: (nn, f, yy * flat_width + xx))
        sch.reverse_compute_at(unpack, band)
        row = sch.get_loops(unpack)[-1]
        if flat_width and int(sch.get(row).extent) > MAX_FLAT_VECTOR:
            vectorize(sch, row, lanes)
        else:
            sch.vectorize(row)
        return True
    except Exception:  # noqa: BLE001 - TVM's refusal
        return False


# pixels of a flat row's write-back up to which it is one vector: each lane's (row, column) of
# the NCHW result is its own index, and LLVM's time on such a vector grows with its square (64->64
# 5x5 flat rows, one band, host AVX2: 200 pixels 4 s to compile, 400 23 s, 600 76 s, 1800 > 5 min)
MAX_FLAT_VECTOR = 256


def split_band(outer, oh, band):
    """Rows per band of the direct conv's parallel loop (OUTER batch x channel blocks, OH rows, BAND
    from the caches): the fewest bands (a partial last one) that split the loop evenly over 2 threads
    and no worse over 4 than BAND does (SqueezeNet's 1x1 384->48 @13, when it ran in rows: 3 blocks
    of one band, split 2/1 -> bands of 7, 6 iterations; on x86 it now runs as one flat row, see
    pack.conv_flat_rows); a band sized for the cache is never enlarged. AVX2 (2-core
    znver3), in model, per-kernel minima of 80 alternated rounds, 2 threads: SqueezeNet's 384->48
    @13 + relu 0.056 -> 0.047 ms and 0.038 -> 0.034 (old twice: 0.056, 0.038); four blocks (384->64,
    512->64 @13, already even) cut in 2 bands anyway (8 iterations): 0.086 -> 0.092, 0.065 -> 0.068."""
    for bands in range(-(-oh // band), oh + 1):
        b = -(-oh // bands)
        if _unevenness(outer, oh, b, 2) <= EVEN_SPLIT and _unevenness(outer, oh, b, 4) <= _unevenness(outer, oh, band, 4):
            return b
    return band


@rule("conv2d")
def schedule(func, kernel, preset):
    sch = Schedule(tvm.IRModule({"main": func}))
    if has_block(sch, "conv2d_pointwise"):
        return pointwise.schedule(sch, kernel, preset)
    if has_block(sch, "conv2d_rows") or has_block(sch, "conv2d_row_tiles"):
        return schedule_rows(sch, kernel, preset)
    if has_block(sch, "winograd_gemm"):
        return winograd.schedule(sch, kernel, preset)
    try:
        conv = sch.get_sblock("conv2d_packed")
    except Exception:  # noqa: BLE001 - no packed conv in this kernel
        return depthwise.schedule(sch, kernel, preset) or generic.schedule(func, kernel, preset)
    nhwc = has_block(sch, "conv2d_unpack_nhwc")  # a channels-last result (compiler/passes/layout.py)
    unpack = sch.get_sblock("conv2d_unpack_nhwc" if nhwc else "conv2d_unpack")
    _, most = conv_params(preset)
    pads = [b for b in sch.get_producers(conv)]
    inline_epilogue(sch, unpack)
    par = worth_parallel(kernel)

    n, bi, y, x, oi, rc, ry, rx = sch.get_loops(conv)
    oh, ow = int(sch.get(y).extent), int(sch.get(x).extent)
    taps = int(sch.get(ry).extent) * int(sch.get(rx).extent)
    data = [int(v) for v in sch.get(conv).reads[0].source.shape]  # (the padded input)
    plane = (*data[2:], int(sch.get(ry).extent)) if len(data) == 4 and not nhwc else None  # (NCHW)
    chunk, band = conv_cache_blocks(preset, int(sch.get(rc).extent), taps, oh, ow, int(sch.get(oi).extent), plane)
    out = [int(v) for v in sch.get(unpack).writes[0].source.shape]
    flat = oh == 1 and out[1 if nhwc else 2] > 1  # (compiler/ops/packed.py flat_pixels: one row of all pixels)
    if flat and not nhwc:  # (one size, a partial last tile)
        tile = conv_flat_tile(preset, ow, taps == 1 and "nhwc_in" not in sch.get(conv).annotations)  # (flat_rows)
    else:
        tile = conv_width_tile(preset, out[1] * out[2] if flat else out[2] if nhwc else out[3])
        if ow % tile:  # rows not padded to whole tiles (a node without `width_tile`): a partial tile
            tile = width_tile(ow, most)
    channels = int(sch.get(rc).extent)
    prefetch = None
    ragged = _ragged_groups(data[3 if "nhwc_in" in sch.get(conv).annotations else 1], channels,
                            out[3 if nhwc else 1], int(sch.get(oi).extent))
    if (nhwc or "nhwc_in" in sch.get(conv).annotations) and not ragged:
        xo, xi = sch.split(x, [None, tile])
        # channels-last (compiler/passes/layout.py): per band of output rows (of flat pixels) whose
        # input (all channels) fits in half of L2, every channel block passes over the band; where a
        # block's weights fit in a quarter of L2 the reduction runs over all channels at once and an
        # NHWC result is written from each tile's accumulators (vectors of channels as they are)
        fit = preset.l2_kib * 1024 // 2 // (channels * 4)
        if flat:
            y, yi = sch.split(y, [None, 1])
            xb, xo = sch.split(xo, [None, min(ow // tile, max(1, fit // tile))])  # (a partial last band)
        else:
            xb, (y, yi) = None, sch.split(y, [None, divisor(oh, max(1, fit // ow))])
        block = int(sch.get(oi).extent)
        if channels * taps * block * 4 <= preset.l2_kib * 1024 // 2:  # the weights of a block in L2
            chunk = channels
        else:  # chunks of whole cache lines of each pixel's channels, their weights in half of L1
            chunk = divisor(channels, max(16, preset.l1_kib * 1024 // 2 // (taps * block * 4)))
        rc, rci = sch.split(rc, [None, chunk])
        outer = [l for l in (n, y, xb, bi) if l is not None]
        single = chunk == channels
        # (a single chunk's loop inside the tile: the tile's accumulators are all the local buffer holds)
        sch.reorder(*outer, *((yi, xo, rc) if single else (rc, yi, xo)), rx, rci, ry, xi, oi)
        if flat:  # the write-back's pixels as the one flat row (TVM maps a row's range to (yy, xx) wrongly)
            sch.transform_block_layout(unpack, (lambda nn, yy, xx, f: (nn, yy * out[2] + xx, f)) if nhwc
                                       else (lambda nn, f, yy, xx: (nn, f, yy * out[3] + xx)))
        sch.reverse_compute_at(unpack, xo if single and nhwc else outer[-1])
        if single and nhwc:  # each tile written back right after its reduction (its accumulators in L1)
            sch.unroll(sch.get_loops(unpack)[-2])
            sch.vectorize(sch.get_loops(unpack)[-1])
        else:
            vectorize(sch, sch.get_loops(unpack)[-1], pack_lanes(preset))
        parallel(sch, sch.fuse(*outer), par)
        sch.unroll(xi)
        sch.vectorize(oi)
        sch.vectorize(sch.get_loops(sch.decompose_reduction(conv, rc))[-1])
    else:
        rc, rci = sch.split(rc, [None, chunk])
        if par:
            band = split_band(int(sch.get(n).extent) * int(sch.get(bi).extent), oh, band)
        y, yi = sch.split(y, [None, band])
        # the accumulators live in the band's packed buffer, promoted to registers by LLVM in the
        # (rci, ry) loop, whose addresses do not move. rx outside it: with rx innermost LLVM shared
        # each broadcast pixel between neighbouring taps and spilled a 6-pixel AVX2 tile
        # rows as exact covers of tiles of two or three sizes (pack.conv_width_tiles, cut after the
        # reduction is decomposed); a flat row keeps one tile size with a partial last tile: cut in
        # parts, LLVM computed its pixel addresses as vectors in the inner loop (512->512 @7 3.66 -> 4.16 ms)
        if flat:
            x, xi = sch.split(x, [None, tile])
            sch.reorder(n, bi, y, rc, yi, x, rx, rci, ry, xi, oi)
            sch.unroll(xi)
        else:
            sch.reorder(n, bi, y, rc, yi, x, rx, rci, ry, oi)
        sch.vectorize(oi)
        if ragged or not _write_back_per_band(sch, unpack, y, flat and out[3], pack_lanes(preset)):
            generic._schedule_block(sch, unpack, pack_lanes(preset), par)  # a separate pass
        parallel(sch, sch.fuse(n, bi, y), par)
        sch.vectorize(sch.get_loops(sch.decompose_reduction(conv, rc))[-1])
        if preset.arch == "x86_64":  # the next chunk's weights, over the band's tiles (a flat row) or rows
            scope = sch.get(x if flat else yi).loop_var.name
            prefetch = (sch.get(conv).reads[-1].source, sch.get(rc).loop_var, scope, chunk)
        if not flat:
            _row_tiles(sch, conv, x, conv_width_tiles(preset, ow))
    for pad in pads:
        loops = sch.get_loops(pad)
        parallel(sch, sch.fuse(*loops[:2]), par)
        if sch.get(pad).name_hint == "conv2d_pad_nhwc":  # a pixel's channels: whole vectors
            vectorize(sch, loops[-1], pack_lanes(preset))
    schedule_rest(sch, preset, ["conv2d_packed", sch.get(unpack).name_hint, *[sch.get(p).name_hint for p in pads]], par)
    func = sch.mod["main"]
    return prefetch_next_chunk(func, *prefetch) if prefetch else func


def prefetch_next_chunk(func, weight, rc_var, scope, chunk):
    """FUNC with a software prefetch (to L2) of the next chunk's packed WEIGHT (CHUNK input
    channels past the one the chunk loop RC_VAR is at; past the last chunk, the next channel
    block's first), spread over the iterations of the loop named SCOPE (the band's tiles or rows):
    each iteration prefetches its share of the chunk's 64-byte lines. In a model the weights come
    from memory (ResNet-50's 512->512 3x3: 9.4 MB), read a chunk at a time in an order the hardware
    prefetchers did not follow (standalone, weights in cache, 512 s2 @7 ran 2.9 ms; in the model
    3.0-3.1 ms minimum). AVX2, ResNet-50, per-kernel minima alternated (kab, 8 rounds, twice), 1
    thread: 3x3 512->512 s2 @7 3.03-3.09 -> 2.64-2.70 ms, s1 @7 (x2) 2.78-2.88 -> 2.43-2.45, 256->256
    s2 @14 2.71-2.73 -> 2.55-2.57, 128->128 s2 @28 2.69-2.73 -> 2.66-2.70; 2 threads 512 s2 @7 1.64
    -> 1.54, 256 s2 @14 1.74 -> 1.67. Not in the reduction loop: there the prefetch, a memory
    access to LLVM, kept the register tile's accumulators in memory (512 s2 @7 +27%)."""
    floats = LINE_BYTES // 4
    lines = -(-chunk * int(weight.shape[2]) * int(weight.shape[3]) * int(weight.shape[4]) // floats)

    def first_bi(node):
        found = []

        def visit(n):
            binds = {iv.var: v for iv, v in zip(n.block.iter_vars, n.iter_values)}

            def load(ld):
                if ld.source.same_as(weight) and ld.indices[0] in binds and not found:
                    found.append(binds[ld.indices[0]])
                return ld
            tvm_ffi.structural_map(n.block.body, [(TensorLoad, load)])
            return n
        tvm_ffi.structural_map(node, [(SBlockRealize, visit)])
        return found[0] if found else None

    def add(loop):
        if loop.loop_var.name != scope:
            return loop
        bi = first_bi(loop.body)
        if bi is None:
            return loop
        dtype = str(weight.shape[0].ty)
        per = -(-lines // int(loop.extent))
        pre = []
        for k in range(per):
            line = tirx.min((loop.loop_var - loop.min) * per + k, lines - 1)
            at = [bi, rc_var * chunk + chunk, tirx.const(0, dtype), tirx.const(0, dtype), line * floats]
            pre.append(prefetch(weight, at, 2))
        return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, tirx.SeqStmt(pre + [loop.body]),
                        loop.thread_binding, loop.annotations)
    return func.with_body(tvm_ffi.structural_map(func.body, [(tirx.For, add)]))


def _row_tiles(sch, conv, x, tiles):
    """Cut the pixel loop X of CONV (loops inside it: rx, rci, ry, oi) into register tiles: TILES
    [(tile, count), ...] as consecutive parts (a block of its own each), each part's tile pixels
    unrolled inside the reduction. CONV's reduction comes decomposed, its channels vectorized (neither
    can be done across the parts' blocks, nor to an update block)."""
    parts = sch.loop_partition(x, [t * k for t, k in tiles[:-1]]) if len(tiles) > 1 else [x]
    for part, (t, _) in zip(parts, tiles):
        block = conv if len(tiles) == 1 else sch.get_child_blocks(part)[0]
        xo, rx, rci, ry = sch.get_loops(block)[-5:-1]
        if int(sch.get(xo).extent) > t:
            xo, xi = sch.split(xo, [None, t])
            sch.reorder(xo, rx, rci, ry, xi)
        else:  # (a single tile: the later parts, whose loops start past 0, which split refuses)
            xi = xo
            sch.reorder(rx, rci, ry, xi)
        sch.unroll(xi)


# kernel taps up to which the row conv unrolls both kernel loops; a larger kernel keeps its rows a
# loop (a 7x7 stem's 49 unrolled taps: LLVM hoisted the weight broadcasts and spilled 91 of them)
ROWS_UNROLL_TAPS = 9
# (batch x channel) blocks from which the row conv runs a fused pool per channel block: its parallel
# loop then has no bands (SqueezeNet's stem, AVX2, 1 thread, in model, thread-time minima
# alternated, the pool a pass of its own over the 3.2 MB write-back -> per block: 1.22 -> 0.93 ms)
POOL_MIN_BLOCKS = 8


def schedule_rows(sch, kernel, preset):
    """The row conv (_schedule_rows), a fused pool per channel block where TVM can place it."""
    inline_epilogue(sch, sch.get_sblock("conv2d_unpack"))
    rows = _schedule_row_tiles if has_block(sch, "conv2d_row_tiles") else _schedule_rows
    if _pool_after(sch) is not None:
        try:
            return rows(sch.copy(), kernel, preset, True)
        except Exception:  # noqa: BLE001 - reverse_compute_at refused the pool: a pass of its own
            pass
    return rows(sch, kernel, preset, False)


def _schedule_row_tiles(sch, kernel, preset, pooled):
    """A stem's row conv (compiler/lower/packed.py `_tiled_rows`): per (batch, channel block, output
    row) -- the parallel loop; per channel block where a pool is fused, the rows in order -- each
    tile of `block` channels x `tile` pixels of the row keeps its accumulators in registers over
    all input channels and taps, and is written to NCHW from them with the bias and epilogue. A
    row's last tile is cut short by the split's predicate, stated `likely` (_likely_bounds) so that
    LoopPartition runs the whole tiles without it: TVM had made every tile's write-back scalar
    where a row's last vector is partial (SqueezeNet's rows of 111: the stem 0.82 -> 1.34 ms, AVX2,
    1 thread, kab minima; 0.81 -> 0.66 with the bound `likely`)."""
    conv, unpack, copy = (sch.get_sblock(b) for b in ("conv2d_row_tiles", "conv2d_unpack", "conv2d_rows_copy"))
    ow = int(sch.get(unpack).iter_vars[3].dom.extent)
    wq = int(sch.get(copy).writes[0].source.shape[-1])
    sch.transform_layout(copy, ("write", 0), lambda nn, cc, i, j, r, col: (nn, cc, i, j, r * wq + col))
    par = worth_parallel(kernel)
    lanes = pack_lanes(preset)
    nn, bi, y, oi, q, rc, ry, rx = sch.get_loops(conv)
    o, oh = (int(iv.dom.extent) for iv in sch.get(unpack).iter_vars[1:3])
    block, tile = pointwise_tile(preset, o, oh * wq, write_back_pass=True)  # (as pack.conv_rows_tile)
    if int(sch.get(oi).extent) != block or int(sch.get(q).extent) % lanes or int(sch.get(q).extent) < ow:
        raise ValueError("row conv packed for another tile than this preset's")
    qo, qv, qi = sch.split(q, [None, tile // lanes, lanes])
    sch.reorder(nn, bi, y, qo, rc, ry, rx, oi, qv, qi)
    pool = _pool_after(sch) if pooled else None
    outer = _row_loops(sch, (nn, bi, y), pool, par, (ry, rx, oi, qv, qi))
    sch.reverse_compute_at(unpack, qo)
    f, x = sch.get_loops(unpack)[-2:]
    xv, xi = sch.split(x, [None, lanes])
    sch.unroll(f)
    sch.unroll(xv)
    sch.vectorize(xi)
    sch.decompose_reduction(conv, rc)
    done = schedule_pool_under(sch, pool, preset, outer) if pool is not None else []
    schedule_rest(sch, preset, ["conv2d_row_tiles", "conv2d_unpack", "conv2d_rows_copy", *done], par)
    _schedule_copy(sch, copy, lanes, par)
    return _likely_bounds(sch.mod["main"], "conv2d_unpack") if ow % tile else sch.mod["main"]


def _row_loops(sch, parallel_loops, pool, par, tile_loops):
    """The row conv's parallel loop and register tile: (batch, channel block, rows) fused and
    parallel (without the rows where a POOL is fused per channel block); the tile's kernel rows (a
    large kernel's stay a loop, ROWS_UNROLL_TAPS), columns, channels and pixel vectors unrolled, its
    lanes vectorized. TILE_LOOPS: (ry, rx, oi, qv, qi). Returns the parallel loop."""
    nn, bi, rows = parallel_loops
    ry, rx, oi, qv, qi = tile_loops
    outer = sch.fuse(nn, bi) if pool is not None else sch.fuse(nn, bi, rows)
    parallel(sch, outer, par)
    taps = int(sch.get(ry).extent) * int(sch.get(rx).extent)
    for loop in ((ry, rx, oi, qv) if taps <= ROWS_UNROLL_TAPS else (rx, oi, qv)):
        sch.unroll(loop)
    sch.vectorize(qi)
    return outer


def _likely_bounds(func, name):
    """FUNC with the predicates of blocks NAME stated `likely`, so that LoopPartition splits their
    loops at the bound (compiler/build.py)."""
    def visit(r):
        if r.block.name_hint != name or (isinstance(r.predicate, tirx.IntImm) and r.predicate.value):
            return r
        return SBlockRealize(r.iter_values, tirx.likely(r.predicate), r.block)
    return func.with_body(tvm_ffi.structural_map(func.body, [(SBlockRealize, visit)]))


def _schedule_rows(sch, kernel, preset, pooled):
    """The direct conv over padded rows (compiler/lower/packed.py `_rows`) as a GEMM per kernel tap:
    tiles of `block` channels x `tile` pixels of a band's flat padded-row index keep their
    accumulators in registers (pixel vectors loaded, weights broadcast) while the reduction runs
    over a chunk of input channels and every tap, so the accumulators are NCHW rows and the
    write-back is a vector copy. Per (batch, channel block, band of output rows) -- the parallel
    loop -- the chunks run one after another over the whole band (pack.conv_rows_chunk), and the
    band is then written back while its partial sums are in cache (pack.conv_rows_band). A fused
    pool (a stem's max pool) runs per channel block too, right after the block's bands, its input
    (the block's channels of the write-back) still in L2 (pool.schedule_pool_under): the bands run
    in order inside the parallel loop over (batch, channel block)."""
    conv, unpack, copy = (sch.get_sblock(b) for b in ("conv2d_rows", "conv2d_unpack", "conv2d_rows_copy"))
    o, oh = (int(iv.dom.extent) for iv in sch.get(unpack).iter_vars[1:3])
    _, _, _, stride, _, wq = (int(v) for v in sch.get(copy).writes[0].source.shape)
    # each plane's rows read as one flat index: q + tap offset, a contiguous vector per tap
    sch.transform_layout(copy, ("write", 0), lambda nn, cc, i, j, r, col: (nn, cc, i, j, r * wq + col))
    par = worth_parallel(kernel)
    lanes = pack_lanes(preset)
    nn, bi, r, oi, q, rc, ry, rx = sch.get_loops(conv)
    band = -(-oh // int(sch.get(r).extent))
    block, tile = pointwise_tile(preset, o, oh * wq, write_back_pass=True)
    if int(sch.get(oi).extent) != block or int(sch.get(q).extent) % tile:
        raise ValueError("row conv packed for another tile than this preset's")
    kh, kw = int(sch.get(ry).extent), int(sch.get(rx).extent)
    chunk = conv_rows_chunk(preset, int(sch.get(rc).extent), kh, kw, block, kh * min(kw, stride))
    qo, qv, qi = sch.split(q, [None, tile // lanes, lanes])
    rco, rci = sch.split(rc, [None, chunk])
    sch.reorder(nn, bi, r, rco, qo, rci, ry, rx, oi, qv, qi)
    pool = _pool_after(sch) if pooled else None
    outer = _row_loops(sch, (nn, bi, r), pool, par, (ry, rx, oi, qv, qi))
    # the band's rows written back right after its reduction (its partial sums still in cache): its
    # accumulators as rows of WQ, so that the write-back reads whole rows (TVM solves its domain
    # from them); the padded last tile runs into a row of its own that nothing reads (no padding to
    # fill: the map is taken as it is)
    if band > 1:  # (one row: the write-back reads the flat index as it is)
        sch.transform_layout(conv, ("write", 0), lambda nn_, b_, r_, o_, q_: (nn_, b_, r_, o_, q_ // wq, q_ % wq),
                             assume_injective_transform=True)
    sch.reverse_compute_at(unpack, outer if pool is None else r)
    sch.vectorize(sch.get_loops(unpack)[-1])
    sch.decompose_reduction(conv, rco)
    done = schedule_pool_under(sch, pool, preset, outer) if pool is not None else []
    schedule_rest(sch, preset, ["conv2d_rows", "conv2d_unpack", "conv2d_rows_copy", *done], par)
    _schedule_copy(sch, copy, lanes, par)  # (last: its cut leaves blocks that reverse_compute_at refuses)
    return sch.mod["main"]


def _schedule_copy(sch, copy, lanes, par):
    """The row conv's copy into phase planes: a strided conv's plane columns read the input at
    its stride, which TVM's vectorizer made scalar loads; there each plane row is cut at the input's
    edges (zeros outside) and the inside, whose reads are all in bounds, is left to LLVM's loop
    vectorizer (strided loads as interleaved loads and shuffles, as in pool.py). Without a column
    stride: the generic schedule (contiguous vector copies). AVX2, in model, per-kernel minima
    alternated (kab, 10 rounds), 1 thread: stems 3x3 s2 3->32 @112 + clip MobileNet v1 0.490 ->
    0.456 ms, v2 0.472 -> 0.450, SqueezeNet's 3->64 s2 + relu + max pool 0.841 -> 0.806; 2 threads
    (busy machine) 0.298 -> 0.279, 0.343 -> 0.329, 0.50-0.56 -> 0.48; ResNet-50's 7x7 stem unchanged
    (3.19 -> 3.21, its copy ~3% of the kernel)."""
    loops = sch.get_loops(copy)
    block = sch.get(copy)
    if len(loops) != 6 or len(block.iter_vars) != 6:
        return generic._schedule_block(sch, copy, lanes, par)
    x = block.reads[0]
    coef = pattern.detect_linear_equation(x.region[-1].min, [block.iter_vars[5].var, block.iter_vars[3].var])
    if len(coef) != 3 or int(coef[0]) == 1:
        return generic._schedule_block(sch, copy, lanes, par)
    stride, left, width = int(coef[0]), -int(coef[2]), int(x.source.shape[-1])
    wq = int(sch.get(loops[5]).extent)
    lo, hi = inside_steps(left, width, stride, wq)
    parallel(sch, sch.fuse(*loops[:5]), par)
    parts = [n for n in (lo, hi - lo) if n > 0]
    if hi < wq and parts:
        sch.loop_partition(loops[5], parts + [None])
    elif lo > 0:
        sch.loop_partition(loops[5], [lo, None])


def _pool_after(sch):
    """The pooling block that alone reads the row conv's write-back (through its row pass), where
    the conv has POOL_MIN_BLOCKS (batch x channel) blocks; else None."""
    rows = sch.get_consumers(sch.get_sblock("conv2d_unpack"))
    pool = sch.get_consumers(rows[0]) if len(rows) == 1 else []
    if len(pool) != 1 or sch.get(pool[0]).name_hint not in POOL_BLOCKS:
        return None
    conv = sch.get_sblock("conv2d_rows" if has_block(sch, "conv2d_rows") else "conv2d_row_tiles")
    nn, blocks = (int(v) for v in sch.get(conv).writes[0].source.shape[:2])
    return pool[0] if nn * blocks >= POOL_MIN_BLOCKS else None


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
    inline_epilogue(sch, unpack)
    par = worth_parallel(kernel)
    i, jb, ji, k = sch.get_loops(acc)
    sch.reorder(jb, i, k, ji)
    local = sch.cache_write(acc, 0, "local")
    sch.reverse_compute_at(local, i)
    sch.vectorize(sch.get_loops(local)[-1])
    parallel(sch, jb, par)
    sch.vectorize(ji)
    sch.decompose_reduction(acc, k)
    generic._schedule_block(sch, unpack, pack_lanes(preset), par)
    schedule_rest(sch, preset, ["dense_packed", "dense_unpack"], par)
    return sch.mod["main"]
