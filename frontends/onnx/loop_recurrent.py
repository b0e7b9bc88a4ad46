"""Recognize a Loop that is a GRU or simple RNN layer (the form tf2onnx gives Keras GRU and
SimpleRNN) and convert it to the IR's fused `gru` / `rnn` op instead of unrolling it.

Candidates come from the structure: a Gather of an outer, time-major sequence X [T, B, I]
indexed by a loop-carried counter, a carried state h [B, H], the other carried values passed
through unchanged, and weight constants of the shapes the cell needs. The decision is numeric:
the body, run by ONNX's reference evaluator at the first, second and last step on random x and
h, must give the cell's next state (Keras gate order z, r, h; reset_after or not; tanh RNN)
for every scan output and the state, and keep the loop running for the trip count. Anything
else returns None and the Loop is unrolled.
"""
import numpy as np
import onnx
from onnx import helper, numpy_helper


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _gru(x, h, w, r, b, reset_after):
    hid = r.shape[0]
    bi, br = (b[0], b[1]) if reset_after else (b, np.zeros_like(b))
    xz, xr, xh = np.split(x @ w + bi, 3, axis=-1)
    rh = h @ r + br
    z = _sigmoid(xz + rh[:, :hid])
    rr = _sigmoid(xr + rh[:, hid:2 * hid])
    hh = np.tanh(xh + rr * rh[:, 2 * hid:]) if reset_after else np.tanh(xh + (rr * h) @ r[:, 2 * hid:])
    return z * h + (1 - z) * hh


def _hypotheses(consts, i_size, hid):
    """(kind, ONNX-layout W, R, B, linear_before_reset, numpy cell) for the weight shapes found."""
    def find(shape):
        return [v for v in consts if v.shape == shape]
    out = []
    for w in find((i_size, 3 * hid)):
        for r in find((hid, 3 * hid)):
            for b in find((2, 3 * hid)):
                out.append(("gru", w.T, r.T, b.reshape(-1), 1, lambda x, h, w=w, r=r, b=b: _gru(x, h, w, r, b, True)))
            for b in find((3 * hid,)):
                out.append(("gru", w.T, r.T, np.concatenate([b, np.zeros_like(b)]), 0,
                            lambda x, h, w=w, r=r, b=b: _gru(x, h, w, r, b, False)))
    for w in find((i_size, hid)):
        for r in find((hid, hid)):
            for b in find((hid,)):
                out.append(("rnn", w.T, r.T, np.concatenate([b, np.zeros_like(b)]), 0,
                            lambda x, h, w=w, r=r, b=b: np.tanh(x @ w + h @ r + b)))
    return out


def match(ctx, body, trip, carried):
    """The Loop's outputs from one fused recurrent node, or None when the body is not a cell."""
    g = ctx.graph
    defined = {i.name for i in body.input} | {o for n in body.node for o in n.output} | {t.name for t in body.initializer}
    outer = {i for n in body.node for i in n.input if i and i not in defined}
    seqs = [n.input[0] for n in body.node if n.op_type == "Gather" and n.input[0] in outer]
    if trip is None or len(seqs) != 1:
        return None
    xs = ctx.imp.env.get(seqs[0])
    if xs is None or xs in g.constants or len(g.values[xs].shape) != 3 or g.values[xs].shape[0] < trip:
        return None
    steps, batch, i_size = g.values[xs].shape
    names = [i.name for i in body.input]
    outs = [o.name for o in body.output]
    n_c = len(carried)
    states = [k for k in range(n_c) if outs[1 + k] != names[2 + k]]  # carried values the body changes
    counters = [k for k in states if carried[k] in g.constants and g.constants[carried[k]].size == 1]
    hs = [k for k in states if k not in counters and len(g.values[carried[k]].shape) == 2]
    if len(hs) != 1 or len(counters) + 1 != len(states) or len(outs) - 1 - n_c < 1:
        return None
    hk = hs[0]
    hid = g.values[carried[hk]].shape[1]
    if any(carried[k] not in g.constants for k in range(n_c) if k != hk):
        return None
    consts = {names[2 + k]: g.constants[carried[k]] for k in range(n_c) if k != hk}
    consts.update({o: g.constants[ctx.imp.env[o]] for o in outer if o in ctx.imp.env and ctx.imp.env[o] in g.constants})
    fed = [names[0], names[1], names[2 + hk]] + [names[2 + k] for k in counters] + [seqs[0]]
    step_fn = _evaluator(body, fed, outer, {n: v for n, v in consts.items() if n not in fed})
    if step_fn is None:
        return None
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, i_size)).astype(np.float32)
    h = rng.standard_normal((batch, hid)).astype(np.float32)
    runs = {}
    for t in sorted({0, 1, trip - 1}):
        if t >= trip:
            continue
        feeds = {names[0]: np.asarray(t, np.int64), names[1]: np.asarray(True), names[2 + hk]: h, seqs[0]: x}
        for k in counters:
            feeds[names[2 + k]] = (g.constants[carried[k]] + t).astype(g.constants[carried[k]].dtype)
        try:
            runs[t] = step_fn(feeds)
        except Exception:  # noqa: BLE001 - the reference evaluator refuses: not our cell
            return None
        if t < trip - 1 and not bool(np.asarray(runs[t][0]).reshape(-1)[0]):
            return None
    for kind, w, r, b, lbr, cell in _hypotheses([v for v in consts.values() if v.dtype == np.float32], i_size, hid):
        if all(all(np.allclose(o, cell(x[t].astype(np.float64), h), rtol=1e-4, atol=1e-5)
                   for o in [res[1 + hk]] + list(res[1 + n_c:])) for t, res in runs.items()):
            return _emit(ctx, kind, w, r, b, lbr, xs, trip, carried, hk, counters, len(outs) - 1 - n_c)
    return None


def _evaluator(body, fed, outer, consts):
    """The body as a function of the FED values (feeds dict -> outputs); the rest are CONSTS."""
    from onnx.reference import ReferenceEvaluator
    if any(o not in consts and o not in fed for o in outer):
        return None
    inputs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in fed]
    inits = list(body.initializer) + [numpy_helper.from_array(np.asarray(v), n) for n, v in consts.items()]
    model = helper.make_model(helper.make_graph(list(body.node), "cell", inputs, list(body.output), inits))
    try:
        ev = ReferenceEvaluator(model)
    except Exception:  # noqa: BLE001
        return None
    return lambda feeds: ev.run(None, feeds)


def _emit(ctx, kind, w, r, b, lbr, xs, trip, carried, hk, counters, n_scan):
    x = xs if ctx.shape(xs)[0] == trip else ctx.add1("slice", [xs], {"starts": [0], "ends": [trip], "axes": [0]})
    batch, hid = ctx.shape(carried[hk])
    acts = [["sigmoid", 0.0, 0.0], ["tanh", 0.0, 0.0]] if kind == "gru" else [["tanh", 0.0, 0.0]]
    attrs = {"hidden": hid, "direction": "forward", "acts": [acts], "clip": None}
    if kind == "gru":
        attrs["linear_before_reset"] = lbr
    f32 = np.float32
    ins = [x, ctx.add_const(w[None].astype(f32), "W"), ctx.add_const(r[None].astype(f32), "R"),
           ctx.add_const(b[None].astype(f32), "B"), ctx.reshape(carried[hk], (1, batch, hid))]
    y, y_h = ctx.add(kind, ins, attrs, n_outputs=2)
    final = list(carried)
    final[hk] = ctx.reshape(y_h, (batch, hid))
    for k in counters:
        final[k] = ctx.add_const(ctx.graph.constants[carried[k]] + trip, "counter")
    seq = ctx.reshape(y, (trip, batch, hid))
    return final + [seq] * n_scan
