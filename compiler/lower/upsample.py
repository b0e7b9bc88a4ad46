"""TE computes for resample (tap tables) and layer_norm. conv2d_transpose has none: the
`decompose` pass turns it into a conv2d before lowering."""
import numpy as np
from tvm import te, tirx, topi

from ..ops.layer_norm import norm_axis
from . import lowering


@lowering("resample")
def resample(a, x, index, weight, fill=None):
    ax, taps = a["axis"], int(index.shape[1])
    shape = list(x.shape)
    shape[ax] = index.shape[0]

    def body(*i):
        def tap(t):
            src = list(i)
            src[ax] = index[i[ax], t]
            v = x(*src)
            return v * weight[i[ax], t].astype(x.dtype)
        acc = tap(0)
        for t in range(1, taps):
            acc = acc + tap(t)
        return acc + fill[i[ax]].astype(x.dtype) if fill is not None else acc
    return te.compute(shape, body, name="resample")


@lowering("layer_norm")
def layer_norm(a, x, scale, bias=None):
    rank = len(x.shape)
    ax = norm_axis(a, rank)
    axes = list(range(ax, rank))
    n = float(np.prod([int(x.shape[i]) for i in axes]))
    total = topi.sum(x, axis=axes, keepdims=True)
    mean = te.compute(total.shape, lambda *i: total(*i) / tirx.const(n, x.dtype), name="ln_mean")

    def stat(t, i):
        return t(*[0 if k >= ax else v for k, v in enumerate(i)])
    dev = te.compute(x.shape, lambda *i: x(*i) - stat(mean, i), name="ln_dev")
    sq = topi.sum(te.compute(x.shape, lambda *i: dev(*i) * dev(*i), name="ln_sq"), axis=axes, keepdims=True)
    inv = te.compute(sq.shape, lambda *i: tirx.const(1.0, x.dtype) / te.sqrt(
        sq(*i) / tirx.const(n, x.dtype) + tirx.const(a.get("epsilon", 1e-5), x.dtype)), name="ln_inv")

    def param(p, i):
        off = rank - len(p.shape)
        return p(*[0 if int(p.shape[k]) == 1 else i[off + k] for k in range(len(p.shape))])

    def out(*i):
        y = dev(*i) * stat(inv, i) * param(scale, i)
        return y + param(bias, i) if bias is not None else y
    return [te.compute(x.shape, out, name="layer_norm"), mean, inv]
