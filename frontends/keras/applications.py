"""Layers that keras.applications models define for themselves."""
from .registry import converter


@converter("LayerScale")
def layer_scale(ctx, inputs):
    """ConvNeXt's LayerScale: x * gamma, gamma per channel (last axis)."""
    x = inputs[0]
    c = ctx.shape(x)[-1]
    return [ctx.add("mul", [x, ctx.const(ctx.weight(0, (c,)))])]
