"""LayerNormalization (opset 17)."""
from .registry import converter


@converter("LayerNormalization", since=17)
def layer_norm(ctx):
    x = ctx.input(0)
    if not ctx.dtype(x).startswith("float"):
        raise ctx.unsupported(f"input dtype {ctx.dtype(x)} is not supported (floats only)")
    ctx.ignore("stash_type")  # statistics are computed in the input's float type
    ins = [x, ctx.cast(ctx.input(1), ctx.dtype(x))] + ([ctx.cast(ctx.input(2), ctx.dtype(x))] if ctx.has_input(2) else [])
    return ctx.add("layer_norm", ins, {"axis": int(ctx.attr("axis", -1)), "epsilon": float(ctx.attr("epsilon", 1e-5))},
                   n_outputs=3)
