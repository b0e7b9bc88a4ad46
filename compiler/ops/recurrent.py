"""Recurrent ops: `lstm`, `gru`, `rnn` (whole sequences, ONNX semantics) and the per-direction
loop kernels the `unroll_recurrent` pass rewrites them into.

Whole-sequence ops (time-major, ONNX weight layout, all inputs present; the frontend fills
defaults):

    lstm(X[T,B,I], W[D,4H,I], R[D,4H,H], B[D,8H], h0[D,B,H], c0[D,B,H], P[D,3H] [, lens[B]])
        -> Y[T,D,B,H], Y_h[D,B,H], Y_c[D,B,H]            gates i,o,f,c; peepholes i,o,f
    gru(X, W[D,3H,I], R[D,3H,H], B[D,6H], h0 [, lens]) -> Y, Y_h              gates z,r,h
    rnn(X, W[D,H,I],  R[D,H,H],  B[D,2H], h0 [, lens]) -> Y, Y_h

attrs: hidden (H), direction (forward|reverse|bidirectional), acts (per direction, a list of
[name, alpha, beta]: 3 for lstm f,g,h; 2 for gru f,g; 1 for rnn), clip (None or float),
input_forget (lstm), linear_before_reset (gru), masked (a lens input is present).
With lens, batch b runs lens[b] steps: Y is zero past lens[b], Y_h holds the last valid state,
and the reverse direction runs backwards from lens[b]-1 (what onnxruntime computes).

Loop kernels (made by the pass; weights packed per hidden tile of `lanes` units,
WP[d, tile, i, gate, lane] = W[d, gate*H + tile*lanes + lane, i], RP likewise from R;
bias = W bias + R bias except the GRU h gate's R bias with linear_before_reset):

    lstm_loop(X, WP, bias[D,4H], h0, c0, RP [, P] [, lens]) -> Y, Y_h, Y_c   every direction, all steps
                                                                           (no P: all-zero peepholes)
    gru_loop(X, WP, bias[D,3H], h0, RP, rbh[D,H] [, lens]) -> Y, Y_h       attrs above + seq
    rnn_loop(X, WP, bias[D,H], h0, RP [, lens]) -> Y, Y_h
"""
import numpy as np

from . import ShapeError, defop

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
N_ACTS = {"lstm": 3, "gru": 2, "rnn": 1}
DEFAULT_ACTS = {"lstm": ["sigmoid", "tanh", "tanh"], "gru": ["sigmoid", "tanh"], "rnn": ["tanh"]}
# name -> (uses alpha, uses beta, default alpha, default beta) (onnxruntime's defaults)
ACTIVATIONS = {
    "relu": (0, 0, 0.0, 0.0), "tanh": (0, 0, 0.0, 0.0), "sigmoid": (0, 0, 0.0, 0.0),
    "affine": (1, 1, 1.0, 0.0), "leakyrelu": (1, 0, 0.01, 0.0), "thresholdedrelu": (1, 0, 1.0, 0.0),
    "scaledtanh": (1, 1, 1.0, 1.0), "hardsigmoid": (1, 1, 0.2, 0.5), "elu": (1, 0, 1.0, 0.0),
    "softsign": (0, 0, 0.0, 0.0), "softplus": (0, 0, 0.0, 0.0),
}


class NumpyMath:
    exp, tanh, abs, log1p = np.exp, np.tanh, np.abs, np.log1p
    maximum, minimum, where = np.maximum, np.minimum, np.where

    @staticmethod
    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    @staticmethod
    def c(v, like):
        return v


def activate(m, act, x):
    """ACT = [name, alpha, beta] applied to X with math namespace M (NumpyMath, or TirMath in lowering)."""
    name, alpha, beta = act[0], m.c(act[1], x), m.c(act[2], x)
    one, zero = m.c(1.0, x), m.c(0.0, x)
    if name == "sigmoid":
        return m.sigmoid(x)
    if name == "tanh":
        return m.tanh(x)
    if name == "relu":
        return m.maximum(x, zero)
    if name == "affine":
        return alpha * x + beta
    if name == "leakyrelu":
        return m.where(x >= zero, x, alpha * x)
    if name == "thresholdedrelu":
        return m.where(x > alpha, x, zero)
    if name == "scaledtanh":
        return alpha * m.tanh(beta * x)
    if name == "hardsigmoid":
        return m.maximum(m.minimum(alpha * x + beta, one), zero)
    if name == "elu":
        return m.where(x >= zero, x, alpha * (m.exp(x) - one))
    if name == "softsign":
        return x / (one + m.abs(x))
    if name == "softplus":
        return m.maximum(x, zero) + m.log1p(m.exp(-m.abs(x)))
    raise ValueError(f"unknown activation {name}")


def _clip(m, a, x):
    if a.get("clip") is None:
        return x
    return m.minimum(m.maximum(x, m.c(-a["clip"], x)), m.c(a["clip"], x))


def _peep(pre, p, k, c):
    return pre[k] if p is None else pre[k] + p[k] * c


def lstm_c(m, a, acts, pre, c, p):
    """pre = (i, o, f, c~) pre-activations with biases; p = peepholes (i, o, f), None where all zero. -> c'."""
    f_, g_ = acts[0], acts[1]
    i = activate(m, f_, _clip(m, a, _peep(pre, p, 0, c)))
    f = m.c(1.0, i) - i if a.get("input_forget") else activate(m, f_, _clip(m, a, _peep(pre, p, 2, c)))
    return f * c + i * activate(m, g_, _clip(m, a, pre[3]))


def lstm_h(m, a, acts, pre, c_new, p):
    o = activate(m, acts[0], _clip(m, a, _peep(pre, p, 1, c_new)))
    return o * activate(m, acts[2], c_new)


def lstm_update(m, a, acts, pre, c, p):
    c_new = lstm_c(m, a, acts, pre, c, p)
    return lstm_h(m, a, acts, pre, c_new, p), c_new


def gru_gates(m, a, acts, pre_z, pre_r):
    return activate(m, acts[0], _clip(m, a, pre_z)), activate(m, acts[0], _clip(m, a, pre_r))


def gru_update(m, a, acts, z, pre_h, h):
    """pre_h: the h gate's pre-activation (r already applied). -> h'."""
    ht = activate(m, acts[1], _clip(m, a, pre_h))
    return (m.c(1.0, z) - z) * ht + z * h


def rnn_update(m, a, acts, pre):
    return activate(m, acts[0], _clip(m, a, pre))


# ---- whole-sequence ops -------------------------------------------------------------------
def dirs(a):
    return 2 if a["direction"] == "bidirectional" else 1


def _seq_infer(kind):
    def infer(a, x, w, r, b, h0, *rest):
        if len(x.shape) != 3:
            raise ShapeError(f"X must be [seq, batch, input], got {list(x.shape)}")
        t, n, i = x.shape
        d, h, g = dirs(a), a["hidden"], GATES[kind]
        want = {"W": (w, (d, g * h, i)), "R": (r, (d, g * h, h)), "B": (b, (d, 2 * g * h)),
                "initial_h": (h0, (d, n, h))}
        if kind == "lstm":
            want.update(initial_c=(rest[0], (d, n, h)), P=(rest[1], (d, 3 * h)))
        if a.get("masked"):
            want["sequence_lens"] = (rest[-1], (n,))
        for label, (v, shape) in want.items():
            if tuple(v.shape) != shape:
                raise ShapeError(f"{label} has shape {list(v.shape)}, expected {list(shape)}")
        outs = [((t, d, n, h), x.dtype), ((d, n, h), x.dtype)]
        return outs + [((d, n, h), x.dtype)] if kind == "lstm" else outs
    return infer


def _seq_flops(kind):
    def flops(a, ins, outs):
        t, n, i = ins[0].shape
        gh = GATES[kind] * a["hidden"]
        return 2 * t * n * gh * (i + a["hidden"]) * dirs(a)
    return flops


def step_order(a, reverse, t, lens):
    """Per batch element: time index of each step s and whether it is valid. -> [T, B] arrays."""
    s = np.arange(t)[:, None]
    lens = np.full((1,), t) if lens is None else np.asarray(lens).reshape(1, -1).astype(np.int64)
    valid = s < lens
    pos = np.where(valid, lens - 1 - s, s) if reverse else np.broadcast_to(s, valid.shape)
    return pos, valid


def reference_sequence(kind, a, x, w, r, b, h0, c0=None, p=None, lens=None):
    x = x.astype(np.float64)
    t, n, _ = x.shape
    hid, g = a["hidden"], GATES[kind]
    ys, hs, cs = [], [], []
    for d in range(dirs(a)):
        reverse = a["direction"] == "reverse" or d == 1
        acts = a["acts"][d]
        wd, rd = w[d].astype(np.float64), r[d].astype(np.float64)
        wb, rb = b[d, :g * hid].astype(np.float64), b[d, g * hid:].astype(np.float64)
        h = h0[d].astype(np.float64)
        c = c0[d].astype(np.float64) if kind == "lstm" else None
        pos, valid = step_order(a, reverse, t, lens)
        y = np.zeros((t, n, hid))
        for s in range(t):
            xt = x[pos[s], np.arange(n)]
            v = valid[s][:, None]
            if kind == "lstm":
                pre = xt @ wd.T + wb + h @ rd.T + rb
                pp = p[d].astype(np.float64)
                hn, cn = lstm_update(NumpyMath, a, acts, [pre[:, k * hid:(k + 1) * hid] for k in range(4)], c,
                                     [pp[k * hid:(k + 1) * hid] for k in range(3)])
                c = np.where(v, cn, c)
            elif kind == "gru":
                px, ph = xt @ wd.T + wb, h @ rd.T
                z, rr = gru_gates(NumpyMath, a, acts, px[:, :hid] + ph[:, :hid] + rb[:hid],
                                  px[:, hid:2 * hid] + ph[:, hid:2 * hid] + rb[hid:2 * hid])
                rh = rb[2 * hid:]
                if a.get("linear_before_reset"):
                    pre_h = px[:, 2 * hid:] + rr * (ph[:, 2 * hid:] + rh)
                else:
                    pre_h = px[:, 2 * hid:] + (rr * h) @ rd[2 * hid:].T + rh
                hn = gru_update(NumpyMath, a, acts, z, pre_h, h)
            else:
                hn = rnn_update(NumpyMath, a, acts, xt @ wd.T + wb + h @ rd.T + rb)
            h = np.where(v, hn, h)
            y[pos[s], np.arange(n)] = np.where(v, hn, 0.0)
        ys.append(y)
        hs.append(h)
        cs.append(c)
    outs = [np.stack(ys, 1).astype(x.dtype), np.stack(hs).astype(np.float32)]
    return tuple(outs + [np.stack(cs).astype(np.float32)]) if kind == "lstm" else tuple(outs)


for _kind in GATES:
    defop(_kind, "recurrent", _seq_infer(_kind), _seq_flops(_kind))(
        lambda a, *arrays, _k=_kind: reference_sequence(_k, a, *_split_inputs(_k, a, arrays)))


def _split_inputs(kind, a, arrays):
    """Whole-sequence op inputs -> reference_sequence's positional arguments."""
    lens = arrays[-1] if a.get("masked") else None
    base = list(arrays[:5])
    extra = list(arrays[5:7]) if kind == "lstm" else [None, None]
    return base + extra + [lens]


# ---- loop kernels -------------------------------------------------------------------------
def step_inputs(kind, a, arrays):
    """(x, wp, bias, h0, c0, rp, extra, lens) from a loop op's inputs (c0/extra/lens None where unused)."""
    arrays = list(arrays)
    lens = arrays.pop() if a.get("masked") else None
    x, wp, bias, h0 = arrays[:4]
    rest = arrays[4:]
    c0 = rest.pop(0) if kind == "lstm" else None
    rp = rest.pop(0)
    extra = rest[0] if rest else None
    return x, wp, bias, h0, c0, rp, extra, lens


def unpack(wp):
    """Packed weights [tiles, K, G, lanes] -> the transposed matrix [K, G*H] (unit = tile*lanes + lane)."""
    nj, k, g, lanes = wp.shape
    return np.transpose(wp, (1, 2, 0, 3)).reshape(k, g * nj * lanes)


def _loop_infer(kind):
    def infer(a, *vals):
        x, wp, bias, h0, c0, rp, extra, lens = step_inputs(kind, a, vals)
        t, n, i = x.shape
        d, hid, g = dirs(a), a["hidden"], GATES[kind]
        for label, v, k in (("W", wp, i), ("R", rp, hid)):
            s = tuple(v.shape)
            if len(s) != 5 or s[0] != d or s[2:4] != (k, g) or s[1] * s[4] != hid:
                raise ShapeError(f"packed {label} has shape {list(s)}, expected [{d}, tiles, {k}, {g}, lanes]")
        if tuple(bias.shape) != (d, g * hid) or tuple(h0.shape) != (d, n, hid) or t != a["seq"]:
            raise ShapeError(f"bias {list(bias.shape)} / h0 {list(h0.shape)} do not fit seq {a['seq']} hidden {hid}")
        state = ((d, n, hid), x.dtype)
        outs = [((t, d, n, hid), x.dtype), state]
        return outs + [state] if kind == "lstm" else outs
    return infer


def reference_steps(kind, a, xp, h, c, rt, extra, lens, acts, reverse):
    """Run every step of one direction in numpy from XP = X.W^T + bias [T*B, G*H] and RT = R^T;
    -> (Y [T, B, H] at time positions, h, c)."""
    hid, n, t = a["hidden"], h.shape[0], a["seq"]
    xp3 = xp.astype(np.float64).reshape(t, n, -1)
    rt, h = rt.astype(np.float64), h.astype(np.float64)
    c = None if c is None else c.astype(np.float64)
    pos, valid = step_order(a, reverse, t, lens)
    y = np.zeros((t, n, hid))
    for s in range(t):
        xt, v = xp3[pos[s], np.arange(n)], valid[s][:, None]
        hr = h @ rt
        if kind == "lstm":
            pre = xt + hr
            hn, cn = lstm_update(NumpyMath, a, acts, [pre[:, k * hid:(k + 1) * hid] for k in range(4)], c,
                                 None if extra is None else [extra[k * hid:(k + 1) * hid] for k in range(3)])
            c = np.where(v, cn, c)
        elif kind == "gru":
            z, r = gru_gates(NumpyMath, a, acts, xt[:, :hid] + hr[:, :hid], xt[:, hid:2 * hid] + hr[:, hid:2 * hid])
            if a.get("linear_before_reset"):
                pre_h = xt[:, 2 * hid:] + r * (hr[:, 2 * hid:] + extra)
            else:
                pre_h = xt[:, 2 * hid:] + (r * h) @ rt[:, 2 * hid:]
            hn = gru_update(NumpyMath, a, acts, z, pre_h, h)
        else:
            hn = rnn_update(NumpyMath, a, acts, xt + hr)
        h = np.where(v, hn, h)
        y[pos[s], np.arange(n)] = np.where(v, hn, 0.0)
    return y, h, c


def _loop_ref(kind):
    def ref(a, *arrays):
        x, wp, bias, h0, c0, rp, extra, lens = step_inputs(kind, a, arrays)
        t, n, i = x.shape
        ys, hs, cs = [], [], []
        for d in range(dirs(a)):
            xp = x.reshape(t * n, i).astype(np.float64) @ unpack(wp[d]).astype(np.float64) + bias[d]
            y, h, c = reference_steps(kind, a, xp, h0[d], None if c0 is None else c0[d], unpack(rp[d]),
                                      None if extra is None else extra[d], lens, a["acts"][d],
                                      a["direction"] == "reverse" or d == 1)
            ys.append(y)
            hs.append(h)
            cs.append(c)
        outs = [np.stack(ys, 1).astype(np.float32), np.stack(hs).astype(np.float32)]
        return tuple(outs + [np.stack(cs).astype(np.float32)]) if kind == "lstm" else tuple(outs)
    return ref


for _kind in GATES:
    defop(f"{_kind}_loop", "recurrent", _loop_infer(_kind), _seq_flops(_kind))(_loop_ref(_kind))
