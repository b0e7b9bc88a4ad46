"""conv2d_winograd on CPU (compute: compiler/lower/winograd.py). Per (image, block of tile rows) --
the parallel loop -- the block's input transform V (all transform points and input channels, sized
by the layout pass to stay in L2: `rows`) is computed first; then per block of `block` output
channels a GEMM per transform point over the input channels, a register tile of `tile` tiles x
`block` channels (broadcast V, FMAs with the packed u's channel vectors: the direct conv's tile)
accumulating in the block's M, which the output transform (bias, fused epilogue) reads right away
while it is in L1."""
from . import worth_parallel
from .common import inline_epilogue, parallel, schedule_rest, vectorize
from .pack import conv_params, lanes as pack_lanes


def schedule(sch, kernel, preset):
    gemm, inp, out = (sch.get_sblock(b) for b in ("winograd_gemm", "winograd_input", "winograd_output"))
    inline_epilogue(sch, out)
    par = worth_parallel(kernel)
    lanes = pack_lanes(preset)
    gn, gb, kb, xi, q, oi, rc = sch.get_loops(gemm)
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
MIN_CHANNELS = 64  # input and output channels from which the transforms pay for themselves
MIN_TILES = 49  # output tiles (per image) from which the GEMM's rows pay for streaming u once per block


def plan(preset, channels, out_channels, oh, ow, m=2):
    """conv2d_winograd's attrs (m, block, tile, rows) for a CHANNELS -> OUT_CHANNELS 3x3 stride-1
    conv with OH x OW outputs on PRESET, or None where the direct conv stays."""
    alpha, th, tw = m + 2, -(-oh // m), -(-ow // m)
    if preset.arch != "x86_64" or min(channels, out_channels) < MIN_CHANNELS or th * tw < MIN_TILES:
        return None
    block, tile = conv_params(preset)
    per_row = alpha * alpha * tw * channels * 4
    # (at least two blocks: one per thread; with one block of 7 x 7 tiles, its input transform a pass
    # of its own and the GEMM parallel over transform points, in SqueezeNet, AVX2, 1 thread,
    # thread-time minima alternated: 64->256 @13 0.60 -> 0.79-0.89 ms; two blocks: see plan's docstring)
    rows = max(1, min(-(-th // 2), int(preset.l2_kib * 1024 * L2_SHARE // per_row)))
    return {"m": m, "block": block, "tile": tile, "rows": rows}
