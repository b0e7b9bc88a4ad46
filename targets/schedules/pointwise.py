"""Pointwise (1x1) conv on CPU as a cache-blocked GEMM over pixels; the compute and the weight
panel layout come from compiler/lower/packed.py and pack.py."""
from . import buffer_bytes, generic, worth_parallel
from .common import (ACC_SCOPE, LINE_BYTES, acc_on_stack, divisor, has_block, inline_epilogue, parallel, prefetch,
                     schedule_rest)
from .pack import lanes as pack_lanes, pointwise_tile, tail_vectors

PANEL_SHARE = 0.25  # of the L2 for a pointwise conv's weight panel (reduction chunk x channel block)
L2_SHARE = 0.5  # of the L2 for the input rows of a pointwise conv's pixel chunk
PARALLEL_PARTS = 8  # channel-block groups a cache-blocked pointwise conv spreads over the threads
# partial sums (x pixels) a few-pixel tail GEMM keeps in flight per reduction step: 8 spilled a
# vector of 1024->128 @7's tail on AVX2 (its 6-channel weight vectors are assembled from pieces);
# 6 does not (2048->512 @7, 1 thread, thread-time minima alternated: 8 -> 6 1.259 -> 1.227 ms)
TAIL_CHAINS = 6
# of the L1 for all the weights of a pointwise conv that reads its input in place (was 0.5: in
# MobileNetV2, AVX2, 1 thread, thread-time minima alternated, copied -> in place: 192->32 @28
# 0.150-0.155 -> 0.113-0.125 ms, 144->32 @28 0.111 -> 0.090; 2.0 gained nothing more)
WEIGHTS_L1_SHARE = 1.0
# output channels up to which a pointwise conv reads its input in place: its tiles outer write one
# output row stream per channel (ResNet-50's 64->64 @56, 16.9 KB of weights, in place without a
# prefetch 0.41 -> 0.47 ms; with one into L2 it gains, see STREAMED_ROWS)
IN_PLACE_ROWS = 32
# of the pixels up to which a pointwise GEMM pads its last tile instead of a tail (was 1/32; 1/24
# takes SqueezeNet's 13x13 expansions, 169 pixels padded to 176: see padded_last_tile)
PADDING_SHARE = 1 / 24
# a write-back pass of its own costs the GEMM about what this many reduction channels per vector
# lane do (it streams each output twice; the GEMM's FMAs per output are the channels over the
# lanes): up to that share of the pixels padded, a padded last tile beats a tail (see padded_last_tile)
PASS_CHANNELS_PER_LANE = 0.75
# of the L1 for the weights of an in-place GEMM up to which its tiles prefetch the next tile's rows
PREFETCH_L1_SHARE = 0.5
# output channels up to which a projection whose input outgrows the L2 reads it in place too, its
# weights in PANEL_SHARE of the L2 (see streams_in_place)
STREAMED_ROWS = 64
# input channels up to which an in-place GEMM prefetches the output lines its next tile writes (see
# prefetch_writes: 64->64, 128->32, 144->32 gained; 256->64 lost)
OUT_PREFETCH_CHANNELS = 144


def schedule(sch, kernel, preset):
    """The pointwise conv as a GEMM over pixels (C = W . X with X the C_in x P input rows): tiles
    of `block` channels x `tile` pixels keep their accumulators in registers (one pixel vector
    load per `block` broadcast FMAs). Cache blocks from the preset: the reduction is cut into
    chunks whose weight panel (kc x block) stays in PANEL_SHARE of the L2 (streamed from there
    once per pixel tile: measured on AVX2 as fast as L1-sized chunks, and the write-back stays on
    the accumulator tile: 1024->512 @14 0.88x, 1024->2048 s2 0.94x the time of 512-channel
    chunks); the pixels into chunks whose input rows (kc x chunk) stay in L2_SHARE of the L2 while
    every channel block passes over them. With more than one reduction chunk, or pixels padded to
    whole tiles, partial sums accumulate in the output block buffer (its tile reloaded per chunk),
    and the write-back (bias, epilogue) is a pass of its own (see write_back_pass); otherwise it
    runs on each accumulator tile before the next (see write_back_at). The tiles read the input
    copied into one contiguous panel per pixel tile, per pixel chunk where there are several (see
    copy_per_chunk), except a projection with weights small enough to stay in L1, or a narrow one
    whose input outgrows the L2, which runs tile by tile reading the NCHW rows in place (see
    reads_in_place, streams_in_place, prefetch_next_tile); where the
    node has a `tail`, the pixels after the whole tiles are a GEMM of their own, in whole vectors
    (see tail_gemm), or one pixel folded into each channel block's last tile (see fold_tail).
    Tried and not kept (ResNet-50 and MobileNet v1 in model, AVX2, 1 thread,
    thread-time minima alternated): the pixel tiles outer and the channel blocks inner, the reduction cut so that a
    tile's panel stays in half of the L1 and the weights stream from L2 (GotoBLAS' order): 512->512
    @14 1.27 -> 1.39-1.45 ms, 32->64 @112 0.68 -> 0.90, 64->256 @56 + add 1.29 -> 2.0 (a row stream
    per output channel); only 128->128 @56 gained (1.28 -> 1.21). 6 x 16 tiles everywhere (fewer
    panel loads per FMA): within noise. A tail of whole vectors over two channel blocks (8
    accumulators, not 4): LLVM spilled one, no gain."""
    conv, unpack = sch.get_sblock("conv2d_pointwise"), sch.get_sblock("conv2d_unpack")
    n, o, oh, ow = (int(iv.dom.extent) for iv in sch.get(unpack).iter_vars)
    nn, bi, oi, q, rc = sch.get_loops(conv)
    block, tile = pointwise_tile(preset, o, oh * ow, in_channels=int(sch.get(rc).extent))
    inline_epilogue(sch, unpack)
    par = worth_parallel(kernel)
    if int(sch.get(oi).extent) != block or int(sch.get(q).extent) % tile:
        raise ValueError("pointwise conv packed for another tile than this preset's")
    padded, channels, blocks = int(sch.get(q).extent), int(sch.get(rc).extent), int(sch.get(bi).extent)
    lanes = pack_lanes(preset)
    kc = divisor(channels, preset.l2_kib * 1024 * PANEL_SHARE // (4 * block))
    tail = has_block(sch, "conv2d_pointwise_tail")
    in_place = kc == channels and reads_in_place(sch, channels * blocks * block, oh * ow, padded, tail, preset, tile)
    copies = kc == channels and not tail and not in_place  # (the chunks copy their own panels)
    chunk = tile * chunk_tiles(padded // tile, preset.l2_kib * 1024 * L2_SHARE // (4 * kc * tile), n if copies else 0)
    if copies and one_chunk(preset, channels, blocks * block, padded):
        chunk = padded
    # with a tail and more weights than pixels (ResNet-50's 7x7 layers: 2-8 MB of weights), every
    # channel block runs its whole tiles and then its tail while its weights are in cache: the
    # weights stream from memory once, not once per pixel chunk plus once for the tail (in
    # ResNet-50, AVX2, 1 thread: 1024->2048 s2 @7 6.1 -> 4.3 ms, 2048->512 @7 2.3-2.4 -> 2.0-2.1).
    # Only in a parallel region: in a serial function the merged loop's pointers outnumbered x86's
    # registers and LLVM reloaded one from the stack in the tail's FMA loop. A tail of a few pixels
    # is a loop of its own, streaming the weights again (see tail_gemm: merged, each output channel's
    # sum was one chain of dependent FMAs; AVX2, 1 thread, thread-time minima, standalone 2048->512
    # @7 (4 MB) merged 1.43 ms, not 1.25; 960->160 @7 0.202 -> 0.191 with the tail's chains over blocks).
    # Tried and not kept (MobileNet v1, AVX2, 1 thread, in model, kab minima both orders): merged per
    # group of the tail's channel blocks (the main blocks split alike): 1024->1024 @7 + global pool's
    # tail 10.2% -> 4.7% of the kernel (perf) but the whole tiles slower, 1.155 -> 1.166 / 1.179 ->
    # 1.152 ms (noise); a prefetch into L2 of the next channel block's weights (> L2 in all), a share
    # before each tile's reduction: 512->512 @14 -2% / +1% (noise), 1024->1024 @7 +14%, 512->1024
    # @7 +8% (a third of 24 KB per tile, a burst); inside the reduction loop it kept LLVM from holding
    # the accumulators in registers (stored every step).
    few = tail and int(sch.get(sch.get_loops(sch.get_sblock("conv2d_pointwise_tail"))[3]).extent) % lanes
    merge = par and tail and not few and kc == channels and blocks * block > padded \
        and kc * (padded + tile) * 4 <= preset.l2_kib * 1024
    # a one-pixel tail folded into each channel block's last whole tile (see fold_tail), all the
    # tiles one chunk where their panels and a block's weights fit in L2 (2048->512 @7: 3 chunks
    # of one tile before); only where the tail's accumulator leaves a register for its pixel
    # (6 x 16 tiles on AVX2: a 4 x 24 tile's spilled, 512->512 @5x29 0.793 -> 0.834 ms; so did a
    # two-pixel tail's); in a parallel region only, as `merge` (serial, LLVM reloaded the head
    # tiles' panel pointer from the stack in their reduction loop: test_schedules' 1024->128 @7)
    fold = par and tail and few == 1 and kc == channels and not in_place and not merge \
        and kc * (padded + block) * 4 <= preset.l2_kib * 1024 and (block + 1) * (tile // lanes) + 2 <= preset.regs
    if merge or fold:
        chunk = padded
    qo, qc, qv, qi = sch.split(q, [None, chunk // tile, tile // lanes, lanes])
    done, fused, prefetch, writes, residual = ["conv2d_pointwise", "conv2d_unpack"], False, None, None, None
    if kc == channels:
        at = bi if in_place else qc
        sch.reorder(*((nn, qo, qc, bi) if in_place else (nn, qo, bi, qc)), rc, oi, qv, qi)
        if padded == oh * ow or in_place or not tail and padded_last_tile(preset, channels, block, oh * ow, tile):
            acc = sch.cache_write(conv, 0, ACC_SCOPE)
            sch.reverse_compute_at(acc, at)
            sch.vectorize(sch.get_loops(acc)[-1])
            fused = write_back_at(sch, acc, unpack, at, ow, padded == oh * ow)
            if fused and not in_place and padded == oh * ow and preset.arch == "x86_64":
                residual = (sch.get(qc).loop_var, block, tile)
        chunks = n * -(-padded // chunk)
        if in_place:
            x = pixels_input(sch)
            sch.compute_inline(sch.get_sblock("conv2d_pixels_copy"))
            done.append("conv2d_pixels_copy")
            # a padded last tile: the images a loop of their own (LoopPartition splits the tile loop
            # at the `likely` bound; over images x tiles, batch 2 failed: "Cannot unroll non-constant loop")
            image = nn if padded > oh * ow and n > 1 else None
            tiles = sch.fuse(qo, qc) if image else sch.fuse(nn, qo, qc)
            parallel(sch, tiles, par)
            locality = prefetch_locality(preset, channels, o, channels * blocks * block, block * tile)
            if locality:
                t = sch.get(tiles).loop_var
                of = (sch.get(image).loop_var, t) if image else (t // (padded // tile), t % (padded // tile))
                prefetch = (x, *of, sch.get(rc).loop_var, tile, locality)
                if channels <= OUT_PREFETCH_CHANNELS:
                    writes = (sch.get(unpack).writes[0].source, of[0], of[1] + 1, sch.get(bi).loop_var, block, tile)
        elif chunks > 1 and not tail:
            copy_per_chunk(sch, nn, qo, bi, chunks, blocks, lanes, par, input_plane(sch) != oh * ow)
            done.append("conv2d_pixels_copy")
        else:
            outer = sch.fuse(nn, qo, bi)
            parallel(sch, outer, par and not merge)
        init_at = rc
    else:
        rco, rci = sch.split(rc, [None, kc])
        bo, bi = sch.split(bi, [None, -(-blocks // PARALLEL_PARTS)]) if blocks > PARALLEL_PARTS else (None, bi)
        sch.reorder(*[l for l in (nn, qo, bo) if l is not None], rco, bi, qc, rci, oi, qv, qi)
        outer = sch.fuse(*[l for l in (nn, qo, bo) if l is not None])
        parallel(sch, outer, par)
        init_at = rco
    sch.unroll(oi)
    sch.unroll(qv)  # one vector register per (channel, vector) accumulator
    sch.vectorize(qi)
    folded = None
    if fold:
        # (the tail's pixels folded into each channel block's last tile: see fold_tail)
        t_block = sch.get_sblock("conv2d_pointwise_tail")
        t_outer, t_rc = fold_tail_loops(sch, t_block)
        folded = [t_outer, t_rc, outer, qc, rc]
    elif tail:
        t_block = sch.get_sblock("conv2d_pointwise_tail")
        t_outer, t_rc = tail_gemm(sch, t_block, preset, par and not merge)
        if merge:
            parallel(sch, sch.merge(outer, t_outer), par)
        if t_rc is not None:
            sch.decompose_reduction(t_block, t_rc)
    sch.decompose_reduction(conv, init_at)
    if not fused:
        write_back_pass(sch, unpack, ow, lanes, par and pass_forks(sch, unpack))
    if "conv2d_pixels_copy" not in done:  # the input panels in a pass of their own
        copy = sch.get_sblock("conv2d_pixels_copy")
        generic._schedule_block(sch, copy, lanes, par and pass_forks(sch, copy))
        done.append("conv2d_pixels_copy")
    if tail:  # the tail's panel (compiler/lower/packed.py), a pass of its own too
        copy = sch.get_sblock("conv2d_pixels_copy_tail")
        generic._schedule_block(sch, copy, lanes, par and pass_forks(sch, copy))
        if folded:
            folded.append(sch.get_loops(copy)[0])
    schedule_rest(sch, preset, done, par)
    if folded:
        folded = [sch.get(loop).loop_var for loop in folded] + [int(sch.get(qc).extent)]
    func = simplified(sch.mod["main"])
    func = fold_tail(func, *folded) if folded else func
    func = prefetch_next_tile(func, *prefetch) if prefetch else func
    func = prefetch_residual(func, *residual) if residual else func
    return prefetch_writes(func, *writes) if writes else func


def pass_forks(sch, block):
    """Whether a pass of its own (the panel copy, the write-back) of a parallel GEMM forks the pool
    again: where the bytes it streams (reads and writes) are worth a parallel region. A small
    expansion forked up to three times (SqueezeNet's 48->192 @13: a 67 KB copy, the GEMM, the
    write-back); its copy now runs on the calling thread (see worth_parallel for its numbers;
    64->256 @13, copy 90 KB, 2 threads, per-kernel minima: 0.042 -> 0.040 ms)."""
    nbytes = sum(buffer_bytes(r.source) for r in (*sch.get(block).reads, *sch.get(block).writes))
    return worth_parallel({}, streamed=nbytes)


def simplified(func):
    """FUNC with its index expressions simplified: the write-back's flat pixel index, rebuilt from
    its (row, column) by transform_block_layout (write_back_at), reads the accumulators at
    `q // ow * ow + q % ow`, which CompactBufferAllocation bounds only as the whole pixel range:
    the tile's accumulators became a (block, pixels) buffer in memory, zeroed, stored and reloaded
    around every tile, instead of registers."""
    import tvm
    from tvm import s_tir
    return s_tir.transform.StmtSimplify()(tvm.IRModule({"main": func}))["main"]


def reads_in_place(sch, weights, pixels, padded, tail, preset, tile):
    """Whether the GEMM runs pixel tile by pixel tile, every channel block passing over a tile
    while its input rows are in L1, read straight from the NCHW rows (the copy block inlined: each
    channel's row in its own plane) instead of from copied panels: for a projection (no more
    output than input channels, at most IN_PLACE_ROWS) whose WEIGHTS (all of them, floats) fit
    in WEIGHTS_L1_SHARE of the L1, so that each input row is read once and the copy buys nothing. Only where the panels
    would be a plain view of the rows (no stride) and without a tail (a padded last tile instead:
    see in_place, write_back_at). Measured on AVX2,
    1 thread, thread-time minima alternated, in MobileNetV2: 32->16 @112 0.288 -> 0.257 ms,
    96->24 and 144->24 @56 0.239 -> 0.195; standalone 144->24 @56 0.35 -> 0.26. Not where the
    weights do not fit (in ResNet-50, reading in place with the channel blocks outer: 256->64 @56
    1.46 -> 1.58, 512->128 @28 1.29 -> 1.40; tiles outer 1.53-1.67, without a prefetch: with one
    into L2 where the input outgrows the L2 it gains, see streams_in_place) nor for an expansion, whose
    tiles outer write one output row stream per channel (16->96 @112 0.78 -> 1.73 standalone).
    Pixels that are no whole number of tiles (SqueezeNet's 55x55, 27x27, 13x13) are where the
    pointwise convs fall behind onnxruntime: AVX2, 1 thread, thread-time minima, standalone conv +
    relu, per output pixel: 64->16 @48 (in place, write-back in the tile) 32.5 ns, @49 (the direct
    conv, pack.pointwise_gemm) 47.8 ns; 16->64 @48 37.4 ns, @49 (a tail: the write-back a pass of its
    own) 48.1 ns. The direct conv's inner loop is clean (5 pixels x 2 vectors, no spills) but runs at
    ~45 GFLOP/s whatever the input size (8x8 to 80x80: not memory-bound; an FMA loop peaks at 115).
    Tried and not kept (in SqueezeNet, thread-time minima alternated): the GEMM with a tail for these
    projections, copied 64->16 @55 0.181 -> 0.228 ms and 128->16 @55 0.231 -> 0.405, in place 0.203
    and 0.259; reading in place expansions of <= 32 input channels (no copy pass) 0-5% standalone,
    within noise in model. The write-back in the tile with a padded last tile: the tile's bound
    (reverse_compute_at's predicate, the inlined copy's if_then_else) made every tile scalar (64->16
    @49 2.9-3.4 ms) until the bound was stated `likely` (compiler/lower/packed.py) for LoopPartition
    with partition_const_loop (compiler/build.py); pragma_loop_partition_hint does not work (TVM's
    NarrowDataType renames the loop variable, not the hint's). With it: 64->16 @55 standalone
    0.135 -> 0.107 ms, but in SqueezeNet, after the max pool, 0.154 -> 0.208 (see in_place)."""
    channels = int(sch.get(sch.get_sblock("conv2d_pixels_copy")).reads[0].source.shape[1])
    out = int(sch.get(sch.get_sblock("conv2d_unpack")).iter_vars[1].dom.extent)
    return not tail and pixels == input_plane(sch) and (
        fits_l1(preset, channels, out, weights) or streams_in_place(preset, channels, out, weights, pixels, tile))


def fits_l1(preset, in_channels, out_channels, weights):
    """A projection of at most IN_PLACE_ROWS output channels whose WEIGHTS (floats) fit in
    WEIGHTS_L1_SHARE of the L1 (see reads_in_place)."""
    return out_channels <= min(in_channels, IN_PLACE_ROWS) and weights * 4 <= preset.l1_kib * 1024 * WEIGHTS_L1_SHARE


def streams_in_place(preset, in_channels, out_channels, weights, pixels, tile):
    """Whether a projection with more weights than the L1 holds reads its input in place all the
    same (see reads_in_place): on x86, with at most STREAMED_ROWS output channels, WEIGHTS (floats)
    in PANEL_SHARE of the L2, the cache lines of a TILE's rows (PIXELS per row) in half the L1
    and an input that outgrows the L2, so that the copy into panels would read it from L3 or
    memory in a pass the FMAs wait for, where in place each tile's rows are prefetched into L2
    while the tile before computes (prefetch_locality); the weights stream from L2 once per tile.
    AVX2 (znver3), per-kernel minima alternated, copied -> in place, ResNet-50, 1 thread: 256->64
    @56 (67 KB of weights, 3.2 MB of input, a 16 KB tile) 1.213-1.217 -> 1.133-1.174 ms (three
    runs), 64->64 @56 (800 KB of input) 0.322 -> 0.310-0.321; 2 threads (load ~5) 256->64 @56
    0.639-0.650 -> 0.620-0.627, 64->64 0.183 -> 0.189 (noise level); Inception v2, 1 thread:
    64->64 @56 0.329 -> 0.292, 192->64 and 256->64 @28 0.217-0.290 -> 0.203-0.279 (x7);
    Inception v1's 64->64 @55 0.405 -> 0.344; standalone conv + relu 256->64 @56 1.251 -> 1.183.
    Not where the input fits the L2 (MobileNetV2's 384->64 @14, 300 KB, just written by the
    depthwise conv: 0.113 -> 0.139-0.156) nor where a tile's rows outgrow half the L1 (standalone
    384->32 @27, 24-pixel tiles over 2-3 lines of 384 rows: 0.255 -> 0.290), unless each row's
    piece is whole cache lines no other tile reads and the next tile's rows are prefetched into L2
    (prefetch_locality: the accumulators a stack buffer): then every channel block streams the
    tile's rows from L2 as it would its copied panel, without the copy (AVX-512's 64-pixel tiles, 4 lines
    of each of 256 rows: Zen 4, ResNet-50's 256->64 @56, in model, kab, 8 rounds, copied -> in
    place: 1 thread 1.13-1.14 -> 0.98-1.00 ms, 2 threads 0.57-0.60 -> 0.52; perf put 17% of the
    copied kernel in its panel copy, which read the rows from L3)."""
    whole = not (tile * 4 % LINE_BYTES or pixels * 4 % LINE_BYTES)  # (each line read by one tile)
    lines = -(-tile * 4 // LINE_BYTES) + (not whole)
    return preset.arch == "x86_64" and out_channels <= min(in_channels, STREAMED_ROWS) \
        and weights * 4 <= preset.l2_kib * 1024 * PANEL_SHARE and in_channels * pixels * 4 > preset.l2_kib * 1024 \
        and (in_channels * lines * LINE_BYTES <= preset.l1_kib * 1024 // 2 or whole and acc_on_stack(
            tile * pointwise_tile(preset, out_channels, pixels, in_channels=in_channels)[0]))


def in_place(preset, in_channels, out_channels, block, pixels, tile, strided):
    """Whether the layout pass gives a pointwise conv (one group) the GEMM read in place (see
    reads_in_place): with pixels that are no whole number of tiles, a padded last tile, not a tail
    (the write-back stays in the tile, see write_back_at). In SqueezeNet, AVX2, 1 thread,
    thread-time minima alternated, vs the direct conv: 128->32 @27 (373 KB of input) 0.136 ->
    0.115-0.121 ms; 64->16 @55 (774 KB, past the L2, written by the max pool just before) 0.141 ->
    0.125 since the tile's accumulators stay in registers (ACC_SCOPE; before, 0.160-0.167 -> 0.183-0.197)."""
    weights = in_channels * -(-out_channels // block) * block
    return not strided and (fits_l1(preset, in_channels, out_channels, weights)
                            or streams_in_place(preset, in_channels, out_channels, weights, pixels, tile))


def one_chunk(preset, channels, out_channels, padded):
    """Whether a copied GEMM keeps an image's PADDED pixels in one chunk, its panels copied in a pass
    of their own and the channel blocks in parallel, each passing over every tile: where its weights
    (CHANNELS x OUT_CHANNELS floats) outgrow the L2 and the whole panel fits in it. In pixel chunks
    (rows in L2_SHARE) every chunk streams all the weights from L3 again, and the chunks were the
    parallel loop: SqueezeNet's 512->1000 @13 (2 MB of weights, 11 tiles of 16 pixels) split 6/5
    over 2 threads, now 167 channel blocks. AVX2 (znver3), in model (+ relu + global pool), per-kernel
    minima alternated: 2 threads, 40 rounds, 1.081 -> 1.004 ms (20 rounds, with the threshold
    change alone: 1.129 -> 1.101); 1 thread 2.03-2.11 -> 2.04-2.06 (noise level)."""
    l2 = preset.l2_kib * 1024
    return channels * out_channels * 4 > l2 and channels * padded * 4 <= l2


def padded_last_tile(preset, channels, block, pixels, tile):
    """Whether a pointwise GEMM (one group) whose pixels are no whole number of tiles pads its last
    tile (the write-back in the tile, see write_back_at) instead of a tail (its write-back a pass
    of its own): with one reduction chunk (the weight panel in PANEL_SHARE of the L2) and at most
    PADDING_SHARE of the pixels padded. AVX2, 1 thread, thread-time minima alternated, in
    SqueezeNet: 16->64 @55 0.141 -> 0.120 ms (twice), 32->128 @27 0.106-0.113 -> 0.093-0.095;
    not at 14x14 (196 pixels padded to 216), in ResNet-50: 256->1024 + add 1.49-1.55 -> 1.57-1.61,
    1024->256 1.35-1.40 -> 1.43-1.47. At 13x13 (169 pixels padded to 176, 4.1%), in SqueezeNet,
    AVX2 (znver3), 1 thread, per-kernel minima alternated (kab), tail -> padded: 64->256 @13
    0.070-0.071 -> 0.067-0.069 ms (x2), 48->192 @13 0.042-0.043 -> 0.040-0.041 (x2); not for its
    projections, which stay the direct conv (see pack.PROJECTION_PADDING). A short reduction pads
    more (PASS_CHANNELS_PER_LANE): AVX-512 (Intel, family 6 model 207), 64-pixel tiles at 28x28
    (784 pixels, 6.1% padded), per-kernel minima alternated, tail -> padded: standalone 128->512
    + relu 1 thread 0.986 -> 0.864 ms, 2 threads 0.395 -> 0.381 (the tail's write-back pass was
    20% of the kernel, perf); MobileNetV2's 32->192 @28, 1 thread 0.095-0.102 -> 0.081-0.086 ms,
    2 threads 0.062-0.085 -> 0.057-0.063; MobileNet v1's 128->256 @28 and SqueezeNet's 27x27 and 13x13
    expansions within noise. On AVX2 and NEON it changes no layer of the zoo or the MobileNets."""
    padding = -(-pixels // tile) * tile - pixels
    share = max(PADDING_SHARE, PASS_CHANNELS_PER_LANE * pack_lanes(preset) / channels)
    return channels * block * 4 <= preset.l2_kib * 1024 * PANEL_SHARE and padding <= pixels * share


def prefetch_locality(preset, in_channels, out_channels, weights, accumulators=0):
    """The locality hint of an in-place GEMM's prefetch of the next tile's rows (WEIGHTS: floats),
    None for none: 3 (L1) where prefetches says so; 2 (L2: the L1 keeps the tile) where the GEMM
    reads in place only since its input streams (streams_in_place; in ResNet-50, AVX2, 1 thread,
    per-kernel minima alternated, 3 -> 2: 64->64 @56 0.319 -> 0.310 ms, 256->64 @56 within
    noise). None for the other projections read in place: MobileNetV2's 192->32 @28 (24 KB of
    weights) ran 0.113 -> 0.147 ms with either. None where the tile's ACCUMULATORS (floats) are
    not a stack buffer (common.acc_on_stack): the prefetch in the reduction loop reads memory that
    LLVM cannot tell from them, so it stored every accumulator in every step (AVX-512's 8 x 48
    tiles; Intel family 6 model 207, 1 thread, per-kernel minima alternated, with -> without:
    standalone 192->32 @28 + relu 0.167 -> 0.065 ms; in MobileNetV2 192->32 @28 0.172-0.181 ->
    0.071-0.078, 144->32 @28 0.132 -> 0.062, 144->24 @56 0.412 -> 0.231, 96->24 @56 0.285 ->
    0.139, 32->16 @112 0.261 -> 0.172; SqueezeNet's squeezes to 16 @55 0.131-0.133 -> 0.068-0.085)."""
    if accumulators and not acc_on_stack(accumulators):
        return None
    if prefetches(preset, weights):
        return 3
    return None if preset.arch != "x86_64" or fits_l1(preset, in_channels, out_channels, weights) else 2


def prefetches(preset, weights):
    """Whether an in-place GEMM (see reads_in_place) prefetches the next tile's input rows (see
    prefetch_next_tile): on x86, with WEIGHTS (floats) in PREFETCH_L1_SHARE of the L1 (the next
    tile's lines share the L1 with the weights and the current tile's lines: SqueezeNet's 256->32
    @27, 32 KB of weights, ran 0.170 -> 0.181 ms with them)."""
    return preset.arch == "x86_64" and weights * 4 <= preset.l1_kib * 1024 * PREFETCH_L1_SHARE


def prefetch_next_tile(func, x, n, t, rc_var, tile, locality=3):
    """FUNC with a software prefetch, in each step of the in-place GEMM's reduction loop RC_VAR, of
    the next pixel tile's cache lines in input channel rc of X (NCHW): the tile reads one short
    piece of every input row, a stream per channel, more than the hardware prefetchers follow,
    so each piece came from L3 or memory at its first use. N, T: the image and the tile (of TILE
    pixels) being computed; the pixel index is clamped to the image. One prefetch per 64 bytes of
    the tile's row, in every channel block's reduction (in the first or last block only, the gains
    were lost). AVX2 (znver3), 1 thread, in model, per-kernel minima alternated: SqueezeNet
    64->16 @55 0.159-0.164 -> 0.121-0.125 ms, 128->16 @55 0.190 -> 0.160, 128->32 @27 0.111 ->
    0.092-0.095; MobileNetV2 144->24 @56 + add 0.307-0.315 -> 0.251-0.258, 32->16 @112 0.203-0.210
    -> 0.183-0.192, 96->24 @56 0.171 -> 0.165."""
    import tvm_ffi
    from tvm import tirx
    _, _, h, w = (int(v) for v in x.shape)
    lines = []
    for k in range(-(-tile * 4 // LINE_BYTES)):
        p = tirx.min((t + 1) * tile + k * (LINE_BYTES // 4), h * w - 1)
        lines.append(prefetch(x, [n, rc_var, p // w, p % w], locality))

    def add(loop):
        if isinstance(loop, tirx.For) and loop.loop_var.same_as(rc_var):
            return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, tirx.SeqStmt(lines + [loop.body]),
                            loop.thread_binding, loop.annotations)
        return loop
    return func.with_body(tvm_ffi.structural_map(func.body, add))


def prefetch_writes(func, y, n, t, block_var, block, tile):
    """FUNC with a software prefetch for writing, before each channel block's reduction of pixel
    tile T - 1 of image N, of the cache lines that block's channels write in tile T (of TILE pixels;
    the channel and pixel clamped to output Y, NCHW), into L1: an in-place GEMM's tiles outer write
    one short piece of every output row (a stream per output channel, as its reads: see
    prefetch_next_tile), each store a miss the write-back waited on, and with a short reduction
    (at most OUT_PREFETCH_CHANNELS input channels) the write-back is a large share of a tile.
    AVX2 (znver3), per-kernel minima alternated (kab, 10 rounds), in model, 1 thread: ResNet-50's
    64->64 @56 0.324-0.374 -> 0.289-0.291 ms (three runs; into L2 alike: 0.291), 2 threads 0.189 ->
    0.176; SqueezeNet's 128->32 @27 0.077-0.079 -> 0.073 (two runs), MobileNetV2's 144->32 @28
    0.112 -> 0.107; the other projections within noise (32->16 @112, 64->16 and 128->16 @55,
    96->24 and 144->24 @56: -2% to +1%). Not with a longer reduction: ResNet-50's 256->64 @56
    ran 3-5% slower (1.161-1.168 -> 1.200-1.228 ms; into L2 alike; the current tile's lines, a
    block ahead: 2-4% slower)."""
    import tvm_ffi
    from tvm import tirx
    lines = tile_lines(y, n, block_var * block, t * tile, block, tile, write=True)

    def add(loop):  # (before the reduction loop: the first loop inside the channel block's)
        if isinstance(loop, tirx.For) and loop.loop_var.same_as(block_var):
            body = loop.body.seq if isinstance(loop.body, tirx.SeqStmt) else [loop.body]
            at = next(i for i, s in enumerate(body) if isinstance(s, tirx.For) and s.kind == tirx.ForKind.SERIAL)
            return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind,
                            tirx.SeqStmt([*body[:at], *lines, *body[at:]]), loop.thread_binding, loop.annotations)
        return loop
    return func.with_body(tvm_ffi.structural_map(func.body, add))


def tile_lines(buf, n, c0, p0, block, tile, write=False):
    """Prefetches into L1 (for reading, or for WRITE) of the cache lines of a register tile's rows in
    NCHW BUF: channels C0.. (BLOCK of them) x pixels P0.. (TILE of them) of image N, line by line,
    each channel and pixel clamped to BUF."""
    from tvm import tirx
    _, channels, h, w = (int(v) for v in buf.shape)
    lines = []
    for k in range(-(-tile * 4 // LINE_BYTES)):
        p = tirx.min(p0 + k * (LINE_BYTES // 4), h * w - 1)
        lines += [prefetch(buf, [n, tirx.min(c0 + oi, channels - 1), p // w, p % w], 3, write) for oi in range(block)]
    return lines


def prefetch_residual(func, qc, block, tile):
    """FUNC with a software prefetch, at the start of each pixel tile of loop QC (a copied GEMM's
    tiles, each with its write-back), of the cache lines the next tile's write-back reads from the
    epilogue's operands of the output's shape (a residual add's), into L1: the tiles of a channel
    block run a few in a row (a pixel chunk), a short stream per channel the hardware prefetchers
    barely learn, and the write-back waited on each line (perf, Zen 4, ResNet-50's 64->256 @56 +
    add: 21% of the kernel's samples on its residual loads). Zen 4, 1 thread, in model, per-kernel
    medians alternated (kab, 6-8 rounds, five runs): 64->256 @56 + add (3 of them) 0.88-0.97 of the
    time (1.08-1.19 -> 1.03-1.15 ms; this VM's speed drifts between runs), the AVX2 code
    (`x86-avx2`) 1.07-1.12 -> 1.00-1.01; 2 threads 0.97-0.99; the other residual adds (128->512
    @28, the AVX2 code's 14x14 and 7x7 ones) within noise. Prefetching the
    next tile's output lines for writing too gained less (1.07-1.10 ms), those alone nothing."""
    import tvm_ffi
    from tvm import tirx
    from tvm.s_tir import SBlockRealize
    from tvm.sym.analyzer import Analyzer
    from . import substitute

    def add(loop):
        if not loop.loop_var.same_as(qc):
            return loop
        found, inner = [], []
        tvm_ffi.structural_walk(loop.body, [(SBlockRealize, lambda r: found.append(r)
                                             if r.block.name_hint == "conv2d_unpack" else None)])
        tvm_ffi.structural_walk(loop.body, [(tirx.For, lambda f: inner.append(f.loop_var))])
        if not found or len(found[0].iter_values) != 3:
            return loop
        write_back = found[0]
        y = write_back.block.writes[0].source
        if not all(isinstance(d, tirx.IntImm) for d in y.shape):
            return loop
        shape = [int(d) for d in y.shape]
        residuals = [r.source for r in write_back.block.reads if not r.source.same_as(y) and
                     [int(d) if isinstance(d, tirx.IntImm) else -1 for d in r.source.shape] == shape]
        if not residuals:
            return loop
        # the tile's first channel and pixel: the write-back's bindings with its own loops at 0
        zero, ana = {v: tirx.const(0, str(v.ty)) for v in inner}, Analyzer()
        n, c0, p0 = (ana.simplify(substitute(v, zero)) for v in write_back.iter_values)
        lines = [line for r in residuals for line in tile_lines(r, n, c0, p0 + tile, block, tile)]
        return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, tirx.SeqStmt(lines + [loop.body]),
                        loop.thread_binding, loop.annotations)
    return func.with_body(tvm_ffi.structural_map(func.body, [(tirx.For, add)]))


def pixels_input(sch):
    """The pointwise conv's NCHW input buffer (what its pixel panels are copied from)."""
    return sch.get(sch.get_sblock("conv2d_pixels_copy")).reads[0].source


def input_plane(sch):
    """Pixels per channel of the pointwise conv's NCHW input (its output's, without a stride)."""
    x = pixels_input(sch)
    return int(x.shape[2]) * int(x.shape[3])


def chunk_tiles(tiles, most, n):
    """Pixel tiles per chunk: the largest divisor of TILES up to MOST; where the chunks copy their own
    panels (N: the batch, else 0; see copy_per_chunk) and their number is odd, one that makes it even
    instead, so that threads share whole chunks and copy_per_chunk need not split the channel blocks
    in halves, each copying the chunk (at 1 thread, twice the copy): the largest divisor that does,
    if at least half as large, else the fewest even number of chunks, none larger than that divisor,
    of equal size but the last (49 tiles: 7 x 7 -> 9 x 5 + 4). AVX2, 1 thread, thread-time minima
    alternated, in model: MobileNet v1's 128->128 @56 (7 chunks of 28 tiles -> 14 of 14) 1.30-1.31
    -> 1.20-1.22 ms; ResNet-50's 512->128 @28 (7 of 7 -> 10 of 5) 1.31-1.38 -> 1.22-1.29, 128->512
    @28 + add 1.33-1.40 -> 1.24-1.32 (2 threads: 512->128 0.85-1.01 -> 0.69-0.83)."""
    best = divisor(tiles, most)
    if not n or n * (tiles // best) % 2 == 0 or tiles == best:
        return best
    even = [d for d in range(-(-best // 2), best + 1) if tiles % d == 0 and n * (tiles // d) % 2 == 0]
    if even:
        return max(even)
    for k in range(2 * -(-tiles // (2 * best)), tiles + 1, 2):
        if -(-tiles // -(-tiles // k)) == k:
            return -(-tiles // k)
    return best


def copy_per_chunk(sch, nn, qo, bi, chunks, blocks, lanes, par, strided):
    """The input panels of each pixel chunk copied right before the channel blocks pass over them
    (still in L2), in parallel over the chunks; with an odd number of chunks, over halves of the
    channel blocks too (each half copies its chunk: threads stay balanced). Measured on AVX2 in
    ResNet-50, 1 thread, vs a pass copying all panels first: 256->64 @56 0.72-0.75, 512->128 @28
    0.82-0.90, 64->256 @56 + add 0.90-0.92 of the time. Not over halves from a strided input
    (each half's copy is a gather; Zen 4, ResNet-50's 1x1 s2 256->512 @28, 17 chunks, kab, halves
    -> none: 1 thread 2.52 -> 2.44 ms, 2 threads 1.33 -> 1.26; on x86 the subsample pass now gives
    such a conv a stride-1 input). The copy runs tile by tile (a read stream
    per channel, one write stream) or, without a stride and with fewer tiles than channels in a
    chunk, channel by channel (one read stream, a write stream per tile). In model, AVX2,
    thread-time minima alternated, tile by tile -> channel by channel: ResNet-50, 1 thread,
    256->64 @56 1.47-1.50 -> 1.40-1.42 ms (14 tiles), 128->512 @28 + add 1.42-1.44 -> 1.36-1.41
    (7), 512->128 @28 within noise; but 1x1 s2 256->512 @28 (a gather) 2.71 -> 3.04, and
    MobileNetV2's 16->96 @112 (196 tiles) at 2 threads 0.65-0.67 -> 0.71-0.74. The copy is where
    these layers trail onnxruntime (which runs NCHWc and copies nothing): perf, AVX2, 1 thread, in
    model, share of the kernel's time: 256->64 @56 22%, 512->128 @28 16% (then copied twice: see
    chunk_tiles), MobileNet v1's 128->128 @56 19% (the same). Tried and not kept (in model,
    thread-time minima alternated): a software prefetch of the channel two rows ahead (256->64 @56
    1.38-1.39 -> 1.34-1.37 ms, the rest within noise); the chunk's panels in a quarter of L2, not
    half (within noise in model; 256->64 @56 standalone 1.66 -> 1.38-1.55); a prefetch of the next
    chunk's rows in each reduction step of every channel block (ResNet-50, per-kernel minima:
    256->64 @56 1.21-1.24 -> 1.33-1.37, 64->256 @56 + add 1.14-1.16 -> 1.45-1.54, into L1 or
    L2 alike); the tiles outer and the channel blocks inner within a chunk (each tile's panel in
    L1 for all blocks: 256->64 @56 1.21 -> 1.22-1.23, 64->64 @56 0.323 -> 0.337)."""
    parts = 2 if chunks % 2 and blocks % 2 == 0 and not strided else 1
    bo = sch.split(bi, [parts, None])[0] if parts > 1 else None
    outer = sch.fuse(*[l for l in (nn, qo, bo) if l is not None])
    parallel(sch, outer, par)
    copy = sch.get_sblock("conv2d_pixels_copy")
    sch.compute_at(copy, outer)
    t, cc = sch.get_loops(copy)[-3:-1]
    if not strided and int(sch.get(t).extent) < int(sch.get(cc).extent):
        try:
            sch.reorder(cc, t)
        except Exception:  # noqa: BLE001 - pixels padded to whole tiles: the copy's loops hold a branch
            pass  # (Inception v1's 1x1s @13: 169 pixels), it stays tile by tile
    generic._schedule_block(sch, copy, lanes, False)


def write_back_pass(sch, unpack, ow, lanes, par):
    """The write-back as a pass over the output rows, parallel over channels, each row's pixels as
    one flat index in whole vectors and a scalar tail split off (a vectorized loop with a tail
    would be scalar throughout; in the padded GEMM's last tile it was, measured on AVX2: 0.80-0.98
    of the time as this pass, e.g. 1024->512 @14 0.85/0.89, 512->1000 @13 0.80/0.87)."""
    if len(sch.get(unpack).iter_vars) == 4:  # (write_back_at may have flattened it already)
        sch.transform_block_layout(unpack, lambda nn, f, yy, xx: (nn, f, yy * ow + xx))
    nn, f, q = sch.get_loops(unpack)
    pixels = int(sch.get(q).extent)
    whole = pixels // lanes * lanes
    parallel(sch, sch.fuse(nn, f), par)
    if 0 < whole < pixels:
        q, _ = sch.loop_partition(q, [whole, None])
    if whole:
        sch.vectorize(sch.split(q, [None, lanes])[1])


def write_back_at(sch, acc, unpack, qc, ow, whole=True):
    """Move the write-back (bias, epilogue) into the accumulator tile at loop QC: its pixels
    iterate as one flat index (the GEMM's), it reads the accumulators in place of their copy.
    False where a grouped conv's channel map keeps it out of the tile: it stays a pass of its own
    (the accumulators are then written straight to the block buffer, without the copy).
    Pixels padded to whole tiles (not WHOLE) give each tile's write-back a bound check, which TVM
    vectorizes as scalar code: there the tile loop is split before the last tile by LoopPartition
    (at the `likely` bound, compiler/lower/packed.py), and the write-back is unrolled instead of
    vectorized, so that in the whole tiles the simplifier drops the check and LLVM vectorizes the
    stores (the unrolled accumulators stay in registers). Measured on AVX2, 1 thread, thread-time
    minima, standalone conv + relu 64->16 @49 (in place, 101 tiles of 24): 0.137 ms as the direct
    conv, 0.099 this way (the vectorized write-back with its check: 3.4 ms). The next tile's
    residual lines are prefetched before each tile's reduction (prefetch_residual; on znver3's
    AVX2 6 x 16 tiles that was 0-2%, noise; on Zen 4 it gains 10%); one line per reduction step
    instead lost (ResNet-50, AVX2, 1 thread, kab minima: 64->256 @56 + add 1.18-1.19 -> 1.32 ms,
    the step's channel and line cost a division each)."""
    sch.transform_block_layout(unpack, lambda nn, f, yy, xx: (nn, f, yy * ow + xx))
    sch.compute_inline(acc)
    try:
        sch.reverse_compute_at(unpack, qc)
    except Exception:  # noqa: BLE001 - TVM's ScheduleError
        return False
    channels, pixels = sch.get_loops(unpack)[-2:]
    sch.unroll(channels)  # (constant indices: LLVM keeps the accumulators in registers)
    tile = int(sch.get(pixels).extent)
    if whole and tile % ow == 0 and tile > ow:
        # a tile of whole rows: a vector per row (one spanning two rows stored element by element)
        rows, pixels = sch.split(pixels, [tile // ow, ow])
        sch.unroll(rows)
    if whole:
        sch.vectorize(pixels)
    else:
        sch.unroll(pixels)
    return True


def tail_gemm(sch, tail, preset, par):
    """The GEMM of the pixels after the whole tiles (see compiler/lower/packed.py): per channel
    block one register tile of `block` channels x its few pixel vectors, the reduction innermost.
    Returns its loop over the channel blocks and its reduction loop (the caller may merge the
    former with the whole tiles' and then decomposes the reduction; None: done here).
    A tail of a few pixels, not whole vectors (pack.pointwise_tail), broadcasts each pixel against
    the block's channels (a vector of `block` lanes), TAIL_CHAINS sums in flight so that
    independent FMAs overlap: those of as many neighbouring channel blocks (the last group
    partial); with fewer blocks, the reduction cut into partial sums (rfactor), then totalled
    (LLVM may fold such partial sums back into one chain: with fast-math they are reassociable).
    Measured on AVX2, 1 thread, thread-time minima alternated, vs one whole pixel vector for
    7x7 = 3 x 16 + 1 pixels: 2048->512 @7 1.49 -> 1.35 ms, 512->2048 @7 1.73 -> 1.44 standalone.
    A tail of whole vectors that took in the last whole tile (pack.pointwise_tail) runs in
    sub-tiles of pack.tail_vectors vectors, each a pass over the reduction (8 accumulators for
    4 x 24 tiles). Tried and not kept: the one-vector tail of 4 x 24 tiles with its reduction cut
    in two partial sums (rfactor, 8 chains): LLVM spilled two of them, MobileNet v1's 512->512 @14
    1.137-1.145 -> 1.132-1.143 ms (noise)."""
    lanes = pack_lanes(preset)
    nn, bi, oi, q, rc = sch.get_loops(tail)
    few = int(sch.get(q).extent)
    if few % lanes and int(sch.get(bi).extent) >= TAIL_CHAINS // few:
        bo, bc = sch.split(bi, [None, max(1, TAIL_CHAINS // few)])
        sch.reorder(nn, bo, rc, bc, q, oi)
        outer = sch.fuse(nn, bo)
        parallel(sch, outer, par)
        pixel_accumulators(sch, tail, outer, [bc, q], oi)
        return outer, rc
    if few % lanes:
        chains = divisor(int(sch.get(rc).extent), max(1, TAIL_CHAINS // few))
        rf = sch.rfactor(sch.split(rc, [None, chains])[1], 0)
        sch.set_scope(rf, 0, "local")
        nn, bi, oi, q, rci = sch.get_loops(tail)
        outer = sch.fuse(nn, bi)
        parallel(sch, outer, par)
        sch.compute_at(rf, outer)
        f_rci, f_oi, *f_q, f_rco = sch.get_loops(rf)[1:]  # (compute_at drops a single pixel's loop)
        sch.reorder(f_rco, f_rci, *f_q, f_oi)
        for loop in (f_rci, *f_q):
            sch.unroll(loop)
        sch.vectorize(f_oi)
        sch.decompose_reduction(rf, f_rco)
        sch.decompose_reduction(tail, oi)
        return outer, None
    vectors = few // lanes
    sub = tail_vectors(preset, int(sch.get(oi).extent), vectors)
    if sub < vectors:  # (a tail that took in the last whole tile: sub-tiles, see pack.pointwise_tail)
        qs, qv, qi = sch.split(q, [None, sub, lanes])
        sch.reorder(nn, bi, qs, rc, oi, qv, qi)
    else:
        qs, (qv, qi) = None, sch.split(q, [None, lanes])
        sch.reorder(nn, bi, rc, oi, qv, qi)
    outer = sch.fuse(nn, bi)
    parallel(sch, outer, par)
    acc = sch.cache_write(tail, 0, ACC_SCOPE)
    sch.reverse_compute_at(acc, qs if qs is not None else outer)
    sch.vectorize(sch.get_loops(acc)[-1])
    sch.unroll(oi)
    sch.unroll(qv)
    sch.vectorize(qi)
    return outer, rc


def fold_tail_loops(sch, tail):
    """The loops of a few-pixel tail GEMM to be folded into the whole tiles (fold_tail): per channel
    block (the images and blocks fused, as the whole tiles'), the reduction, then the pixels and the
    block's channels (a vector); one accumulator per pixel. Returns (block loop, reduction loop)."""
    nn, bi, oi, q, rc = sch.get_loops(tail)
    sch.reorder(nn, bi, rc, q, oi)
    outer = sch.fuse(nn, bi)
    pixel_accumulators(sch, tail, outer, [q], oi)
    sch.decompose_reduction(tail, rc)
    return outer, rc


def pixel_accumulators(sch, tail, outer, unrolled, channels):
    """A few-pixel tail's sums in registers: its accumulators per iteration of OUTER (unrolled: one
    register each), the loops UNROLLED, the block's CHANNELS a vector (a pixel broadcast against them)."""
    acc = sch.cache_write(tail, 0, ACC_SCOPE)
    sch.reverse_compute_at(acc, outer)
    for loop in sch.get_loops(acc)[1:]:
        sch.unroll(loop)
    for loop in unrolled:
        sch.unroll(loop)
    sch.vectorize(channels)


def fold_tail(func, t_outer, t_rc, outer, qc, rc, copy, tiles):
    """FUNC with the few-pixel tail GEMM (loops T_OUTER over channel blocks, T_RC its reduction)
    folded into the whole tiles' (OUTER over the same blocks, QC over TILES pixel tiles, RC their
    reduction): each block's last tile runs the tail's FMAs in its reduction loop, reading the
    block's weight vector while it is in L1 (the tile's broadcasts load the same line), its
    accumulators initialized before and written after that tile. The tail's pixel panel (its copy's
    loop COPY) is moved before the whole tiles. A tail GEMM of its own (tail_gemm) had read all the
    weights again, from L3 (perf: 9-10% of MobileNet v1's 1024->1024 @7 for 2% of its pixels);
    folded, the tile's loop is 13 FMAs per step instead of 12, one weight vector assembled from two
    loads (6 lanes). AVX2 (znver3), 1 thread, in model, kab per-kernel minima (10 rounds, two or
    three runs): MobileNet v1 1024->1024 @7 + global pool 1.181-1.186 -> 1.134-1.144 ms, 512->1024
    @7 0.578-0.584 -> 0.555-0.556 (vs onnxruntime, fastest runs: 1.09-1.10x -> 1.01x each);
    ResNet-50 1x1 s2 1024->2048 @7 2.390-2.465 -> 2.256-2.335, 512->2048 + add 1.179-1.200 ->
    1.131-1.152 (+ global pool 1.202-1.211 -> 1.140-1.148), 2048->512 1.161-1.175 -> 1.127-1.141
    (one chunk of tiles now, was three); MobileNetV2's 7x7 projections and expansions 3-8% faster
    (320->1280 + pool 0.518-0.522 -> 0.492, 960->320 0.361-0.365 -> 0.342-0.344, 160->960
    0.185-0.192 -> 0.173-0.181); SqueezeNet has no such tail (unchanged). 2 threads, quiet machine,
    kab minima (8 rounds; ResNet-50 two runs, MobileNet v1 one): ResNet-50's 1x1 s2 1024->2048 @7 1.217-1.269 -> 1.155-1.166 ms,
    512->2048 + add 0.611-0.623 -> 0.575-0.581, 2048->512 0.624-0.626 -> 0.583-0.589; MobileNet
    v1's 1024->1024 @7 + pool 0.644 -> 0.609, 512->1024 @7 0.307 -> 0.289."""
    import tvm_ffi
    from tvm import tirx
    from . import substitute
    parts = {}

    def take(loop):  # (the tail's loop nest: its parts kept, the nest itself dropped)
        if isinstance(loop, tirx.For) and loop.loop_var.same_as(t_outer):
            body = list(loop.body.seq)
            at = next(i for i, s in enumerate(body) if isinstance(s, tirx.For) and s.loop_var.same_as(t_rc))
            parts.update(before=body[:at], update=body[at].body, after=body[at + 1:])
            return tirx.Evaluate(0)
        return loop
    func = func.with_body(tvm_ffi.structural_map(func.body, take))
    as_main = {t_outer: outer, t_rc: rc}

    def fold_rc(loop):
        if isinstance(loop, tirx.For) and loop.loop_var.same_as(rc):
            return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind,
                            tirx.SeqStmt([loop.body, substitute(parts["update"], as_main)]),
                            loop.thread_binding, loop.annotations)
        return loop

    def fold(loop):
        if isinstance(loop, tirx.For) and loop.loop_var.same_as(qc):
            last = substitute(loop.body, {qc: tirx.IntImm("int64", tiles - 1)})
            last = tvm_ffi.structural_map(last, fold_rc)
            head = [tirx.For(loop.loop_var, loop.min, tiles - 1, loop.kind, loop.body, loop.thread_binding,
                             loop.annotations)] if tiles > 1 else []
            return tirx.SeqStmt([*head, *[substitute(s, as_main) for s in parts["before"]], last,
                                 *[substitute(s, as_main) for s in parts["after"]]])
        return loop

    def first_copy(seq):
        if isinstance(seq, tirx.SeqStmt):
            body = list(seq.seq)
            at = [i for i, s in enumerate(body) if isinstance(s, tirx.For) and s.loop_var.same_as(copy)]
            main = [i for i, s in enumerate(body) if isinstance(s, tirx.For) and s.loop_var.same_as(outer)]
            if at and main and at[0] > main[0]:
                body.insert(main[0], body.pop(at[0]))
                return tirx.SeqStmt(body)
        return seq
    func = func.with_body(tvm_ffi.structural_map(func.body, first_copy))
    return func.with_body(tvm_ffi.structural_map(func.body, fold))
