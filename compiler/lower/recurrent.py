"""Recurrent kernels as hand-written TIR (TVM's TE has no recurrence create_prim_func accepts).

`lstm_loop` / `gru_loop` / `rnn_loop` run a whole recurrent node in one kernel, its directions
one after the other or one per thread (see Threads below). Per direction: first the input
projection XP = X.W^T + bias for every step (per hidden tile, over all steps, so the tile's
weights stay in cache), then a serial loop over time with the hidden (and cell) state
ping-ponging between two scratch buffers. Each step walks the (batch, hidden tile) pairs; a tile
is LANES hidden units (the last axis of the packed weights RP[d, tile, k, gate, lane], see
unroll_recurrent). Per tile:

    acc[gate, :] = sum_k h[b, k] * RP[d, tile, k, gate, :]   GEMV: one broadcast, one FMA per gate
    gate math + state update on the tile's LANES units        vectorized, from registers

(steps with groups of several batch rows and >= SPLIT_MIN_TILES tiles store the pre-activations
instead and run the gate math after the last tile, or in parallel steps after each chunk's last
tile, on the chunk's units; steps walk the tiles
(parallel steps: each thread its share) forwards and backwards on alternate passes so each pass
starts on weights still in cache; see _Direction.gate_pass, tiles and chunks).

The accumulators are a small "local" buffer (LLVM keeps them in vector registers) and the packed
weights stream contiguously once per step: one core's step is bound by how fast RP streams from
its L2 (hidden 128) or L3 (hidden 512), not by FMAs. With batch > 1, the batch rows of a group
share each weight vector load (`step_rows` per group, and RP packed at the tile width that lets
them share, see unroll_recurrent.register_tile; the projection likewise takes `project_rows` rows of
X per WP tile). Threads: a step with at least
`PARALLEL_STEP_MACS` multiply-adds splits its tiles over the cores (one parallel region for the
projection and all steps, a barrier after each pass over the tiles; each core streams its part of
RP) when the calling thread's pool has more than one thread (the kernel asks TVM's
runtime.NumThreads when called; on one thread, e.g. after the runtime's contention policy shrank
the pool, it runs the serial form, which walks the tiles alternately and needs no barriers: batch 3
GRU hidden 192, 1 thread, min ms 0.38 vs 0.40 in parallel form); a bidirectional node whose directions each have at least
`PARALLEL_DIRECTION_MACS` runs them on two threads; everything else runs on one thread. Parallel
regions pay on an idle machine (2-core AVX-512, ms serial vs parallel: lstm seq 100 / hidden 512
5.5 vs 3.2, bidirectional seq 32 / hidden 128 0.26 vs 0.16) but lose badly when other processes
keep the cores busy (7.6 vs 5.4; 3.1 vs 0.27), as any thread pool does when its workers are not
scheduled: the thresholds keep regions to work that outlasts a lost time slice. The runtime's
contention policy (runtime/contention.py) shrinks the pool to the free cores, which let the step
threshold come down to 2^18 (2-core AVX2, 2 threads, min ms serial vs parallel: batch 3 LSTM
hidden 256 0.74 vs 0.45, batch 3 GRU hidden 192 0.38 vs 0.24; below it steps lost: LSTM seq 32 /
hidden 128, 65k multiply-adds a step, 0.143 vs 0.144, batch 3 LSTM hidden 64 0.106 vs 0.134);
directions on two threads still gained nothing there (bidirectional seq 32 / hidden 128: 0.41 vs
0.44 ms).
New state is computed as expressions and stored, never read back in the same vectorized loop
(doing so once gave wrong LSTM results). GRU with linear_before_reset=0 needs (r*h).R_h^T, so
its steps run two tile passes (z and r*h first, then the h gate).

exp/tanh/sigmoid use `TirMath`: a float32 polynomial exp that vectorizes (LLVM would otherwise
call scalar expf for every lane); sigmoid and tanh fold their argument's scale (-1, -2 as -1 of 2x)
into its constants and reduce by ln2 in one multiply-add (2-core AVX2, 1 thread, min ms, with the
loop kernel dropping all-zero peepholes, see unroll_recurrent: lstm seq 32 / hidden 128 0.122 ->
0.118, bidirectional seq 40 / hidden 64 0.079 -> 0.074, batch 3 hidden 64 0.089 -> 0.085, seq 100 /
hidden 512 6.4 -> 6.1; GRU and RNN within 2%). What else there is to gain is mostly gate math (perf,
1 thread: lstm seq 32 / hidden 128: GEMV 64% (RP streams from L2 at ~32 B a cycle, its limit),
projection 18% (near FMA peak), gate math 17%; batch 3 hidden 64: 44%, 25%, 25%; batch 3 hidden
256: 60%, 27%, 8%, the GEMV and projection both near FMA peak). What did not pay in the gate math:
one vector at a time instead of a tile's two interleaved (half the constant reloads, 3-8% slower),
Estrin's scheme for the series (shorter chains: GRU 1% faster, LSTM up to 2% slower), software
prefetch of the next tile before the gate math (1-2% slower) or of RP ahead in the GEMV (hidden
512: 20-37% slower).
The kernels come scheduled: the `recurrent` schedule rule leaves them as they are.
"""
from contextlib import contextmanager, nullcontext

from tvm import te, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

from ..ops.recurrent import GATES, gru_gates, gru_update, lstm_c, lstm_h, rnn_update, step_inputs
from . import fastmath, lowering


def _f(v):
    return tirx.const(float(v), "float32")


class TirMath:
    """The math namespace of the gate equations (ops/recurrent.py) for TIR expressions. Called
    while a kernel is built: values used more than once are bound (T.bind) so that expressions
    stay DAG-sized instead of growing into trees."""
    abs, where = te.abs, tirx.Select

    @staticmethod
    def maximum(x, c):
        """max that keeps a NaN in X (TVM's max(a, b) is `a > b ? a : b`: the other operand first)."""
        return te.max(c, x)

    @staticmethod
    def minimum(x, c):
        return te.min(c, x)

    @staticmethod
    def exp(x):
        return fastmath.exp(x, T.bind)

    @staticmethod
    def sigmoid(x):
        return fastmath.sigmoid(x, T.bind)

    @staticmethod
    def tanh(x):
        return fastmath.tanh(x, T.bind)

    @staticmethod
    def log1p(x):
        return te.log(_f(1) + x)

    @staticmethod
    def c(v, like):  # recurrent kernels are float32 (the frontend refuses other dtypes)
        return _f(v)

# Parallel regions only where the work between two of them outweighs a lost time slice: a region
# waits for its slowest worker, and a worker descheduled by other busy processes costs a whole slice
# (measured, 2 cores at load 8: a bidirectional LSTM 2x64/32, seq 40, 0.33 ms on one thread, 11 ms
# with its directions on two threads).
PARALLEL_STEP_MACS = 1 << 18  # multiply-adds per step from which a step's tiles run on all threads
PARALLEL_DIRECTION_MACS = 1 << 25  # multiply-adds per direction from which directions run on two threads
SPLIT_MIN_TILES = 8  # tiles per step from which a step's gate math runs after the tiles (_Direction.gate_pass)


def _loop_kernel(kind, a, tensors):
    x_t, wp_t, bias_t, h_t, c_t, rp_t, ex_t, lens_t = step_inputs(kind, a, tensors)
    seq, n, hid = a["seq"], int(x_t.shape[1]), a["hidden"]
    nd, g_all = int(rp_t.shape[0]), int(rp_t.shape[3])
    present = [t for t in (x_t, wp_t, bias_t, h_t, c_t, rp_t, ex_t, lens_t) if t is not None]
    with IRBuilder() as ib:
        with T.prim_func(s_tir=True):
            T.func_name(f"{kind}_loop")
            bufs = {id(t): T.match_buffer(T.arg(f"in{i}", T.handle()), t.shape, t.dtype)
                    for i, t in enumerate(present)}
            get = lambda t: bufs[id(t)] if t is not None else None  # noqa: E731
            y = T.match_buffer(T.arg("y", T.handle()), (seq, nd, n, hid), "float32")
            h_out = T.match_buffer(T.arg("h_out", T.handle()), (nd, n, hid), "float32")
            c_out = T.match_buffer(T.arg("c_out", T.handle()), (nd, n, hid), "float32") if c_t is not None else None
            with T.sblock("root"):
                lbr0 = kind == "gru" and not a.get("linear_before_reset")
                scratch = {"xp": T.alloc_buffer((nd, seq * n, g_all * hid), "float32"),  # X.W^T + bias
                           "hs": T.alloc_buffer((nd, 2, n, hid), "float32"),  # h after even / odd steps
                           "cs": T.alloc_buffer((nd, 2, n, hid), "float32") if c_t is not None else None,
                           "zr": T.alloc_buffer((nd, 2, n, hid), "float32") if lbr0 else None,  # z, r*h
                           "pre": T.alloc_buffer((nd, n, g_all, hid), "float32")}  # gate pre-activations
                ins = {k: get(t) for k, t in zip(("x", "wp", "bias", "h0", "c0", "rp", "ex", "lens"),
                                                 (x_t, wp_t, bias_t, h_t, c_t, rp_t, ex_t, lens_t))}
                outs = {"y": y, "h_out": h_out, "c_out": c_out}
                par_tiles = n * g_all * hid * hid >= PARALLEL_STEP_MACS
                par_dirs = seq * n * g_all * hid * (hid + int(x_t.shape[2])) >= PARALLEL_DIRECTION_MACS
                if a.get("gpu"):
                    for d in range(nd):
                        _GpuDirection(kind, a, d, ins, outs, scratch).emit()
                elif nd > 1 and par_dirs and not par_tiles:
                    with T.parallel(0, nd) as dv:  # one direction per thread
                        for d in range(nd):
                            with T.If(dv == d):
                                with T.Then():
                                    _Direction(kind, a, d, ins, outs, scratch).emit()
                elif par_tiles:  # parallel steps, or the serial form when the pool has one thread
                    threads = T.bind(T.call_packed("runtime.NumThreads"))
                    with T.If(threads > 1):
                        with T.Then():
                            for d in range(nd):
                                _Direction(kind, a, d, ins, outs, scratch, threads).emit()
                        with T.Else():
                            for d in range(nd):
                                _Direction(kind, a, d, ins, outs, scratch).emit()
                else:
                    for d in range(nd):
                        _Direction(kind, a, d, ins, outs, scratch).emit()
    return _extern(ib.get(), present)


class _Direction:
    """Emits the whole sequence of direction D (see the module docstring)."""
    math = TirMath

    def __init__(self, kind, a, d, ins, outs, scratch, workers=None):
        """WORKERS: the pool's thread count (an expression) for parallel steps, None for serial ones."""
        self.kind, self.a, self.d, self.workers, self.par_tiles = kind, a, d, workers, workers is not None
        self.reverse = a["direction"] == "reverse" or d == 1
        self.acts = a["acts"][d]
        self.__dict__.update(ins, **outs, **scratch)  # buffers as attributes: self.x, self.rp, self.hs, ...
        self.seq, self.n, self.hid = a["seq"], int(self.x.shape[1]), a["hidden"]
        self.nj, self.lanes = int(self.rp.shape[1]), int(self.rp.shape[4])

    def emit(self):
        """Serial: the projection, then the steps. Parallel steps (par_tiles): one parallel region
        for the projection and all steps, every thread walking the time loop; each parallel loop
        in it (the projection's tiles, each pass's chunks) gives each thread its share and ends in
        a barrier (TVM's parallel_launch_point / parallel_barrier_when_finish pragmas). A region
        per step instead cost each step a hand-over to the pool (2 cores, AVX2, 2 threads, min ms:
        batch 3 LSTM hidden 256 0.465 -> 0.445, batch 3 GRU hidden 192 0.252 -> 0.237)."""
        if not self.par_tiles:
            self.project()
            self.recur()
            return
        self.copy_in()
        with T.attr(0, "pragma_parallel_launch_point", 1):
            with self.barrier_after():
                self.project()
            with T.serial(0, self.seq) as s:
                self.step(s)
        self.copy_out()

    def barrier_after(self):
        """In the parallel steps' region: every thread waits at the end of the enclosed parallel loop."""
        return T.attr(0, "pragma_parallel_barrier_when_finish", 1) if self.par_tiles else nullcontext()

    def copy_in(self):
        d = self.d
        self.copy(lambda b, j: self.h0[d, b, j], lambda b, j: (self.hs, [d, 0, b, j]))
        if self.c0 is not None:
            self.copy(lambda b, j: self.c0[d, b, j], lambda b, j: (self.cs, [d, 0, b, j]))

    def recur(self):
        """The steps, between copying the initial state in and the final state out."""
        self.copy_in()
        with T.serial(0, self.seq) as s:
            self.step(s)
        self.copy_out()

    def copy_out(self):
        d, seq = self.d, self.seq
        self.copy(lambda b, j: self.hs[d, seq % 2, b, j], lambda b, j: (self.h_out, [d, b, j]))
        if self.c0 is not None:
            self.copy(lambda b, j: self.cs[d, seq % 2, b, j], lambda b, j: (self.c_out, [d, b, j]))

    def copy(self, src, dst):
        with T.serial(0, self.n) as b:
            with T.vectorized(0, self.hid) as j:
                buf, idx = dst(b, j)
                T.buffer_store(buf, src(b, j), idx)

    def gemv(self, gates, size, vecs, mat, width=None):
        """A local [len(vecs), len(gates), width] buffer: for each row r, sum_k vecs[r](k) * mat(k, g, lane)
        for g in GATES (WIDTH lanes, default the tile's). Several rows share each weight vector load."""
        width = width or self.lanes
        acc = self.registers((len(vecs), len(gates), width))
        for r in range(len(vecs)):
            for gi in range(len(gates)):
                with T.vectorized(0, width) as ji:
                    T.buffer_store(acc, _f(0), [r, gi, ji])
        with T.serial(0, size) as k:
            for gi, g in enumerate(gates):
                for r, vec in enumerate(vecs):
                    with T.vectorized(0, width) as ji:
                        T.buffer_store(acc, acc[r, gi, ji] + vec(k) * mat(k, g, ji), [r, gi, ji])
        return acc

    def row_groups(self, total, rows):
        """The row indices of each group: TOTAL rows in as few groups of at most ROWS as there can be,
        all of one size (balanced), in a loop (code size does not grow with the rows). A last group
        that runs past TOTAL repeats the last row: it computes and stores the same values again (a
        separate remainder group of its own size spilled its accumulators)."""
        groups = -(-total // rows)
        rows = -(-total // groups)
        if groups == 1:
            yield list(range(rows))
        else:
            with T.serial(0, groups) as g:
                yield [g * rows + r if (groups - 1) * rows + r < total else te.min(g * rows + r, total - 1)
                       for r in range(rows)]

    def registers(self, shape):
        return T.alloc_buffer(shape, "float32", scope="local")

    def weight(self, m, t, k, g, ji):
        """Packed weights M (WP or RP) of tile T, row K, gate G, lane JI."""
        return m[self.d, t, k, g, ji]

    def project(self):
        """xp[d, t*B + b, :] = X[t, b, :] . W^T + bias for all steps, per tile of WP (its weights stay
        in cache) and `project_rows` rows of X at a time (each weight load feeds that many FMAs)."""
        d, n, hid = self.d, self.n, self.hid
        tiles, lanes = int(self.wp.shape[1]), int(self.wp.shape[4])
        gates = list(range(int(self.wp.shape[3])))
        with (T.parallel if self.par_tiles else T.serial)(0, tiles) as jt:
            for rows in self.row_groups(self.seq * n, self.a.get("project_rows", 1)):
                xs = [lambda i, tb=tb: self.x[tb // n, tb % n, i] for tb in rows]
                acc = self.gemv(gates, int(self.x.shape[2]), xs, lambda i, g, ji: self.weight(self.wp, jt, i, g, ji),
                                lanes)
                for r, tb in enumerate(rows):
                    for gi, g in enumerate(gates):
                        with T.vectorized(0, lanes) as ji:
                            col = g * hid + jt * lanes + ji
                            T.buffer_store(self.xp, acc[r, gi, ji] + self.bias[d, col], [d, tb, col])

    def where(self, s, b):
        """(time index of step s for batch b, valid flag or None)."""
        seq, lens = self.seq, self.lens
        if lens is None:
            return (seq - 1 - s if self.reverse else s), None
        valid = s < lens[b]
        return (tirx.Select(valid, lens[b] - 1 - s, s) if self.reverse else s), valid

    @contextmanager
    def tiles(self, turn, first, count):
        """The loop over COUNT hidden tiles (RP's) from FIRST, forwards on even TURNs and backwards on
        odd ones: a pass starts on the weights the one before read last, still in L1/L2 (RP of a
        batch 3, hidden 256 LSTM is 1 MB, twice a 512 KB L2: forwards every step, each weight line
        was evicted before its next use)."""
        with T.serial(0, count) as t:
            yield first + t + (turn % 2) * (count - 1 - 2 * t)

    @contextmanager
    def chunks(self, count, turn):
        """The loop over COUNT chunks of tiles: one chunk in serial steps; in parallel steps a
        parallel loop over the pool's threads, each walking its contiguous share of the chunks
        alternately like `tiles` (a thread keeps its share of RP, and its last lines are still in
        its own L2 when the next pass starts there: 2 threads, min ms, batch 3 LSTM hidden 256
        0.59 -> 0.55, LSTM hidden 512 4.8 -> 4.4, against chunks in order)."""
        if not self.par_tiles:
            yield 0
            return
        share = (count + self.workers - 1) // self.workers
        with T.parallel(0, self.workers) as th:
            first = th * share
            mine = te.max(te.min(count - first, share), 0)
            with T.serial(0, mine) as c:
                yield first + c + (turn % 2) * (mine - 1 - 2 * c)

    def step(self, s):
        kind, a, d, hid, acts = self.kind, self.a, self.d, self.hid, self.acts
        hs, cs, zr = self.hs, self.cs, self.zr
        src = lambda b, j: hs[d, s % 2, b, j]  # noqa: E731
        nxt = lambda b, j: [d, (s + 1) % 2, b, j]  # noqa: E731

        def xpre(b, g, j):
            pos, _ = self.where(s, b)
            return self.xp[d, pos * self.n + b, g * hid + j]

        def store_state(b, j, hn, valid):
            T.buffer_store(hs, hn if valid is None else tirx.Select(valid, hn, src(b, j)), nxt(b, j))
            pos, _ = self.where(s, b)
            T.buffer_store(self.y, hn if valid is None else tirx.Select(valid, hn, _f(0)), [pos, d, b, j])

        def cell(b, j, pre):
            """Unit J of row B from PRE(g), gate g's pre-activation (input and recurrent parts and biases;
            the GRU h gate with linear_before_reset: its recurrent part and R bias only)."""
            _, valid = self.where(s, b)
            if kind == "lstm":
                pre = [T.bind(pre(g)) for g in range(4)]
                p = None if self.ex is None else [self.ex[d, q * hid + j] for q in range(3)]
                c_old = cs[d, s % 2, b, j]
                cn = T.bind(lstm_c(self.math, a, acts, pre, c_old, p))
                T.buffer_store(cs, cn if valid is None else tirx.Select(valid, cn, c_old), nxt(b, j))
                store_state(b, j, lstm_h(self.math, a, acts, pre, cn, p), valid)
            elif kind == "rnn":
                store_state(b, j, rnn_update(self.math, a, acts, pre(0)), valid)
            else:
                z, r_ = (T.bind(v) for v in gru_gates(self.math, a, acts, pre(0), pre(1)))
                if zr is not None:
                    T.buffer_store(zr, z, [d, 0, b, j])
                    T.buffer_store(zr, r_ * src(b, j), [d, 1, b, j])
                else:
                    pre_h = xpre(b, 2, j) + r_ * pre(2)
                    store_state(b, j, gru_update(self.math, a, acts, z, pre_h, src(b, j)), valid)

        def h_gate(b, j, pre):  # GRU, linear_before_reset=0: the second pass
            _, valid = self.where(s, b)
            store_state(b, j, gru_update(self.math, a, acts, zr[d, 0, b, j], pre(2), src(b, j)), valid)

        def pre(b, g, j, acc):
            return acc + (self.ex[d, j] if kind == "gru" and g == 2 and zr is None else xpre(b, g, j))

        step_rows = a.get("step_rows", [1, 1])
        if zr is None:
            self.gate_pass(s, list(range(GATES[kind])), step_rows[0], src, pre, cell)
        else:  # the h gate needs every unit's r*h first
            self.gate_pass(2 * s, [0, 1], step_rows[0], src, pre, cell)
            self.gate_pass(2 * s + 1, [2], step_rows[1], lambda b, k: zr[d, 1, b, k], pre, h_gate)

    def gate_pass(self, turn, gates, rows, vec, pre, cell):
        """One pass over the hidden tiles: each tile's GEMV of the rows' VEC(b, k) with RP's GATES,
        PRE(b, g, j, acc) its pre-activations, CELL(b, j, pre) the elementwise rest. Steps whose row
        groups have several rows and that have at least SPLIT_MIN_TILES tiles store the
        pre-activations and run CELL in a loop of its own over the units after the tiles,
        `cell_lanes` at a time (several independent exp/division chains; the rows' gate math unrolled
        after each GEMV spilled its values: batch 3 LSTM, hidden 64, AVX2, 0.132 -> 0.113 ms); other
        steps run CELL on each tile's lanes right after its GEMV (with fewer tiles LLVM unrolls the
        tile loop fully, and with the cell loop after it, its register allocator spilled the
        accumulators of some copies). Serial steps run all tiles, then CELL over every unit;
        parallel steps split the tiles into chunks of one CELL loop's width, a parallel loop per
        pass (see emit): each chunk runs its tiles for every row group, then CELL on its own units."""
        d, lanes = self.d, self.lanes
        split = min(rows, self.n) > 1 and self.nj >= SPLIT_MIN_TILES
        width = lanes  # tile lanes times a power of two dividing H, up to cell_lanes
        while split and width < self.a.get("cell_lanes", 32) and self.hid % (2 * width) == 0:
            width *= 2
        per = width // lanes if self.par_tiles else self.nj  # tiles per chunk
        with self.barrier_after(), self.chunks(self.nj // per, turn) as chunk:
            for group in self.row_groups(self.n, rows):
                with self.tiles(turn, chunk * per, per) as t:
                    acc = self.gemv(gates, self.hid, [lambda k, b=b: vec(b, k) for b in group],
                                    lambda k, g, ji: self.weight(self.rp, t, k, g, ji))
                    for r, b in enumerate(group):
                        with T.vectorized(0, lanes) as ji:
                            j = t * lanes + ji
                            vals = {g: pre(b, g, j, acc[r, gi, ji]) for gi, g in enumerate(gates)}
                            if split:
                                for g, v in vals.items():
                                    T.buffer_store(self.pre, v, [d, b, g, j])
                            else:
                                cell(b, j, vals.__getitem__)
            if split:
                with T.serial(0, self.n) as b:
                    with T.serial(0, per * lanes // width) as jo:
                        with T.vectorized(0, width) as ji:
                            j = chunk * per * lanes + jo * width + ji
                            cell(b, j, lambda g: self.pre[d, b, g, j])


class GpuMath(TirMath):
    """On CUDA: the device's expf and tanhf (TirMath.exp's bit trick meets TVM's int64 indices there)."""
    exp, tanh = te.exp, te.tanh

    @staticmethod
    def sigmoid(x):
        return _f(1) / (_f(1) + te.exp(-x))


class _GpuDirection(_Direction):
    """Direction D on a CUDA GPU: a thread per hidden unit. The weights come packed as one tile of
    every unit (unit-minor, see unroll_recurrent.tile_lanes); here each unit is a tile of one lane,
    reading its weights at `weight`, so that a warp's loads are coalesced.
    Kernel 1 projects the input: a block per (step, batch) row of X. Kernel 2 runs the steps: a
    block per batch row, its threads walk the time loop together, each computing its units' gates;
    a barrier before every pass over the units makes the state the previous pass wrote (global
    memory, ping-pong buffers) visible to the whole block."""

    def __init__(self, *args):
        super().__init__(*args)
        self.nj, self.lanes = self.hid, 1
        self.threads = max(t for t in range(1, min(self.nj, 1024) + 1) if self.nj % t == 0)
    math = GpuMath

    def weight(self, m, t, k, g, ji):
        return m[self.d, 0, k, g, t]

    def registers(self, shape):
        return T.decl_buffer(shape, "float32", scope="local")

    def emit(self):
        d, n, hid = self.d, self.n, self.hid
        gates = list(range(int(self.wp.shape[3])))
        with T.launch_thread("blockIdx.x", self.seq * n) as row:
            with T.launch_thread("threadIdx.x", self.threads) as t:
                with T.serial(0, self.nj // self.threads) as k:
                    jt = k * self.threads + t
                    acc = self.gemv(gates, int(self.x.shape[2]), [lambda i: self.x[row // n, row % n, i]],
                                    lambda i, g, ji: self.weight(self.wp, jt, i, g, ji))
                    for gi, g in enumerate(gates):
                        col = g * hid + jt
                        T.buffer_store(self.xp, acc[0, gi, 0] + self.bias[d, col], [d, row, col])
        with T.launch_thread("blockIdx.x", n) as b:
            with T.launch_thread("threadIdx.x", self.threads) as t:
                self.b, self.t = b, t
                self.recur()

    def row_groups(self, total, rows):
        yield [self.b]  # the block's own batch row, a unit per thread

    @contextmanager
    def tiles(self, turn, first=0, count=None):  # every tile: a step has one chunk here
        T.evaluate(tirx.op.tvm_storage_sync("shared"))
        with T.serial(0, self.nj // self.threads) as k:
            yield k * self.threads + self.t

    def copy(self, src, dst):
        with self.tiles(0) as jt:
            buf, idx = dst(self.b, jt)
            T.buffer_store(buf, src(self.b, jt), idx)


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
