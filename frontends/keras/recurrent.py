"""LSTM, GRU, SimpleRNN and Bidirectional onto the IR's whole-sequence ops `lstm`, `gru`, `rnn`.

The IR ops are ONNX-style: time-major X[T,B,I], W[D,G*H,I], R[D,G*H,H], B[D,2*G*H] (input
then recurrent biases), gates i,o,f,c (LSTM) and z,r,h (GRU). Keras stores kernel (I,G*H) and
recurrent_kernel (H,G*H) with LSTM gates i,f,c,o, so those are reordered and transposed.
GRU reset_after=True (bias rows: input, recurrent) is linear_before_reset=1; reset_after=False
(one bias) is linear_before_reset=0. Keras go_backwards returns its sequence in processing
(reversed) order; Bidirectional flips its backward half back, as the IR's Y already is.
"""
import numpy as np

from . import activations
from .registry import converter

KIND = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "rnn"}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
ACTS = {"tanh": ["tanh", 0.0, 0.0], "sigmoid": ["sigmoid", 0.0, 0.0], "relu": ["relu", 0.0, 0.0],
        "linear": ["affine", 1.0, 0.0], "hard_sigmoid": ["hardsigmoid", 1 / 6, 0.5],  # Keras 3: relu6(x+3)/6
        "softsign": ["softsign", 0.0, 0.0], "softplus": ["softplus", 0.0, 0.0], "elu": ["elu", 1.0, 0.0]}
LSTM_ORDER = [0, 3, 1, 2]  # Keras i,f,c,o -> ONNX i,o,f,c


def _act(ctx, cfg, key, default):
    name = activations.name_of(cfg.get(key, default))
    if name not in ACTS:
        raise ctx.unsupported(f"option {key}={name!r} is not supported in a recurrent layer "
                              f"(supported: {', '.join(sorted(ACTS))})")
    return ACTS[name]


def _check(ctx, cls, cfg):
    if cls not in KIND:
        raise ctx.unsupported(f"wrapped layer class {cls!r} is not supported (LSTM, GRU, SimpleRNN are)")
    if cfg.get("stateful"):
        raise ctx.unsupported("option stateful=True is not supported")
    if cfg.get("time_major"):
        raise ctx.unsupported("option time_major=True is not supported")


def direction_weights(ctx, kind, cfg, arrays, in_size):
    """(W [G*H, I], R [G*H, H], B [2*G*H], acts, linear_before_reset) of one Keras layer."""
    h, g = int(cfg["units"]), GATES[kind]
    use_bias = cfg.get("use_bias", True)
    if len(arrays) != (3 if use_bias else 2):
        raise ctx.error(f"expected {3 if use_bias else 2} weight arrays per direction, found {len(arrays)}")
    kernel, rec = (np.asarray(a, np.float32) for a in arrays[:2])
    if kernel.shape != (in_size, g * h) or rec.shape != (h, g * h):
        raise ctx.error(f"kernel {list(kernel.shape)} / recurrent kernel {list(rec.shape)} do not fit "
                        f"input {in_size} and {h} units")
    bias = np.asarray(arrays[2], np.float32) if use_bias else np.zeros(g * h, np.float32)
    lbr = 0
    if kind == "gru" and cfg.get("reset_after", True):
        lbr = 1
        bias = bias.reshape(2, g * h) if use_bias else np.zeros((2, g * h), np.float32)
        b = np.concatenate([bias[0], bias[1]])
    else:
        b = np.concatenate([bias.reshape(g * h), np.zeros(g * h, np.float32)])
    w, r = kernel.T, rec.T
    if kind == "lstm":
        w, r = (m.reshape(4, h, -1)[LSTM_ORDER].reshape(4 * h, -1) for m in (w, r))
        b = b.reshape(2, 4, h)[:, LSTM_ORDER].reshape(-1)
    if kind == "lstm":
        acts = [_act(ctx, cfg, "recurrent_activation", "sigmoid"), _act(ctx, cfg, "activation", "tanh"),
                _act(ctx, cfg, "activation", "tanh")]
    elif kind == "gru":
        acts = [_act(ctx, cfg, "recurrent_activation", "sigmoid"), _act(ctx, cfg, "activation", "tanh")]
    else:
        acts = [_act(ctx, cfg, "activation", "tanh")]
    return w, r, b, acts, lbr


def run_sequence(ctx, kind, x, dirs, hidden, initial=None):
    """Add the IR op for DIRS (list of (W, R, B, acts, lbr, reverse)) on batch-major X [B,T,I].
    Returns Y [B,T,D,H] (time-aligned) and the final states [D,B,H] (h, and c for LSTM)."""
    b, t, _ = ctx.shape(x)
    d = len(dirs)
    xt = ctx.transpose(x, (1, 0, 2))
    w, r, bias = (ctx.const(np.stack([dd[k] for dd in dirs])) for k in range(3))
    state = ctx.const(np.zeros((d, b, hidden), np.float32))
    h0, c0 = (initial or {}).get("h", state), (initial or {}).get("c", state)
    inputs = [xt, w, r, bias, h0] + ([c0, ctx.const(np.zeros((d, 3 * hidden), np.float32))] if kind == "lstm" else [])
    direction = "bidirectional" if d == 2 else ("reverse" if dirs[0][5] else "forward")
    attrs = {"hidden": hidden, "direction": direction, "acts": [dd[3] for dd in dirs], "clip": None}
    if kind == "lstm":
        attrs["input_forget"] = 0
    if kind == "gru":
        attrs["linear_before_reset"] = dirs[0][4]
    outs = ctx.add(kind, inputs, attrs, n_outputs=3 if kind == "lstm" else 2)
    return ctx.transpose(outs[0], (2, 0, 1, 3)), outs[1:]


def _flip_time(ctx, y):
    t = ctx.shape(y)[1]
    return ctx.add("gather", [y, ctx.const(np.arange(t - 1, -1, -1), np.int64)], {"axis": 1})


def _initial(ctx, kind):
    """initial_state call arguments -> {"h": [1,B,H], "c": [1,B,H]} (or None)."""
    names = sorted(k for k in ctx.kwargs if k.startswith("initial_state"))
    if not names:
        return None
    values = [ctx.kwargs.pop(k) for k in names]
    states = {}
    for key, v in zip(["h", "c"], values):
        states[key] = ctx.reshape(v, (1,) + tuple(ctx.shape(v)))
    if kind == "lstm" and len(states) != 2:
        raise ctx.error("LSTM initial_state needs [h, c]")
    return states


@converter("LSTM", "GRU", "SimpleRNN")
def recurrent(ctx, inputs):
    x = inputs[0]
    kind, cfg = KIND[ctx.cls], ctx.config
    _check(ctx, ctx.cls, cfg)
    hidden = int(cfg["units"])
    w, r, b, acts, lbr = direction_weights(ctx, kind, cfg, ctx.weights, ctx.shape(x)[-1])
    backwards = bool(cfg.get("go_backwards", False))
    y, states = run_sequence(ctx, kind, x, [(w, r, b, acts, lbr, backwards)], hidden, _initial(ctx, kind))
    bsz, t = ctx.shape(x)[:2]
    if cfg.get("return_sequences"):
        seq = ctx.reshape(y, (bsz, t, hidden))
        outs = [_flip_time(ctx, seq) if backwards else seq]
    else:
        outs = [ctx.reshape(states[0], (bsz, hidden))]
    if cfg.get("return_state"):
        outs += [ctx.reshape(s, (bsz, hidden)) for s in states]
    return outs


@converter("Bidirectional")
def bidirectional(ctx, inputs):
    x = inputs[0]
    fwd = ctx.opt("layer") or {}
    bwd = ctx.opt("backward_layer") or fwd
    fcfg, bcfg = fwd.get("config", {}), bwd.get("config", {})
    for sub in (fwd, bwd):
        _check(ctx, sub.get("class_name"), sub.get("config", {}))
    if fwd.get("class_name") != bwd.get("class_name") or fcfg.get("units") != bcfg.get("units"):
        raise ctx.unsupported("forward and backward layers of different classes or sizes are not supported")
    if fcfg.get("return_sequences") != bcfg.get("return_sequences"):
        raise ctx.unsupported("forward and backward layers disagree on return_sequences")
    kind, hidden = KIND[fwd["class_name"]], int(fcfg["units"])
    if kind == "gru" and fcfg.get("reset_after", True) != bcfg.get("reset_after", True):
        raise ctx.unsupported("forward and backward GRUs disagree on reset_after")
    n = len(ctx.weights) // 2
    in_size = ctx.shape(x)[-1]
    dirs = []
    for cfg, arrays, reverse in ((fcfg, ctx.weights[:n], False), (bcfg, ctx.weights[n:], True)):
        if bool(cfg.get("go_backwards", False)) != reverse:
            raise ctx.unsupported(f"option go_backwards={cfg.get('go_backwards')} on the "
                                  f"{'backward' if reverse else 'forward'} layer is not supported")
        dirs.append(direction_weights(ctx, kind, cfg, arrays, in_size) + (reverse,))
    y, states = run_sequence(ctx, kind, x, dirs, hidden)
    bsz, t = ctx.shape(x)[:2]
    mode = ctx.require("merge_mode", "concat", "sum", "mul", "ave", None, default="concat")
    if fcfg.get("return_sequences") and mode == "concat":
        halves = [ctx.reshape(y, (bsz, t, 2 * hidden))]  # [B,T,2,H]: forward then backward
    elif fcfg.get("return_sequences"):
        halves = [ctx.add("slice", [y], {"starts": [k], "ends": [k + 1], "axes": [2]}) for k in range(2)]
        halves = [ctx.reshape(h, (bsz, t, hidden)) for h in halves]
    else:
        halves = [ctx.reshape(ctx.add("slice", [states[0]], {"starts": [k], "ends": [k + 1], "axes": [0]}),
                              (bsz, hidden)) for k in range(2)]
    if mode == "concat":
        outs = halves if len(halves) == 1 else [ctx.add("concat", halves, {"axis": 1})]
    elif mode is None:
        outs = halves
    else:
        merged = ctx.add("mul" if mode == "mul" else "add", halves)
        outs = [ctx.add("mul", [merged, ctx.const(np.float32(0.5))]) if mode == "ave" else merged]
    if fcfg.get("return_state"):
        for k in range(2):
            for s in states:
                outs.append(ctx.reshape(ctx.add("slice", [s], {"starts": [k], "ends": [k + 1], "axes": [0]}),
                                        (bsz, hidden)))
    return outs
