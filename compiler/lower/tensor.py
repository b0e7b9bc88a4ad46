"""TE computes for data movement and reductions."""
import numpy as np
from tvm import te, tirx, topi

from ..ops.tensor import _slice_params
from . import lowering, nn


@lowering("identity")
def identity(a, x):
    return te.compute(x.shape, lambda *i: x(*i), name="identity")


@lowering("reshape")
def reshape(a, x):
    return topi.reshape(x, [int(d) for d in a["shape"]])


@lowering("transpose")
def transpose(a, x):
    return topi.transpose(x, [int(p) for p in a["perm"]])


@lowering("concat")
def concat(a, *xs):
    return topi.concatenate(xs, axis=a["axis"] % len(xs[0].shape))


@lowering("pad")
def pad(a, x):
    p = [int(v) for v in a["pads"]]
    r = len(x.shape)
    if any(v < 0 for v in p):  # negative pads crop first
        x = topi.strided_slice(x, [max(-p[i], 0) for i in range(r)],
                               [int(x.shape[i]) - max(-p[i + r], 0) for i in range(r)])
        p = [max(v, 0) for v in p]
    before, after = p[:r], p[r:]
    mode = a.get("mode", "constant")
    if mode == "constant":
        return topi.nn.pad(x, before, after, pad_value=a.get("value", 0.0))
    if mode == "reflect":
        return topi.nn.reflect_pad(x, before, after)
    return topi.nn.replicate_pad(x, before, after)


@lowering("slice")
def slice_(a, x):
    sl = _slice_params(a, tuple(int(d) for d in x.shape))
    begin, end, step = [], [], []
    for s, d in zip(sl, x.shape):
        st, en, sp = s.indices(int(d))
        begin.append(st)
        step.append(sp)
        end.append(en if en >= 0 else -int(d) - 1)
    shape = [len(range(*s.indices(int(d)))) for s, d in zip(sl, x.shape)]
    return te.compute(shape, lambda *i: x(*[begin[k] + i[k] * step[k] for k in range(len(shape))]), name="slice")


@lowering("gather")
def gather(a, x, idx):
    ax = a.get("axis", 0) % len(x.shape)
    return _take(x, idx, ax)


def _take(x, idx, ax):
    n = int(x.shape[ax])
    r = len(idx.shape)

    def body(*i):
        j = idx(*i[ax:ax + r])
        j = te.if_then_else(j < 0, j + n, j).astype("int64")
        return x(*i[:ax], j, *i[ax + r:])
    return te.compute(tuple(x.shape[:ax]) + tuple(idx.shape) + tuple(x.shape[ax + 1:]), body, name="gather")


@lowering("split")
def split(a, x):
    ax = a.get("axis", 0) % len(x.shape)
    starts = [0] + [int(v) for v in np.cumsum(a["sizes"])[:-1]]
    return [_part(x, ax, s0, int(size)) for s0, size in zip(starts, a["sizes"])]  # parts may be empty


def _part(x, ax, start, size):
    shape = [size if i == ax else int(d) for i, d in enumerate(x.shape)]
    return te.compute(shape, lambda *i: x(*[v + start if k == ax else v for k, v in enumerate(i)]), name="split")


@lowering("expand")
def expand(a, x):
    shape = np.broadcast_shapes(tuple(int(d) for d in x.shape), tuple(a["shape"]))
    return topi.broadcast_to(x, shape)


@lowering("tile")
def tile(a, x):
    return topi.tile(x, [int(r) for r in a["repeats"]])


def _axes(a, x):
    r = len(x.shape)
    return sorted({ax % r for ax in a.get("axes", range(r))})


def _nan_extremum(reducer, integer):
    """ReduceMax/Min keeping NaN (numpy's max/min; topi's compare-and-select drops a NaN)."""
    def fn(x, axis, keepdims):
        if not str(x.dtype).startswith("float"):
            return integer(x, axis=axis, keepdims=keepdims)
        raxes = {i: te.reduce_axis((0, x.shape[i]), f"r{i}") for i in axis}
        shape = [1 if i in raxes else d for i, d in enumerate(x.shape)] if keepdims else \
            [d for i, d in enumerate(x.shape) if i not in raxes]

        def body(*idx):
            it, full = iter(idx), []
            for i in range(len(x.shape)):
                if i in raxes and keepdims:
                    next(it)
                full.append(raxes[i] if i in raxes else next(it))
            return reducer(x[tuple(full)], axis=list(raxes.values()))
        return te.compute(shape, body, name="reduce")
    return fn


# reduction, identity over an empty axis (ReduceMax/Min of nothing is refused by the frontend)
REDUCE = {"reduce_sum": (topi.sum, 0), "reduce_max": (_nan_extremum(nn.nan_max, topi.max), None),
          "reduce_min": (_nan_extremum(nn.nan_min, topi.min), None), "reduce_prod": (topi.prod, 1)}


def _reduce(fn, identity):
    def low(a, x):
        axes, keep = _axes(a, x), bool(a.get("keepdims", True))
        if any(int(x.shape[i]) == 0 for i in axes) and identity is not None:
            shape = [1 if i in axes else d for i, d in enumerate(x.shape)] if keep else \
                [d for i, d in enumerate(x.shape) if i not in axes]
            return te.compute(shape, lambda *i: tirx.const(identity, x.dtype), name="reduce_empty")
        if str(x.dtype) == "bool":  # any / all through int8
            r = fn(topi.cast(x, "int8"), axis=axes, keepdims=keep)
            return topi.cast(r, "bool")
        return fn(x, axis=axes, keepdims=keep)
    return low


for _name, (_fn, _identity) in REDUCE.items():
    lowering(_name)(_reduce(_fn, _identity))


@lowering("reduce_mean")
def reduce_mean(a, x):
    axes = _axes(a, x)
    n = int(np.prod([int(x.shape[i]) for i in axes]))
    s = topi.sum(x, axis=axes, keepdims=bool(a.get("keepdims", True)))
    return te.compute(s.shape, lambda *i: s(*i) / float(n), name="reduce_mean")
