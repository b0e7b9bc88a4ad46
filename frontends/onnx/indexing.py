"""Concat, Gather, Slice, Split, Pad."""
import numpy as np

from .registry import converter
from .shape import _ints


@converter("Concat")
def concat(ctx):
    names = [ctx.input(i) for i in range(len(ctx.inputs)) if ctx.has_input(i)]
    r = len(ctx.shape(names[0]))
    axis = ctx.attr("axis", 1 if ctx.opset < 4 else None)
    if axis is None:
        raise ctx.error("attribute 'axis' is required")
    axis = int(axis)
    if not -r <= axis < r:
        raise ctx.error(f"axis {axis} is out of range for rank {r}")
    if len(names) == 1:
        return [ctx.add1("reshape", names, {"shape": list(ctx.shape(names[0]))})]
    return [ctx.add1("concat", names, {"axis": axis % r})]


@converter("Gather")
def gather(ctx):
    x, idx = ctx.input(0), ctx.input(1)
    r = len(ctx.shape(x))
    axis = int(ctx.attr("axis", 0))
    if not -r <= axis < r:
        raise ctx.error(f"axis {axis} is out of range for rank {r}")
    if ctx.is_const(idx):  # check bounds at compile time, with the ONNX node named
        iv, n = ctx.const(idx), ctx.shape(x)[axis % r]
        if iv.size and (iv.min() < -n or iv.max() >= n):
            raise ctx.error(f"indices out of range [-{n}, {n})")
    return [ctx.add1("gather", [x, idx], {"axis": axis % r})]


@converter("Slice")
def slice_(ctx):
    x = ctx.input(0)
    r = len(ctx.shape(x))
    if ctx.opset < 10:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes, steps = ctx.attr("axes"), None
    else:
        starts = _ints(ctx, ctx.const(1, "starts"), "starts")
        ends = _ints(ctx, ctx.const(2, "ends"), "ends")
        axes = ctx.const(3, "axes")
        steps = ctx.const(4, "steps")
        axes = None if axes is None else _ints(ctx, axes, "axes")
        steps = None if steps is None else _ints(ctx, steps, "steps")
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    if len(set(a % r for a in axes)) != len(axes):
        raise ctx.error(f"repeated axes {axes}")
    if steps is not None and 0 in steps:
        raise ctx.error("slice step 0")
    attrs = {"starts": [int(v) for v in starts], "ends": [int(v) for v in ends], "axes": [a % r for a in axes]}
    if steps is not None:
        attrs["steps"] = [int(v) for v in steps]
    return [ctx.add1("slice", [x], attrs)]


@converter("Split")
def split(ctx):
    x = ctx.input(0)
    xs = ctx.shape(x)
    axis = int(ctx.attr("axis", 0)) % len(xs)
    if ctx.opset < 13:
        sizes = ctx.attr("split")
    else:
        sizes = ctx.const(1, "split")
        sizes = None if sizes is None else _ints(ctx, sizes, "split")
    n_out = len(ctx.outputs)
    if ctx.opset >= 18:
        num = ctx.attr("num_outputs")
        if sizes is None and num is None:
            raise ctx.error("needs either the split input or num_outputs")
        n_out = int(num) if num is not None else n_out
    if sizes is None:
        d = xs[axis]
        if ctx.opset >= 18:
            chunk = -(-d // n_out)
            sizes = [min(chunk, d - i * chunk) for i in range(n_out)]
        else:
            if d % n_out:
                raise ctx.error(f"cannot split {d} into {n_out} equal parts")
            sizes = [d // n_out] * n_out
    sizes = [int(s) for s in sizes]
    if len(sizes) != len(ctx.outputs):
        raise ctx.error(f"{len(sizes)} split sizes for {len(ctx.outputs)} outputs")
    return ctx.add("split", [x], {"axis": axis, "sizes": sizes}, n_outputs=len(sizes))


@converter("Pad")
def pad(ctx):
    x = ctx.input(0)
    r = len(ctx.shape(x))
    dt = ctx.dtype(x)
    mode = ctx.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise ctx.unsupported(f"mode={mode!r} is not supported (constant, reflect, edge)")
    if ctx.opset < 11:
        pads = [int(p) for p in ctx.attr("pads" if ctx.opset >= 2 else "paddings")]
        value = float(ctx.attr("value", 0.0))
    else:
        pads = _ints(ctx, ctx.const(1, "pads"), "pads")
        v = ctx.const(2, "constant_value")
        value = np.asarray(v).reshape(-1)[0].item() if v is not None and np.asarray(v).size else 0
        axes = ctx.const(3, "axes") if ctx.opset >= 18 else None
        if axes is not None:
            axes = [a % r for a in _ints(ctx, axes, "axes")]
            full = [0] * (2 * r)
            for i, a in enumerate(axes):
                full[a], full[a + r] = pads[i], pads[i + len(axes)]
            pads = full
    if len(pads) != 2 * r:
        raise ctx.error(f"pads {pads} need {2 * r} entries for rank {r}")
    attrs = {"pads": pads, "mode": mode}
    if mode == "constant":
        attrs["value"] = value if dt.startswith("float") else int(value)
    return [ctx.add1("pad", [x], attrs)]
