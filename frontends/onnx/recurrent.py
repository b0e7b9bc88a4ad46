"""LSTM, GRU and RNN -> the IR's whole-sequence `lstm` / `gru` / `rnn` ops (time-major, every
optional input filled in). The `unroll_recurrent` pass turns those into GEMM + step kernels."""
import numpy as np

from ...compiler.ops.recurrent import ACTIVATIONS, DEFAULT_ACTS, GATES, N_ACTS
from .registry import converter

ONNX_KIND = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}


def activations(ctx, kind, n_dirs):
    """[[name, alpha, beta] x N_ACTS] per direction; alphas/betas go to the functions that use them."""
    names = ctx.attr("activations")
    names = [n.lower() for n in names] if names else DEFAULT_ACTS[kind] * n_dirs
    if len(names) != N_ACTS[kind] * n_dirs:
        raise ctx.error(f"activations {names} need {N_ACTS[kind] * n_dirs} entries for {n_dirs} direction(s)")
    alphas = list(ctx.attr("activation_alpha") or [])
    betas = list(ctx.attr("activation_beta") or [])
    out = []
    for name in names:
        if name not in ACTIVATIONS:
            raise ctx.unsupported(f"activation {name!r} is not supported "
                                  f"(supported: {', '.join(sorted(ACTIVATIONS))})")
        uses_a, uses_b, da, db = ACTIVATIONS[name]
        a = alphas.pop(0) if uses_a and alphas else da
        b = betas.pop(0) if uses_b and betas else db
        out.append([name, float(a), float(b)])
    k = N_ACTS[kind]
    return [out[d * k:(d + 1) * k] for d in range(n_dirs)]


@converter("LSTM", "GRU", "RNN")
def recurrent(ctx):
    kind = ONNX_KIND[ctx.op_type]
    x, w, r = ctx.input(0), ctx.input(1), ctx.input(2)
    if ctx.dtype(x) != "float32":
        raise ctx.unsupported(f"input dtype {ctx.dtype(x)} is not supported (float32 only)")
    direction = ctx.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ctx.error(f"direction {direction!r} is not forward, reverse or bidirectional")
    n_dirs = 2 if direction == "bidirectional" else 1
    layout = ctx.attr("layout", 0)
    if layout not in (0, 1):
        raise ctx.error(f"layout {layout} is not 0 or 1")
    if layout == 1:
        x = ctx.add1("transpose", [x], {"perm": [1, 0, 2]})
    if len(ctx.shape(x)) != 3 or len(ctx.shape(r)) != 3:
        raise ctx.error(f"X {list(ctx.shape(x))} and R {list(ctx.shape(r))} must be 3-D")
    t, n, _ = ctx.shape(x)
    hid = int(ctx.attr("hidden_size", ctx.shape(r)[-1]))
    g = GATES[kind]
    if hid != ctx.shape(r)[-1] or ctx.shape(r)[1] != g * hid:
        raise ctx.error(f"hidden_size {hid} does not match R {list(ctx.shape(r))}")
    attrs = {"hidden": hid, "direction": direction, "acts": activations(ctx, kind, n_dirs),
             "clip": None if ctx.attr("clip") is None else float(ctx.attr("clip"))}
    if kind == "lstm":
        attrs["input_forget"] = int(ctx.attr("input_forget", 0))
    if kind == "gru":
        attrs["linear_before_reset"] = int(ctx.attr("linear_before_reset", 0))

    def opt(i, shape, batch_major=False):
        if not ctx.has_input(i):
            return ctx.add_const(np.zeros(shape, np.float32), "rnn_default")
        v = ctx.input(i)
        if batch_major and layout == 1:
            v = ctx.add1("transpose", [v], {"perm": [1, 0, 2]})
        return v

    ins = [x, w, r, opt(3, (n_dirs, 2 * g * hid)), opt(5, (n_dirs, n, hid), True)]
    if kind == "lstm":
        ins += [opt(6, (n_dirs, n, hid), True), opt(7, (n_dirs, 3 * hid))]
    lens = sequence_lens(ctx, t)
    if lens is not None:
        attrs["masked"] = True
        ins.append(lens)
    outs = ctx.add(kind, ins, attrs, n_outputs=3 if kind == "lstm" else 2)
    if layout == 1:
        outs = [ctx.add1("transpose", [outs[0]], {"perm": [2, 0, 1, 3]})] + \
               [ctx.add1("transpose", [o], {"perm": [1, 0, 2]}) for o in outs[1:]]
    return outs


def sequence_lens(ctx, t):
    """None when every sequence is full length, else an int32 lens value (masked steps)."""
    if not ctx.has_input(4):
        return None
    lens = ctx.input(4)
    if ctx.is_const(lens):
        arr = ctx.const(4)
        if arr.min(initial=t) < 0 or arr.max(initial=0) > t:
            raise ctx.error(f"sequence_lens {arr.tolist()} must lie in [0, {t}]")
        if (arr == t).all():
            return None
    return ctx.cast(lens, "int32")
