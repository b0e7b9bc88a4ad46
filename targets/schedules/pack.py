"""Block sizes of the packed conv2d and dense schedules, from the preset's vector width, register
count and caches. The layout pass (compiler/passes/layout.py) packs constant weights with them:
a conv2d weight becomes (blocks, I, KH, KW, block) (see compiler/ops/packed.py), the activations
keep the IR's NCHW layout.

Two register tiles: the direct conv computes `block` output channels (vectors) per input pixel
(broadcast pixels, FMAs with weight vectors); the pointwise (1x1) conv is a GEMM whose tile is
`block` output channels x `tile` pixels (pixel vectors loaded from the NCHW rows, broadcast weights),
so it writes NCHW rows straight from its accumulators.
"""
from .common import divisor


def lanes(preset):
    return max(preset.vector_bits // 32, 4)


def conv_params(preset):
    """(block, max width tile): block = output channels per accumulator row (two vectors: each
    broadcast input pixel feeds two FMAs), the width tile = how many such rows fit in the vector
    registers with room for operands. AVX-512 took one-vector blocks (16 channels x 14 pixels: a
    weight load per 14 FMAs, and each FMA's broadcast a load too) until measured on an Intel
    AVX-512 machine (2 MB L2): with two vectors, ResNet-50 in model, 1 thread, per-kernel minima
    alternated, 3x3 512->512 @7 1.93 -> 1.59 ms, Winograd 64->64 @56 1.59 -> 1.38, 3x3 s2 512 @7
    1.61 -> 1.70 (the one loss); whole model 0.92x with winograd.plan's AVX-512 rule. conv_block
    keeps one vector where two pad more channels."""
    n = lanes(preset)
    block = 2 * n
    vecs = block // n
    # x86 FMAs read the weight vector from memory; aarch64's fmla needs every operand in a register,
    # and LLVM's schedule of the unrolled kernel taps keeps ~16 weight vectors live (measured: a
    # 7 x 2-vector tile spilled on cortex-a72, 6 x 2 did not; tests/test_arm_schedules.py checks)
    accumulators = preset.regs - (4 if preset.arch == "x86_64" else 20)
    return block, max(2, min(14, accumulators // vecs))


def conv_block(preset, out_channels):
    """Output channels per block of a direct or Winograd conv with OUT_CHANNELS (per group):
    conv_params' two vectors, but one on AVX-512 where two pad more channels (ShuffleNet's grouped
    1x1s, 34 channels a group: padded to 64, not 48, 0.12 -> 0.16 ms in model, 1 thread)."""
    block, _ = conv_params(preset)
    n = lanes(preset)
    if n >= 16 and -(-out_channels // block) * block > -(-out_channels // n) * n:
        return n
    return block


def conv_width_tile(preset, ow):
    """Output pixels per direct-conv register tile for rows of OW pixels where one size covers the
    row (a flat row, channels-last; else conv_width_tiles). Rows padded to whole tiles (`width_tile`,
    conv_row_padding): the tile wins whose tiles cost least in all, a tile costing
    about one pixel more than its pixels (fitted on AVX2, 128->128 3x3 @72, thread time: 18 tiles
    of 4 pixels 21.3 ms, 12 tiles of 6 pixels 19.7 ms); on a tie, the one that pads least."""
    _, most = conv_params(preset)
    if ow <= most:
        return ow
    return min(range(max(1, most // 2), most + 1),
               key=lambda t: (-(-ow // t) * (t + 1), -(-ow // t) * t - ow, -t))


def conv_width_tiles(preset, ow):
    """The direct conv's register tiles along a row of OW pixels: [(tile, count), ...] covering it
    exactly (no padded pixel, no partial tile): `count` tiles of one size, then at most two single
    tiles (TVM splits only a loop that starts at 0: the first part's). The cheapest cover
    (cover_cost) wins, on a tie the one with fewer parts."""
    _, most = conv_params(preset)
    if ow <= most:
        return [(ow, 1)]
    plans = []
    for t in range(most, 1, -1):
        for k in range(ow // t, 0, -1):
            left = ow - k * t
            if left <= most:
                plans.append([(t, k)] + ([(left, 1)] if left else []))
            elif left <= 2 * most:
                plans.append([(t, k), (-(-left // 2), 1), (left // 2, 1)])
    return min(plans, key=lambda plan: (cover_cost(preset, plan), len(plan)))


def tile_cost(preset, t):
    """The cost, in pixels, of a direct-conv register tile of T pixels: max(t, full) + 1, where
    `full` tiles hold the 8 accumulator vectors that keep the two FMA pipes busy through their
    latency (conv_width_tile's "one pixel more"; fewer accumulators leave the pipes idle)."""
    block, _ = conv_params(preset)
    return max(t, -(-8 // (block // lanes(preset)))) + 1


def cover_cost(preset, tiles):
    """The cost of a row covered by TILES [(tile, count), ...] (tile_cost each)."""
    return sum(k * tile_cost(preset, t) for t, k in tiles)


def conv_row_padding(preset, ow):
    """The `width_tile` the layout pass gives a direct conv: rows padded to whole tiles of
    conv_width_tile only where those cost less than the exact cover of conv_width_tiles; else 1 (no
    padding: the NCHW schedule covers the row with tiles of two or three sizes; measured on AVX2, 1
    thread, thread-time minima alternated, 3x3 128->128 @56 + relu, 14 tiles of 4 -> 8 of 6 and
    two of 4: 11.58 -> 11.15 ms)."""
    t = conv_width_tile(preset, ow)
    padded = -(-ow // t) * tile_cost(preset, t)
    return t if ow % t and padded < cover_cost(preset, conv_width_tiles(preset, ow)) else 1


def conv_cache_blocks(preset, channels, taps, oh, ow, block, input_plane=None):
    """(input channels per chunk, output rows per band) of the direct conv: the reduction runs one
    chunk of input channels at a time over a band of output rows, so that the chunk's weights
    (channels x taps x block) stay in L1 while every pixel of the band uses them, and the band's
    partial sums (rows x OW x block) in a sixteenth of L2 (measured on AVX2 vs one pass over all
    channels per pixel tile: 1.6x at 128->128 @56, 1.4x at 512->512 @7). The weights take a quarter
    of L1, or up to half where the chunk's input for the band fits in the other half (fewer chunks:
    each register tile loads and stores its accumulators once per chunk). INPUT_PLANE: (rows,
    columns, kernel rows) of the padded input, None for a quarter. AVX2, 1 thread, in model
    (ResNet-50), per-kernel minima alternated, 4 runs, chunks of 8 -> 16 channels: 3x3 512->512 s2
    @7 -0.15 to -0.20 ms in 3 runs (+0.03 in one) of 3.4-3.7, s1 @7 about -0.02 of 3.3; where the
    band's input of 16 channels outgrew half of L1 (256->256 s2 @14, 57 KB), +0.05 of 3.0: there a
    quarter."""
    band = divisor(oh, max(1, preset.l2_kib * 1024 // 16 // (ow * block * 4)))
    weights = taps * block * 4
    most = preset.l1_kib * 1024 // 4 // weights
    if input_plane is not None:
        h, w, kh = input_plane
        rows = min(h, -(-h * band // oh) + kh)  # input rows of a band of output rows
        fits = preset.l1_kib * 1024 // 2 // (rows * w * 4)
        most = max(most, min(2 * most, fits))
    return divisor(channels, max(1, most)), band


def conv_flat_rows(preset, kh, kw, oh, ow, nchw=True):
    """Whether a KHxKW direct conv (NCHW; a 1x1 on x86 only) with OH output rows of OW pixels computes all
    its output pixels as one flat row (compiler/lower/packed.py: register tiles spanning image rows)
    instead of row by row: where a row is narrower than the widest tile, or where the flat row's
    tiles (conv_flat_tile, the last one partial) cost less than OH rows of conv_width_tiles (tile_cost
    each); on a tie, rows (the flat tile's per-pixel
    addresses cost a little). Measured on AVX2, 1 thread, thread-time minima alternated, standalone
    conv+relu, rows -> flat: 3x3 512->512 @7 3.75 -> 3.29 ms, 64->256 @13 0.570 -> 0.545, 256->256
    @10 1.29 -> 1.36 (a tie: rows); before the exact covers: 256->256 @14 2.84 -> 3.22, 512->512
    @4 1.28 -> 1.21."""
    _, most = conv_params(preset)
    pointwise = kh * kw == 1
    if not nchw or pointwise and preset.arch != "x86_64":  # (a flat 1x1 measured on AVX2 only)
        return False
    if ow < most:
        return True
    t = conv_flat_tile(preset, oh * ow, pointwise)
    return -(-(oh * ow) // t) * tile_cost(preset, t) < oh * cover_cost(preset, conv_width_tiles(preset, ow))


def conv_flat_tile(preset, pixels, pointwise=False):
    """The register tile of a direct conv's flat row of PIXELS (one size, a partial last tile):
    conv_width_tile where it divides the row or the conv is 1x1 (POINTWISE), else the tile that
    wastes the fewest lanes (larger wins ties): a flat row is not padded (see conv_flat_rows).
    A 1x1's flat row (SqueezeNet's projections: 169 pixels in 28 tiles of 6 and one of 1, were 13
    rows of 4 + 4 + 5): AVX2, in model, per-kernel minima alternated (kab, 16 rounds, 3 runs), 1
    thread: 512->64 @13 0.136-0.141 -> 0.123-0.127 ms, 384->64 0.097-0.102 -> 0.094-0.096, 384->48
    0.077-0.078 -> 0.072, 256->48 0.052-0.054 -> 0.049-0.050; flat in tiles of 5 (34, the last of 4):
    0.135, 0.098, 0.073, 0.051. 2 threads: 512->64 0.088-0.090 -> 0.073-0.074, 384->64 0.066-0.067
    -> 0.057-0.058, the 48s unchanged (3 channel blocks, the only parallel loop of a flat row).
    On AVX-512 a 1x1 takes a tile in [most / 2, most] that divides the row where one does: the pixels
    of a partial last tile are a condition in every tile, and LLVM kept their accumulators in memory
    (a load, FMA and store per reduction step, a chain through the store: perf of MobileNetV2's 960->160
    @7 in tiles of 10, 49 = 4 x 10 + 9, put half its samples there). Zen 5, 1 thread, in model,
    per-kernel medians alternated (kab), 49 pixels in tiles of 10 -> 7: MobileNetV2's 960->160 @7 (+ add)
    0.121 -> 0.082 ms, 960->320 0.239 -> 0.163, 320->1280 0.298 -> 0.237; ResNet-50's six 7x7
    1x1s 0.61-1.25 -> 0.46-0.94 ms (0.75-0.78x). Not on AVX2: 196 pixels in tiles of 4, not 6 (the
    last of 4), lost 4-8% (MobileNetV2's 14x14 projections, same machine, `x86-avx2`)."""
    t, most = conv_width_tile(preset, pixels), conv_params(preset)[1]
    if pixels % t and pointwise and preset.vector_bits >= 512:
        return next((d for d in range(most, max(1, most // 2) - 1, -1) if pixels % d == 0), t)
    return t if pixels % t == 0 or pointwise else width_tile(pixels, most)


def width_tile(ow, most):
    """The tile size <= MOST that wastes the fewest lanes on OW pixels (larger wins ties)."""
    if ow <= most:
        return ow
    return min(range(max(1, most // 2), most + 1), key=lambda t: (-(-ow // t) * t - ow, -t))


ROWS_MAX_CHANNELS = 32  # input channels up to which a stride-1 KxK conv runs over padded rows
ROWS_MAX_STRIDED = 64  # input channels x taps up to which a strided conv does
ROWS_STEM_CHANNELS = 4  # input channels up to which a strided conv does with any kernel (stems)


def conv_rows_tile(preset, weight_shape, oh, ow, wq, strides, groups):
    """(block, tile) of the direct conv over padded rows (compiler/lower/packed.py `_rows`) for an
    (O, I, KH, KW) weight, or None. That form computes each output row over the WQ / S1 pixels of
    a padded row's phase plane (the extra columns are dropped) with the pointwise GEMM's register
    tile (pointwise_tile), so its accumulators are NCHW rows: the write-back is a vector copy
    instead of a transpose of channel vectors, which pays where few input channels make the
    write-back a large share (measured on AVX2, thread time: 16->64 @55 1.06 -> 0.84 ms, 32->128
    @27 1.02 -> 0.90 ms; 64->64 @56 3.36 -> 3.66 ms, and 48->192 @13, whose 15-pixel padded rows
    waste 2/15, 0.42 -> 0.48 ms). A strided conv reads its phase planes less efficiently (and
    copies them with a gather): only a short reduction pays (stems, 1 thread, thread time min:
    3x3 s2 3->64 @224 2.3 -> 1.5 ms, 3->32 @224 1.09 -> 0.77, 6->32 @160 0.52 -> 0.45; but 5x5
    3->32 @224 1.26 -> 1.54, 7x7 3->64 @224 4.2 -> 4.7, 3x3 16->64 @112 1.22 -> 1.26). x86 only:
    NEON's tile was not measured. Returns (block, tile, band): the output rows are computed in
    bands (conv_rows_band), each written back while its partial sums are in cache; a pass of its
    own over all the partial sums (3.2 MB for SqueezeNet's stem) had cost as much as the reduction
    (measured on AVX2, 1 thread, standalone, thread-time minima alternated, one pass -> bands:
    3x3 3->64 @224 5.2-6.0 -> 4.6-4.8 ms, s2 3->64 @224 + relu + max pool 1.15-1.40 -> 1.03-1.06,
    32->128 @27 0.73-0.81 -> 0.70-0.75, 16->64 @55 and s2 3->32 @224 within noise; with the bands
    16->64 s2 @112 and 64->64 @56 stay slower than the direct conv: 0.97 -> 1.06, 3.08 -> 3.26).
    A strided conv with at most ROWS_STEM_CHANNELS input channels (a stem) runs over rows whatever
    its kernel, its channels in one chunk (conv_rows_chunk) and a large kernel's rows a loop
    (conv2d.ROWS_UNROLL_TAPS): 7x7 s2 3->64 @224 4.15 -> 3.98 ms, 5x5 s2 3->32 @224 1.20 -> 1.11
    (before those two, over rows: 4.2 -> 4.7, 1.26 -> 1.54)."""
    out_channels, channels, kh, kw = (int(v) for v in weight_shape)
    wq = -(-wq // strides[1])  # (a stride-S conv reads phase planes of WQ / S columns)
    strided = any(s != 1 for s in strides)
    if (preset.arch != "x86_64" or groups != 1 or (wq - ow) * 8 > wq or channels > ROWS_MAX_CHANNELS
            or strided and channels * kh * kw > ROWS_MAX_STRIDED and channels > ROWS_STEM_CHANNELS):
        return None
    block, tile = pointwise_tile(preset, out_channels, oh * wq, write_back_pass=True)
    if oh == 1 and wq < tile:  # one output row narrower than a tile (a 1x1 s3 conv's one pixel):
        return None            # TVM could not place its write-back; the direct conv
    return block, tile, conv_rows_band(preset, oh, wq, block, tile)


def conv_row_width(preset, channels, ow):
    """The padded row width of a stem's row conv (at most ROWS_STEM_CHANNELS input channels, the
    whole reduction in one chunk): OW in whole pixel vectors, each register tile in one output row
    and written to NCHW from its registers (compiler/lower/packed.py `_tiled_rows`); 0 for a row
    conv with more channels, which computes bands of rows (conv_rows_band)."""
    n = lanes(preset)
    return -(-ow // n) * n if channels <= ROWS_STEM_CHANNELS else 0


def conv_rows_band(preset, oh, wq, block, tile):
    """Output rows per band of the row conv: the band's partial sums (rows x WQ x block) in a
    quarter of L2, written back to NCHW band by band while they are in cache. Each band's pixels
    are padded to whole tiles and the last band may run past OH: the band that computes the
    fewest pixels in all wins (on a tie the larger), at least 2 rows where OH has them (bands of
    one row measured 1.3x slower at 16->64 @55). Measured on AVX2, 1 thread, standalone,
    thread-time minima alternated, partial sums in 1/16 -> 1/4 of L2: 3x3 3->64 @224 4.3-4.5 ->
    3.85-3.92 ms, s2 3->32 @224 0.549 -> 0.523, 16->64 @55 0.784 -> 0.753, 32->128 @27 0.728 ->
    0.710, s2 3->64 @224 + relu + max pool 1.18 -> 1.15; 7x7 s2 3->64 @224 within noise (half of
    L2: the same within noise; 1/64: slower)."""
    most = min(oh, max(2, preset.l2_kib * 1024 // 4 // (wq * block * 4)))
    return min(range(min(2, oh), most + 1), key=lambda b: (-(-oh // b) * -(-(b * wq) // tile) * tile, -b))


def conv_rows_chunk(preset, channels, kh, kw, block, streams):
    """Input channels per chunk of the row conv: a chunk's weights in a quarter of L1 and at most
    48 input rows streamed at once (STREAMS per channel: kh, times the column phases a strided
    conv reads; with a pass of its own writing back all partial sums, 32 channels x 3 rows had
    run 0.92x as fast as 8 x 3 at 16->64 @55; with bands written back, in SqueezeNet, AVX2, 1
    thread, thread-time minima alternated, 24 -> 48 rows: 16->64 @55 0.778 -> 0.750 and 0.717 ->
    0.711 ms, 32->128 @27 0.681 -> 0.674 and 0.680 -> 0.673), and a stem's few channels
    (ROWS_STEM_CHANNELS) in one chunk (5x5 s2 3->32 @224: 1.17 ms in chunks of one channel, 1.07
    in one)."""
    streamed = max(48 // streams, min(channels, ROWS_STEM_CHANNELS))
    return divisor(channels, max(1, min(preset.l1_kib * 1024 // 4 // (kh * kw * block * 4), streamed)))


# input channels up to which a pointwise GEMM's tile holds the smaller budget on full-width AVX-512
# too (see accumulator_budget)
SHORT_REDUCTION = 64


def accumulator_budget(preset, in_channels=None):
    """Vector registers a pointwise register tile may hold as accumulators (the rest: its loaded
    pixel vectors and a broadcast weight; at most 24, AVX-512's and NEON's 32 registers included;
    12 where AVX-512 runs on 256-bit FMA units, Zen 4: a 12-zmm tile, 768 bytes, is a stack buffer
    LLVM keeps in registers (common.acc_on_stack), and the units need no more chains. znver4, 1
    thread, in model, per-kernel minima alternated (kab), 24 -> 12: ResNet-50's 64->256 @56 (+ add)
    1.33-1.38 -> 1.05-1.22 ms, 128->512 @28 0.88-0.93x (the model's kernels 76.4 -> 74.2 ms);
    MobileNet's 32->64 @112 0.66 -> 0.56 (12.36 -> 11.86), MobileNetV2 7.30 -> 7.04, DenseNet-121
    54.2 -> 52.2). 12 on full-width AVX-512 too for a reduction of up to SHORT_REDUCTION input
    channels (IN_CHANNELS): Zen 5, 1 thread, in model, per-kernel medians alternated (kab), 24 -> 12:
    MobileNetV2's 16->96 @112 0.387 -> 0.223 ms, 32->16 @112 0.120 -> 0.064, 24->144 @56 0.86x,
    32->192 @28 0.83-0.87x (the model 4.78 -> 4.25 ms), MobileNet's 32->64 @112 0.87x; up to 64
    channels: ResNet-50's 64->256 @56 (+ add) 0.89-0.95x (one 1.03x), MobileNet's 64->128 @56 0.94x.
    Deeper reductions keep 24 (MobileNetV2's 192->32 @28 0.050 ms with 24, 0.060 with 12)."""
    short = in_channels is not None and in_channels <= SHORT_REDUCTION
    return min(preset.regs - 4, 24 if preset.fma_width >= preset.vector_bits and not short else 12)


def short_tile(preset, in_channels, pixels):
    """Whether a pointwise GEMM's register tile holds only FMA_CHAINS accumulators (4 channels x 2
    vectors) instead of accumulator_budget's: where AVX-512 runs on 256-bit FMA units (Zen 4), for a
    reduction of up to SHORT_REDUCTION input channels (IN_CHANNELS), the tile's write-back and
    panel a large share of its work, on PIXELS that are whole tiles of 2 vectors. Zen 4, 1 thread,
    in model, per-kernel medians alternated (kab, 6-8 rounds, two or three runs), 12 -> 8:
    ResNet-50's 64->256 @56 + add 0.91-0.95 of the time, 64->256 @56 0.94-0.97, 64->64 @56
    0.94-0.95 (the model 0.982-0.988); ShuffleNet 0.974-0.989 (its 24->112 @56 0.52-0.63);
    MobileNetV2 0.988-0.993 (32->16 @112 0.92, 24->144 @56 1.03), MobileNet v1 and Inception v1
    even. Not on pixels that are no whole number of such tiles: with them SqueezeNet's @55 and @27
    convs ran 6-19% slower (the model 1.024)."""
    return preset.fma_width < preset.vector_bits and in_channels is not None and \
        in_channels <= SHORT_REDUCTION and pixels % (2 * lanes(preset)) == 0


def pointwise_tile(preset, out_channels, pixels, write_back_pass=False, in_channels=None):
    """(channels, pixels) of the pointwise register tile for OUT_CHANNELS x PIXELS outputs (a
    reduction of IN_CHANNELS, where known: see accumulator_budget): `nv`
    pixel vectors x `mr` channels of accumulators, plus nv loaded pixel vectors and a broadcast
    weight, within the preset's vector registers. Among the shapes that fill the accumulator budget,
    the one with the least padded work, weighted by its loads per FMA (and the write-back pass
    padding needs), wins."""
    n, regs = lanes(preset), preset.regs
    budget = accumulator_budget(preset, in_channels)
    if budget > FMA_CHAINS and short_tile(preset, in_channels, pixels):
        budget = FMA_CHAINS
    best = None
    for nv in (2, 3, 4):  # (one pixel vector: LLVM's scheduling spilled accumulators on AVX2)
        mr = min(budget // nv, (regs - nv - 1) // nv)
        if mr < 3:  # (AVX2's 2 channels x 4 pixel vectors: each tile's rows re-read by twice the blocks;
            continue  # in MobileNetV2, 1 thread, in model, 32->16 @112 as 4 x 3: 0.173 -> 0.166 ms)
        nr = nv * n
        padded = (-(-pixels // nr) * nr / pixels) * (-(-out_channels // mr) * mr / out_channels)
        # padded pixels: the write-back is a pass of its own (the row conv's always is)
        copy = 1.15 if pixels % nr and not write_back_pass else 1.0
        # measured on AVX2: 2 x 4 vectors lost to 6 x 2; so did 4 x 3 for ResNet-50's 64-channel
        # convs @56 (no padded channel, a padded last tile; copied panels): 256->64 1.24 -> 1.29-1.33 ms,
        # 64->64 0.326 -> 0.368
        cost = padded * copy * (1 + (mr + nv) / (mr * nv))
        if best is None or cost < best[0] - 1e-9:
            best = (cost, mr, nr)
    return best[1], best[2]


TAIL_PIXELS = 2  # leftover pixels up to which the pointwise GEMM's tail broadcasts pixels (x86)
# independent accumulators that keep AVX2's two FMA pipes busy through their 4-cycle latency: a
# tail register tile with fewer waits on its chains (4 channels x 1 vector: half the FMA rate)
FMA_CHAINS = 8


def pointwise_tail(preset, pixels, tile, block):
    """Pixels of the pointwise GEMM's tail: those after the whole tiles, computed by a GEMM of their
    own instead of in a padded last tile (0: no tail). In whole pixel vectors; but on x86 up to
    TAIL_PIXELS leftover pixels exactly, each broadcast against a block's channels (pointwise.py
    tail_gemm; one pixel in the last whole tile's reduction loop, pointwise.fold_tail): one whole
    pixel vector for 7x7 = 3 x 16 + 1 pixels was 8 lanes of work for one and a sixth of the
    kernel's time (2048->512 @7, AVX2). On x86, a tail whose register tile
    (BLOCK channels x its vectors) holds fewer than FMA_CHAINS accumulators takes the last whole
    tile in too, computed in sub-tiles of at least that many (tail_vectors): 14x14 = 196 pixels in
    tiles of 4 x 24 were 8 tiles + a tail of 1 vector (4 of its 8 pixels padding), whose 4 chains
    ran at half the FMA rate (perf, AVX2, MobileNet v1's 512->512 @14: 7.3% of the kernel's time
    for 2% of its pixels); now 7 tiles + 28 pixels in 2 sub-tiles of 2 vectors."""
    n, left = lanes(preset), pixels % tile
    if pixels > tile and 0 < left <= TAIL_PIXELS and preset.arch == "x86_64":
        return left
    tail = -(-left // n) * n
    if not (pixels > tile and 0 < tail < tile):
        return 0
    folded = -(-(left + tile) // n) * n
    if preset.arch == "x86_64" and block * (tail // n) < FMA_CHAINS and pixels >= 2 * tile \
            and block * tail_vectors(preset, block, folded // n) >= FMA_CHAINS:
        return folded
    return tail


def tail_vectors(preset, block, vectors):
    """Pixel vectors per register tile of a whole-vector tail of VECTORS: the most that divide them
    with BLOCK channels x that many accumulators within accumulator_budget."""
    budget = accumulator_budget(preset)
    return max(s for s in range(1, vectors + 1) if vectors % s == 0 and (block * s <= budget or s == 1))


# of the pixels up to which a projection (< 128 output channels) pads its last tile to run as the GEMM
# (pointwise.PADDING_SHARE allows more where the GEMM runs anyway): in SqueezeNet, AVX2, 1 thread,
# per-kernel minima alternated, 169 pixels padded to 176 as the GEMM instead of the direct conv:
# 384->48 @13 0.076 -> 0.085 ms, 256->48 @13 0.052 -> 0.055, 384->64 @13 0.095 -> 0.101
PROJECTION_PADDING = 1 / 32


def pointwise_gemm(in_channels, out_channels, pixels, tile, strided, padded_in_tile=False):
    """Whether a pointwise conv runs as the GEMM (else as the direct conv, or over padded rows):
    always when its pixels are a whole number of tiles without a stride, or a few short of it with
    the write-back in the padded last tile (PADDED_IN_TILE: pointwise.padded_last_tile); else (its
    input copy gathers or pads, its write-back is a pass of its own) only with enough output channels
    to pay for that (measured on AVX2, vs onnxruntime: 512->2048 at 7x7 GEMM ahead; 32->128 at 27x27
    GEMM 0.84 of the direct conv's time since its padded write-back is vector code), or with few
    input channels and no stride, where the row conv's copy would buy nothing the GEMM's panels do
    not (in SqueezeNet, AVX2, 1 thread, thread-time min in place: 16->64 @55 0.158-0.180 ->
    0.144-0.149 ms). The direct conv's projections ran at ~45 GFLOP/s: in SqueezeNet, AVX2, 1 thread,
    thread-time minima alternated, direct conv -> GEMM with a padded last tile: 256->32 @27 0.230 ->
    0.179 ms (read in place: 64->16 @55 0.141 -> 0.125, see pointwise.in_place); not at 13x13
    (169 pixels, 23 of 192 padded: 384->48 0.087 -> 0.098 with a tail)."""
    padded = padded_in_tile and -(-pixels // tile) * tile - pixels <= pixels * PROJECTION_PADDING
    return out_channels >= 128 or not strided and (pixels % tile == 0 or padded or in_channels <= ROWS_MAX_CHANNELS)


# an AVX-512 1x1 conv runs as the direct conv up to these output pixels, from these input channels,
# and on images of up to SMALL_IMAGE_PIXELS from SMALL_IMAGE_CHANNELS (see pointwise_direct)
DIRECT_POINTWISE_PIXELS, DIRECT_POINTWISE_CHANNELS = 196, 256
SMALL_IMAGE_PIXELS, SMALL_IMAGE_CHANNELS = 64, 128


def pointwise_direct(preset, in_channels, out_channels, pixels):
    """Whether a 1x1 conv (IN_CHANNELS -> OUT_CHANNELS a group, PIXELS output pixels) runs as the
    direct conv (conv_block's two vectors of channels x up to 14 pixels, the input read in place,
    no panel copy) rather than the GEMM: on AVX-512, up to 14 x 14 pixels, where the GEMM's 32-64
    pixel tiles pad or leave a tail and its panel copies weigh most, with a long reduction and
    whole blocks of output channels. ResNet-50 in model, Intel AVX-512, 1 thread, per-kernel
    minima alternated, GEMM -> direct: 256->1024 @14 (+ add) 0.63-0.65 -> 0.54-0.55 ms, 1024->256
    @14 0.62-0.65 -> 0.50-0.52, 1024->512 @14 1.26 -> 0.98, 512->1024 s2 @14 1.35 -> 1.20,
    512->2048 @7 0.86-0.91 -> 0.71-0.76, 1024->2048 s2 @7 1.77 -> 1.47; at 28 x 28 even or worse
    (512->128 0.61-0.64 both, 128->512 + add 0.69 -> 0.82), at 56 x 56 up to 2x slower. Short
    reductions lost (MobileNetV2's 64->384 @14 0.062 -> 0.073, 96->576 0.133 -> 0.144), and so did
    SqueezeNet's 512->1000 @13 + global pool (0.98 -> 1.10). On AVX2 (znver3, one vector of 8
    channels, 16 registers) the same rule lost: ResNet-50 in model, 1 thread, per-kernel minima,
    1024->2048 s2 @7 2.34 -> 3.60 ms, 512->1024 s2 @14 2.29 -> 3.12, the 14x14 ones 3-5% slower;
    MobileNet v1 even. On images of at most one GEMM tile (SMALL_IMAGE_PIXELS; 7 x 7 = 48 pixels +
    a tail of 1) shorter reductions run direct too: Zen 5, 1 thread, in model, per-kernel medians
    alternated (kab), MobileNetV2's 160->960 @7 0.120 -> 0.076-0.078 ms (its 96->576 @14 gained 7%
    on Zen 5, lost 8% on Intel: left to the GEMM)."""
    small = pixels <= SMALL_IMAGE_PIXELS and in_channels >= SMALL_IMAGE_CHANNELS
    return preset.vector_bits >= 512 and pixels <= DIRECT_POINTWISE_PIXELS and \
        (in_channels >= DIRECT_POINTWISE_CHANNELS or small) and out_channels % conv_params(preset)[0] == 0


def dense_block(preset):
    """Output features per dense accumulator tile: 8 vectors, enough FMAs in flight for a GEMV."""
    return 8 * lanes(preset)
