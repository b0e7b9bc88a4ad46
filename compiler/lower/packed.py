"""TE compute for conv2d_packed: output channels computed in blocks, NCHW in and out unless the node's
`in_layout` / `out_layout` say NHWC (the direct conv only; compiler/passes/layout.py).

Block `conv2d_packed` computes (N, blocks, OH, OW', block) with the packed weight's lanes
innermost (a vector of output channels per input pixel: broadcast FMAs), OW' = OW padded to whole
register tiles of the node's `width_tile` pixels (the padded input grows to match); block
`conv2d_unpack` writes the first OW columns back to NCHW with the bias added (`conv2d_unpack_nhwc`:
to NHWC, a block's lanes to consecutive channels; an NHWC input is padded by `conv2d_pad_nhwc`, a
1x1 without stride or padding computes its pixels as one flat row, ops/packed.py flat_pixels, and
so does an NCHW conv with short rows, its `flat_rows`: register tiles spanning image rows). The
schedule (targets/schedules/conv2d.py) keys on these block names. A pointwise conv (1x1, no padding; grouped: a GEMM per group) whose node carries a pixel
`tile` is a GEMM instead: block `conv2d_pointwise` computes (N, blocks, block, P) over the output
pixels P = OH*OW (padded to whole tiles) read from the input copied by `conv2d_pixels_copy` into one panel
(C x tile, contiguous) per pixel tile (a `tail` GEMM's pixels: `conv2d_pixels_copy_tail`, C x tail), so
that pixels are the vector lanes and the write-back
`conv2d_unpack` reads contiguous rows. `dense_packed` is the same with (M, N) output: block `dense_packed` computes
(M, blocks, block), block `dense_unpack` writes (M, N) with the bias.
"""
from tvm import te, tirx

from ..ops.nn import _pair
from ..ops.packed import flat_pixels
from . import lowering
from .nn import _pad4


@lowering("conv2d_packed")
def conv2d_packed(a, x, wp, b=None):
    g, o = a.get("groups", 1), a["out_channels"]
    s, d, p = _pair(a.get("strides"), [1, 1]), _pair(a.get("dilations"), [1, 1]), _pair(a.get("pads"), [0] * 4)
    nhwc_in, nhwc_out = a.get("in_layout") == "NHWC", a.get("out_layout") == "NHWC"
    n, c, h, wd = (int(x.shape[i]) for i in ((0, 3, 1, 2) if nhwc_in else (0, 1, 2, 3)))
    blocks, ci, kh, kw, block = (int(v) for v in wp.shape)
    oh = (h + p[0] + p[2] - (kh - 1) * d[0] - 1) // s[0] + 1
    ow = (wd + p[1] + p[3] - (kw - 1) * d[1] - 1) // s[1] + 1
    nb, og = blocks // g, o // g
    if (a.get("tile") or a.get("row_tile")) and (nhwc_in or nhwc_out):
        raise ValueError("channels-last convs run the direct conv: the layout pass gives them no GEMM tile")
    if a.get("tile") and kh == kw == 1 and not any(p):
        return _pointwise(x, wp, b, o, s, oh, ow, a["tile"], g, a.get("tail", 0))
    if a.get("row_width"):
        return _tiled_rows(x, wp, b, o, p, s, d, oh, ow, a["row_width"])
    if a.get("row_tile"):
        return _rows(x, wp, b, o, p, s, d, oh, ow, a["row_tile"], a.get("row_band", oh))
    flat = flat_pixels(a, kh, kw)  # one row of oh * ow pixels
    rows, cols = (1, oh * ow) if flat else (oh, ow)
    owp = -(-cols // int(a.get("width_tile", 1))) * int(a.get("width_tile", 1))  # rows in whole register tiles
    extra = 0 if flat else max(0, (owp - 1) * s[1] + (kw - 1) * d[1] + 1 - (wd + p[1] + p[3]))
    rc, ry, rx = te.reduce_axis((0, ci), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")

    def chan(bi):
        return rc if g == 1 else (bi // nb) * ci + rc

    if flat and not nhwc_in:  # NCHW short rows (`flat_rows`): flat pixel q at its row and column
        xp = _pad4(x, p)

        def pixel(nn, bi, yy, xx):
            q = tirx.min(xx, oh * ow - 1)
            return xp[nn, chan(bi), q // ow * s[0] + ry * d[0], q % ow * s[1] + rx * d[1]]
    elif flat:  # (the padded last tile reads the last pixel again)
        def pixel(nn, bi, yy, xx):
            q = tirx.min(xx, oh * ow - 1)
            return x[nn, q // ow, q % ow, chan(bi)]
    elif nhwc_in:  # a pixel's channels contiguous: the broadcast steps over channels read in order
        xp = x if not any(p) and not extra else te.compute(
            (n, h + p[0] + p[2], wd + p[1] + p[3] + extra, c), lambda nn, yy, xx, cc: te.if_then_else(
                tirx.all(yy >= p[0], yy < h + p[0], xx >= p[1], xx < wd + p[1]), x[nn, yy - p[0], xx - p[1], cc],
                tirx.const(0, x.dtype)), name="conv2d_pad_nhwc")

        def pixel(nn, bi, yy, xx):
            return xp[nn, yy * s[0] + ry * d[0], xx * s[1] + rx * d[1], chan(bi)]
    else:
        xp = _pad4(x, p, extra=(0, extra))

        def pixel(nn, bi, yy, xx):
            return xp[nn, chan(bi), yy * s[0] + ry * d[0], xx * s[1] + rx * d[1]]

    acc = te.compute((n, blocks, rows, owp, block), lambda nn, bi, yy, xx, oi: te.sum(
        pixel(nn, bi, yy, xx) * wp[bi, rc, ry, rx, oi], axis=[rc, ry, rx]), name="conv2d_packed",
        attrs={"nhwc_in": 1} if nhwc_in else None)

    def unpack(nn, f, yy, xx):
        j = f if g == 1 else f % og
        bi = j // block if g == 1 else (f // og) * nb + j // block
        v = acc[nn, bi, 0, yy * ow + xx, j % block] if flat else acc[nn, bi, yy, xx, j % block]
        return v + b[f] if b is not None else v

    if nhwc_out:  # channels-last: each pixel's accumulator vectors are stored as they are
        return te.compute((n, oh, ow, o), lambda nn, yy, xx, f: unpack(nn, f, yy, xx), name="conv2d_unpack_nhwc")
    return te.compute((n, o, oh, ow), unpack, name="conv2d_unpack")


def _rows(x, wp, b, o, p, s, d, oh, ow, tile, band):
    """A conv as a GEMM per kernel tap over the padded rows: block `conv2d_rows_copy` copies the
    padded input as S0 x S1 phase planes (plane (i, j) holds the padded pixels (r * S0 + i,
    col * S1 + j), WQ = ceil(padded width / S1) columns: a stride-S conv reads each tap from one
    plane at stride 1), which the schedule reads as one flat index per plane (row * WQ + column);
    block `conv2d_rows` computes (N, blocks, ceil(OH / BAND), block, P) over bands of BAND output
    rows (the last one may run past OH), P = BAND * WQ pixels per band (padded to whole tiles), pixel q of band r
    and tap (ry, rx) reading flat pixel r * BAND * WQ + q + (ry * D0 // S0) * WQ + rx * D1 // S1 of
    plane (ry * D0 % S0, rx * D1 % S1), so that pixels are the vector lanes and each band's
    accumulators are whole output rows (written back band by band); the columns past OW of each
    row are computed and dropped by `conv2d_unpack`."""
    n, wd = int(x.shape[0]), int(x.shape[3])
    blocks, ci, kh, kw, block = (int(v) for v in wp.shape)
    wq = -(-(wd + p[1] + p[3]) // s[1])
    padded = -(-(band * wq) // tile) * tile
    bands = -(-oh // band)
    last = (bands - 1) * band * wq + padded + (kh - 1) * d[0] // s[0] * wq + (kw - 1) * d[1] // s[1]  # (past the last read)
    rows = -(-last // wq)
    xr = _phase_planes(x, p, s, rows, wq)
    rc, ry, rx = te.reduce_axis((0, ci), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")

    def tap(nn, r, q):
        t = r * band * wq + q + ry * d[0] // s[0] * wq + rx * d[1] // s[1]
        return xr[nn, rc, ry * d[0] % s[0], rx * d[1] % s[1], t // wq, t % wq]
    acc = te.compute((n, blocks, bands, block, padded), lambda nn, bi, r, oi, q: te.sum(
        tap(nn, r, q) * wp[bi, rc, ry, rx, oi], axis=[rc, ry, rx]), name="conv2d_rows")

    def unpack(nn, f, yy, xx):
        v = acc[nn, f // block, yy // band, f % block, yy % band * wq + xx % wq]
        return v + b[f] if b is not None else v

    return te.compute((n, o, oh, ow), unpack, name="conv2d_unpack")


def _phase_planes(x, p, s, rows, wq):
    """Block `conv2d_rows_copy`: the padded NCHW input X as S0 x S1 phase planes of ROWS x WQ
    (plane (i, j) holds the padded pixels (r * S0 + i, col * S1 + j), zeros outside the input)."""
    n, c, h, wd = (int(v) for v in x.shape)
    return te.compute((n, c, s[0], s[1], rows, wq), lambda nn, cc, i, j, r, col: te.if_then_else(
        tirx.all(r * s[0] + i >= p[0], r * s[0] + i < h + p[0], col * s[1] + j >= p[1], col * s[1] + j < wd + p[1]),
        x[nn, cc, r * s[0] + i - p[0], col * s[1] + j - p[1]], tirx.const(0, x.dtype)), name="conv2d_rows_copy")


def _tiled_rows(x, wp, b, o, p, s, d, oh, ow, owp):
    """The row conv of a stem (the node's `row_width`, targets/schedules/pack.py conv_row_width: the
    whole reduction in one chunk): block `conv2d_row_tiles` computes (N, blocks, OH, block, OWP),
    OWP = OW padded to whole pixel vectors, pixel (y, x) and tap (ry, rx) reading flat pixel
    (y + ry * D0 // S0) * WQ + x + rx * D1 // S1 of its phase plane (`conv2d_rows_copy`, as in
    `_rows`; a padded lane reads on into the next row and is dropped), so that each register tile
    lies in one output row (the schedule cuts a row's last tile short) and `conv2d_unpack` (bias
    and epilogue) writes it to NCHW from its registers: no band of partial sums, no write-back
    pass. AVX2, 1 thread, in model, per-kernel minima alternated (kab): MobileNet v1's 3x3 s2
    3->32 @224 + clip 0.438-0.461 -> 0.288 ms (rows padded to whole 24-pixel tiles instead:
    0.304), MobileNetV2's 0.462-0.482 -> 0.324, ShuffleNet's 3x3 s2 3->24 + relu + max pool 0.482
    -> 0.354, SqueezeNet's 3->64 (rows of 111) + relu + max pool 0.808 -> 0.662, ResNet-50's 7x7
    s2 3->64 + relu (its pool a pass) 3.09-3.11 -> 2.77-2.91; 2 threads (busy machine) MobileNet
    v1's 0.511 -> 0.305."""
    n, wd = int(x.shape[0]), int(x.shape[3])
    blocks, ci, kh, kw, block = (int(v) for v in wp.shape)
    wq = -(-(wd + p[1] + p[3]) // s[1])
    last = (oh - 1 + (kh - 1) * d[0] // s[0]) * wq + owp + (kw - 1) * d[1] // s[1]  # (past the last read)
    rows = -(-last // wq)
    xr = _phase_planes(x, p, s, rows, wq)
    rc, ry, rx = te.reduce_axis((0, ci), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")

    def tap(nn, y, q):
        t = (y + ry * d[0] // s[0]) * wq + q + rx * d[1] // s[1]
        return xr[nn, rc, ry * d[0] % s[0], rx * d[1] % s[1], t // wq, t % wq]
    acc = te.compute((n, blocks, oh, block, owp), lambda nn, bi, y, oi, q: te.sum(
        tap(nn, y, q) * wp[bi, rc, ry, rx, oi], axis=[rc, ry, rx]), name="conv2d_row_tiles")

    def unpack(nn, f, yy, xx):
        v = acc[nn, f // block, yy, f % block, xx]
        return v + b[f] if b is not None else v

    return te.compute((n, o, oh, ow), unpack, name="conv2d_unpack")


def _pointwise(x, wp, b, o, s, oh, ow, tile, g=1, tail=0):
    n, c = (int(v) for v in x.shape[:2])
    blocks, ci, block = int(wp.shape[0]), int(wp.shape[1]), int(wp.shape[4])
    nb, og = blocks // g, o // g
    pixels = oh * ow
    padded = -(-pixels // tile) * tile
    # pixels of the GEMM in whole tiles (a tail may take in the last whole one: pack.pointwise_tail)
    main = -(-(pixels - tail) // tile) * tile if tail else padded
    # the input as panels, one per pixel tile: (tiles, C, tile), so that a tile's reduction reads
    # one contiguous block (from the NCHW rows: one cache line per channel, every channel on
    # another page; measured on AVX2, thread time in ResNet-50: 64->256 @56 + add 2.3 -> 1.6 ms)
    # (`likely`: LoopPartition splits off the padded last tile, see compiler/build.py)
    def copy(shape, pixel, name, past):  # PAST: some of its pixels lie past the image's (zeros)
        def value(*idx):
            nn, cc, q = pixel(*idx)
            v = x[nn, cc, q // ow * s[0], q % ow * s[1]]
            return te.if_then_else(tirx.likely(q < pixels), v, tirx.const(0, x.dtype)) if past else v
        return te.compute(shape, value, name=name)

    xp = copy((n, main // tile, c, tile), lambda nn, t, cc, i: (nn, cc, t * tile + i), "conv2d_pixels_copy",
              main > pixels)
    # the tail's pixels a panel of their own, (C, tail): its rows contiguous, not a few pixels of
    # each row of a padded tile's panel (two such panels where the tail took in the last whole tile)
    xt = copy((n, c, tail), lambda nn, cc, i: (nn, cc, main + i), "conv2d_pixels_copy_tail",
              main + tail > pixels) if tail else None

    def xs(nn, cc, q):
        return xp[nn, q // tile, cc, q % tile]

    def gemm(width, start, name):
        rc = te.reduce_axis((0, ci), "rc")  # a grouped conv: block bi reads its group's ci channels

        def pixel(nn, cc, q):
            return xt[nn, cc, q] if start else xs(nn, cc, q)
        return te.compute((n, blocks, block, width), lambda nn, bi, oi, q: te.sum(
            pixel(nn, rc if g == 1 else (bi // nb) * ci + rc, q) * wp[bi, rc, 0, 0, oi], axis=rc), name=name)

    # TAIL: the pixels after the whole tiles as a GEMM of their own, `tail` pixels (whole vectors) wide
    acc = gemm(main, 0, "conv2d_pointwise")
    acc_tail = gemm(tail, main, "conv2d_pointwise_tail") if tail else None

    def unpack(nn, f, yy, xx):
        bi, j = (f // block, f % block) if g == 1 else ((f // og) * nb + f % og // block, f % og % block)
        q = yy * ow + xx
        v = acc[nn, bi, j, q] if acc_tail is None else te.if_then_else(
            q < main, acc[nn, bi, j, tirx.min(q, main - 1)], acc_tail[nn, bi, j, tirx.max(q - main, 0)])
        v = v + b[f] if b is not None else v
        # a padded last tile: the pixel bound stated `likely` too, so that where the write-back runs
        # in the tile, LoopPartition drops the tiles' bound check (see pointwise.py write_back_at)
        return te.if_then_else(tirx.likely(q < pixels), v, tirx.const(0, x.dtype)) if not tail and padded > pixels else v

    return te.compute((n, o, oh, ow), unpack, name="conv2d_unpack")


@lowering("dense_packed")
def dense_packed(a, x, wp, b=None):
    m = int(x.shape[0])
    nb, kk, block = (int(v) for v in wp.shape)
    k = te.reduce_axis((0, kk), "k")
    acc = te.compute((m, nb, block), lambda i, jb, ji: te.sum(x[i, k] * wp[jb, k, ji], axis=k),
                     name="dense_packed")

    def unpack(i, j):
        v = acc[i, j // block, j % block]
        return v + (b[j] if len(b.shape) == 1 else b[0, j]) if b is not None else v

    return te.compute((m, a["out_features"]), unpack, name="dense_unpack")
