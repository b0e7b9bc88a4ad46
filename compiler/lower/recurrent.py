"""Recurrent kernels as hand-written TIR (TVM's TE has no recurrence create_prim_func accepts).

`lstm_cell` / `gru_cell` / `rnn_cell` are one time step; `*_loop` runs every step in one kernel
(a serial loop over time, the hidden state ping-ponging between two buffers). Both share one step
body: a parallel loop over (batch, hidden tile of LANES units); each tile accumulates h.R^T for
all its gates (the GEMV, vectorized over the tile, k serial), then applies the gate math and the
state update to its tile, so no per-gate tensor is ever written. GRU with linear_before_reset=0
needs (r*h).R_h^T, so it runs two such parallel phases per step.
The kernels come scheduled: the `recurrent` schedule rule leaves them as they are.
"""
from tvm import te, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

from ..ops.recurrent import GATES, gru_gates, gru_update, lstm_c, lstm_h, rnn_update, step_inputs
from . import lowering


class TirMath:
    exp, tanh, abs = te.exp, te.tanh, te.abs
    maximum, minimum, where = te.max, te.min, tirx.Select

    @staticmethod
    def log1p(x):
        return te.log(tirx.const(1.0, "float32") + x)

    @staticmethod
    def c(v, like):  # recurrent kernels are float32 (the frontend refuses other dtypes)
        return tirx.const(float(v), "float32")


M = TirMath


def lanes_for(hidden):
    return next(v for v in (16, 8, 4, 2, 1) if hidden % v == 0)


def _kernel(kind, a, tensors, loop):
    xp_t, h_t, c_t, rt_t, ex_t, lens_t = step_inputs(kind, a, tensors)
    n, hid, seq = int(h_t.shape[0]), a["hidden"], a["seq"]
    g_all, lanes = GATES[kind], lanes_for(hid)
    nj = hid // lanes
    lbr0 = kind == "gru" and not a.get("linear_before_reset")
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            T.func_name(f"{kind}_{'loop' if loop else 'cell'}")
            present = [t for t in (xp_t, h_t, c_t, rt_t, ex_t, lens_t) if t is not None]
            bufs = {id(t): T.match_buffer(T.arg(f"in{i}", T.handle()), t.shape, t.dtype)
                    for i, t in enumerate(present)}
            xp, h0, rt = bufs[id(xp_t)], bufs[id(h_t)], bufs[id(rt_t)]
            c0 = bufs[id(c_t)] if c_t is not None else None
            ex = bufs[id(ex_t)] if ex_t is not None else None
            lens = bufs[id(lens_t)] if lens_t is not None else None
            y_shape = (seq, n, hid) if loop else (n, hid)
            y = T.match_buffer(T.arg("y", T.handle()), y_shape, "float32")
            h_out = T.match_buffer(T.arg("h_out", T.handle()), (n, hid), "float32")
            c_out = T.match_buffer(T.arg("c_out", T.handle()), (n, hid), "float32") if c0 is not None else None
            with T.sblock("root"):
                acc = T.alloc_buffer((n * nj, g_all, lanes), "float32")
                hs = T.alloc_buffer((2, n, hid), "float32") if loop else None
                cs = T.alloc_buffer((2, n, hid), "float32") if loop and c0 is not None else None
                zr = T.alloc_buffer((2, n, hid), "float32") if lbr0 else None
                if loop:
                    with T.parallel(0, n * hid) as i:
                        T.buffer_store(hs, h0[i // hid, i % hid], [0, i // hid, i % hid])
                        if c0 is not None:
                            T.buffer_store(cs, c0[i // hid, i % hid], [0, i // hid, i % hid])
                    with T.serial(0, seq) as s:
                        nxt = lambda b, j: [(s + 1) % 2, b, j]  # noqa: E731
                        _step(kind, a, s, xp, lambda b, j: hs[s % 2, b, j], (hs, nxt),
                              (lambda b, j: cs[s % 2, b, j]) if cs is not None else None, (cs, nxt),
                              rt, ex, lens, y, loop, zr, acc, n, nj, lanes)
                    with T.parallel(0, n * hid) as i:
                        T.buffer_store(h_out, hs[seq % 2, i // hid, i % hid], [i // hid, i % hid])
                        if c0 is not None:
                            T.buffer_store(c_out, cs[seq % 2, i // hid, i % hid], [i // hid, i % hid])
                else:
                    _step(kind, a, a["step"], xp, lambda b, j: h0[b, j], (h_out, lambda b, j: [b, j]),
                          (lambda b, j: c0[b, j]) if c0 is not None else None, (c_out, lambda b, j: [b, j]),
                          rt, ex, lens, y, loop, zr, acc, n, nj, lanes)
    return _extern(ib.get(), present)


def _step(kind, a, s, xp, src, dst, c_src, c_dst, rt, ex, lens, y, loop, zr, acc, n, nj, lanes):
    hid, seq = a["hidden"], a["seq"]
    acts = a["acts"]
    lbr0 = kind == "gru" and not a.get("linear_before_reset")

    def where_(b):
        """(time index of step s for batch b, valid flag or None)."""
        if lens is None:
            return (seq - 1 - s if a.get("reverse") else s), None
        valid = s < lens[b]
        return (tirx.Select(valid, lens[b] - 1 - s, s) if a.get("reverse") else s), valid

    def gemv(bj, b, j0, gates, state):
        """acc[bj, gi, :] = state[b, :] . RT[:, gate gates[gi], tile j0] for each gate."""
        with T.serial(0, len(gates)) as gi:
            with T.vectorized(0, lanes) as ji:
                T.buffer_store(acc, tirx.const(0.0, "float32"), [bj, gi, ji])
        with T.serial(0, hid) as k:
            for gi, g in enumerate(gates):
                with T.vectorized(0, lanes) as ji:
                    T.buffer_store(acc, acc[bj, gi, ji] + state(b, k) * rt[k, g * hid + j0 + ji], [bj, gi, ji])

    def xpre(b, g, j):
        pos, _ = where_(b)
        return xp[pos * n + b, g * hid + j]

    def store_state(b, j, hn, valid):
        buf, idx = dst
        T.buffer_store(buf, hn if valid is None else tirx.Select(valid, hn, src(b, j)), idx(b, j))
        yv = hn if valid is None else tirx.Select(valid, hn, tirx.const(0.0, "float32"))
        pos, _ = where_(b)
        T.buffer_store(y, yv, [pos, b, j] if loop else [b, j])

    gates = list(range(GATES[kind])) if not lbr0 else [0, 1]
    with T.parallel(0, n * nj) as bj:
        b, j0 = bj // nj, (bj % nj) * lanes
        gemv(bj, b, j0, gates, src)
        with T.vectorized(0, lanes) as ji:
            j = j0 + ji
            pre = [xpre(b, g, j) + acc[bj, gi, ji] for gi, g in enumerate(gates)]
            _, valid = where_(b)
            if kind == "lstm":
                p = [ex[q * hid + j] for q in range(3)]
                c_old = c_src(b, j)
                cn = lstm_c(M, a, acts, pre, c_old, p)
                T.buffer_store(c_dst[0], cn if valid is None else tirx.Select(valid, cn, c_old), c_dst[1](b, j))
                store_state(b, j, lstm_h(M, a, acts, pre, cn, p), valid)
            elif kind == "rnn":
                store_state(b, j, rnn_update(M, a, acts, pre[0]), valid)
            else:
                z, r = gru_gates(M, a, acts, pre[0], pre[1])
                if lbr0:
                    T.buffer_store(zr, z, [0, b, j])
                    T.buffer_store(zr, r * src(b, j), [1, b, j])
                else:
                    pre_h = xpre(b, 2, j) + r * (acc[bj, 2, ji] + ex[j])
                    store_state(b, j, gru_update(M, a, acts, z, pre_h, src(b, j)), valid)
    if lbr0:
        with T.parallel(0, n * nj) as bj:
            b, j0 = bj // nj, (bj % nj) * lanes
            gemv(bj, b, j0, [2], lambda bb, k: zr[1, bb, k])
            with T.vectorized(0, lanes) as ji:
                j = j0 + ji
                _, valid = where_(b)
                pre_h = xpre(b, 2, j) + acc[bj, 0, ji]
                store_state(b, j, gru_update(M, a, acts, zr[0, b, j], pre_h, src(b, j)), valid)


def _extern(func, inputs):
    """FUNC's body as a TE extern op: its first len(INPUTS) buffers read INPUTS, the rest are outputs
    (te.extern_primfunc would guess inputs from reads and count outputs read back as inputs)."""
    bufs = [p for p in func.params if tirx.is_buffer_var(p)]
    ins, outs = bufs[:len(inputs)], bufs[len(inputs):]
    res = te.extern([b.shape for b in outs], inputs, lambda i, o: func.body, in_buffers=ins, out_buffers=outs,
                    dtype=[b.dtype for b in outs], name="recurrent")
    return res if isinstance(res, (list, tuple)) else [res]


for _kind in GATES:
    lowering(f"{_kind}_cell")(lambda a, *ts, _k=_kind: _kernel(_k, a, ts, False))
    lowering(f"{_kind}_loop")(lambda a, *ts, _k=_kind: _kernel(_k, a, ts, True))


@lowering("rnn_stack")
def rnn_stack(a, *tensors):
    lens_t = tensors[-1] if a.get("masked") else None
    ys = tensors[:-1] if a.get("masked") else tensors
    seq, d = a["seq"], len(a["reverse"])
    n, hid = (int(v) for v in ys[0].shape)
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            T.func_name("rnn_stack")
            bufs = [T.match_buffer(T.arg(f"in{i}", T.handle()), t.shape, t.dtype) for i, t in enumerate(tensors)]
            out = T.match_buffer(T.arg("out", T.handle()), (seq, d, n, hid), "float32")
            lens = bufs[-1] if lens_t is not None else None
            with T.sblock("root"):
                for di, rev in enumerate(a["reverse"]):
                    for s in range(seq):
                        src = bufs[di * seq + s]
                        with T.parallel(0, n) as b:
                            pos = s
                            if rev and lens is not None:
                                pos = tirx.Select(s < lens[b], lens[b] - 1 - s, s)
                            elif rev:
                                pos = seq - 1 - s
                            with T.vectorized(0, hid) as j:
                                T.buffer_store(out, src[b, j], [pos, di, b, j])
    return _extern(ib.get(), list(tensors))
