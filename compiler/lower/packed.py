"""TE compute for conv2d_packed: NCHW in and out, output channels computed in blocks.

Block `conv2d_packed` computes (N, blocks, OH, OW, block) with the packed weight's lanes
innermost (a vector of output channels per input pixel: broadcast FMAs); block `conv2d_unpack`
writes it back to NCHW with the bias added. The schedule (targets/schedules/conv2d.py) keys on
these two block names. `dense_packed` is the same with (M, N) output: block `dense_packed` computes
(M, blocks, block), block `dense_unpack` writes (M, N) with the bias.
"""
from tvm import te

from ..ops.nn import _pair
from . import lowering
from .nn import _pad4


@lowering("conv2d_packed")
def conv2d_packed(a, x, wp, b=None):
    g, o = a.get("groups", 1), a["out_channels"]
    s, d, p = _pair(a.get("strides"), [1, 1]), _pair(a.get("dilations"), [1, 1]), _pair(a.get("pads"), [0] * 4)
    n, c, h, wd = (int(v) for v in x.shape)
    blocks, ci, kh, kw, block = (int(v) for v in wp.shape)
    oh = (h + p[0] + p[2] - (kh - 1) * d[0] - 1) // s[0] + 1
    ow = (wd + p[1] + p[3] - (kw - 1) * d[1] - 1) // s[1] + 1
    nb, og = blocks // g, o // g
    xp = _pad4(x, p)
    rc, ry, rx = te.reduce_axis((0, ci), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")

    def chan(bi):
        return rc if g == 1 else (bi // nb) * ci + rc

    acc = te.compute((n, blocks, oh, ow, block), lambda nn, bi, yy, xx, oi: te.sum(
        xp[nn, chan(bi), yy * s[0] + ry * d[0], xx * s[1] + rx * d[1]] * wp[bi, rc, ry, rx, oi],
        axis=[rc, ry, rx]), name="conv2d_packed")

    def unpack(nn, f, yy, xx):
        j = f if g == 1 else f % og
        bi = j // block if g == 1 else (f // og) * nb + j // block
        v = acc[nn, bi, yy, xx, j % block]
        return v + b[f] if b is not None else v

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
