"""TE computes for the quantized ops (compiler/ops/quant.py), with the references' arithmetic:
float32 division / product, round half to even (`nearbyint`), saturate.

qconv2d / qdense / qmatmul subtract the zero points into int32 operands and reuse the float
lowerings' loops with int32 accumulation (exact); the int8 schedules (targets/schedules/int8.py)
replace these with u8 x s8 dot-product kernels where the preset has them.
"""
import functools

import tvm
from tvm import te, tirx

from ..ops.nn import _pool_geometry
from ..ops.packed import flat_pixels
from ..ops.quant import _Shaped, clamp_bounds, qrange
from . import lowering
from . import nn as float_nn

# TVM 0.27 registers round-half-to-even (`nearbyint`) without the attribute that lets its loop
# vectorizer widen a call, so every vectorized requantize / quantize loop was silently scalarized
# (LLVM then packed a few pixels per register and stored each byte alone). LLVM's nearbyint takes
# vectors (x86 `vroundps`, NEON `frintx`).
if tvm.ir.Op.get("tirx.nearbyint").get_attr("TVectorizable") is None:
    tvm.ir.register_op_attr("tirx.nearbyint", "TVectorizable", True)


def bcast(t, idx):
    """T (shape broadcastable to len(IDX) dims) read at the broadcast index IDX."""
    r = len(t.shape)
    off = len(idx) - r
    return t(*[0 if int(t.shape[k]) == 1 else idx[off + k] for k in range(r)])


def _saturate(v, lo, hi, dtype):
    return te.min(te.max(v, tirx.const(lo, "float32")), tirx.const(hi, "float32")).astype(dtype)


@lowering("quantize_linear")
def quantize_linear(a, x, scale, zp):
    lo, hi = qrange(a["dtype"])

    def f(*i):
        q = tirx.nearbyint(x(*i).astype("float32") / bcast(scale, i).astype("float32"))
        return _saturate(q + bcast(zp, i).astype("float32"), lo, hi, a["dtype"])
    return te.compute(x.shape, f, name="quantize")


@lowering("dequantize_linear")
def dequantize_linear(a, x, scale, zp):
    out = a.get("dtype", str(scale.dtype))
    return te.compute(x.shape, lambda *i: ((x(*i).astype("int32") - bcast(zp, i).astype("int32")).astype("float32")
                                           * bcast(scale, i).astype("float32")).astype(out), name="dequantize")


@lowering("requantize")
def requantize(a, acc, m, zp, off=None):
    lo, hi = clamp_bounds(a)

    def f(*i):
        v = acc(*i).astype("float32") * bcast(m, i).astype("float32")
        q = tirx.nearbyint(v if off is None else v + bcast(off, i).astype("float32"))
        return _saturate(q + bcast(zp, i).astype("float32"), lo, hi, a["dtype"])
    return te.compute(acc.shape, f, name="requantize")


@lowering("qadd")
def qadd(a, x, y, sx, zx, sy, zy, so, zo):
    lo, hi = clamp_bounds(a)

    def dq(t, s, z, i):
        return (t(*i).astype("int32") - z().astype("int32")).astype("float32") * s().astype("float32")

    def f(*i):
        q = tirx.nearbyint((dq(x, sx, zx, i) + dq(y, sy, zy, i)) / so().astype("float32"))
        return _saturate(q + zo().astype("float32"), lo, hi, a["dtype"])
    return te.compute(x.shape, f, name="qadd")


@lowering("qglobal_avg_pool")
def qglobal_avg_pool(a, x, sx, zx, sy, zy):
    # the sum of the int8 values in int32 (exact, in any order: vectorized), then the mean in float32
    nhwc = a.get("in_layout") == "NHWC"
    n, c, h, w = (int(x.shape[i]) for i in ((0, 3, 1, 2) if nhwc else (0, 1, 2, 3)))
    ry, rx = te.reduce_axis((0, h), "ry"), te.reduce_axis((0, w), "rx")
    total = te.compute((n, c, 1, 1), lambda b, f, i, j: te.sum(
        (x[b, ry, rx, f] if nhwc else x[b, f, ry, rx]).astype("int32"), axis=[ry, rx]), name="qgap_sum")
    mean = te.compute(total.shape, lambda *i: (total(*i) - zx().astype("int32") * (h * w)).astype("float32")
                      * sx().astype("float32") * tirx.const(1.0 / (h * w), "float32"), name="qgap_mean")
    return quantize_linear(a, mean, sy, zy)


@lowering("qmax_pool2d")
def qmax_pool2d(a, x):
    # each output element the max of its window's taps, those outside the input left out
    nhwc = a.get("layout") == "NHWC"
    n, c, h, w = (int(x.shape[i]) for i in ((0, 3, 1, 2) if nhwc else (0, 1, 2, 3)))
    (kh, kw), s, d, p, oh, ow = _pool_geometry(a, _Shaped((n, c, h, w), x.dtype))

    def tap(nn, cc, yy, xx):  # (inside stated on the clamps, as in qconv2d_packed's input copy)
        cy, cx = te.min(te.max(yy, 0), h - 1), te.min(te.max(xx, 0), w - 1)
        v = x[nn, cy, cx, cc] if nhwc else x[nn, cc, cy, cx]
        return tirx.Select(tirx.all(cy == yy, cx == xx), v, tirx.min_value(x.dtype)) if any(p) else v

    def f(nn, cc, i, j):
        taps = [tap(nn, cc, i * s[0] - p[0] + ty * d[0], j * s[1] - p[1] + tx * d[1]) for ty in range(kh) for tx in range(kw)]
        return functools.reduce(te.max, taps)
    if nhwc:
        return te.compute((n, oh, ow, c), lambda nn, i, j, cc: f(nn, cc, i, j), name="qmax_pool", attrs={"nhwc": 1})
    return te.compute((n, c, oh, ow), f, name="qmax_pool")


def centered(t, zp, axis, dtype="int32"):
    """T - ZP (computed in int32, given as DTYPE), ZP a scalar or one value per index of AXIS."""
    def f(*i):
        z = zp() if len(zp.shape) == 0 else zp[0 if int(zp.shape[0]) == 1 else i[axis]]
        return (t(*i).astype("int32") - z.astype("int32")).astype(dtype)
    return te.compute(t.shape, f, name="centered")


FLOAT32_EXACT = 2 ** 24  # integers up to this are exact in float32, and so are sums that stay below it


@lowering("qconv2d")
def qconv2d(a, x, w, x_zp, w_zp, b=None):
    # padding the centered input with 0 is padding the input with its zero point
    o, ci, kh, kw = (int(v) for v in w.shape)
    if int(a.get("groups", 1)) > 1 and 255 * 255 * ci * kh * kw <= FLOAT32_EXACT:
        # grouped / depthwise (no packed int8 kernel): every partial sum of (x - x_zp) * (w - w_zp)
        # is an integer of magnitude below 2^24, exact in float32, so the float conv schedules
        # (depthwise: FMA over the padded plane) compute the exact int32 result
        y = float_nn.conv2d(a, centered(x, x_zp, 1, "float32"), centered(w, w_zp, 0, "float32"))
        return te.compute(y.shape, lambda nn, f, yy, xx: y[nn, f, yy, xx].astype("int32")
                          + (b[f] if b is not None else tirx.const(0, "int32")), name="qconv2d_int")
    return float_nn.conv2d(a, centered(x, x_zp, 1), centered(w, w_zp, 0), b)


@lowering("qdense")
def qdense(a, x, w, x_zp, w_zp, b=None):
    return float_nn.dense(a, centered(x, x_zp, 0), centered(w, w_zp, 0), b)


@lowering("qmatmul")
def qmatmul(a, x, y, x_zp, y_zp):
    return float_nn.matmul(a, centered(x, x_zp, len(x.shape) - 2), centered(y, y_zp, len(y.shape) - 1))


@lowering("qconv2d_packed")
def qconv2d_packed(a, x, wp, x_zp, b=None):
    """The centered input is laid out (N, H+pads, W+pads, C/kgroup, kgroup) as int16, so each
    reduction step reads `kgroup` neighbouring channels of one pixel (one broadcast) and a
    (lanes, kgroup) weight tile: the shape of pmaddwd (x86) and of a widening multiply-add (NEON);
    a pixel's channels are contiguous, so the steps over channel blocks read each pixel's
    channels in sequence (channel planes made every step touch a new cache line). A channels-last
    input (in_layout NHWC) is read a pixel at a time; a channels-last result (out_layout NHWC) is
    written from the accumulators' lanes in order, where NCHW scatters each lane to its plane.
    A 1x1 conv without stride or padding on a channels-last input (ops/packed.py flat_pixels)
    computes its pixels as one flat row, so register tiles span image rows (7x7 pixels: 10 tiles of
    5, where rows of 7 took 2 tiles of 4 each, one pixel wasted per row).
    A depthwise conv (groups) lays its input out (N, H+pads, W+pads, C/lanes, lanes), the channels of
    a pixel in the accumulators' order, and each output channel sums its own input channel's taps:
    vectors of channels multiplied lane by lane, widened to int32."""
    s = [int(v) for v in a.get("strides", [1, 1])]
    d = [int(v) for v in a.get("dilations", [1, 1])]
    p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
    nhwc_in = a.get("in_layout") == "NHWC"
    n, c, h, w = (int(x.shape[i]) for i in ((0, 3, 1, 2) if nhwc_in else (0, 1, 2, 3)))
    ob, kh, kw, cb, lanes, kg = (int(v) for v in wp.shape)
    o = int(a["out_channels"])
    depthwise = int(a.get("groups", 1)) > 1
    blocks, width = (ob, lanes) if depthwise else (cb, kg)  # the input's channel blocks
    oh = (h + p[0] + p[2] - (kh - 1) * d[0] - 1) // s[0] + 1
    ow = (w + p[1] + p[3] - (kw - 1) * d[1] - 1) // s[1] + 1
    tile = int(a.get("tile", 1))  # the schedule's row tile: rows are computed in whole tiles
    owp = -(-ow // tile) * tile
    wpad = max(w + p[1] + p[3], (owp - 1) * s[1] + (kw - 1) * d[1] + 1)
    zx = (x_zp() if len(x_zp.shape) == 0 else x_zp[0]).astype("int16")

    def shifted(nn, yy, xx, cc, k):
        ch = cc * width + k
        at = (te.min(te.max(yy - p[0], 0), h - 1), te.min(te.max(xx - p[1], 0), w - 1), te.min(ch, c - 1))
        # inside: the clamped position is the position itself. (Stated as bounds, the simplifier took
        # the clamps off the read under it, and the vectorized Select loads both sides: the pad copy
        # read the row above the input, the column left of it and channels past its last, out of
        # bounds; under qemu a depthwise input at the start of its mapping segfaulted)
        inside = tirx.all(at[2] == ch, at[0] == yy - p[0], at[1] == xx - p[1])
        if not nhwc_in:
            v = x[nn, at[2], at[0], at[1]]
        elif c % width:  # a pixel's channels in one contiguous read, which past the last channel (padding
            # lanes: zero weights) reads the next pixel's; the last pixel's clamped, in a branch of its own
            v = tirx.if_then_else(tirx.all(at[0] == h - 1, at[1] == w - 1), x[nn, at[0], at[1], at[2]],
                                  x[nn, at[0], at[1], ch])
        else:
            v = x[nn, at[0], at[1], ch]
        if a.get("raw"):  # 8-bit dot products: the input (shifted to int8), padded with its zero point
            pad = x_zp() if len(x_zp.shape) == 0 else x_zp[0]
            if a.get("shift"):
                return (tirx.Select(inside, v, pad).astype("int16") - a["shift"]).astype("int8")
            return tirx.Select(inside, v, pad)
        return tirx.Select(inside, v.astype("int16") - zx, tirx.const(0, "int16"))
    flat = not depthwise and flat_pixels(a, kh, kw)  # one row of oh * ow pixels (the tile spans image rows)
    if flat:
        owp = -(-(oh * ow) // tile) * tile
    if flat and nhwc_in and a.get("raw") and not a.get("shift") and c % width == 0:
        # the copy would be the input itself (raw bytes, whole channel groups): read in place (the flat
        # index's pixel // ow * ow + pixel % ow folds back to the pixel; a padded last tile's pixels past
        # the last read the last one, their addresses computed once per tile)
        last = oh * ow - 1
        at = (lambda xx: xx) if owp == oh * ow else (lambda xx: te.min(xx, last))
        xc = te.compute((n, 1, owp, blocks, width), lambda nn, yy, xx, cc, k: x[
            nn, at(xx) // ow, at(xx) % ow, cc * width + k], name="qconv_input_view")
    elif flat:  # (the padded last tile reads the last pixel again)
        xc = te.compute((n, 1, owp, blocks, width), lambda nn, yy, xx, cc, k: shifted(
            nn, te.min(xx, oh * ow - 1) // ow, te.min(xx, oh * ow - 1) % ow, cc, k), name="qconv_input")
    elif kh == kw == 1 and s != [1, 1]:  # a strided 1x1 conv reads every s-th pixel: lay out only those
        xc = te.compute((n, oh, owp, blocks, width),
                        lambda nn, yy, xx, cc, k: shifted(nn, yy * s[0], xx * s[1], cc, k), name="qconv_input")
        s = [1, 1]
    else:
        xc = te.compute((n, h + p[0] + p[2], wpad, blocks, width), shifted, name="qconv_input")
    if depthwise:
        ry, rx = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
        acc = te.compute((n, ob, oh, owp, lanes), lambda nn, bb, yy, xx, oi: te.sum(
            xc[nn, yy * s[0] + ry * d[0], xx * s[1] + rx * d[1], bb, oi].astype("int32")
            * wp[bb, ry, rx, 0, oi, 0].astype("int32"), axis=[ry, rx]), name="qconv2d_packed")
    else:
        rc, ry, rx, rk = (te.reduce_axis((0, e), nm) for e, nm in ((cb, "rc"), (kh, "ry"), (kw, "rx"), (kg, "rk")))
        acc = te.compute((n, ob, 1 if flat else oh, owp, lanes), lambda nn, bb, yy, xx, oi: te.sum(
            xc[nn, yy * s[0] + ry * d[0], xx * s[1] + rx * d[1], rc, rk].astype("int32")
            * wp[bb, ry, rx, rc, oi, rk].astype("int32"), axis=[rc, ry, rx, rk]), name="qconv2d_packed",
            attrs={"flat": 1} if flat else None)

    def unpack(nn, f, yy, xx):
        v = acc[nn, f // lanes, 0, yy * ow + xx, f % lanes] if flat else acc[nn, f // lanes, yy, xx, f % lanes]
        return v + b[f] if b is not None else v
    if a.get("out_layout") == "NHWC":  # channels-last: the write-back reads the lanes in order
        return te.compute((n, oh, ow, o), lambda nn, yy, xx, f: unpack(nn, f, yy, xx), name="qconv2d_unpack_nhwc")
    return te.compute((n, o, oh, ow), unpack, name="qconv2d_unpack")
