"""conv2d with a weight pre-packed at compile time for a blocked-output-channel schedule.

`conv2d_packed(x, wp[, b])` equals `conv2d(x, unpack(wp)[, b])`. The packed weight has shape
(groups * nb, C/groups, KH, KW, block): output channel o of group g lives in block
g * nb + (o % og) // block, lane (o % og) % block, where og = O/groups and nb = ceil(og/block);
lanes past og are zero. Attrs are conv2d's plus `out_channels` and `block`.
"""
import numpy as np

from . import ShapeError, defop
from .nn import _conv_flops, _conv_infer, conv2d


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


def _infer(a, x, w, b=None):
    return _conv_infer(a, x, _unpacked(a, w), b)


def _flops(a, ins, outs):
    return _conv_flops(a, [ins[0], _unpacked(a, ins[1])], outs)


@defop("conv2d_packed", "conv2d", _infer, _flops)
def conv2d_packed(attrs, x, wp, b=None):
    return conv2d(attrs, x, unpack_weight(wp, attrs["out_channels"], attrs.get("groups", 1)), b)
