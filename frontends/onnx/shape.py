"""Shape-changing ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Expand, Tile."""
import numpy as np

from .registry import converter


def _ints(ctx, arr, what):
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iu":
        raise ctx.error(f"{what} must be integers, got {arr.dtype}")
    return [int(v) for v in arr.reshape(-1)]


@converter("Reshape")
def reshape(ctx):
    x = ctx.input(0)
    xs = ctx.shape(x)
    if ctx.opset < 5:
        target = list(ctx.attr("shape"))
    else:
        target = _ints(ctx, ctx.const(1, "shape"), "shape")
    allowzero = int(ctx.attr("allowzero", 0))
    out = [xs[i] if d == 0 and not allowzero else d for i, d in enumerate(target)]
    if out.count(-1) > 1:
        raise ctx.error(f"shape {target} has more than one -1")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        total = int(np.prod(xs))
        if known == 0 or total % known:
            raise ctx.error(f"cannot reshape {list(xs)} to {target}")
        out[out.index(-1)] = total // known
    if int(np.prod(out)) != int(np.prod(xs)):
        raise ctx.error(f"cannot reshape {list(xs)} to {target}")
    return [ctx.add1("reshape", [x], {"shape": out})]


@converter("Flatten")
def flatten(ctx):
    x = ctx.input(0)
    xs = ctx.shape(x)
    axis = int(ctx.attr("axis", 1))
    if not -len(xs) <= axis <= len(xs):
        raise ctx.error(f"axis {axis} is out of range for rank {len(xs)}")
    axis = axis + len(xs) if axis < 0 else axis
    return [ctx.add1("reshape", [x], {"shape": [int(np.prod(xs[:axis])), int(np.prod(xs[axis:]))]})]


def _axes(ctx, attr_until, what="axes"):
    """Axes from the attribute (opset < ATTR_UNTIL) or from input 1."""
    if ctx.opset < attr_until:
        v = ctx.attr(what)
        return None if v is None else [int(a) for a in v]
    v = ctx.const(1, what)
    return None if v is None else _ints(ctx, v, what)


@converter("Squeeze")
def squeeze(ctx):
    x = ctx.input(0)
    xs = ctx.shape(x)
    axes = _axes(ctx, 13)
    if axes is None:
        axes = [i for i, d in enumerate(xs) if d == 1]
    axes = {a % len(xs) for a in axes}
    if any(xs[a] != 1 for a in axes):
        raise ctx.error(f"cannot squeeze axes {sorted(axes)} of shape {list(xs)}")
    return [ctx.add1("reshape", [x], {"shape": [d for i, d in enumerate(xs) if i not in axes]})]


@converter("Unsqueeze")
def unsqueeze(ctx):
    x = ctx.input(0)
    xs = list(ctx.shape(x))
    axes = _axes(ctx, 13)
    r = len(xs) + len(axes)
    axes = sorted(a % r for a in axes)
    if len(set(axes)) != len(axes):
        raise ctx.error(f"repeated axes {axes}")
    for a in axes:
        xs.insert(a, 1)
    return [ctx.add1("reshape", [x], {"shape": xs})]


@converter("Transpose")
def transpose(ctx):
    x = ctx.input(0)
    r = len(ctx.shape(x))
    perm = ctx.attr("perm")
    perm = list(range(r))[::-1] if perm is None else [int(p) % max(r, 1) for p in perm]
    return [ctx.add1("transpose", [x], {"perm": perm})]


@converter("Expand")
def expand(ctx):
    shape = _ints(ctx, ctx.const(1, "shape"), "shape")
    return [ctx.add1("expand", [ctx.input(0)], {"shape": shape})]


@converter("Tile")
def tile(ctx):
    if ctx.opset < 6:
        raise ctx.unsupported("Tile before opset 6 is not supported")
    return [ctx.add1("tile", [ctx.input(0)], {"repeats": _ints(ctx, ctx.const(1, "repeats"), "repeats")})]
