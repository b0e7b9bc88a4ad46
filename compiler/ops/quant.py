"""Quantized (integer) ops, with onnxruntime's arithmetic: round half to even, saturate.

    quantize_linear(x, scale, zp; dtype)     y = sat(rint(x / scale) + zp)            float -> int
    dequantize_linear(x, scale, zp; dtype)   y = float32(x - zp) * scale              int -> float
    qconv2d(x, w, x_zp, w_zp[, b])           int32 sum((x - x_zp) * (w - w_zp)) [+ b]  (conv2d attrs)
    qdense(x, w, x_zp, w_zp[, b])            the same for x (M, K) and w (N, K)
    qmatmul(a, b, a_zp, b_zp)                int32 (a - a_zp) @ (b - b_zp), batch dims broadcast
    requantize(acc, m, zp[, off]; dtype, min, max)
                      y = clamp(rint(float32(acc) * m [+ off]) + zp, min, max)   (off: what a float bias
                      has beyond the int32 one, in output steps)
    qadd(a, b, sa, za, sb, zb, sy, zy; dtype, min, max)
                      y = clamp(rint((float32(a - za) * sa + float32(b - zb) * sb) / sy) + zy, min, max)
    qglobal_avg_pool(x, sx, zx, sy, zy; dtype)   quantize(global_avg_pool(dequantize(x)))
    qmax_pool2d(x; max_pool2d attrs, layout)     max_pool2d on int8 (pads hold the dtype's minimum)

Scales and zero points of quantize/dequantize/requantize broadcast to the data (the frontend
reshapes per-axis and blocked ones), so per-tensor and per-channel are the same op. In qconv2d
x_zp is a scalar and w_zp a scalar or one per output channel; in qdense/qmatmul a_zp is a
scalar or one per row (M) and b_zp a scalar or one per column (N). int32 sums are exact: the
references accumulate in float64 (exact below 2^53). `min`/`max` of requantize clamp in the
quantized domain (a fused ReLU or Clip); they default to the dtype's range.
"""
import numpy as np

from . import ShapeError, defop
from .elementwise import broadcast_shape
from .nn import _conv_flops, _conv_infer, _dense_infer, _matmul_infer, _pool_geometry, conv2d, global_avg_pool, max_pool2d

INT_TYPES = ("int8", "uint8", "int16", "uint16", "int32")


def qrange(dtype):
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _check_params(x, *params):
    for p in params:
        if broadcast_shape(x.shape, p.shape) != tuple(x.shape):
            raise ShapeError(f"scale / zero point of shape {list(p.shape)} does not broadcast to {list(x.shape)}")


def _quantize_infer(a, x, scale, zp):
    if not x.dtype.startswith("float") and x.dtype != "int32":
        raise ShapeError(f"quantize_linear wants a float input, got {x.dtype}")
    if a["dtype"] not in INT_TYPES[:4] or zp.dtype != a["dtype"]:
        raise ShapeError(f"quantize_linear to {a['dtype']} with a {zp.dtype} zero point")
    _check_params(x, scale, zp)
    return x.shape, a["dtype"]


def _ew(a, ins, outs):
    return int(np.prod(outs[0].shape))


@defop("quantize_linear", "elementwise", _quantize_infer, _ew)
def quantize_linear(attrs, x, scale, zp):
    lo, hi = qrange(attrs["dtype"])
    q = np.rint(x.astype(np.float32) / scale.astype(np.float32)) + zp.astype(np.float32)
    return np.clip(q, lo, hi).astype(attrs["dtype"])


def _dequantize_infer(a, x, scale, zp):
    if x.dtype not in INT_TYPES or zp.dtype != x.dtype:
        raise ShapeError(f"dequantize_linear wants an integer input and zero point, got {x.dtype} and {zp.dtype}")
    if not scale.dtype.startswith("float"):
        raise ShapeError(f"dequantize_linear wants a float scale, got {scale.dtype}")
    _check_params(x, scale, zp)
    return x.shape, a.get("dtype", scale.dtype)


@defop("dequantize_linear", "elementwise", _dequantize_infer, _ew)
def dequantize_linear(attrs, x, scale, zp):
    diff = (x.astype(np.int64) - zp.astype(np.int64)).astype(np.float32)
    return (diff * scale.astype(np.float32)).astype(attrs.get("dtype", scale.dtype))


def _int8(*values):
    for v in values:
        if v.dtype not in ("int8", "uint8"):
            raise ShapeError(f"integer conv/matmul wants int8 or uint8 operands, got {v.dtype}")


def _zp_check(zp, dtype, sizes, what):
    if zp.dtype != dtype:
        raise ShapeError(f"{what} zero point is {zp.dtype}, its operand {dtype}")
    if int(np.prod(zp.shape)) != 1 and tuple(zp.shape) not in [(s,) for s in sizes]:
        raise ShapeError(f"{what} zero point of shape {list(zp.shape)}: want a scalar or {sizes[-1]} values")


def _bias_check(b, n):
    if b is not None and (b.dtype != "int32" or tuple(b.shape) != (n,)):
        raise ShapeError(f"integer bias must be int32 of shape [{n}], got {b.dtype} {list(b.shape)}")


def _qconv_infer(a, x, w, x_zp, w_zp, b=None):
    _int8(x, w)
    _zp_check(x_zp, x.dtype, [], "input")
    _zp_check(w_zp, w.dtype, [w.shape[0]], "weight")
    _bias_check(b, w.shape[0])
    return _conv_infer(a, x, w)[0], "int32"


def zp_vector(zp, n):
    """A zero point (scalar or per-channel) as N int64 values."""
    return np.broadcast_to(zp.astype(np.int64).reshape(-1), (n,))


def _exact(y):
    return np.rint(y).astype(np.int64).astype(np.int32)


@defop("qconv2d", "conv2d", _qconv_infer, _conv_flops)
def qconv2d(attrs, x, w, x_zp, w_zp, b=None):
    xs = x.astype(np.float64) - float(x_zp.reshape(-1)[0])
    ws = w.astype(np.float64) - zp_vector(w_zp, w.shape[0]).reshape(-1, 1, 1, 1)
    y = conv2d(attrs, xs, ws)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return _exact(y)


def _qdense_infer(a, x, w, x_zp, w_zp, b=None):
    _int8(x, w)
    _dense_infer(a, x, w)
    _zp_check(x_zp, x.dtype, [x.shape[0]], "input")
    _zp_check(w_zp, w.dtype, [w.shape[0]], "weight")
    _bias_check(b, w.shape[0])
    return (x.shape[0], w.shape[0]), "int32"


@defop("qdense", "dense", _qdense_infer, lambda a, i, o: 2 * int(np.prod(o[0].shape)) * i[0].shape[1])
def qdense(attrs, x, w, x_zp, w_zp, b=None):
    xs = x.astype(np.float64) - zp_vector(x_zp, x.shape[0]).reshape(-1, 1)
    ws = w.astype(np.float64) - zp_vector(w_zp, w.shape[0]).reshape(-1, 1)
    y = xs @ ws.T
    return _exact(y if b is None else y + b.reshape(1, -1))


def _qmatmul_infer(a, x, y, x_zp, y_zp):
    _int8(x, y)
    if len(x.shape) < 2 or len(y.shape) < 2:
        raise ShapeError("integer matmul wants operands of rank >= 2")
    _zp_check(x_zp, x.dtype, [x.shape[-2]], "A")
    _zp_check(y_zp, y.dtype, [y.shape[-1]], "B")
    return _matmul_infer(a, x, y)[0], "int32"


@defop("qmatmul", "dense", _qmatmul_infer, lambda a, i, o: 2 * int(np.prod(o[0].shape)) * i[0].shape[-1])
def qmatmul(attrs, x, y, x_zp, y_zp):
    xs = x.astype(np.float64) - zp_vector(x_zp, x.shape[-2]).reshape(-1, 1)
    ys = y.astype(np.float64) - zp_vector(y_zp, y.shape[-1]).reshape(1, -1)
    return _exact(np.matmul(xs, ys))


def _requantize_infer(a, acc, m, zp, off=None):
    if acc.dtype != "int32" or not m.dtype.startswith("float") or zp.dtype != a["dtype"] or \
            off is not None and not off.dtype.startswith("float"):
        raise ShapeError(f"requantize wants int32, a float multiplier, a {a['dtype']} zero point and a float "
                         f"offset, got {acc.dtype}, {m.dtype}, {zp.dtype}{'' if off is None else ', ' + off.dtype}")
    _check_params(acc, m, zp, *([] if off is None else [off]))
    return acc.shape, a["dtype"]


def clamp_bounds(attrs):
    lo, hi = qrange(attrs["dtype"])
    return max(lo, int(attrs.get("min", lo))), min(hi, int(attrs.get("max", hi)))


@defop("requantize", "elementwise", _requantize_infer, _ew)
def requantize(attrs, acc, m, zp, off=None):
    lo, hi = clamp_bounds(attrs)
    v = acc.astype(np.float32) * m.astype(np.float32)
    q = np.rint(v if off is None else v + off.astype(np.float32)) + zp.astype(np.float32)
    return np.clip(q, lo, hi).astype(attrs["dtype"])


def _qadd_infer(a, x, y, sx, zx, sy, zy, so, zo):
    if x.dtype not in ("int8", "uint8") or y.dtype not in ("int8", "uint8") or zo.dtype != a["dtype"]:
        raise ShapeError(f"qadd wants int8 operands and a {a['dtype']} zero point, "
                         f"got {x.dtype}, {y.dtype}, {zo.dtype}")
    if tuple(x.shape) != tuple(y.shape) or any(int(np.prod(p.shape)) != 1 for p in (sx, zx, sy, zy, so, zo)):
        raise ShapeError(f"qadd wants operands of one shape and per-tensor parameters, got {list(x.shape)} "
                         f"and {list(y.shape)}")
    return x.shape, a["dtype"]


@defop("qadd", "elementwise", _qadd_infer, _ew)
def qadd(attrs, x, y, sx, zx, sy, zy, so, zo):
    """The QDQ graph quantize(dequantize(x) + dequantize(y)) in one op (fold_qdq), its float32
    arithmetic as written: a residual add between int8 kernels, fused into the conv before it."""
    lo, hi = clamp_bounds(attrs)
    s = dequantize_linear({}, x, sx, zx) + dequantize_linear({}, y, sy, zy)
    q = np.rint(s / so.astype(np.float32)) + zo.astype(np.float32)
    return np.clip(q, lo, hi).astype(attrs["dtype"])


def _qgap_infer(a, x, sx, zx, sy, zy):
    if x.dtype not in ("int8", "uint8") or len(x.shape) != 4 or zy.dtype != a["dtype"] or \
            any(int(np.prod(p.shape)) != 1 for p in (sx, zx, sy, zy)):
        raise ShapeError(f"qglobal_avg_pool wants a 4-D int8 input, per-tensor parameters and a {a['dtype']} "
                         f"zero point, got {x.dtype} {list(x.shape)}")
    n, c = nchw(a, "in_layout", x.shape)[:2]
    return (n, c, 1, 1), a["dtype"]


@defop("qglobal_avg_pool", "pool", _qgap_infer, lambda a, i, o: int(np.prod(i[0].shape)))
def qglobal_avg_pool(attrs, x, sx, zx, sy, zy):
    """The QDQ graph quantize(global_avg_pool(dequantize(x))) in one op (fold_qdq) on the int8 input,
    which its conv then writes as int8 instead of a float32 copy. (The kernel sums the int8 values
    exactly and takes the mean in float32: the float sum's rounding aside, the same.) attrs["in_layout"]
    "NHWC": a channels-last input (fold_qdq.channels_last)."""
    x = x.transpose(0, 3, 1, 2) if attrs.get("in_layout") == "NHWC" else x
    return quantize_linear(attrs, global_avg_pool({}, dequantize_linear({}, x, sx, zx)), sy, zy)


def _qmax_pool_infer(a, x):
    if x.dtype not in ("int8", "uint8") or len(x.shape) != 4 or a.get("ceil_mode"):
        raise ShapeError(f"qmax_pool2d wants a 4-D int8 input and no ceil_mode, got {x.dtype} {list(x.shape)}")
    n, c, h, w = nchw(a, "layout", x.shape)
    *_, oh, ow = _pool_geometry(a, _Shaped((n, c, h, w), x.dtype))
    return ((n, oh, ow, c) if a.get("layout") == "NHWC" else (n, c, oh, ow)), x.dtype


@defop("qmax_pool2d", "pool", _qmax_pool_infer, lambda a, i, o: int(np.prod(o[0].shape)) * int(np.prod(a["kernel"])))
def qmax_pool2d(attrs, x):
    """max_pool2d on an int8 tensor (fold_qdq: quantize(max_pool2d(dequantize(x))) with the same
    parameters), its pads the dtype's minimum; attrs["layout"] "NHWC": a channels-last input and
    result (fold_qdq.channels_last), so the int8 convs around it stay channels-last."""
    nhwc = attrs.get("layout") == "NHWC"
    y = max_pool2d(attrs, x.transpose(0, 3, 1, 2) if nhwc else x)
    return y.transpose(0, 2, 3, 1) if nhwc else y


# ---- qconv2d with weights packed at compile time (targets/schedules/int8.py) --------------------
def pack_qweight(w, w_zp, lanes, kgroup, raw=False, blocks=None):
    """OIHW int8 weight -> (BLOCKS or ceil(O/lanes), KH, KW, ceil(C/kgroup), lanes, kgroup) holding
    w - w_zp: `lanes` output channels x `kgroup` input channels per dot-product step, zero-padded; the steps
    of one output channel block in the kernel's reduction order (taps, then channel blocks). Stored as
    int8 where w - w_zp fits (symmetric weights: a quarter of float32), else int16. RAW: the int8
    weights as they are (for u8 x s8 dot products that correct for the input zero point)."""
    o, c, kh, kw = w.shape
    ob, cb = max(-(-o // lanes), blocks or 0), -(-c // kgroup)
    full = np.zeros((ob * lanes, cb * kgroup, kh, kw), np.int16)
    full[:o, :c] = w.astype(np.int16) - (0 if raw else zp_vector(w_zp, o).astype(np.int16).reshape(-1, 1, 1, 1))
    packed = np.ascontiguousarray(full.reshape(ob, lanes, cb, kgroup, kh, kw).transpose(0, 4, 5, 2, 1, 3))
    return packed.astype(np.int8) if packed.min(initial=0) >= -128 and packed.max(initial=0) <= 127 else packed


def unpack_qweight(wp, out_channels, in_channels):
    ob, kh, kw, cb, lanes, kgroup = wp.shape
    full = wp.astype(np.int16).transpose(0, 4, 3, 5, 1, 2).reshape(ob * lanes, cb * kgroup, kh, kw)
    return full[:out_channels, :in_channels]


def _qconv_packed_infer(a, x, wp, x_zp, b=None):
    if x.dtype not in ("int8", "uint8") or wp.dtype not in ("int8", "int16") or len(wp.shape) != 6:
        raise ShapeError(f"qconv2d_packed wants an int8 input and a 6-D int8/int16 packed weight, got {x.dtype} "
                         f"and {wp.dtype} {list(wp.shape)}")
    x = _Shaped(nchw(a, "in_layout", x.shape), x.dtype)
    o, c = a["out_channels"], x.shape[1] // a.get("groups", 1)
    ob, kh, kw, cb, lanes, kgroup = wp.shape
    if ob * lanes < o or cb * kgroup < c:
        raise ShapeError(f"packed weight {list(wp.shape)} does not hold {o} x {c} channels")
    _zp_check(x_zp, x.dtype, [], "input")
    _bias_check(b, o)
    n, o, oh, ow = _conv_infer(a, x, _Shaped((o, c, kh, kw), "int16"))[0]
    return ((n, oh, ow, o) if a.get("out_layout") == "NHWC" else (n, o, oh, ow)), "int32"


def nchw(attrs, key, shape):
    """SHAPE in NCHW order: attrs[KEY] "NHWC" (an int8 activation kept in the packed conv's
    channels-last layout between int8 kernels, fold_qdq.channels_last) or NCHW."""
    return tuple(shape[i] for i in (0, 3, 1, 2)) if attrs.get(key) == "NHWC" else tuple(shape)


class _Shaped:
    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), dtype


def _qconv_packed_flops(a, ins, outs):
    ob, kh, kw, cb, lanes, kgroup = ins[1].shape
    return 2 * int(np.prod(outs[0].shape)) * nchw(a, "in_layout", ins[0].shape)[1] // a.get("groups", 1) * kh * kw


@defop("qconv2d_packed", "conv2d", _qconv_packed_infer, _qconv_packed_flops)
def qconv2d_packed(attrs, x, wp, x_zp, b=None):
    """attrs["raw"]: WP holds raw int8 weights and B the bias minus (x_zp - shift) * sum(w): the
    kernel sums (x - shift) * w over the input padded with x_zp (u8 x s8 dot products: shift 0;
    s8 x s8 ones on a uint8 input: shift 128) and adds B. attrs["in_layout"] / ["out_layout"]:
    "NHWC" where the input / result is channels-last. attrs["groups"]: a depthwise conv (one input
    channel per group), its weights packed (O/lanes, KH, KW, 1, lanes, 1)."""
    x = x.transpose(0, 3, 1, 2) if attrs.get("in_layout") == "NHWC" else x
    w = unpack_qweight(wp, attrs["out_channels"], x.shape[1] // attrs.get("groups", 1)).astype(np.float64)
    zx = float(x_zp.reshape(-1)[0])
    y = conv2d(attrs, x.astype(np.float64) - zx, w)
    if attrs.get("raw"):
        y = y + (zx - attrs.get("shift", 0)) * w.sum(axis=(1, 2, 3)).reshape(1, -1, 1, 1)
    y = _exact(y if b is None else y + b.reshape(1, -1, 1, 1))
    return y.transpose(0, 2, 3, 1) if attrs.get("out_layout") == "NHWC" else y
