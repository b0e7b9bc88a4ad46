"""ReverseSequence (tf2onnx's backward recurrent layers), with lengths known at compile time."""
import numpy as np

from .registry import converter


@converter("ReverseSequence")
def reverse_sequence(ctx):
    x = ctx.input(0)
    shape = ctx.shape(x)
    t_ax, b_ax = int(ctx.attr("time_axis", 0)), int(ctx.attr("batch_axis", 1))
    if sorted((t_ax, b_ax)) != [0, 1]:
        raise ctx.error(f"time_axis {t_ax} and batch_axis {b_ax} must be 0 and 1")
    lens = [int(v) for v in np.asarray(ctx.const(1, "sequence_lens")).reshape(-1)]
    if len(lens) != shape[b_ax] or any(not 0 <= n <= shape[t_ax] for n in lens):
        raise ctx.error(f"sequence_lens {lens} do not fit batch {shape[b_ax]} and time {shape[t_ax]}")

    def sl(v, ax, lo, hi, step=1):
        if step < 0:
            return ctx.add1("slice", [v], {"starts": [hi - 1], "ends": [lo - 1 if lo else -shape[ax] - 1],
                                           "axes": [ax], "steps": [-1]})
        return ctx.add1("slice", [v], {"starts": [lo], "ends": [hi], "axes": [ax]})

    def rev(v, n):  # the first n steps reversed, the rest as they are
        parts = [sl(v, t_ax, 0, n, -1)] if n else []
        if n < shape[t_ax]:
            parts.append(sl(v, t_ax, n, shape[t_ax]))
        return parts[0] if len(parts) == 1 else ctx.add1("concat", parts, {"axis": t_ax})
    if len(set(lens)) == 1:
        return [rev(x, lens[0])]
    rows = [rev(sl(x, b_ax, b, b + 1), n) for b, n in enumerate(lens)]
    return [ctx.add1("concat", rows, {"axis": b_ax})]
