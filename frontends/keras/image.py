"""Image layers: Rescaling, Normalization, Resizing, UpSampling2D, Cropping2D, Conv2DTranspose.

Resizing and bilinear UpSampling2D follow TensorFlow's image resize (half-pixel centers, nearest
rounding half up); nearest UpSampling2D repeats pixels. Each becomes IR `resample` nodes along H
and W (compiler/ops/upsample.py). Conv2DTranspose becomes the IR's conv2d_transpose.
"""
import numpy as np

from ...compiler.ops.upsample import resize_taps
from .conv import TO_NCHW, _pair, _rank, activate_nchw, edges_2d
from .core import elementwise
from .registry import converter


def _per_channel(ctx, x, value, what):
    """A scalar, or a per-channel (last axis) list broadcast over X."""
    v = np.asarray(value, np.float32)
    if v.size == 1:
        return ctx.const(v.reshape(()))
    c = ctx.shape(x)[-1]
    if v.size != c:
        raise ctx.error(f"{what} has {v.size} values for {c} channels")
    return ctx.const(v.reshape((1,) * (len(ctx.shape(x)) - 1) + (c,)))


@converter("Rescaling")
def rescaling(ctx, inputs):
    x = inputs[0]
    y = ctx.add("mul", [x, _per_channel(ctx, x, ctx.opt("scale", 1.0), "scale")])
    offset = ctx.opt("offset", 0.0)
    if np.any(np.asarray(offset) != 0):
        y = ctx.add("add", [y, _per_channel(ctx, x, offset, "offset")])
    return [y]


@converter("Normalization")
def normalization(ctx, inputs):
    """(x - mean) / max(sqrt(variance), 1e-7), or its inverse with invert=True; mean and variance
    from the config or the adapted weights, kept along `axis`."""
    x = inputs[0]
    shape = ctx.shape(x)
    axes = ctx.opt("axis", -1)
    axes = [a % len(shape) for a in ([axes] if isinstance(axes, int) else (axes or []))]
    bshape = [shape[i] if i in axes else 1 for i in range(len(shape))]
    if ctx.opt("mean") is not None:
        mean, var = np.asarray(ctx.opt("mean"), np.float64), np.asarray(ctx.opt("variance"), np.float64)
    else:
        mean, var = ctx.weight(0).astype(np.float64), ctx.weight(1).astype(np.float64)
    mean = np.broadcast_to(mean.reshape(-1) if mean.size > 1 else mean, [shape[i] for i in axes]).reshape(bshape)
    var = np.broadcast_to(var.reshape(-1) if var.size > 1 else var, [shape[i] for i in axes]).reshape(bshape)
    std = np.maximum(np.sqrt(var), 1e-7)
    if ctx.opt("invert", False):
        return [ctx.add("add", [ctx.add("mul", [x, ctx.const(std)]), ctx.const(mean)])]
    return [ctx.add("mul", [ctx.add("sub", [x, ctx.const(mean)]), ctx.const(1.0 / std)])]


def _resize_hw(ctx, x, out_hw, mode, coord, nearest):
    """Resample an NHWC value to OUT_HW along H then W."""
    for ax, out in zip((1, 2), out_hw):
        n = ctx.shape(x)[ax]
        if out == n:
            continue
        idx, wt, _ = resize_taps(n, out, out / n, mode, coord, nearest)
        x = ctx.add("resample", [x, ctx.const(idx, np.int32), ctx.const(wt)], {"axis": ax})
    return x


@converter("Resizing")
def resizing(ctx, inputs):
    x = inputs[0]
    _rank(ctx, x, 4)
    interp = ctx.require("interpolation", "bilinear", "nearest", default="bilinear")
    for opt in ("crop_to_aspect_ratio", "pad_to_aspect_ratio", "antialias"):
        if ctx.opt(opt, False):
            raise ctx.unsupported(f"option {opt}=True is not supported")
    ctx.opt("fill_mode"), ctx.opt("fill_value")  # only used by pad_to_aspect_ratio
    out = (int(ctx.opt("height")), int(ctx.opt("width")))
    if interp == "nearest":
        return [_resize_hw(ctx, x, out, "nearest", "half_pixel", "round_prefer_ceil")]
    return [_resize_hw(ctx, x, out, "linear", "half_pixel", None)]


@converter("UpSampling2D")
def upsampling2d(ctx, inputs):
    x = inputs[0]
    n, h, w, c = _rank(ctx, x, 4)
    sh, sw = _pair(ctx.opt("size", 2))
    interp = ctx.require("interpolation", "nearest", "bilinear", default="nearest")
    if interp == "nearest":  # pixel repeat
        return [_resize_hw(ctx, x, (h * sh, w * sw), "nearest", "asymmetric", "floor")]
    return [_resize_hw(ctx, x, (h * sh, w * sw), "linear", "half_pixel", None)]


@converter("Cropping2D")
def cropping2d(ctx, inputs):
    x = inputs[0]
    n, h, w, c = _rank(ctx, x, 4)
    p = ctx.opt("cropping", ((0, 0), (0, 0)))
    (t, b), (l, r) = edges_2d(p)
    if t + b >= h or l + r >= w:
        raise ctx.error(f"cropping {p} removes all of the {h}x{w} input")
    return [ctx.add("slice", [x], {"starts": [int(t), int(l)], "ends": [h - int(b), w - int(r)], "axes": [1, 2]})]


def _transpose_pads(size, k, s, d, padding, out_pad):
    """(pad begin, pad end, output padding) of one axis, as Keras's deconv_output_length and
    TensorFlow's conv2d_transpose (the odd padding row at the end) lay the output out."""
    k = k + (k - 1) * (d - 1)
    if out_pad is not None:
        pad = k // 2 if padding == "same" else 0
        return pad, pad, out_pad
    out = size * s + max(k - s, 0) if padding == "valid" else size * s
    total = s * (size - 1) + k - out
    return (total // 2, total - total // 2, 0) if total >= 0 else (0, 0, -total)


@converter("Conv2DTranspose")
def conv2d_transpose(ctx, inputs):
    x = inputs[0]
    n, h, w, c = _rank(ctx, x, 4)
    filters, (kh, kw) = int(ctx.opt("filters")), _pair(ctx.opt("kernel_size"))
    strides, dilations = _pair(ctx.opt("strides", 1)), _pair(ctx.opt("dilation_rate", 1))
    padding = ctx.require("padding", "valid", "same")
    op = ctx.opt("output_padding")
    op = [None, None] if op is None else _pair(op)
    kernel = ctx.weight(0, (kh, kw, filters, c))
    bias = ctx.weight(1, (filters,)) if ctx.opt("use_bias", True) else None
    geo = [_transpose_pads(size, k, s, d, padding, q) for size, k, s, d, q in zip((h, w), (kh, kw), strides, dilations, op)]
    attrs = {"strides": strides, "dilations": dilations, "pads": [geo[0][0], geo[1][0], geo[0][1], geo[1][1]],
             "output_padding": [geo[0][2], geo[1][2]]}
    ins = [ctx.transpose(x, TO_NCHW), ctx.const(kernel.transpose(3, 2, 0, 1))] + ([ctx.const(bias)] if bias is not None else [])
    return [activate_nchw(ctx, ctx.add("conv2d_transpose", ins, attrs))]


@converter("LayerNormalization")
def layer_normalization(ctx, inputs):
    """Over trailing axes only (the IR's layer_norm normalizes axis..last)."""
    x = inputs[0]
    rank = len(ctx.shape(x))
    axes = ctx.opt("axis", -1)
    axes = sorted(a % rank for a in ([axes] if isinstance(axes, int) else axes))
    if axes != list(range(axes[0], rank)):
        raise ctx.unsupported(f"option axis={ctx.opt('axis')} is not supported (trailing axes only)")
    if ctx.opt("rms_scaling", False):
        raise ctx.unsupported("option rms_scaling=True is not supported")
    inner = ctx.shape(x)[axes[0]:]
    i, params = 0, []
    if ctx.opt("scale", True):
        params.append(ctx.const(ctx.weight(0).reshape(inner)))
        i = 1
    else:
        params.append(ctx.const(np.ones(inner, np.float32)))
    if ctx.opt("center", True):
        params.append(ctx.const(ctx.weight(i).reshape(inner)))
    attrs = {"axis": axes[0], "epsilon": float(ctx.opt("epsilon", 1e-3))}
    return [ctx.add("layer_norm", [x] + params, attrs, n_outputs=3)[0]]
