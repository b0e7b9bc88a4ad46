"""Upsampling ops: transposed convolution and resampling along one axis.

conv2d_transpose(x, w[, b]): ONNX ConvTranspose in 2-D. x NCHW, w (C, O/groups, kh, kw), pads
[top, left, bottom, right], output_padding [h, w] (extra rows/columns at the bottom/right). The
`decompose` pass rewrites it as a conv2d over the zero-upsampled input, so it runs on the conv
schedules.

resample(x, index, weight[, fill]): y[.., i, ..] = sum_t x[.., index[i, t], ..] * weight[i, t]
(+ fill[i]) along `axis`. Every Resize / Upsample mode (nearest, linear, cubic, antialias,
every coordinate transformation) is a table of taps per output position, built once at compile
time by `resize_taps`; an N-D resize is one resample per resized axis (the modes are separable).
"""
import math

import numpy as np

from . import ShapeError, defop
from .nn import _pair


# ---- conv2d_transpose ---------------------------------------------------------------------
def transpose_geometry(a, x, w):
    s, d = _pair(a.get("strides"), [1, 1]), _pair(a.get("dilations"), [1, 1])
    p, op = _pair(a.get("pads"), [0] * 4), _pair(a.get("output_padding"), [0, 0])
    full = [s[i] * (x[2 + i] - 1) + (w[2 + i] - 1) * d[i] + 1 + op[i] for i in range(2)]
    out = [full[i] - p[i] - p[i + 2] for i in range(2)]
    return s, d, p, op, full, out


def _conv_t_infer(a, x, w, b=None):
    if len(x.shape) != 4 or len(w.shape) != 4:
        raise ShapeError(f"conv2d_transpose wants 4-D input and weight, got {list(x.shape)} and {list(w.shape)}")
    g = a.get("groups", 1)
    if x.shape[1] != w.shape[0] or x.shape[1] % g:
        raise ShapeError(f"input has {x.shape[1]} channels but weight {list(w.shape)} with groups={g} wants {w.shape[0]}")
    o = w.shape[1] * g
    if b is not None and tuple(b.shape) != (o,):
        raise ShapeError(f"bias shape {list(b.shape)} does not match {o} output channels")
    *_, out = transpose_geometry(a, x.shape, w.shape)
    if min(out) <= 0:
        raise ShapeError(f"pads {a.get('pads')} leave an empty output")
    return (x.shape[0], o, out[0], out[1]), x.dtype


def _conv_t_flops(a, ins, outs):
    c, og, kh, kw = ins[1].shape
    return 2 * int(np.prod(ins[0].shape)) * og * kh * kw


@defop("conv2d_transpose", "conv2d", _conv_t_infer, _conv_t_flops)
def conv2d_transpose(attrs, x, w, b=None):
    s, d, p, op, full, out = transpose_geometry(attrs, x.shape, w.shape)
    g = attrs.get("groups", 1)
    n, c, h, wd = x.shape
    cg, og = c // g, w.shape[1]
    y = np.zeros((n, og * g, full[0], full[1]))
    for gi in range(g):
        xg = x[:, gi * cg:(gi + 1) * cg].astype(np.float64)
        for ky in range(w.shape[2]):
            for kx in range(w.shape[3]):
                contrib = np.einsum("nchw,co->nohw", xg, w[gi * cg:(gi + 1) * cg, :, ky, kx].astype(np.float64))
                y[:, gi * og:(gi + 1) * og, ky * d[0]:ky * d[0] + s[0] * (h - 1) + 1:s[0],
                  kx * d[1]:kx * d[1] + s[1] * (wd - 1) + 1:s[1]] += contrib
    # negative pads (an ONNX output_shape past the last tap) are zeros
    y = np.pad(y, [(0, 0), (0, 0)] + [(max(-p[i], 0), max(-p[i + 2], 0)) for i in range(2)])
    y = y[:, :, max(p[0], 0):max(p[0], 0) + out[0], max(p[1], 0):max(p[1], 0) + out[1]]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y.astype(x.dtype)


# ---- resample -----------------------------------------------------------------------------
def _resample_infer(a, x, index, weight, fill=None):
    ax = a["axis"]
    if not 0 <= ax < len(x.shape):
        raise ShapeError(f"axis {ax} is out of range for rank {len(x.shape)}")
    if len(index.shape) != 2 or tuple(index.shape) != tuple(weight.shape) or not index.dtype.startswith("int"):
        raise ShapeError(f"tap tables must be (out, taps) integers and weights of one shape, got "
                         f"{list(index.shape)} {index.dtype} and {list(weight.shape)}")
    if fill is not None and tuple(fill.shape) != (index.shape[0],):
        raise ShapeError(f"fill {list(fill.shape)} does not match {index.shape[0]} outputs")
    shape = list(x.shape)
    shape[ax] = index.shape[0]
    return tuple(shape), x.dtype


@defop("resample", "layout", _resample_infer,
       lambda a, i, o: 2 * int(np.prod(o[0].shape)) * i[1].shape[1])
def resample(attrs, x, index, weight, fill=None):
    ax = attrs["axis"]
    taps = np.take(x.astype(np.float64), index, axis=ax)  # [.., out, taps, ..]
    wshape = (1,) * ax + weight.shape + (1,) * (x.ndim - ax - 1)
    y = (taps * weight.reshape(wshape)).sum(axis=ax + 1)
    if fill is not None:
        y = y + fill.reshape((1,) * ax + fill.shape + (1,) * (x.ndim - ax - 1))
    return y.astype(x.dtype)


def _cubic(t, a):
    t = np.abs(t)
    return np.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                    np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))


def source_coords(mode, out_len, in_len, scale, roi=(0.0, 1.0)):
    """Input coordinate of every output position (ONNX coordinate_transformation_mode). The
    corner-aligned modes use the unrounded output length scale * in_len, as ONNX does."""
    y = np.arange(out_len, dtype=np.float64)
    length = scale * in_len
    if mode == "align_corners":
        return np.zeros(out_len) if length == 1 else y * (in_len - 1) / (length - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "pytorch_half_pixel":
        return np.full(out_len, -0.5) if length == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / (scale * in_len))
        return offset + (y + 0.5) / scale - 0.5
    if mode == "tf_crop_and_resize":
        lo, hi = roi
        if length == 1:
            return np.full(out_len, (hi - lo) * (in_len - 1) / 2 + lo * (in_len - 1))
        return y * (hi - lo) * (in_len - 1) / (length - 1) + lo * (in_len - 1)
    raise ValueError(f"coordinate_transformation_mode {mode!r}")


NEAREST = {"round_prefer_floor": lambda f: np.where(f <= 0.5, 0, 1),
           "round_prefer_ceil": lambda f: np.where(f < 0.5, 0, 1),
           "floor": lambda f: np.zeros_like(f, dtype=int), "ceil": lambda f: (f > 0).astype(int)}


def resize_taps(in_len, out_len, scale, mode="nearest", coord="half_pixel", nearest="round_prefer_floor",
                cubic_a=-0.75, exclude_outside=False, antialias=False, roi=(0.0, 1.0), extrapolation=0.0):
    """(index [out, taps] int64, weight [out, taps] float64, fill [out] or None) for one axis."""
    x = source_coords(coord, out_len, in_len, scale, roi)
    base = np.floor(x)
    frac = x - base
    base = base.astype(np.int64)
    if mode == "nearest":
        idx = (base + NEAREST[nearest](frac))[:, None]
        wt = np.ones_like(idx, dtype=np.float64)
    else:
        ss = min(scale, 1.0) if antialias else 1.0  # antialias widens the filter by 1/scale
        support = (1.0 if mode == "linear" else 2.0) / ss
        lo = int(math.floor(-support)) + 1
        offs = np.arange(lo, 1 - lo + 1)  # taps around floor(x): lo .. 1-lo
        idx = base[:, None] + offs[None, :]
        dist = (idx - x[:, None]) * ss
        wt = np.clip(1 - np.abs(dist), 0, None) if mode == "linear" else _cubic(dist, cubic_a)
        if exclude_outside:
            wt = np.where((idx < 0) | (idx >= in_len), 0.0, wt)
        if antialias or exclude_outside:
            wt = wt / wt.sum(axis=1, keepdims=True)
    idx = np.clip(idx, 0, in_len - 1)
    fill = None
    if coord == "tf_crop_and_resize":
        outside = (x < 0) | (x > in_len - 1)
        if outside.any():
            wt = np.where(outside[:, None], 0.0, wt)
            fill = np.where(outside, extrapolation, 0.0)
    return idx, wt, fill
