"""Data-movement and reduction ops: reshape, transpose, concat, pad, slice, gather, split, reduce."""
import numpy as np

from . import ShapeError, defop
from .elementwise import broadcast_shape


def _axis(ax, rank):
    if not -rank <= ax < max(rank, 1):
        raise ShapeError(f"axis {ax} is out of range for rank {rank}")
    return ax % max(rank, 1)


def _reshape_infer(a, x):
    shape = tuple(int(d) for d in a["shape"])
    if int(np.prod(shape)) != int(np.prod(x.shape)) or any(d < 0 for d in shape):
        raise ShapeError(f"cannot reshape {list(x.shape)} to {list(shape)}")
    return shape, x.dtype


@defop("identity", "layout", lambda a, x: (x.shape, x.dtype))
def identity(attrs, x):
    """ONNX Identity / Dropout at inference; the remove_identity pass deletes it."""
    return x.copy()


@defop("reshape", "layout", _reshape_infer)
def reshape(attrs, x):
    return x.reshape(attrs["shape"])


def _transpose_infer(a, x):
    perm = list(a["perm"])
    if sorted(perm) != list(range(len(x.shape))):
        raise ShapeError(f"perm {perm} is not a permutation of rank {len(x.shape)}")
    return tuple(x.shape[p] for p in perm), x.dtype


@defop("transpose", "layout", _transpose_infer)
def transpose(attrs, x):
    return np.ascontiguousarray(np.transpose(x, attrs["perm"]))


def _concat_infer(a, *xs):
    rank = len(xs[0].shape)
    ax = _axis(a["axis"], rank)
    for x in xs:
        if len(x.shape) != rank or any(x.shape[i] != xs[0].shape[i] for i in range(rank) if i != ax):
            raise ShapeError(f"cannot concatenate {[list(v.shape) for v in xs]} on axis {ax}")
        if x.dtype != xs[0].dtype:
            raise ShapeError("concatenated dtypes differ")
    shape = list(xs[0].shape)
    shape[ax] = sum(x.shape[ax] for x in xs)
    return tuple(shape), xs[0].dtype


@defop("concat", "layout", _concat_infer)
def concat(attrs, *xs):
    return np.concatenate(xs, axis=attrs["axis"])


def _pad_infer(a, x):
    p = list(a["pads"])
    r = len(x.shape)
    if len(p) != 2 * r:
        raise ShapeError(f"pads {p} need {2 * r} entries for rank {r}")
    if a.get("mode", "constant") not in ("constant", "reflect", "edge"):
        raise ShapeError(f"pad mode {a.get('mode')!r} is not supported")
    shape = tuple(x.shape[i] + p[i] + p[i + r] for i in range(r))
    if any(d < 0 for d in shape):
        raise ShapeError(f"pads {p} remove more than {list(x.shape)} holds")
    return shape, x.dtype


@defop("pad", "layout", _pad_infer)
def pad(attrs, x):
    p = list(attrs["pads"])
    r = x.ndim
    # negative pads crop
    sl = tuple(slice(max(-p[i], 0), x.shape[i] - max(-p[i + r], 0)) for i in range(r))
    x = x[sl]
    width = [(max(p[i], 0), max(p[i + r], 0)) for i in range(r)]
    mode = attrs.get("mode", "constant")
    if mode == "constant":
        return np.pad(x, width, constant_values=np.asarray(attrs.get("value", 0), x.dtype))
    return np.pad(x, width, mode=mode)


def _slice_params(a, shape):
    r = len(shape)
    axes = [_axis(ax, r) for ax in a.get("axes", range(len(a["starts"])))]
    steps = list(a.get("steps") or [1] * len(axes))
    sl = [slice(None)] * r
    for ax, st, en, sp in zip(axes, a["starts"], a["ends"], steps):
        if sp == 0:
            raise ShapeError("slice step 0")
        start, stop, step = slice(int(st), int(en), int(sp)).indices(shape[ax])
        # a negative step that runs through index 0 stops at -1, which a slice reads as "last"
        sl[ax] = slice(start, None if stop < 0 else stop, step)
    return tuple(sl)


def _slice_infer(a, x):
    sl = _slice_params(a, x.shape)
    return tuple(len(range(*s.indices(d))) for s, d in zip(sl, x.shape)), x.dtype


@defop("slice", "layout", _slice_infer)
def slice_(attrs, x):
    return np.ascontiguousarray(x[_slice_params(attrs, x.shape)])


def _gather_infer(a, x, idx):
    ax = _axis(a.get("axis", 0), len(x.shape))
    if not idx.dtype.startswith("int"):
        raise ShapeError(f"gather indices must be integers, got {idx.dtype}")
    return tuple(x.shape[:ax]) + tuple(idx.shape) + tuple(x.shape[ax + 1:]), x.dtype


@defop("gather", "layout", _gather_infer)
def gather(attrs, x, idx):
    ax = attrs.get("axis", 0) % x.ndim
    idx = np.where(idx < 0, idx + x.shape[ax], idx)
    if idx.size and (idx.min() < 0 or idx.max() >= x.shape[ax]):
        raise IndexError(f"gather index out of range [0, {x.shape[ax]})")
    return np.take(x, idx, axis=ax)


def _split_infer(a, x):
    ax = _axis(a.get("axis", 0), len(x.shape))
    sizes = list(a["sizes"])
    if sum(sizes) != x.shape[ax]:
        raise ShapeError(f"split sizes {sizes} do not add up to {x.shape[ax]}")
    outs = []
    for s in sizes:
        shape = list(x.shape)
        shape[ax] = s
        outs.append((tuple(shape), x.dtype))
    return outs


@defop("split", "layout", _split_infer)
def split(attrs, x):
    idx = np.cumsum(attrs["sizes"])[:-1]
    return tuple(np.ascontiguousarray(p) for p in np.split(x, idx, axis=attrs.get("axis", 0)))


def _expand_infer(a, x):
    return broadcast_shape(x.shape, a["shape"]), x.dtype


@defop("expand", "layout", _expand_infer)
def expand(attrs, x):
    return np.ascontiguousarray(np.broadcast_to(x, broadcast_shape(x.shape, attrs["shape"])))


def _tile_infer(a, x):
    reps = list(a["repeats"])
    if len(reps) != len(x.shape):
        raise ShapeError(f"repeats {reps} do not match rank {len(x.shape)}")
    return tuple(d * r for d, r in zip(x.shape, reps)), x.dtype


@defop("tile", "layout", _tile_infer)
def tile(attrs, x):
    return np.tile(x, attrs["repeats"])


def _reduce_infer(a, x):
    r = len(x.shape)
    axes = sorted({_axis(ax, r) for ax in a.get("axes", range(r))})
    if a.get("keepdims", True):
        return tuple(1 if i in axes else d for i, d in enumerate(x.shape)), x.dtype
    return tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype


def _reduce(name, fn):
    def ref(attrs, x):
        axes = tuple(sorted({ax % x.ndim for ax in attrs.get("axes", range(x.ndim))}))
        return np.asarray(fn(x, axes, bool(attrs.get("keepdims", True)))).astype(x.dtype)
    defop(name, "reduce", _reduce_infer, lambda a, i, o: int(np.prod(i[0].shape)))(ref)


_reduce("reduce_sum", lambda x, ax, k: x.sum(axis=ax, keepdims=k, dtype=np.float64))
_reduce("reduce_mean", lambda x, ax, k: x.mean(axis=ax, keepdims=k, dtype=np.float64))
_reduce("reduce_max", lambda x, ax, k: x.max(axis=ax, keepdims=k))
_reduce("reduce_min", lambda x, ax, k: x.min(axis=ax, keepdims=k))
_reduce("reduce_prod", lambda x, ax, k: x.prod(axis=ax, keepdims=k, dtype=np.float64))


def _where_infer(a, c, x, y):
    return broadcast_shape(broadcast_shape(c.shape, x.shape), y.shape), x.dtype


@defop("where", "elementwise", _where_infer)
def where(attrs, c, x, y):
    return np.where(c, x, y)
