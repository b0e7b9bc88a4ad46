"""ConvTranspose (1-D and 2-D), Resize and Upsample.

A resize becomes one IR `resample` per axis whose size changes, with the tap table of the
node's mode (compiler/ops/upsample.py `resize_taps`), built at compile time.
"""
import numpy as np

from ...compiler.ops.upsample import NEAREST, resize_taps
from .conv import to_2d
from .registry import converter


@converter("ConvTranspose")
def conv_transpose(ctx):
    x, w = ctx.input(0), ctx.input(1)
    xs, ws = ctx.shape(x), ctx.shape(w)
    r = len(xs) - 2
    if r not in (1, 2):
        raise ctx.unsupported(f"{r}-D transposed convolution is not supported (1-D and 2-D only)")
    if len(ws) != len(xs):
        raise ctx.error(f"weight {list(ws)} does not match input {list(xs)}")
    if not ctx.dtype(x).startswith("float"):
        raise ctx.unsupported(f"input dtype {ctx.dtype(x)} is not supported (floats only)")
    kernel = list(ctx.attr("kernel_shape") or ws[2:])
    if kernel != list(ws[2:]):
        raise ctx.error(f"kernel_shape {kernel} does not match weight {list(ws)}")
    group = int(ctx.attr("group", 1))
    strides = list(ctx.attr("strides") or [1] * r)
    dilations = list(ctx.attr("dilations") or [1] * r)
    out_pad = list(ctx.attr("output_padding") or [0] * r)
    pads = _transpose_pads(ctx, xs[2:], kernel, strides, dilations, out_pad)
    ins = [x, w] + ([ctx.input(2)] if ctx.has_input(2) else [])
    if r == 1:
        ins[0], strides, dilations, pads = to_2d(ctx, x, strides, dilations, pads)
        ins[1] = ctx.reshape(w, ws[:2] + (1, ws[2]))
        out_pad = [0] + out_pad
    y = ctx.add1("conv2d_transpose", ins, {"strides": strides, "dilations": dilations, "pads": pads,
                                           "output_padding": out_pad, "groups": group})
    if r == 1:
        ys = ctx.shape(y)
        y = ctx.reshape(y, (ys[0], ys[1], ys[3]))
    return [y]


def _transpose_pads(ctx, sizes, kernel, strides, dilations, out_pad):
    """[begin..., end...] from pads, or from output_shape / auto_pad: the total padding is split as
    the ONNX reference does (SAME_UPPER puts the odd one at the end, otherwise at the beginning);
    an output_shape larger than the convolution gives is a negative pad (zeros at the end)."""
    r = len(sizes)
    auto = ctx.attr("auto_pad", "NOTSET") or "NOTSET"
    out_shape = ctx.attr("output_shape")
    pads = ctx.attr("pads")
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise ctx.unsupported(f"auto_pad={auto!r} is not supported")
    if out_shape is None and (auto in ("NOTSET", "VALID") or pads is not None):
        pads = [0] * (2 * r) if pads is None or auto == "VALID" else list(pads)
        if len(pads) != 2 * r:
            raise ctx.error(f"pads {pads} need {2 * r} entries")
        return pads
    out_shape = list(out_shape)[-r:] if out_shape is not None else [n * s for n, s in zip(sizes, strides)]
    begin, end = [], []
    for n, k, s, d, q, o in zip(sizes, kernel, strides, dilations, out_pad, out_shape):
        total = s * (n - 1) + q + (k - 1) * d + 1 - o
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return begin + end


def _floats(v):
    return [] if v is None else [float(f) for f in np.asarray(v).reshape(-1)]


@converter("Resize")
def resize(ctx):
    x = ctx.input(0)
    xs, rank = ctx.shape(x), len(ctx.shape(x))
    if not ctx.dtype(x).startswith("float"):
        raise ctx.unsupported(f"input dtype {ctx.dtype(x)} is not supported (floats only)")
    axes = [int(a) % rank for a in ctx.attr("axes", range(rank))]
    if ctx.opset < 11:  # X, scales; asymmetric coordinates
        return [_resize(ctx, x, axes, _floats(ctx.const(1, "scales")), None, ctx.attr("mode", "nearest"),
                        "asymmetric", None)]
    roi = _floats(ctx.const(1, "roi")) if ctx.has_input(1) else []
    scales = _floats(ctx.const(2, "scales")) if ctx.has_input(2) else []
    sizes = [int(v) for v in np.asarray(ctx.const(3, "sizes")).reshape(-1)] if ctx.has_input(3) else []
    mode = ctx.attr("mode", "nearest")
    coord = ctx.attr("coordinate_transformation_mode", "half_pixel")
    opts = {"nearest": ctx.attr("nearest_mode", "round_prefer_floor"),
            "cubic_a": float(ctx.attr("cubic_coeff_a", -0.75)),
            "exclude_outside": bool(ctx.attr("exclude_outside", 0)),
            "antialias": bool(ctx.attr("antialias", 0)),
            "extrapolation": float(ctx.attr("extrapolation_value", 0.0))}
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
    if bool(scales) == bool(sizes):
        raise ctx.error("exactly one of scales and sizes must be given")
    if sizes and policy != "stretch":
        if policy not in ("not_larger", "not_smaller"):
            raise ctx.unsupported(f"keep_aspect_ratio_policy={policy!r} is not supported")
        pick = min if policy == "not_larger" else max
        scale = pick(s / xs[a] for s, a in zip(sizes, axes))
        scales, sizes = [scale] * len(axes), [int(scale * xs[a] + 0.5) for a in axes]
    if roi and coord == "tf_crop_and_resize":
        n = len(axes) if len(roi) == 2 * len(axes) else rank
        roi = {a: (roi[i], roi[i + n]) for i, a in enumerate(axes if n == len(axes) else range(rank))}
    else:
        roi = {}
    return [_resize(ctx, x, axes, scales, sizes, mode, coord, roi, **opts)]


def _resize(ctx, x, axes, scales, sizes, mode, coord, roi, nearest=None, **opts):
    xs = ctx.shape(x)
    if mode not in ("nearest", "linear", "cubic"):
        raise ctx.unsupported(f"mode={mode!r} is not supported")
    if nearest is not None and nearest not in NEAREST:
        raise ctx.unsupported(f"nearest_mode={nearest!r} is not supported")
    if len(scales or sizes) != len(axes):
        raise ctx.error(f"{'scales' if scales else 'sizes'} {scales or sizes} do not match {len(axes)} axes")
    if any(s <= 0 for s in scales):
        raise ctx.error(f"scales {scales} must be positive")
    for i, ax in enumerate(axes):
        n = xs[ax]
        out = sizes[i] if sizes else int(np.floor(n * scales[i]))
        scale = out / n if sizes else scales[i]
        lohi = (roi or {}).get(ax, (0.0, 1.0))
        if out == n and scale == 1.0 and lohi == (0.0, 1.0):
            continue
        rounding = nearest or ("ceil" if scale < 1 else "floor")  # opset < 11 and Upsample
        idx, wt, fill = resize_taps(n, out, scale, mode, coord, rounding, roi=lohi, **opts)
        ins = [x, ctx.add_const(idx.astype(np.int32), "taps"), ctx.add_const(wt.astype(ctx.dtype(x)), "weights")]
        if fill is not None:
            ins.append(ctx.add_const(fill.astype(ctx.dtype(x)), "fill"))
        x = ctx.add1("resample", ins, {"axis": ax})
    return x if x != ctx.input(0) else ctx.add1("identity", [x])


@converter("Upsample")
def upsample(ctx):
    x = ctx.input(0)
    rank = len(ctx.shape(x))
    scales = _floats(ctx.attr("scales") if ctx.opset < 9 else ctx.const(1, "scales"))
    if ctx.opset < 7:
        ctx.ignore("height_scale", "width_scale")
        raise ctx.unsupported("Upsample before opset 7 is not supported")
    return [_resize(ctx, x, list(range(rank)), scales, None, ctx.attr("mode", "nearest"), "asymmetric", None)]
