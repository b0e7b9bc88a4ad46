"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate."""
import numpy as np

from .registry import converter

FOLD = {"Add": "add", "Multiply": "mul", "Maximum": "maximum", "Minimum": "minimum", "Average": "add"}


@converter(*FOLD)
def fold(ctx, inputs):
    if len(inputs) < 2:
        raise ctx.error(f"needs at least 2 inputs, got {len(inputs)}")
    sources = [ctx.nchw_source(x) for x in inputs]
    if all(v is not None for v in sources) and len({ctx.shape(v) for v in sources}) == 1:
        return [ctx.transpose(_fold(ctx, sources), (0, 2, 3, 1))]  # merge convs' outputs in NCHW
    return [_fold(ctx, inputs)]


def _fold(ctx, inputs):
    y = inputs[0]
    for x in inputs[1:]:
        y = ctx.add(FOLD[ctx.cls], [y, x])
    if ctx.cls == "Average":
        y = ctx.add("mul", [y, ctx.const(np.float32(1.0 / len(inputs)))])
    return y


@converter("Subtract")
def subtract(ctx, inputs):
    if len(inputs) != 2:
        raise ctx.error(f"needs exactly 2 inputs, got {len(inputs)}")
    return [ctx.add("sub", inputs)]


@converter("Concatenate")
def concatenate(ctx, inputs):
    return [ctx.add("concat", inputs, {"axis": int(ctx.opt("axis", -1)) % len(ctx.shape(inputs[0]))})]
