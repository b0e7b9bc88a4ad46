"""TE compute for conv2d_winograd (compiler/ops/winograd.py), in blocks of `rows` tile rows so that a
schedule can keep one block's padded and transformed input in cache (targets/schedules/winograd.py).

Per image and block of ROWS rows of tiles (TW tiles each, Q = ROWS * TW tiles as one flat index,
padded to whole register tiles of `tile` tiles; padding tiles repeat the block's last one):
block `winograd_pad` copies the input zero-padded to whole tiles, block `winograd_input` computes
V (N, blocks, A*A, Q, C) = B^T d B of each tile's A x A patch, block `winograd_gemm`
M (N, blocks, ceil(K/block), Q, A*A, block) = sum over c of V[.., xi, q, c] u[xi, kb, c, :] (a GEMM
per transform point: a vector of output channels per tile; M tile-major, a tile's A*A points one
run of memory, so that the output transform, which reads M back from past the L2, streams one
run per channel block instead of A*A. AVX2 (znver3, shared 2-core), 1 thread, per-kernel minima
of alternated rounds (kab), point-major -> tile-major: in SqueezeNet 3x3 16->64 @55 0.626 -> 0.553
and 0.643 -> 0.564 ms, 32->128 @27 0.396 -> 0.378, 64->256 @13 0.417 -> 0.403, 48->192 @13 0.242
-> 0.235; in ResNet-50 64->64 @56 1.580-1.588 -> 1.495-1.518, 256->256 @14 1.62-1.72 -> 1.61-1.62),
block `winograd_output` Y (N, K, OH, OW) = A^T M A of the tile holding each pixel, plus the bias
(the fused epilogue inlines into it). The transforms index their point (xi, or the pixel's place
in its tile) through a Select over the constant matrices' rows: once the schedule unrolls those
loops each Select folds to one row's sum, written with its nonzero coefficients only.
"""
from tvm import te, tirx

from ..ops.nn import _pair
from ..ops.winograd import geometry, matrices
from . import lowering


def _combine(coefs, terms):
    """sum(c * t) over the nonzero C, +-1 as an add / subtract."""
    out = None
    for c, t in zip(coefs, terms):
        if c == 0:
            continue
        if out is None:
            out = t if c == 1 else -t if c == -1 else t * tirx.const(float(c), t.dtype)
        else:
            out = out + t if c == 1 else out - t if c == -1 else out + t * tirx.const(float(c), t.dtype)
    return out


def _select(index, alternatives):
    """ALTERNATIVES[index] for a loop variable INDEX (a Select chain: constant once unrolled)."""
    expr = alternatives[-1]
    for i in range(len(alternatives) - 2, -1, -1):
        expr = tirx.Select(index == i, alternatives[i], expr)
    return expr


def blocking(a, n, h, w):
    """(tile rows per block, blocks, tiles per block padded to whole register tiles)."""
    _, _, th, tw = geometry(a, (n, 0, h, w))
    rows = min(int(a.get("rows", th)), th)
    tile = int(a.get("tile", 1))
    return rows, -(-th // rows), -(-(rows * tw) // tile) * tile


@lowering("conv2d_winograd")
def conv2d_winograd(a, x, u, b=None):
    at, _, bt = matrices(a["m"])
    m, k = a["m"], a["out_channels"]
    alpha = m + 2
    p = _pair(a.get("pads"), [0] * 4)
    n, c, h, w = (int(v) for v in x.shape)
    _, kb, _, block = (int(v) for v in u.shape)
    oh, ow, th, tw = geometry(a, (n, c, h, w))
    rows, blocks, padded = blocking(a, n, h, w)
    # the input zero-padded to whole tiles (rows of blocks past the last tile row: their padding tiles)
    ph, pw = blocks * rows * m + alpha - m, tw * m + alpha - m
    xp = te.compute((n, c, ph, pw), lambda nn, cc, yy, xx: te.if_then_else(
        tirx.all(yy >= p[0], yy < h + p[0], xx >= p[1], xx < w + p[1]), x[nn, cc, yy - p[0], xx - p[1]],
        tirx.const(0, x.dtype)), name="winograd_pad")

    def v(nn, bl, xi, q, cc):
        q = tirx.min(q, rows * tw - 1)
        y0, x0 = (bl * rows + q // tw) * m, q % tw * m

        def d(r, s):
            return xp[nn, cc, y0 + r, x0 + s]
        cols = [[_combine(bt[j], [d(r, s) for s in range(alpha)]) for j in range(alpha)] for r in range(alpha)]
        return _select(xi, [_combine(bt[i], [cols[r][j] for r in range(alpha)])
                            for i in range(alpha) for j in range(alpha)])
    vt = te.compute((n, blocks, alpha * alpha, padded, c), v, name="winograd_input")
    rc = te.reduce_axis((0, c), "rc")
    mt = te.compute((n, blocks, kb, padded, alpha * alpha, block), lambda nn, bl, ob, q, xi, oi: te.sum(
        vt[nn, bl, xi, q, rc] * u[xi, ob, rc, oi], axis=rc), name="winograd_gemm")

    def out(nn, f, yy, xx):
        ty, tx = yy // m, xx // m
        q = ty % rows * tw + tx

        def mm(i, j):
            return mt[nn, ty // rows, f // block, q, i * alpha + j, f % block]
        rows_at = [[_combine(at[j], [mm(i, jj) for jj in range(alpha)]) for j in range(m)] for i in range(alpha)]
        y = _select(yy % m, [_select(xx % m, [_combine(at[i], [rows_at[ii][j] for ii in range(alpha)])
                                              for j in range(m)]) for i in range(m)])
        return y + b[f] if b is not None else y
    return te.compute((n, k, oh, ow), out, name="winograd_output")
