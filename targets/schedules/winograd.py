"""conv2d_winograd on CPU (compute: compiler/lower/winograd.py). Per (image, block of tile rows) --
the parallel loop, at least two blocks (one per thread) -- the block's input is zero-padded and
transformed (V: all transform points and input channels, sized by `plan` to fit the L2); then per
transform point a GEMM over the input channels for every block of `block` output channels: a
register tile of `tile` tiles x `block` channels (pack.conv_params: the direct conv's tile; on AVX2
6 x 16, 12 accumulators) broadcasts V and FMAs it with u's channel vectors, so the point's V slice
stays in L1 / L2 while u streams past once per block. The output transform (bias, fused epilogue)
is a pass of its own over all of M, a vector of channels per pixel: TVM's reverse_compute_at cannot
place it in the block (it reads M at constant transform points and a tile index of two pixel
coordinates, no pattern it solves), so M (4x the output, tile-major) goes through memory. Its
stores stay a channel vector per pixel (LLVM pairs two pixels' into 8-byte stores): staging 4 (or
2) tiles' pixels of a row (cache_write, "global": on the stack) for an 8x8 (4x4) transpose and
whole row vectors (vmovaps, no scalar stores) did not pay, standalone 64->64 @56 + relu, AVX2, 1
thread, kab minima: 1.605 -> 1.704 ms (4 tiles, spills), 1.614 (2 tiles); 16->64 @56 within noise.
"""
from . import worth_parallel
from .common import inline_epilogue, parallel, schedule_rest, vectorize
from .pack import conv_block, conv_params, lanes as pack_lanes


def schedule(sch, kernel, preset):
    gemm, inp, out = (sch.get_sblock(b) for b in ("winograd_gemm", "winograd_input", "winograd_output"))
    inline_epilogue(sch, out)
    par = worth_parallel(kernel)
    lanes = pack_lanes(preset)
    gn, gb, kb, q, xi, oi, rc = sch.get_loops(gemm)
    _, tile = conv_params(preset)
    if int(sch.get(q).extent) % tile:
        raise ValueError("winograd conv blocked for another register tile than this preset's")
    qo, qi = sch.split(q, [None, tile])
    # per transform point its V (in L1 / L2) passes every channel block's u (streamed once per block)
    sch.reorder(gn, gb, xi, kb, qo, rc, qi, oi)
    outer = sch.fuse(gn, gb)
    parallel(sch, outer, par)
    sch.unroll(qi)
    sch.vectorize(oi)
    sch.vectorize(sch.get_loops(sch.decompose_reduction(gemm, rc))[-1])
    # the block's input (zero-padded) and its transform: per tile and chunk of channels (a vector),
    # every transform point
    sch.compute_at(inp, outer)
    sch.compute_at(sch.get_sblock("winograd_pad"), outer)
    pad = sch.get_sblock("winograd_pad")
    vectorize(sch, sch.get_loops(pad)[-1], lanes)
    ixi, iq, ic = sch.get_loops(inp)[-3:]
    ico, ici = sch.split(ic, [None, lanes]) if int(sch.get(ic).extent) % lanes == 0 else (ic, None)
    sch.reorder(iq, ico, *([ici] if ici is not None else []), ixi)
    m = round(int(sch.get(ixi).extent) ** 0.5) - 2
    sch.unroll(ixi)
    if ici is not None:
        sch.vectorize(ici)
    # the output transform as a pass of its own (TVM cannot place it in the GEMM's channel block: its
    # reads of M, one per transform point, are no pattern reverse_compute_at solves): per tile its
    # m x m pixels unrolled, a vector of channels each
    nn, f, yy, xx = sch.get_loops(out)
    yo, yi = sch.split(yy, [None, m])
    xo, xi_ = sch.split(xx, [None, m])
    vec = int(sch.get(f).extent) % lanes == 0
    fo, fi = sch.split(f, [None, lanes]) if vec else (f, None)
    sch.reorder(nn, fo, yo, xo, yi, xi_, *([fi] if vec else []))
    sch.unroll(yi)
    sch.unroll(xi_)
    if vec:
        sch.vectorize(fi)
    parallel(sch, sch.fuse(nn, fo, yo), par)
    schedule_rest(sch, preset, ["winograd_gemm", "winograd_input", "winograd_output", "winograd_pad"], par)
    return sch.mod["main"]


L2_SHARE = 1.0  # of the L2 for a block's transformed input V (all points and channels)
# ... where AVX-512 runs on 256-bit FMA units (Zen 4; see block_rows)
HALF_RATE_L2_SHARE = 0.25
MIN_CHANNELS = 64  # input and output channels from which the transforms pay for themselves
MIN_TILES = 49  # output tiles (per image) from which the GEMM's rows pay for streaming u once per block
BLOCK_TILES = 24  # tiles per block at least (see plan)
# fewer channels: at least FEW_CHANNELS in, FEW_OUT_CHANNELS out (two of AVX2's channel blocks) and
# FEW_MFLOP of multiply-adds in the direct conv's terms (see plan)
FEW_CHANNELS, FEW_OUT_CHANNELS, FEW_MFLOP = 16, 32, 20


def few_channels(channels, out_channels, tiles, m):
    """Whether a conv with fewer than MIN_CHANNELS in or out channels takes Winograd anyway (plan)."""
    flops = 2 * 9 * channels * out_channels * tiles * m * m
    return channels >= FEW_CHANNELS and out_channels >= FEW_OUT_CHANNELS and flops >= FEW_MFLOP * 1e6


def plan(preset, channels, out_channels, oh, ow, m=2):
    """conv2d_winograd's attrs (m, block, tile, rows) for a CHANNELS -> OUT_CHANNELS 3x3 stride-1
    conv with OH x OW outputs on PRESET, or None where the direct conv (or the row conv) stays: x86
    only (NEON unmeasured), at least MIN_TILES tiles and MIN_CHANNELS in and out, or fewer as
    few_channels allows. Measured on AVX2 (znver3), 1 thread, thread-time minima alternated, direct
    -> Winograd: in ResNet-50 64->64 @56 2.84-2.91 -> 1.94-2.07 ms, 128->128 @28 2.80-2.87 ->
    1.69-1.77, 256->256 @14 2.78-2.86 -> 2.26-2.40; in SqueezeNet 64->256 @13 0.63 -> 0.49-0.58;
    standalone conv + relu 512->512 @7 (16 tiles, u 16 MB streamed per block) 4.4-4.9 -> 6.0-8.2.
    Few channels, per-kernel minima of alternated rounds (kab), row conv or direct -> Winograd, 1
    thread / 2 threads: in SqueezeNet 3x3 16->64 @55 (row conv) 0.680 -> 0.624 / 0.433 -> 0.410 and
    0.652 -> 0.512 / 0.416 -> 0.348, 32->128 @27 (row conv) 0.614 -> 0.392 / 0.380 -> 0.245,
    48->192 @13 (direct, 32 MFLOP) 0.299 -> 0.242 / 0.215 -> 0.156; DenseNet-121 128->32 @56 2.51-2.57
    -> 1.84-1.91 (1 thread), @28 0.615-0.637 -> 0.508-0.526; standalone conv + relu 16->32 @56 (29
    MFLOP) 0.330 -> 0.275 / 0.201 -> 0.202. Left direct: 32->16 @56 0.331 -> 0.347 / 0.203 -> 0.218
    and 16->16 @56 0.174 -> 0.171 / 0.117 -> 0.127 (one channel block out: the transforms' share
    doubles); 16->16 @56 is also the smallest work (14 MFLOP), whence FEW_MFLOP; that leaves out
    DenseNet's 128->32 @14 (14 MFLOP, a gain: 0.152 -> 0.130 / 0.193 -> 0.151) with 32->128 @14
    (the same work, unmeasured); VGG-19's 3->64 @224 3.10 -> 10.4 (the transforms are the whole
    work). An older standalone measurement had put 16->64 @55 at 0.87 -> 1.34 and kept every conv
    under 64 channels direct. Blocks: V in L2_SHARE of the L2 (256->256 @14: blocks of 2 tile rows
    2.9 ms, all 7 rows 3.8; 64->64 @56 blocks of 2 rows 2.97, 4 rows 2.48, 8 rows 3.87)."""
    alpha, th, tw = m + 2, -(-oh // m), -(-ow // m)
    # (few channels: 256-bit FMA units only (AVX2, and Zen 4's AVX-512: preset.fma_width). Full-width
    # AVX-512 doubles the direct and row convs' FMA rate, not the transforms': on Zen 4 it does not
    # (znver4, 1 thread, kab, direct -> Winograd: DenseNet-121's 128->32 @56 2.35-2.47 -> 1.73-1.89 ms,
    # @28 0.57-0.58 -> 0.42, the model 64.4 -> 59.0 ms). Intel AVX-512 (family 6 model 207), 1
    # thread, per-kernel minima alternated (kab),
    # Winograd -> direct or row conv: standalone 16->64 @55 + relu 0.779 -> 0.465 ms; in SqueezeNet
    # 16->64 @55 0.728-0.837 -> 0.464-0.468, 48->192 @13 0.246-0.272 -> 0.198-0.199, 32->128 @27
    # 0.406 -> 0.429 (the model 0.857x); in DenseNet-121 128->32 @56 2.86-3.03 -> 1.74-1.81, @28
    # 0.52-0.54 -> 0.40-0.42 (the model 0.877x))
    if preset.arch != "x86_64" or th * tw < MIN_TILES or min(channels, out_channels) < MIN_CHANNELS and \
            (preset.fma_width >= 512 or not few_channels(channels, out_channels, th * tw, m)):
        return None
    # Full-width AVX-512 doubles the direct conv's FMA rate, not the transforms' or u's stream: there
    # a conv with few tiles (MIN_TILES: 14 x 14) takes Winograd only where u (all points) fits the
    # L2 (Zen 4's does not: ResNet-50's 256->256 @14 2.24-2.27 -> 1.39-1.43 ms with Winograd).
    # ResNet-50 in model, Intel AVX-512 (2 MB L2), 1 thread, direct -> Winograd: 128->128 @28 (u
    # 1 MB) 1.26-1.31 -> 0.96-0.98 ms, 64->64 @56 (256 KB) 1.33-1.38 -> 1.27-1.49, but 256->256 @14
    # (u 4 MB, 49 tiles) 1.13-1.16 -> 1.42-1.47. With more tiles u pays: VGG-19 (256 @56, 512 @28
    # and @14 direct as well) 126 -> 290 ms
    if preset.fma_width >= 512 and th * tw <= MIN_TILES and \
            alpha * alpha * channels * out_channels * 4 > preset.l2_kib * 1024:
        return None
    block, tile = conv_block(preset, out_channels), conv_params(preset)[1]
    return {"m": m, "block": block, "tile": tile, "rows": block_rows(preset, alpha, th, tw, channels, tile)}


def block_rows(preset, alpha, th, tw, channels, tile):
    """Tile rows per block of a Winograd conv with TH x TW tiles of CHANNELS input channels: its
    V (all points and channels) in L2_SHARE of the L2, and among the row counts up to that the one
    whose blocks (their rows padded to whole blocks, their tiles to whole register tiles of TILE)
    compute the fewest tiles, the larger on a tie: 128->128 @28 (14 tile rows) in blocks of 4 had
    padded two rows (1/7 of the work): AVX2 code on Zen 4, ResNet-50 in model, 1 thread, kab,
    blocks of 4 -> 2 rows: 1.37-1.42 -> 1.19-1.21 ms. With AVX-512 on 256-bit FMA units (Zen 4,
    1 MB L2) V in HALF_RATE_L2_SHARE of it: ResNet-50's 64->64 @56 in blocks of 9 tile rows
    (V 1 MB) 1.88-1.96 ms, 4 rows 1.46-1.55, 2 rows 1.32-1.37 (the AVX2 code's 1.34: its blocks of 4
    rows and of 2 ran even there, of 1 3% slower). Full-width AVX-512 (Intel) keeps L2_SHARE
    (unmeasured)."""
    per_row = alpha * alpha * tw * channels * 4
    # at least BLOCK_TILES tiles per block (u, streamed once per block, used by each of them; the
    # block's V then past the L2), at most half the tile rows (two blocks: one per thread; one block
    # of 7 x 7 tiles, its input transform a pass of its own and the GEMM parallel over transform
    # points, in SqueezeNet, AVX2, 1 thread, thread-time minima alternated: 64->256 @13 0.60 ->
    # 0.79-0.89 ms). Standalone conv + relu, AVX2, 1 thread, tile rows per block, direct -> Winograd:
    # 256->256 @14 rows 2 (V in L2) 3.75 -> 2.90 ms, rows 4 2.90 -> 1.94; 512->512 @14 rows 2
    # 14.1 -> 17.4, rows 4 11.7 -> 9.3; 512->512 @28 rows 1 52.7 -> 52.1, rows 2 44.7 -> 32.0
    share = HALF_RATE_L2_SHARE if preset.fma_width < preset.vector_bits else L2_SHARE
    least = -(-BLOCK_TILES // tw)
    most = max(1, min(-(-th // 2), max(int(preset.l2_kib * 1024 * share // per_row), least)))
    return min(range(min(least, most), most + 1), key=lambda r: (-(-th // r) * -(-(r * tw) // tile), -r))
