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
    # per transform point its V (in L1 / L2) passes every channel block's u (streamed once)
    sch.reorder(gn, gb, xi, kb, qo, rc, qi, oi)
    single = int(sch.get(gb).extent) == 1  # one block of tiles: its threads share the transform points
    outer = sch.fuse(gn, gb, xi) if single else sch.fuse(gn, gb)
    parallel(sch, outer, par)
    sch.unroll(qi)
    sch.vectorize(oi)
    sch.vectorize(sch.get_loops(sch.decompose_reduction(gemm, rc))[-1])
    # the block's input transform (with one block: a pass of its own, parallel over the tiles): per
    # tile and chunk of channels (a vector), every transform point
    pad = sch.get_sblock("winograd_pad")
    if single:
        parallel(sch, sch.fuse(*sch.get_loops(pad)[:2]), par)
    else:
        sch.compute_at(inp, outer)
        sch.compute_at(pad, outer)
    vectorize(sch, sch.get_loops(pad)[-1], lanes)
    ixi, iq, ic = sch.get_loops(inp)[-3:]
    ico, ici = sch.split(ic, [None, lanes]) if int(sch.get(ic).extent) % lanes == 0 else (ic, None)
    sch.reorder(iq, ico, *([ici] if ici is not None else []), ixi)
    m = round(int(sch.get(ixi).extent) ** 0.5) - 2
    sch.unroll(ixi)
    if ici is not None:
        sch.vectorize(ici)
    if single:
        parallel(sch, sch.fuse(*sch.get_loops(inp)[:-3 if ici is not None else -2]), par)
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
    rows = max(1, min(th, int(preset.l2_kib * 1024 * L2_SHARE // per_row)))
    return {"m": m, "block": block, "tile": tile, "rows": rows}
