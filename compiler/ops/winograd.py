"""conv2d_winograd: a 3x3, stride-1, dilation-1, ungrouped conv2d computed by Winograd's minimal
filtering F(m x m, 3 x 3) from weights transformed at compile time.

`conv2d_winograd(x, u[, b])` equals `conv2d(x, w[, b])` (attrs: conv2d's `pads`, plus `out_channels`,
`m` the output tile (2: see MATRICES), `block` the output channels per packed lane group; the lowering's
register tile and cache blocks, `tile` and `rows`, are the schedule's business). The transformed
weight u = G w G^T per (output channel k, input channel c) is packed as (A*A, ceil(K/block), C,
block), A = m + 2: transform point xi = i * A + j, then blocks of output channels with their
lanes innermost (lanes past K are zero). The output is computed per m x m tile of output pixels
(the last row / column of tiles runs past the output and is cut): V = B^T d B on the tile's
A x A input patch d (zero padded), M[xi] = sum over c of u[xi, k, c] V[xi, c], Y = A^T M A.
The reference runs this algorithm itself (in float64, from the float32 u), so the interpreter
checks the transform against the frameworks' direct convolutions.
"""
import numpy as np

from . import ShapeError, defop
from .nn import _pair

# (A^T, G, B^T) of F(m, 3). Only F(2, 3): on the points 0, 1, -1 its coefficients (0, +-1, 1/2) are
# exact in binary, and in float32 its max error against a float64 conv is ~2x the direct conv's
# (64->64 @28: 1.2e-6 vs 6.5e-7, 256->256 @14: 2.3e-6 vs 1.2e-6, 512->512 @7: 3.1e-6 vs 1.3e-6,
# outputs up to ~4). F(4, 3) (points 0, +-1, +-2; G's 1/6, 1/12, 1/24 rounded) was 20-40x the
# direct conv's (2.4e-5, 3.1e-5, 4.6e-5 on the same layers): not kept.
MATRICES = {
    2: ([[1, 1, 1, 0], [0, 1, -1, -1]],
        [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]),
}


def matrices(m):
    """(A^T, G, B^T) of F(m, 3) as float64 arrays."""
    return tuple(np.array(t, np.float64) for t in MATRICES[m])


def transform_weight(w, m, block):
    """OIHW 3x3 weight -> u (A*A, ceil(O/block), I, block), float32 (computed in float64)."""
    _, g, _ = matrices(m)
    o, c = w.shape[:2]
    a = m + 2
    u = np.einsum("ir,kcrs,js->ijck", g, w.astype(np.float64), g).reshape(a * a, c, o)
    nb = -(-o // block)
    up = np.zeros((a * a, c, nb * block))
    up[:, :, :o] = u
    return np.ascontiguousarray(up.reshape(a * a, c, nb, block).transpose(0, 2, 1, 3)).astype(w.dtype)


def geometry(a, x_shape):
    """(OH, OW, tile rows, tile columns) of the conv on an NCHW input of X_SHAPE."""
    p, m = _pair(a.get("pads"), [0] * 4), a["m"]
    oh, ow = x_shape[2] + p[0] + p[2] - 2, x_shape[3] + p[1] + p[3] - 2
    return oh, ow, -(-oh // m), -(-ow // m)


def _infer(a, x, u, b=None):
    m = a.get("m")
    if m not in MATRICES or len(x.shape) != 4 or len(u.shape) != 4:
        raise ShapeError(f"conv2d_winograd wants m in {sorted(MATRICES)}, a 4-D input and transformed weight, "
                         f"got m={m}, {list(x.shape)} and {list(u.shape)}")
    k = a["out_channels"]
    if tuple(u.shape) != ((m + 2) ** 2, -(-k // a["block"]), x.shape[1], a["block"]):
        raise ShapeError(f"transformed weight {list(u.shape)} does not fit {x.shape[1]} input channels, "
                         f"out_channels={k}, m={m}, block={a['block']}")
    if b is not None and tuple(b.shape) != (k,):
        raise ShapeError(f"bias shape {list(b.shape)} does not match {k} output channels")
    oh, ow, _, _ = geometry(a, x.shape)
    if oh < 1 or ow < 1:
        raise ShapeError(f"3x3 window is larger than the padded input {list(x.shape)}")
    return (x.shape[0], k, oh, ow), x.dtype


def _flops(a, ins, outs):  # the direct conv's, so that GFLOP/s compare
    return 2 * int(np.prod(outs[0].shape)) * ins[0].shape[1] * 9


@defop("conv2d_winograd", "conv2d", _infer, _flops)
def conv2d_winograd(attrs, x, u, b=None):
    at, _, bt = matrices(attrs["m"])
    m, a, k = attrs["m"], attrs["m"] + 2, attrs["out_channels"]
    p = _pair(attrs.get("pads"), [0] * 4)
    oh, ow, th, tw = geometry(attrs, x.shape)
    n, c = x.shape[:2]
    xp = np.zeros((n, c, th * m + 2, tw * m + 2))
    xp[:, :, p[0]:p[0] + x.shape[2], p[1]:p[1] + x.shape[3]] = x  # (th * m + 2 >= H + pads)
    # the A x A patches of every tile: (n, c, th, tw, A, A)
    d = np.lib.stride_tricks.sliding_window_view(xp, (a, a), axis=(2, 3))[:, :, ::m, ::m]
    v = np.einsum("ir,nctwrs,js->ijnctw", bt, d, bt).reshape(a * a, n, c, th, tw)
    uk = u.astype(np.float64).transpose(0, 1, 3, 2).reshape(a * a, -1, c)[:, :k]  # (A*A, K, C)
    mm = np.einsum("xkc,xnctw->xnktw", uk, v).reshape(a, a, n, k, th, tw)
    y = np.einsum("ia,abnktw,jb->nktiwj", at, mm, at).reshape(n, k, th * m, tw * m)[:, :, :oh, :ow]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y.astype(x.dtype)
