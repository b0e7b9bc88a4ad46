"""Recurrent kernels as hand-written TIR (TVM's TE has no recurrence create_prim_func accepts).

`lstm_loop` / `gru_loop` / `rnn_loop` run every time step of one direction in one kernel: a
serial loop over time, the hidden (and cell) state ping-ponging between two scratch buffers.
Each step walks the (batch, hidden tile) pairs; a tile is LANES hidden units (the last axis of
the packed recurrent weights RP[tile, k, gate, lane], see unroll_recurrent). Per tile:

    acc[gate, :] = sum_k h[b, k] * RP[tile, k, gate, :]     GEMV: one broadcast, one FMA per gate
    gate math + state update on the tile's LANES units      vectorized, from registers

The accumulators are a small "local" buffer (LLVM keeps them in vector registers) and the packed
weights stream contiguously once per step. The tile loop is parallel only when a step has enough
work to pay for waking the thread pool (`PARALLEL_STEP_MACS`); small models run one thread.
New state is computed as expressions and stored, never read back in the same vectorized loop
(doing so once gave wrong LSTM results). GRU with linear_before_reset=0 needs (r*h).R_h^T, so
its steps run two tile passes (z and r*h first, then the h gate).

exp/tanh/sigmoid use `TirMath`: float32 polynomial exp that vectorizes (LLVM would otherwise
call scalar expf for every lane).
The kernels come scheduled: the `recurrent` schedule rule leaves them as they are.
"""
import math

from tvm import te, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

from ..ops.recurrent import GATES, gru_gates, gru_update, lstm_c, lstm_h, rnn_update, step_inputs
from . import lowering

PARALLEL_STEP_MACS = 1 << 18  # multiply-adds per step from which the tile loop runs on all threads


def _f(v):
    return tirx.const(float(v), "float32")


class TirMath:
    """The math namespace of the gate equations (ops/recurrent.py) for TIR expressions. Called
    while a kernel is built: values used more than once are bound (T.bind) so that expressions
    stay DAG-sized instead of growing into trees."""
    abs, maximum, minimum, where = te.abs, te.max, te.min, tirx.Select

    @staticmethod
    def exp(x):
        """e^x = 2^n * e^r with x = n ln2 + r, |r| <= ln2/2; e^r by its Taylor series to r^7
        (relative error below 1e-7); inputs clamped to [-87, 88], float32's normal range."""
        x = T.bind(te.max(te.min(x, _f(88.0)), _f(-87.0)))
        n = T.bind(te.floor(x * _f(1 / math.log(2)) + _f(0.5)))
        r = T.bind(x - n * _f(0.693359375) - n * _f(-2.12194440e-4))  # ln2 in two parts: n*hi is exact
        p = _f(1 / math.factorial(7))
        for k in range(6, -1, -1):
            p = p * r + _f(1 / math.factorial(k))
        scale = tirx.reinterpret("float32", tirx.shift_left(n.astype("int32") + 127, 23))
        return p * scale

    @staticmethod
    def tanh(x):
        """tanh by its odd Taylor series to x^9 for |x| < 1/8, else (1 - e)/(1 + e), e = e^-2|x|."""
        x = T.bind(x)
        ax = T.bind(te.abs(x))
        x2 = T.bind(x * x)
        small = x * (_f(1) + x2 * (_f(-1 / 3) + x2 * (_f(2 / 15) + x2 * (_f(-17 / 315) + x2 * _f(62 / 2835)))))
        e = T.bind(TirMath.exp(_f(-2) * ax))
        big = (_f(1) - e) / (_f(1) + e)
        return tirx.Select(ax < _f(0.125), small, tirx.Select(x < _f(0), -big, big))

    @staticmethod
    def log1p(x):
        return te.log(_f(1) + x)

    @staticmethod
    def c(v, like):  # recurrent kernels are float32 (the frontend refuses other dtypes)
        return _f(v)


M = TirMath


def _loop_kernel(kind, a, tensors):
    xp_t, h_t, c_t, rp_t, ex_t, lens_t = step_inputs(kind, a, tensors)
    n, hid, seq = int(h_t.shape[0]), a["hidden"], a["seq"]
    nj, _, g_all, lanes = (int(v) for v in rp_t.shape)
    present = [t for t in (xp_t, h_t, c_t, rp_t, ex_t, lens_t) if t is not None]
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            T.func_name(f"{kind}_loop")
            bufs = {id(t): T.match_buffer(T.arg(f"in{i}", T.handle()), t.shape, t.dtype)
                    for i, t in enumerate(present)}
            get = lambda t: bufs[id(t)] if t is not None else None  # noqa: E731
            y = T.match_buffer(T.arg("y", T.handle()), (seq, n, hid), "float32")
            h_out = T.match_buffer(T.arg("h_out", T.handle()), (n, hid), "float32")
            c_out = T.match_buffer(T.arg("c_out", T.handle()), (n, hid), "float32") if c_t is not None else None
            with T.sblock("root"):
                k = _Step(kind, a, get(xp_t), get(rp_t), get(ex_t), get(lens_t), y, n, nj, lanes, g_all)
                hs = T.alloc_buffer((2, n, hid), "float32")
                cs = T.alloc_buffer((2, n, hid), "float32") if c_t is not None else None
                lbr0 = kind == "gru" and not a.get("linear_before_reset")
                zr = T.alloc_buffer((2, n, hid), "float32") if lbr0 else None  # z and r*h (GRU)
                k.copy(get(h_t), lambda b, j: [b, j], hs, lambda b, j: [0, b, j])
                if cs is not None:
                    k.copy(get(c_t), lambda b, j: [b, j], cs, lambda b, j: [0, b, j])
                with T.serial(0, seq) as s:
                    k.step(s, hs, cs, zr)
                k.copy(hs, lambda b, j: [seq % 2, b, j], h_out, lambda b, j: [b, j])
                if cs is not None:
                    k.copy(cs, lambda b, j: [seq % 2, b, j], c_out, lambda b, j: [b, j])
    return _extern(ib.get(), present)


class _Step:
    """Emits one time step of the loop kernel (see the module docstring)."""

    def __init__(self, kind, a, xp, rp, ex, lens, y, n, nj, lanes, g_all):
        self.kind, self.a, self.xp, self.rp, self.ex, self.lens, self.y = kind, a, xp, rp, ex, lens, y
        self.n, self.nj, self.lanes, self.hid = n, nj, lanes, a["hidden"]
        self.parallel = n * g_all * self.hid * self.hid >= PARALLEL_STEP_MACS

    def copy(self, src, src_idx, dst, dst_idx):
        with T.serial(0, self.n) as b:
            with T.vectorized(0, self.hid) as j:
                T.buffer_store(dst, src[tuple(src_idx(b, j))], dst_idx(b, j))

    def where(self, s, b):
        """(time index of step s for batch b, valid flag or None)."""
        a, seq = self.a, self.a["seq"]
        if self.lens is None:
            return (seq - 1 - s if a.get("reverse") else s), None
        valid = s < self.lens[b]
        return (tirx.Select(valid, self.lens[b] - 1 - s, s) if a.get("reverse") else s), valid

    def tiles(self):
        """The loop over (batch, hidden tile) pairs: parallel or serial."""
        return (T.parallel if self.parallel else T.serial)(0, self.n * self.nj)

    def gemv(self, b, jt, gates, state):
        """A local [len(gates), lanes] buffer holding state[b, :] . RP[jt, :, g, :] for g in GATES."""
        acc = T.alloc_buffer((len(gates), self.lanes), "float32", scope="local")
        for gi in range(len(gates)):
            with T.vectorized(0, self.lanes) as ji:
                T.buffer_store(acc, _f(0), [gi, ji])
        with T.serial(0, self.hid) as k:
            for gi, g in enumerate(gates):
                with T.vectorized(0, self.lanes) as ji:
                    T.buffer_store(acc, acc[gi, ji] + state(b, k) * self.rp[jt, k, g, ji], [gi, ji])
        return acc

    def step(self, s, hs, cs, zr):
        kind, a, hid, lanes = self.kind, self.a, self.hid, self.lanes
        acts = a["acts"]
        src = lambda b, j: hs[s % 2, b, j]  # noqa: E731
        nxt = lambda b, j: [(s + 1) % 2, b, j]  # noqa: E731
        lbr0 = kind == "gru" and not a.get("linear_before_reset")

        def xpre(b, g, j):
            pos, _ = self.where(s, b)
            return self.xp[pos * self.n + b, g * hid + j]

        def store_state(b, j, hn, valid):
            T.buffer_store(hs, hn if valid is None else tirx.Select(valid, hn, src(b, j)), nxt(b, j))
            pos, _ = self.where(s, b)
            T.buffer_store(self.y, hn if valid is None else tirx.Select(valid, hn, _f(0)), [pos, b, j])

        gates = list(range(GATES[kind])) if not lbr0 else [0, 1]
        with self.tiles() as bj:
            b, jt = bj // self.nj, bj % self.nj
            acc = self.gemv(b, jt, gates, src)
            with T.vectorized(0, lanes) as ji:
                j = jt * lanes + ji
                pre = [T.bind(xpre(b, g, j) + acc[gi, ji]) for gi, g in enumerate(gates)]
                _, valid = self.where(s, b)
                if kind == "lstm":
                    p = [self.ex[q * hid + j] for q in range(3)]
                    c_old = cs[s % 2, b, j]
                    cn = T.bind(lstm_c(M, a, acts, pre, c_old, p))
                    T.buffer_store(cs, cn if valid is None else tirx.Select(valid, cn, c_old), nxt(b, j))
                    store_state(b, j, lstm_h(M, a, acts, pre, cn, p), valid)
                elif kind == "rnn":
                    store_state(b, j, rnn_update(M, a, acts, pre[0]), valid)
                else:
                    z, r = (T.bind(v) for v in gru_gates(M, a, acts, pre[0], pre[1]))
                    if lbr0:
                        T.buffer_store(zr, z, [0, b, j])
                        T.buffer_store(zr, r * src(b, j), [1, b, j])
                    else:
                        pre_h = xpre(b, 2, j) + r * (acc[2, ji] + self.ex[j])
                        store_state(b, j, gru_update(M, a, acts, z, pre_h, src(b, j)), valid)
        if lbr0:
            with self.tiles() as bj:
                b, jt = bj // self.nj, bj % self.nj
                acc = self.gemv(b, jt, [2], lambda bb, k: zr[1, bb, k])
                with T.vectorized(0, lanes) as ji:
                    j = jt * lanes + ji
                    _, valid = self.where(s, b)
                    pre_h = xpre(b, 2, j) + acc[0, ji]
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
    lowering(f"{_kind}_loop")(lambda a, *ts, _k=_kind: _loop_kernel(_k, a, ts))
