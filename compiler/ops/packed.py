"""conv2d and dense with weights pre-packed at compile time for blocked-output-channel schedules.

`conv2d_packed(x, wp[, b])` equals `conv2d(x, unpack(wp)[, b])`. The packed weight has shape
(groups * nb, C/groups, KH, KW, block): output channel o of group g lives in block
g * nb + (o % og) // block, lane (o % og) % block, where og = O/groups and nb = ceil(og/block);
lanes past og are zero. Attrs are conv2d's plus `out_channels` and `block`; `in_layout` /
`out_layout` "NHWC" where the input / result is channels-last (float32 activations kept NHWC
between packed convs, compiler/passes/layout.py), else NCHW.
`dense_packed(x, wp[, b])` equals `dense(x, w[, b])` with the (N, K) weight packed into
(ceil(N/block), K, block); attrs `out_features` and `block`.
"""
import numpy as np

from . import ShapeError, defop
from .nn import _conv_flops, _conv_infer, conv2d, dense
from .nn import _dense_infer as _dense_infer_plain


def pack_weight(w, groups, block):
    """OIHW weight -> (groups*nb, I, KH, KW, block), zero-padded to whole blocks."""
    o, ci, kh, kw = w.shape
    og = o // groups
    nb = -(-og // block)
    wp = np.zeros((groups, nb * block, ci, kh, kw), w.dtype)
    wp[:, :og] = w.reshape(groups, og, ci, kh, kw)
    return np.ascontiguousarray(wp.reshape(groups * nb, block, ci, kh, kw).transpose(0, 2, 3, 4, 1))


def unpack_weight(wp, out_channels, groups):
    blocks, ci, kh, kw, block = wp.shape
    og = out_channels // groups
    w = wp.transpose(0, 4, 1, 2, 3).reshape(groups, (blocks // groups) * block, ci, kh, kw)[:, :og]
    return w.reshape(out_channels, ci, kh, kw)


class _V:
    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), dtype


def _unpacked(a, w):
    blocks, ci, kh, kw, block = w.shape
    o, g = a["out_channels"], a.get("groups", 1)
    if block != a["block"] or o % g or blocks != g * -(-(o // g) // block):
        raise ShapeError(f"packed weight {list(w.shape)} does not fit out_channels={o}, groups={g}, "
                         f"block={a['block']}")
    return _V((o, ci, kh, kw), w.dtype)


def nchw(attrs, key, shape):
    """SHAPE in NCHW order, where attrs[KEY] says it is NHWC."""
    return tuple(shape[i] for i in (0, 3, 1, 2)) if attrs.get(key) == "NHWC" else tuple(shape)


def flat_pixels(attrs, kh, kw):
    """Whether a direct conv2d_packed computes its pixels as one flat row (register tiles spanning
    image rows): a 1x1 conv without stride or padding on a channels-last input, or an NCHW conv
    whose short rows the layout pass marked `flat_rows` (targets/schedules/pack.py conv_flat_rows)."""
    return bool(attrs.get("flat_rows")) or attrs.get("in_layout") == "NHWC" and kh == kw == 1 \
        and list(attrs.get("strides", [1, 1])) == [1, 1] and not any(attrs.get("pads", [0] * 4))


def _infer(a, x, w, b=None):
    shape, dtype = _conv_infer(a, _V(nchw(a, "in_layout", x.shape), x.dtype), _unpacked(a, w), b)
    return (tuple(shape[i] for i in (0, 2, 3, 1)) if a.get("out_layout") == "NHWC" else shape), dtype


def _flops(a, ins, outs):
    return _conv_flops(a, [ins[0], _unpacked(a, ins[1])], outs)  # (the product of the output dims: any layout)


@defop("conv2d_packed", "conv2d", _infer, _flops)
def conv2d_packed(attrs, x, wp, b=None):
    x = x.transpose(0, 3, 1, 2) if attrs.get("in_layout") == "NHWC" else x
    y = conv2d(attrs, x, unpack_weight(wp, attrs["out_channels"], attrs.get("groups", 1)), b)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1)) if attrs.get("out_layout") == "NHWC" else y


# ---- dense ----------------------------------------------------------------------------------
def pack_dense_weight(w, block):
    """(N, K) weight -> (ceil(N/block), K, block), zero-padded to whole blocks."""
    n, k = w.shape
    nb = -(-n // block)
    wp = np.zeros((nb * block, k), w.dtype)
    wp[:n] = w
    return np.ascontiguousarray(wp.reshape(nb, block, k).transpose(0, 2, 1))


def _dense_unpacked(a, w):
    nb, k, block = w.shape
    n = a["out_features"]
    if block != a["block"] or nb != -(-n // block):
        raise ShapeError(f"packed weight {list(w.shape)} does not fit out_features={n}, block={a['block']}")
    return _V((n, k), w.dtype)


def _dense_infer(a, x, w, b=None):
    return _dense_infer_plain(a, x, _dense_unpacked(a, w), b)


@defop("dense_packed", "dense", _dense_infer,
       lambda a, i, o: 2 * int(np.prod(o[0].shape)) * i[0].shape[1])
def dense_packed(attrs, x, wp, b=None):
    w = wp.transpose(0, 2, 1).reshape(-1, wp.shape[1])[:attrs["out_features"]]
    return dense(attrs, x, w, b)
