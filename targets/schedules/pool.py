"""Pooling on CPU, over the separable compute of compiler/lower/nn.py: `pool_rows` combines the
window's rows into one row, the pool block combines that row's windows (taps unrolled in both).

Per (batch, channel) plane -- the parallel loop -- and output row, the row buffer is computed just
before the output row that reads it (it stays in L1). LLVM vectorizes both loops: the row pass
reads whole input rows (contiguous), the pool pass strided rows (interleaved loads and shuffles;
TVM's own vectorizer would gather them element by element). Where the row pass clamps column
indices (left/right padding) or an average's divisor changes (edge columns), the loop is cut into
edges and an inside whose reads are plain (`inside` annotations of the compute). The average's
divisor is inlined into the pool pass. A standalone pool's strided pool pass and short rows are
written as whole vectors by `strided_columns` (loads, shuffles) after scheduling. A standalone
global pool runs per (batch, channel) -- the parallel loop -- its partial results as vectors
(schedule_global); anything else takes the generic schedule.
"""
import tvm
import tvm_ffi
from tvm import tirx
from tvm.sym import pattern
from tvm.sym.analyzer import Analyzer
from tvm.s_tir import SBlockRealize, Schedule

from . import generic, rule, substitute, worth_parallel

POOL_BLOCKS = ("max_pool2d", "pool_sum")


def schedule_pool_block(sch, block, preset, par=True, rewrite=False):
    """Schedule one pooling BLOCK in SCH (REWRITE: see `_rows_at`); returns the names of the blocks
    it scheduled."""
    loops = sch.get_loops(block)
    rows = [b for b in sch.get_producers(block) if sch.get(b).name_hint.startswith("pool_rows")]
    if len(loops) != 4 or len(rows) != 1:
        return []
    rows = rows[0]
    done = [sch.get(block).name_hint, sch.get(rows).name_hint]
    n, c, i, j = loops
    nc = sch.fuse(n, c)
    consumers = sch.get_consumers(block)
    if len(consumers) == 1:
        try:
            sch.reverse_compute_inline(consumers[0])
        except Exception:  # noqa: BLE001 - the divisor block reads more than one row: leave it
            pass
    _rows_at(sch, block, rows, i, preset, rewrite)
    if par:
        sch.parallel(nc)
    return done


def schedule_pool_under(sch, block, preset, loop):
    """Schedule pooling BLOCK (a consumer of the block that makes its input) under LOOP of that
    producer, whose iterations each make whole channels of the input: each iteration pools its own
    channels while they are in cache (a conv's channel block). Returns the names of the blocks it
    scheduled, [] where BLOCK is not the separable pool; raises where TVM cannot place it (seen:
    rows clamped by padding, a stride-1 window's rows)."""
    rows = [b for b in sch.get_producers(block) if sch.get(b).name_hint.startswith("pool_rows")]
    if len(sch.get_loops(block)) != 4 or len(rows) != 1:
        return []
    rows = rows[0]
    sch.reverse_compute_at(rows, loop)
    sch.reverse_compute_at(block, loop)
    _rows_at(sch, block, rows, sch.get_loops(block)[-2], preset, rewrite=False)
    return [sch.get(block).name_hint, sch.get(rows).name_hint]


def _rows_at(sch, block, rows, i, preset, rewrite):
    """The row pass ROWS computed at output row loop I of pooling BLOCK, both vectorized. REWRITE:
    loops annotated for `strided_columns` (which the caller runs on the scheduled function): a
    strided pool pass, with the row pass computed in its vectors where neither pass has edges."""
    sch.compute_at(rows, i)
    lanes = max(preset.vector_bits // 32, 4)
    unit_stride = contiguous_reads(sch, block, 3)
    fused = rewrite and not unit_stride and not (_has_edges(sch, rows) or _has_edges(sch, block))
    _vectorize_row(sch, _partition_edges(sch, rows), lanes, rewrite and not fused)
    inside = _partition_edges(sch, block)
    if unit_stride:
        _vectorize_row(sch, inside, lanes, rewrite)
    elif rewrite:
        _strided_vectors(sch, sch.get_child_blocks(inside)[0], inside, lanes, FUSED if fused else STRIDED)


def _vectorize_row(sch, loop, lanes, overlap):
    """A contiguous row LOOP of one to two vectors (OVERLAP: written by `strided_columns` as a
    vector and one overlapping it; TVM's vector of 13 lanes was a vector, half of one and a
    scalar: AVX2, 1 thread, a 3x3 s1 max pool of 512 channels @13, standalone, per-kernel minima
    of 12 alternated rounds, 0.130 -> 0.081 ms; the same at 27 columns, 4 vectors, was 15-20%
    slower, left as it was), else `_vectorize_short`'s."""
    n = int(sch.get(loop).extent)
    if overlap and lanes < n < 2 * lanes:
        sch.annotate(loop, STRIDED, lanes)
    else:
        _vectorize_short(sch, loop, lanes)


STRIDED = "edgec_pool_strided"  # loop annotation: its columns in vectors of N, see `strided_columns`
FUSED = "edgec_pool_fused"  # the same, the row pass computed in those vectors (`_fused`)


def _strided_vectors(sch, block, loop, lanes, key):
    """Annotate the strided pool pass's LOOP (columns j, reading the row buffer at j * stride +
    tap) KEY for `strided_columns`: vectors of LANES columns, or of half as many on a shorter
    row; none on a row shorter than 4. Only a row of less than two vectors: LLVM vectorizes
    longer ones itself (interleaved loads; SqueezeNet's 3x3 s2 pool of 128 channels @55, 27
    columns, rewritten, AVX2: standalone at parity; in model, per-kernel minima of alternated
    rounds, 1 thread 0.062 -> 0.063 ms, 2 threads 5-10% slower in three noisy runs)."""
    blk = sch.get(block)
    read = [r for r in blk.reads if r.source.name.startswith("pool_rows")]
    if len(read) != 1:
        return
    coef = pattern.detect_linear_equation(read[0].region[-1].min, [blk.iter_vars[3].var])
    if len(coef) != 2 or not isinstance(coef[0], tirx.IntImm) or int(coef[0]) < 2:
        return
    n = int(sch.get(loop).extent)
    while lanes > n and lanes > 4:
        lanes //= 2
    if lanes <= n < 2 * lanes:
        sch.annotate(loop, key, lanes)


def strided_columns(func):
    """FUNC with each loop annotated STRIDED or FUSED (lanes L) -- a pass over columns j reading
    its row at j * s + tap -- written as L columns per step: one load of the columns the taps read
    (contiguous, those in between included, none past the last one a tap reads: inside the row),
    and per tap a shuffle picking every s-th (the vector of its L columns); the window's max (NaN
    test included) or sum on those vectors. FUSED: that load is the row pass itself, computed on
    the input's rows as one vector (`_fused`). A row that is not whole vectors ends with one more
    vector overlapping the one before (its columns computed twice, the same values). LLVM fully
    unrolls a short strided pass (SqueezeNet's 3x3 s2 max pool, 13 output columns) and left it
    scalar, a compare and branch per tap for the NaN test; AVX2, 1 thread, that pool (256
    channels @27), per-kernel minima of alternated rounds: in model 0.052 -> 0.031 ms (2 threads
    0.050 -> 0.032), standalone 0.052 -> 0.048 (vectors reading a row buffer) -> 0.030 (fused).
    A loop whose body is not such a pass keeps its scalar form."""
    return tvm_ffi.structural_map(func, [(tirx.For, lambda loop: _fused(_strided(loop)))])


def _fused(loop):
    """LOOP (an output row) with the row pass computed in the vectors of its pool pass, where its
    body is the row pass's loop and a pool pass annotated FUSED; else the pool pass as `_strided`
    writes it, after the row pass."""
    body = getattr(loop, "body", None)
    if not isinstance(body, tirx.SeqStmt) or len(body.seq) != 2 or not all(isinstance(b, tirx.For) for b in body.seq):
        return loop
    rows, cols = body.seq
    if FUSED not in cols.annotations:
        return loop
    try:
        if not (isinstance(rows.body, SBlockRealize) and rows.body.block.name_hint.startswith("pool_rows")):
            raise _NotStrided
        new = _rewrite(cols, FUSED, rows.body)
    except _NotStrided:
        new = tirx.SeqStmt([rows, _strided(cols, FUSED)])
    return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, new, loop.thread_binding, loop.annotations)


def _strided(loop, key=STRIDED):
    """LOOP written as `strided_columns` says where annotated KEY and it can; LOOP without the
    annotation where it cannot."""
    if key not in loop.annotations:
        return loop
    try:
        return _rewrite(loop, key)
    except _NotStrided:
        return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, loop.body, loop.thread_binding,
                        {k: v for k, v in loop.annotations.items() if k != key})


def _rewrite(loop, key, rows=None):
    """LOOP annotated KEY as `strided_columns` writes it (ROWS: the row pass's block realize,
    `_vector_columns`); raises _NotStrided where it cannot."""
    lanes, extent = int(loop.annotations[key]), int(loop.extent)
    store = getattr(getattr(loop.body, "block", None), "body", None)
    if not isinstance(store, tirx.BufferStore):
        raise _NotStrided
    ana = Analyzer()  # the loop's range known: a clamp of its column folds away inside the input
    ana.bind(loop.loop_var, tvm.ir.Range.from_min_extent(loop.min, loop.extent))
    index = str(loop.loop_var.ty)
    step = tirx.Var("step", index)
    body = [_vector_columns(loop, store, loop.min + step * lanes, lanes, ana, rows)]
    if extent % lanes:
        body.append(_vector_columns(loop, store, loop.min + (extent - lanes), lanes, ana, rows))
    whole = tirx.For(step, tirx.IntImm(index, 0), tirx.IntImm(index, extent // lanes), tirx.ForKind.SERIAL,
                     body[0])
    return tirx.SeqStmt([whole] + body[1:]) if len(body) > 1 else whole


def _vector_columns(loop, store, first, lanes, ana, rows=None):
    """The statements computing LANES columns of STORE (LOOP's block) from loop value FIRST; ROWS:
    the row pass's block realize, whose values are then computed as vectors where they are read
    (no row buffer: its reloads at other offsets than its stores failed store forwarding, perf:
    ~40% of the 3x3 s2 pool's samples on one load after them)."""
    realize = loop.body
    lv, index = loop.loop_var, str(loop.loop_var.ty)
    binds = dict(zip((v.var for v in realize.block.iter_vars), realize.iter_values))

    def at(expr, value):  # EXPR (block variables) at loop value VALUE
        return ana.simplify(substitute(substitute(expr, binds), {lv: value}))

    def linear(expr):  # EXPR (block variables) as s * loop value + c, constants s and c
        coef = pattern.detect_linear_equation(ana.simplify(substitute(expr, binds)), [lv])
        if len(coef) != 2 or not all(isinstance(c, tirx.IntImm) for c in coef):
            raise _NotStrided
        return int(coef[0]), int(coef[1])
    taps = []  # (load, stride, offset) per load

    def collect(e):
        if isinstance(e, tvm.ir.TensorLoad):
            taps.append((e, *linear(e.indices[-1])))
        return e
    tvm_ffi.structural_map(store.value, [(tvm.ir.TensorLoad, collect)])
    spans = {}  # (buffer, indices but the last, stride) -> the first and last offsets read
    for e, s, c in taps:
        key = (e.source.name, str([at(i, first) for i in e.indices[:-1]]), s)
        lo, hi = spans.get(key, (c, c))
        spans[key] = (min(lo, c), max(hi, c))
    loads = {}

    def tap(e):
        _, s, c = next(t for t in taps if t[0].same_as(e))
        outer = [at(i, first) for i in e.indices[:-1]]
        key = (e.source.name, str(outer), s)
        lo, hi = spans[key]
        if key not in loads:
            start, width = ana.simplify(first * s + lo), hi - lo + s * (lanes - 1) + 1
            if rows is not None and e.source.same_as(rows.block.writes[0].source):
                wide = _row_vector(rows, outer, start, width, ana)
            else:
                wide = tirx.BufferLoad(e.source, outer + [tirx.Ramp(start, tirx.IntImm(index, 1), width)])
            loads[key] = (tirx.Var(f"cols{len(loads)}", wide.ty), wide)
        return tirx.Shuffle([loads[key][0]], [tirx.IntImm("int32", c - lo + s * k) for k in range(lanes)])
    value = _vec(store.value, lanes, tap)
    s, c = linear(store.indices[-1])
    if s != 1:
        raise _NotStrided
    out = [at(i, first) for i in store.indices[:-1]]
    body = [tirx.LetStmt(var, wide) for var, wide in loads.values()]
    ramp = tirx.Ramp(ana.simplify(first + c), tirx.IntImm(index, 1), lanes)
    body.append(tirx.BufferStore(store.buffer, value, out + [ramp]))
    return tirx.SeqStmt(body)


def _row_vector(rows, outer, start, width, ana):
    """The row pass ROWS (a block realize storing buffer[..., u] = f(input[..., u + c])) at the
    row of indices OUTER and columns START .. START + WIDTH - 1, as one vector."""
    store = rows.block.body
    if not isinstance(store, tirx.BufferStore) or not all(isinstance(i, tirx.Var) for i in store.indices):
        raise _NotStrided
    column = store.indices[-1]
    sub = dict(zip(store.indices[:-1], outer))

    def load(e):
        coef = pattern.detect_linear_equation(e.indices[-1], [column])
        if len(coef) != 2 or not all(isinstance(c, tirx.IntImm) for c in coef) or int(coef[0]) != 1:
            raise _NotStrided
        idx = [ana.simplify(substitute(i, sub)) for i in e.indices[:-1]]
        ramp = tirx.Ramp(ana.simplify(start + coef[1]), tirx.IntImm(str(start.ty), 1), width)
        return tirx.BufferLoad(e.source, idx + [ramp])
    return _vec(store.value, width, load)


def _vec(e, lanes, load):
    """Expression E of one column as a vector of LANES columns, its loads given by LOAD."""
    if isinstance(e, tvm.ir.TensorLoad):
        return load(e)
    if isinstance(e, (tirx.FloatImm, tirx.IntImm)):
        return tirx.Broadcast(e, lanes)
    if isinstance(e, tirx.Select):
        return tirx.Select(_vec(e.condition, lanes, load), _vec(e.true_value, lanes, load),
                           _vec(e.false_value, lanes, load))
    for kind in (tirx.Max, tirx.Min, tirx.Add, tirx.Mul, tirx.Or, tirx.And):
        if isinstance(e, kind):
            return kind(_vec(e.a, lanes, load), _vec(e.b, lanes, load))
    if isinstance(e, tvm.ir.expr.Call) and e.op.same_as(_ISNAN) and len(e.args) == 1:
        return tirx.isnan(_vec(e.args[0], lanes, load))
    raise _NotStrided


class _NotStrided(Exception):
    pass


_ISNAN = tirx.isnan(tirx.Var("x", "float32")).op


def _has_edges(sch, block):
    """Whether `_partition_edges` cuts BLOCK's columns."""
    inside = sch.get(block).annotations.get("inside")
    width = int(sch.get(sch.get_loops(block)[-1]).extent)
    return inside is not None and [int(v) for v in inside] != [0, width]


def _partition_edges(sch, block):
    """Cut the innermost loop of BLOCK at the range of columns its "inside" annotation names from
    the edges: inside, the row buffer's reads are not clamped (contiguous, vectorizable) and an
    average's divisor is one constant. Returns the inside loop."""
    inside = sch.get(block).annotations.get("inside")
    if inside is None:
        return sch.get_loops(block)[-1]
    lo, hi = (int(v) for v in inside)
    u = sch.get_loops(block)[-1]
    width = int(sch.get(u).extent)
    parts = [p for p in (lo, hi - lo, width - hi) if p > 0]
    if len(parts) > 1:
        return sch.loop_partition(u, parts[:-1] + [None])[1 if lo > 0 else 0]
    return u


def _vectorize_short(sch, loop, lanes):
    """Vectorize a short row (up to 4 vectors) whole: LLVM unrolls such a loop before its loop
    vectorizer sees it and leaves it scalar (longer rows: LLVM vectorizes them, tail included).
    TVM keeps a loop with isnan (max pooling's NaN test) scalar: no change there."""
    if int(sch.get(loop).extent) <= 4 * lanes:
        sch.vectorize(loop)


def contiguous_reads(sch, block, axis):
    """Whether BLOCK's reads step by one element along their last dimension as its iteration
    variable AXIS (the output column) steps by one. A strided row (stride-2 pooling or depthwise
    conv) vectorized by TVM becomes element-wise gathers; left to LLVM's loop vectorizer it
    becomes interleaved loads and shuffles (measured ~3x faster for a stride-2 3x3 max pool)."""
    var = sch.get(block).iter_vars[axis].var
    for region in sch.get(block).reads:
        coef = pattern.detect_linear_equation(region.region[-1].min, [var])
        if len(coef) and not (isinstance(coef[0], tirx.IntImm) and int(coef[0]) in (0, 1)):
            return False
    return True


def schedule_global(sch, preset, par, lanes_block):
    """A global pool (compiler/lower/nn.py _global_pool) per (batch, channel): the plane's rows of
    partial results in vectors (the row loop outer, GLOBAL_LANES lanes unrolled into vectors
    inner), then the partials' total and the output, while the partials are in L1; a small plane's
    one reduction as a loop of its own (LLVM vectorizes it; across channels, TVM gathered: DenseNet's
    1024 x 7 x 7 ran 3x slower). (The partials are computed at the total's channel loop:
    reverse_compute_at of the total into the partials' loop bounds the total's reduction by the
    partials' lanes and drops the leftover elements.) LANES_BLOCK: whether the plane has partials."""
    lanes = max(preset.vector_bits // 32, 4)
    total = sch.get_sblock("global_pool_total")
    n, c, _ = sch.get_loops(total)
    plane = sch.fuse(n, c)
    if lanes_block:
        part = sch.get_sblock("global_pool_lanes")
        sch.compute_at(part, plane)
        lane, row = sch.get_loops(part)[-2:]
        lo, li = sch.split(lane, [None, lanes])
        sch.reorder(row, lo, li)
        sch.unroll(lo)
        sch.vectorize(li)
    if par:
        sch.parallel(plane)
    for b in sch.get_consumers(total):
        sch.reverse_compute_at(b, plane)


@rule("pool")
def schedule(func, kernel, preset):
    sch = Schedule(tvm.IRModule({"main": func}))
    children = sch.get_child_blocks(sch.get_sblock("root"))
    names = [sch.get(b).name_hint for b in children]
    if "global_pool_total" in names:
        par = worth_parallel(kernel, streamed=kernel.get("bytes", 0))
        schedule_global(sch, preset, par, "global_pool_lanes" in names)
        return sch.mod["main"]
    blocks = [b for b, name in zip(children, names) if name in POOL_BLOCKS]
    if len(blocks) != 1:
        return generic.schedule(func, kernel, preset)
    # a pool streams its input and output (a few compares per element): judged by those bytes, a
    # memory-bound schedule's (SqueezeNet's 3x3 s2 max pool of 256 channels @27, 0.92 MB, 0.051 ms
    # on one AVX2 core, ran serial; forking, in model, 2 threads, per-kernel minima of 40
    # alternated rounds: 0.051 -> 0.028 ms)
    par = worth_parallel(kernel, streamed=kernel.get("bytes", 0))
    # the vector rewrite on x86, where it was measured (AVX2); NEON keeps LLVM's loops
    rewrite = preset.arch == "x86_64"
    done = schedule_pool_block(sch, blocks[0], preset, par, rewrite)
    if not done:
        return generic.schedule(func, kernel, preset)
    generic.schedule_remaining(sch, preset, done, par)
    return strided_columns(sch.mod["main"])
