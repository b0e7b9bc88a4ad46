"""Neural-network ops: convolution, pooling, normalization, dense/matmul, softmax.

Layouts follow ONNX: activations NCHW, conv weights OIHW (I = C/groups), dense weights (N, K).
Pads are [top, left, bottom, right].
"""
import numpy as np

from . import ShapeError, defop, same_as_input
from .elementwise import broadcast_shape


def _pair(v, default):
    v = default if v is None else v
    return [int(x) for x in v]


def conv_out(size, k, stride, pad_total, dilation, ceil=False):
    span = (k - 1) * dilation + 1
    num = size + pad_total - span
    if num < 0:
        raise ShapeError(f"window {span} is larger than the padded input {size + pad_total}")
    out = (-(-num // stride) if ceil else num // stride) + 1
    return out


def _windows(xp, kh, kw, oh, ow, s, d):
    """(N, C, oh, ow, kh, kw) view of strided/dilated windows over a padded NCHW array."""
    n, c, h, w = xp.shape
    sn, sc, sh, sw = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (n, c, oh, ow, kh, kw), (sn, sc, sh * s[0], sw * s[1], sh * d[0], sw * d[1]), writeable=False)


# ---- conv2d -------------------------------------------------------------------------------
def _conv_infer(a, x, w, b=None):
    if len(x.shape) != 4 or len(w.shape) != 4:
        raise ShapeError(f"conv2d wants 4-D input and weight, got {list(x.shape)} and {list(w.shape)}")
    g = a.get("groups", 1)
    n, c, h, wd = x.shape
    o, ci, kh, kw = w.shape
    if c != ci * g or o % g:
        raise ShapeError(f"input has {c} channels but weight {list(w.shape)} with groups={g} wants {ci * g}")
    if b is not None and tuple(b.shape) != (o,):
        raise ShapeError(f"bias shape {list(b.shape)} does not match {o} output channels")
    s, d, p = _pair(a.get("strides"), [1, 1]), _pair(a.get("dilations"), [1, 1]), _pair(a.get("pads"), [0] * 4)
    return (n, o, conv_out(h, kh, s[0], p[0] + p[2], d[0]), conv_out(wd, kw, s[1], p[1] + p[3], d[1])), x.dtype


def _conv_flops(a, ins, outs):
    o, ci, kh, kw = ins[1].shape
    return 2 * int(np.prod(outs[0].shape)) * ci * kh * kw


@defop("conv2d", "conv2d", _conv_infer, _conv_flops)
def conv2d(attrs, x, w, b=None):
    g = attrs.get("groups", 1)
    s, d, p = _pair(attrs.get("strides"), [1, 1]), _pair(attrs.get("dilations"), [1, 1]), _pair(attrs.get("pads"), [0] * 4)
    o, ci, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    oh = conv_out(x.shape[2], kh, s[0], p[0] + p[2], d[0])
    ow = conv_out(x.shape[3], kw, s[1], p[1] + p[3], d[1])
    win = _windows(xp, kh, kw, oh, ow, s, d)
    outs = []
    og = o // g
    for gi in range(g):
        wg = w[gi * og:(gi + 1) * og].astype(np.float64)
        xg = win[:, gi * ci:(gi + 1) * ci].astype(np.float64)
        outs.append(np.einsum("nchwij,ocij->nohw", xg, wg, optimize=True))
    y = np.concatenate(outs, axis=1)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y.astype(x.dtype)


# ---- pooling ------------------------------------------------------------------------------
def _pool_geometry(a, x):
    k = _pair(a["kernel"], None)
    s, d, p = _pair(a.get("strides"), [1, 1]), _pair(a.get("dilations"), [1, 1]), _pair(a.get("pads"), [0] * 4)
    ceil = bool(a.get("ceil_mode", False))
    oh = conv_out(x.shape[2], k[0], s[0], p[0] + p[2], d[0], ceil)
    ow = conv_out(x.shape[3], k[1], s[1], p[1] + p[3], d[1], ceil)
    if ceil:  # the last window must start inside the input or its leading pad
        if (oh - 1) * s[0] >= x.shape[2] + p[0]:
            oh -= 1
        if (ow - 1) * s[1] >= x.shape[3] + p[1]:
            ow -= 1
    return k, s, d, p, oh, ow


def _pool_infer(a, x):
    if len(x.shape) != 4:
        raise ShapeError(f"2-D pooling wants a 4-D NCHW input, got {list(x.shape)}")
    *_, oh, ow = _pool_geometry(a, x)
    return (x.shape[0], x.shape[1], oh, ow), x.dtype


def _pool_flops(a, ins, outs):
    return int(np.prod(outs[0].shape)) * int(np.prod(a["kernel"]))


def _pool_windows(a, x, fill):
    k, s, d, p, oh, ow = _pool_geometry(a, x)
    # extra bottom/right room so ceil-mode windows stay inside the array
    eh = max(0, (oh - 1) * s[0] + (k[0] - 1) * d[0] + 1 - (x.shape[2] + p[0] + p[2]))
    ew = max(0, (ow - 1) * s[1] + (k[1] - 1) * d[1] + 1 - (x.shape[3] + p[1] + p[3]))
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2] + eh), (p[1], p[3] + ew)), constant_values=fill)
    return _windows(xp, k[0], k[1], oh, ow, s, d), (k, s, d, p, oh, ow, eh, ew)


@defop("max_pool2d", "pool", _pool_infer, _pool_flops)
def max_pool2d(attrs, x):
    fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min  # integer pools: int8 kernels
    win, _ = _pool_windows(attrs, x, fill)
    return win.max(axis=(4, 5)).astype(x.dtype)


@defop("avg_pool2d", "pool", _pool_infer, _pool_flops)
def avg_pool2d(attrs, x):
    win, (k, s, d, p, oh, ow, eh, ew) = _pool_windows(attrs, x.astype(np.float64), 0.0)
    total = win.sum(axis=(4, 5))
    ch, cw = avg_pool_divisors(attrs, x.shape)
    return (total / np.maximum(ch[:, None] * cw[None, :], 1)).astype(x.dtype)


def avg_pool_divisors(attrs, shape):
    """Per output row and column, the window taps inside the input (or input + explicit pads
    with count_include_pad); an average divides by their product."""
    k, s, d, p, oh, ow = _pool_geometry(attrs, _Shaped(shape))
    lo_h, hi_h, lo_w, hi_w = avg_pool_bounds(attrs, shape)
    rows = np.arange(oh)[:, None] * s[0] + np.arange(k[0])[None, :] * d[0]
    cols = np.arange(ow)[:, None] * s[1] + np.arange(k[1])[None, :] * d[1]
    return ((rows >= lo_h) & (rows < hi_h)).sum(1), ((cols >= lo_w) & (cols < hi_w)).sum(1)


def avg_pool_bounds(attrs, shape):
    """Row and column index ranges [lo, hi) of the padded input whose taps an average counts."""
    p, h, w = _pair(attrs.get("pads"), [0] * 4), shape[2], shape[3]
    if attrs.get("count_include_pad"):
        return 0, h + p[0] + p[2], 0, w + p[1] + p[3]
    return p[0], p[0] + h, p[1], p[1] + w


class _Shaped:
    def __init__(self, shape):
        self.shape = tuple(int(v) for v in shape)


def _global_infer(a, x):
    if len(x.shape) < 3:
        raise ShapeError(f"global pooling wants N, C and spatial dims, got {list(x.shape)}")
    return tuple(x.shape[:2]) + (1,) * (len(x.shape) - 2), x.dtype


@defop("global_avg_pool", "pool", _global_infer, lambda a, i, o: int(np.prod(i[0].shape)))
def global_avg_pool(attrs, x):
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float64).astype(x.dtype)


@defop("global_max_pool", "pool", _global_infer, lambda a, i, o: int(np.prod(i[0].shape)))
def global_max_pool(attrs, x):
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


# ---- normalization ------------------------------------------------------------------------
def _bn_infer(a, x, scale, bias, mean, var):
    c = x.shape[1] if len(x.shape) > 1 else None
    for v in (scale, bias, mean, var):
        if tuple(v.shape) != (c,):
            raise ShapeError(f"batch-norm parameter {list(v.shape)} does not match {c} channels")
    return x.shape, x.dtype


@defop("batch_norm", "elementwise", _bn_infer, lambda a, i, o: 2 * int(np.prod(o[0].shape)))
def batch_norm(attrs, x, scale, bias, mean, var):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale / np.sqrt(var.astype(np.float64) + attrs.get("epsilon", 1e-5))
    return ((x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)).astype(x.dtype)


@defop("lrn", "elementwise", same_as_input, lambda a, i, o: int(np.prod(o[0].shape)) * (a["size"] + 3))
def lrn(attrs, x):
    size, alpha, beta, bias = attrs["size"], attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0)
    sq = np.square(x.astype(np.float64))
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    padded = np.pad(sq, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    acc = sum(padded[:, i:i + c] for i in range(size))
    return (x / np.power(bias + alpha / size * acc, beta)).astype(x.dtype)


# ---- dense / matmul -----------------------------------------------------------------------
def _dense_infer(a, x, w, b=None):
    if len(x.shape) != 2 or len(w.shape) != 2 or x.shape[1] != w.shape[1]:
        raise ShapeError(f"dense wants (M,K) x (N,K), got {list(x.shape)} and {list(w.shape)}")
    if b is not None and tuple(b.shape) not in ((w.shape[0],), (1, w.shape[0])):
        raise ShapeError(f"bias shape {list(b.shape)} does not match {w.shape[0]} outputs")
    return (x.shape[0], w.shape[0]), x.dtype


@defop("dense", "dense", _dense_infer, lambda a, i, o: 2 * int(np.prod(o[0].shape)) * i[0].shape[1])
def dense(attrs, x, w, b=None):
    y = x.astype(np.float64) @ w.T.astype(np.float64)
    if b is not None:
        y = y + b.reshape(1, -1)
    return y.astype(x.dtype)


def _matmul_infer(a, x, y):
    if len(x.shape) < 1 or len(y.shape) < 1:
        raise ShapeError("matmul operands must have at least one dimension")
    xs, ys = list(x.shape), list(y.shape)
    xv, yv = len(xs) == 1, len(ys) == 1
    xs = [1] + xs if xv else xs
    ys = ys + [1] if yv else ys
    if xs[-1] != ys[-2]:
        raise ShapeError(f"matmul inner dims differ: {list(x.shape)} @ {list(y.shape)}")
    batch = broadcast_shape(xs[:-2], ys[:-2])
    out = list(batch) + ([] if xv else [xs[-2]]) + ([] if yv else [ys[-1]])
    return tuple(out), x.dtype


@defop("matmul", "dense", _matmul_infer,
       lambda a, i, o: 2 * int(np.prod(o[0].shape)) * i[0].shape[-1])
def matmul(attrs, x, y):
    return np.matmul(x.astype(np.float64), y.astype(np.float64)).astype(x.dtype)


# ---- softmax ------------------------------------------------------------------------------
def _axis_infer(a, x):
    ax = a.get("axis", -1)
    if not -len(x.shape) <= ax < len(x.shape):
        raise ShapeError(f"axis {ax} is out of range for rank {len(x.shape)}")
    return x.shape, x.dtype


@defop("softmax", "reduce", _axis_infer, lambda a, i, o: 4 * int(np.prod(o[0].shape)))
def softmax(attrs, x):
    z = x.astype(np.float64)
    z = np.exp(z - z.max(axis=attrs.get("axis", -1), keepdims=True))
    return (z / z.sum(axis=attrs.get("axis", -1), keepdims=True)).astype(x.dtype)


@defop("log_softmax", "reduce", _axis_infer, lambda a, i, o: 4 * int(np.prod(o[0].shape)))
def log_softmax(attrs, x):
    z = x.astype(np.float64)
    z = z - z.max(axis=attrs.get("axis", -1), keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=attrs.get("axis", -1), keepdims=True))).astype(x.dtype)
