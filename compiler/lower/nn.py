"""TE computes for convolution, pooling, normalization, dense/matmul and softmax (NCHW)."""
import functools

import numpy as np
from tvm import te, tirx, topi

from ..ops.nn import _pair, _pool_geometry, avg_pool_bounds, avg_pool_divisors
from . import lowering


def _pad4(x, p, value=0.0, extra=(0, 0)):
    if not any(p) and not any(extra):
        return x
    return topi.nn.pad(x, [0, 0, p[0], p[1]], [0, 0, p[2] + extra[0], p[3] + extra[1]], pad_value=value)


def _acc(v, dtype):
    """Products accumulate in float32 for half-precision inputs (as onnxruntime and cuDNN do)."""
    return v.astype("float32") if str(dtype) == "float16" else v


def _out(y, dtype):
    return te.compute(y.shape, lambda *i: y(*i).astype(dtype), name="cast") if str(y.dtype) != str(dtype) else y


DEPTHWISE_ROW = 8  # a depthwise row's columns are computed in multiples of this: whole AVX2 / NEON vectors


@lowering("conv2d")
def conv2d(a, x, w, b=None):
    g = a.get("groups", 1)
    s, d, p = _pair(a.get("strides"), [1, 1]), _pair(a.get("dilations"), [1, 1]), _pair(a.get("pads"), [0] * 4)
    n, c, h, wd = (int(v) for v in x.shape)
    o, ci, kh, kw = (int(v) for v in w.shape)
    oh = (h + p[0] + p[2] - (kh - 1) * d[0] - 1) // s[0] + 1
    ow = (wd + p[1] + p[3] - (kw - 1) * d[1] - 1) // s[1] + 1
    # depthwise (schedules/depthwise.py): rows computed in whole vectors (DEPTHWISE_ROW columns), the
    # extra columns dropped after; the padded row a whole number of strides wide (it is de-interleaved)
    depthwise = g > 1 and ci == 1
    owp = -(-ow // DEPTHWISE_ROW) * DEPTHWISE_ROW if depthwise and ow > DEPTHWISE_ROW else ow
    extra = max(0, (owp - 1) * s[1] + (kw - 1) * d[1] + 1 - (wd + p[1] + p[3]))
    extra += -(wd + p[1] + p[3] + extra) % s[1] if depthwise else 0
    xp = _pad4(x, p, extra=(0, extra))
    og = o // g
    rc, ry, rx = te.reduce_axis((0, ci), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")

    def chan(f):
        return rc if g == 1 else (f // og) * ci + rc

    y = te.compute((n, o, oh, owp), lambda nn, f, yy, xx: te.sum(
        _acc(xp[nn, chan(f), yy * s[0] + ry * d[0], xx * s[1] + rx * d[1]], x.dtype) * _acc(w[f, rc, ry, rx], x.dtype),
        axis=[rc, ry, rx]), name="conv2d")
    if owp != ow:
        y = te.compute((n, o, oh, ow), lambda *i: y(*i), name="conv2d_row")
    y = _out(y, x.dtype)
    if b is not None:
        y = te.compute(y.shape, lambda nn, f, yy, xx: y[nn, f, yy, xx] + b[f], name="bias_add")
    return y


# max pooling keeps NaN (as numpy's max and IEEE 754's maximum do): a window holding a NaN is NaN;
# TVM's max is a compare-and-select that drops a NaN depending on its position in the window
nan_max = te.comm_reducer(lambda a, b: tirx.Select(a < b, b, tirx.Select(tirx.isnan(b), b, a)),
                          lambda dtype: tirx.min_value(dtype), name="nan_max")
nan_min = te.comm_reducer(lambda a, b: tirx.Select(a > b, b, tirx.Select(tirx.isnan(b), b, a)),
                          lambda dtype: tirx.max_value(dtype), name="nan_min")


def _pool(a, x, kind):
    """Separable 2-D pooling: per output row, the window's rows are combined into one row of the
    input's width (`pool_rows`, contiguous reads), then that row's windows along the width (stride
    and all) into the output row. The taps are unrolled (a window's first tap is no combine with an
    identity). Taps outside the input give the identity: their row and column indices are clamped
    into the input and selected away, so no padded copy is made (for max with undilated windows
    that each hold an input element the clamp alone is exact: it only repeats an element of the
    window). The row buffer carries the left/right padding itself."""
    k, s, d, p, oh, ow = _pool_geometry(a, _Shape(x))
    h, w = int(x.shape[2]), int(x.shape[3])
    pad = tirx.min_value(x.dtype) if kind == "max" else tirx.const(0, x.dtype)
    row = _pool_axis(h, p[0], k[0], s[0], d[0], oh, kind)
    col = _pool_axis(w, p[1], k[1], s[1], d[1], ow, kind)

    def combine(taps):
        return _nan_max(taps, x.dtype) if kind == "max" else functools.reduce(lambda u, v: u + v, taps)

    def rows_tap(n, c, i, u, t):
        (r, r_ok), (v, v_ok) = row(i * s[0] + t * d[0] - p[0]), col(u - p[1])
        ok = [o for o in (r_ok, v_ok) if o is not None]
        return tirx.Select(tirx.all(*ok), x[n, c, r, v], pad) if ok else x[n, c, r, v]
    width = (ow - 1) * s[1] + (k[1] - 1) * d[1] + 1
    rows = te.compute((x.shape[0], x.shape[1], oh, width),
                      lambda n, c, i, u: combine([rows_tap(n, c, i, u, t) for t in range(k[0])]), name="pool_rows",
                      attrs={"inside": [min(p[1], width), min(p[1] + w, width)]})  # columns read inside the input
    shape = (x.shape[0], x.shape[1], oh, ow)
    ch, cw = avg_pool_divisors(a, [int(v) for v in x.shape])
    full = np.flatnonzero(cw == cw.max())  # the columns whose windows count the most taps
    edges = {"inside": [int(full[0]), int(full[-1]) + 1]} if kind == "avg" and np.ptp(full) + 1 == len(full) else {}
    acc = te.compute(shape, lambda n, c, i, j: combine([rows[n, c, i, j * s[1] + t * d[1]] for t in range(k[1])]),
                     name="max_pool2d" if kind == "max" else "pool_sum", attrs=edges)
    if kind == "max":
        return acc
    lo_h, hi_h, lo_w, hi_w = avg_pool_bounds(a, [int(v) for v in x.shape])
    if len(set(ch.tolist())) == 1 and len(set(cw.tolist())) == 1:
        inv = 1.0 / max(int(ch[0]) * int(cw[0]), 1)
        return te.compute(shape, lambda *i: acc(*i) * tirx.const(inv, x.dtype), name="avg_pool2d")

    def count(i, j):
        def axis_count(idx, start, kk, dd, lo, hi):
            # number of taps t in [0,k) with lo <= idx*stride + t*d < hi, for d == 1 in closed form
            first = idx * start
            if dd == 1:
                lo_t = te.max(lo - first, 0)
                hi_t = te.min(hi - first, kk)
                return te.max(hi_t - lo_t, 1)
            return sum(tirx.Select(tirx.all(first + t * dd >= lo, first + t * dd < hi), 1, 0) for t in range(kk))
        return axis_count(i, s[0], k[0], d[0], lo_h, hi_h) * axis_count(j, s[1], k[1], d[1], lo_w, hi_w)
    # times a reciprocal: a constant once the columns inside (schedules/pool.py) are cut from the edges
    one = tirx.const(1, x.dtype)
    return te.compute(shape, lambda n, c, i, j: acc[n, c, i, j] * (one / count(i, j).astype(x.dtype)),
                      name="avg_pool2d")


def _nan_max(taps, dtype):
    """The max of TAPS, NaN where one is NaN: TVM's max is a compare-and-select that drops a NaN
    depending on its place, so NaN is tested for on its own (x86: maxps and one unordered compare
    per two taps, no blend per tap)."""
    m = functools.reduce(lambda acc, t: te.max(t, acc), taps)
    if "float" not in str(dtype):
        return m
    nan = functools.reduce(tirx.Or, [tirx.isnan(t) for t in taps])
    return tirx.Select(nan, tirx.const(float("nan"), dtype), m)


def _pool_axis(size, lo, k, s, d, out, kind):
    """For one axis of SIZE elements with LO padding before it, pooled by OUT windows of K taps:
    a function of a tap's position (padded coordinates less LO) -> (the position clamped into
    [0, SIZE), the condition that it is inside or None where every tap is inside or, for max, where
    the clamp alone is exact: undilated windows that each hold an input element)."""
    inside = lo <= 0 and (out - 1) * s + (k - 1) * d - lo < size
    exact = kind == "max" and d == 1 and k - 1 >= lo and (out - 1) * s - lo < size

    def at(pos):
        if inside:
            return pos, None
        return te.max(te.min(pos, size - 1), 0), None if exact else tirx.all(pos >= 0, pos < size)
    return at


class _Shape:
    def __init__(self, t):
        self.shape = tuple(int(v) for v in t.shape)


lowering("max_pool2d")(lambda a, x: _pool(a, x, "max"))
lowering("avg_pool2d")(lambda a, x: _pool(a, x, "avg"))


GLOBAL_LANES = 32  # partial results per channel of a global pool (4 AVX2 vectors, 8 NEON ones)


def _global_pool(x, reduce):
    """(N, C) totals of REDUCE (te.sum or nan_max) over each channel's plane, in two stages: stage
    `global_pool_lanes` reduces the plane as rows of GLOBAL_LANES contiguous elements into that many
    partial results (a vector loop: one chain of dependent adds per channel ran at one add per
    4 cycles), stage `global_pool_total` the partials and the leftover elements. Planes of fewer than
    two rows: one reduction."""
    n, c, *dims = (int(v) for v in x.shape)
    size = int(np.prod(dims))

    def at(nn, cc, k):  # the plane's element k (row-major)
        idx = []
        for d in reversed(dims):
            idx.append(k % d)
            k = k // d
        return x[(nn, cc, *reversed(idx))]
    v = GLOBAL_LANES if size >= 2 * GLOBAL_LANES else 1
    rows, left = size // v, size % v
    if v == 1:
        k = te.reduce_axis((0, size), "k")
        return te.compute((n, c), lambda nn, cc: reduce(at(nn, cc, k), axis=k), name="global_pool_total")
    ko = te.reduce_axis((0, rows), "ko")
    part = te.compute((n, c, v), lambda nn, cc, lane: reduce(at(nn, cc, ko * v + lane), axis=ko),
                      name="global_pool_lanes")
    j = te.reduce_axis((0, v + left), "j")
    if not left:
        return te.compute((n, c), lambda nn, cc: reduce(part[nn, cc, j], axis=j), name="global_pool_total")
    # if_then_else, not Select: TVM simplifies the clamps away under a Select, whose two operands
    # are both read; vectorized over channels (the generic schedule) it read past the partials'
    # buffer, on the stack when under 1 KB (undefined behaviour: conv 8->4 @28x42 + global pool
    # summed 1e21); if_then_else reads the chosen operand only
    return te.compute((n, c), lambda nn, cc: reduce(tirx.if_then_else(
        j < v, part[nn, cc, te.min(j, v - 1)], at(nn, cc, rows * v + te.max(j - v, 0))), axis=j),
        name="global_pool_total")


@lowering("global_avg_pool")
def global_avg_pool(a, x):
    total = _global_pool(x, te.sum)
    scale = tirx.const(1.0 / int(np.prod([int(d) for d in x.shape[2:]])), x.dtype)
    return te.compute(tuple(x.shape[:2]) + (1,) * (len(x.shape) - 2), lambda nn, cc, *_: total[nn, cc] * scale,
                      name="global_avg_pool")


@lowering("global_max_pool")
def global_max_pool(a, x):
    total = _global_pool(x, nan_max)
    return te.compute(tuple(x.shape[:2]) + (1,) * (len(x.shape) - 2), lambda nn, cc, *_: total[nn, cc],
                      name="global_max_pool")


@lowering("batch_norm")
def batch_norm(a, x, scale, bias, mean, var):
    eps = tirx.const(a.get("epsilon", 1e-5), x.dtype)
    return te.compute(x.shape, lambda nn, c, *r: (x(nn, c, *r) - mean[c]) * (scale[c] / te.sqrt(var[c] + eps))
                      + bias[c], name="batch_norm")


@lowering("lrn")
def lrn(a, x):
    size = a["size"]
    alpha, beta, bias = a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    c = int(x.shape[1])
    pads_b = [0, lo] + [0] * (len(x.shape) - 2)
    pads_a = [0, hi] + [0] * (len(x.shape) - 2)
    sq = te.compute(x.shape, lambda *i: x(*i) * x(*i), name="lrn_sq")
    sqp = topi.nn.pad(sq, pads_b, pads_a)
    r = te.reduce_axis((0, size), "r")
    acc = te.compute(x.shape, lambda nn, cc, *s: te.sum(sqp(nn, cc + r, *s), axis=r), name="lrn_sum")
    del c
    return te.compute(x.shape, lambda *i: x(*i) / te.power(
        tirx.const(bias, x.dtype) + tirx.const(alpha / size, x.dtype) * acc(*i), tirx.const(beta, x.dtype)),
        name="lrn")


@lowering("dense")
def dense(a, x, w, b=None):
    k = te.reduce_axis((0, int(x.shape[1])), "k")
    y = _out(te.compute((x.shape[0], w.shape[0]), lambda i, j: te.sum(
        _acc(x[i, k], x.dtype) * _acc(w[j, k], x.dtype), axis=k), name="dense"), x.dtype)
    if b is not None:
        y = te.compute(y.shape, lambda i, j: y[i, j] + (b[j] if len(b.shape) == 1 else b[0, j]), name="bias_add")
    return y


@lowering("matmul")
def matmul(a, x, y):
    xs, ys = [int(v) for v in x.shape], [int(v) for v in y.shape]
    xv, yv = len(xs) == 1, len(ys) == 1
    xs2 = [1] + xs if xv else xs
    ys2 = ys + [1] if yv else ys
    bx, by = xs2[:-2], ys2[:-2]
    batch = list(np.broadcast_shapes(tuple(bx), tuple(by)))
    kdim = xs2[-1]
    k = te.reduce_axis((0, kdim), "k")

    def idx(b_idx, own):
        off = len(batch) - len(own)
        return [0 if own[i] == 1 else b_idx[off + i] for i in range(len(own))]

    def body(*i):
        b_idx, r, c = list(i[:len(batch)]), i[len(batch)], i[len(batch) + 1]
        xi = idx(b_idx, bx) + ([k] if xv else [r, k])
        yi = idx(b_idx, by) + ([k] if yv else [k, c])
        return te.sum(_acc(x(*xi), x.dtype) * _acc(y(*yi), x.dtype), axis=k)

    out = _out(te.compute(batch + [xs2[-2], ys2[-1]], body, name="matmul"), x.dtype)
    shape = batch + ([] if xv else [xs2[-2]]) + ([] if yv else [ys2[-1]])
    return topi.reshape(out, shape) if shape != batch + [xs2[-2], ys2[-1]] else out


@lowering("softmax")
def softmax(a, x):
    return topi.nn.softmax(x, axis=a.get("axis", -1))


@lowering("log_softmax")
def log_softmax(a, x):
    return topi.nn.log_softmax(x, axis=a.get("axis", -1) % len(x.shape))
