"""Depthwise conv2d on CPU (one input channel per output channel)."""
import functools

import tvm_ffi
from tvm import tirx
from tvm.sym.analyzer import Analyzer
from tvm.sym import pattern

from . import buffer_bytes, generic, substitute, worth_parallel
from .common import divisor, inline_epilogue, inside_steps, loops_below, schedule_rest, vectorize, vectorize_below
from .pack import lanes as pack_lanes
from .pool import POOL_BLOCKS, contiguous_reads


def schedule(sch, kernel, preset):
    """A conv2d with one input channel per output channel (depthwise): per (batch, channel), the
    channel's padded plane is built (in cache; per band of output rows where the plane would take
    over half of L1, a strided one's over an eighth: band_rows), written once: its column loop cut
    at the input's edges, so inside them it is a plain vector copy with no bounds test per element,
    zeros only outside them. Each output row (computed in whole vectors: the lowering rounds a
    depthwise row up to a multiple of compiler/lower/nn.DEPTHWISE_ROW columns, the write-back drops
    the extra ones), in chunks of up to 4 vectors that divide it, accumulates over the taps in
    registers, then the epilogue writes the chunk. A strided conv (stride s) reads its plane
    de-interleaved, column q * s + phase at [phase][q], so each tap's row is contiguous and
    vectorizes like stride 1 (read in place, a stride-2 row was element-wise gathers or LLVM's
    shuffles per tap); the padded plane is written in that layout directly (the lowering pads its
    width to a multiple of s), an unpadded input is copied into it. Returns None for other convs."""
    try:
        conv = sch.get_sblock("conv2d")
    except Exception:  # noqa: BLE001
        return None
    loops = sch.get_loops(conv)
    if len(loops) != 7 or int(sch.get(loops[4]).extent) != 1:
        return None
    data = sch.get(conv).reads[0].source
    stride = _row_stride(sch, conv)
    # not the float depthwise layout the lowering makes (compiler/lower/nn.py): an integer conv, or
    # a one-channel conv whose padded row is no whole number of strides wide: the generic schedule
    if not str(sch.get(conv).writes[0].source.dtype).startswith("float") or int(data.shape[-1]) % stride:
        return None
    producers = list(sch.get_producers(conv))
    padded = [b for b in producers if sch.get(b).writes[0].source.same_as(data)]
    others = [b for b in producers if b not in padded]
    plane = padded[0] if padded else None  # the block that writes the plane the conv reads
    if stride > 1:  # the plane de-interleaved: column q * stride + phase at [phase, q]
        plane = plane or sch.cache_read(conv, 0, "global")
        name = sch.get(plane).name_hint
        sch.transform_layout(plane, ("write", 0), lambda n, c, h, w: (n, c, h, w % stride, w // stride))
        plane = sch.get_sblock(name)
    streamed = buffer_bytes(sch.get(conv).reads[0].source) + buffer_bytes(sch.get(conv).writes[0].source)
    par = worth_parallel(kernel, streamed)
    n, f, y, x, rc, ry, rx = loops
    ow = int(sch.get(x).extent)
    lanes = pack_lanes(preset)
    chunk = row_chunk(ow, lanes)
    xo, xi = sch.split(x, [None, chunk]) if chunk else (None, x)
    piece = lanes // 2 if chunk and chunk % lanes else None  # a chunk in half vectors: one per register
    xp, xi = sch.split(xi, [None, piece]) if piece else (None, xi)
    band = _band(sch, plane, int(sch.get(y).extent), preset) if plane is not None else None
    yo, y = sch.split(y, [None, band]) if band else (None, y)
    sch.reorder(*[l for l in (n, f, yo, y, xo, rc, ry, rx, xp, xi) if l is not None])
    at = xo if chunk else y
    strided = not contiguous_reads(sch, conv, 3)
    # the epilogue (bias, activation) written per chunk; a pool reading the conv straight (its row
    # pass: TVM cannot place a padded window's clamped rows there) is the pool schedule's
    consumers = [b for b in sch.get_consumers(conv)
                 if not sch.get(b).name_hint.startswith(POOL_STAGES) and not generic._is_reduction(sch, b)]
    names = ["conv2d", *[sch.get(b).name_hint for b in others + consumers + ([plane] if plane else [])]]
    if chunk:  # the chunk's accumulators stay in registers over the taps
        acc = sch.cache_write(conv, 0, "local")
        sch.reverse_compute_at(acc, at)
        _vectorize_in(sch, sch.get_loops(acc)[-1], piece)
    if len(consumers) == 1:
        inline_epilogue(sch, consumers[0])
        sch.reverse_compute_at(consumers[0], at)
        if piece:
            _vectorize_in(sch, sch.get_loops(consumers[0])[-1], piece)
        else:
            vectorize_below(sch, consumers[0], at)
    nf = _parallel_groups(sch, sch.fuse(n, f), par)
    if not strided:  # a strided row not split above (stride not a constant) is left to LLVM
        sch.vectorize(xi)
    for l in sch.get_loops(conv)[-4 if piece else -3:-1]:  # the taps (and the pieces)
        sch.unroll(l)
    sch.decompose_reduction(conv, rc)
    for b in others:  # e.g. int8 weights made float: per channel, next to their use
        sch.compute_at(b, nf)
        vectorize(sch, sch.get_loops(b)[-1], lanes)
    if plane is not None:  # each channel's plane just before its conv, while it is in cache
        sch.compute_at(plane, yo if band else nf)
    # a fused pool before the plane's copy is cut into partitions (_copy_inside): TVM's compute_at
    # refuses to place blocks in a scope with partitions (the pool's rows: a fallback to generic)
    schedule_rest(sch, preset, names, par)
    if plane is not None:
        _schedule_plane(sch, plane, yo if band else nf, bool(padded), stride, lanes)
    return deinterleave(sch.mod["main"])


def row_chunk(ow, lanes):
    """The columns of an output row (OW) accumulated in registers at once: up to 4 whole vectors of
    LANES that divide it, else (a vector wider than 8 floats: AVX-512) up to 4 vectors' worth of
    half vectors (56 columns: 7 ymm, see `piece`), else None (a row vectorized whole,
    accumulated in memory). AVX-512's 56-wide rows were such <56 x float> rows: the tap weights
    broadcast and spilled to the stack, the row put together with inserts. znver4, 1 thread,
    in model, per-kernel minima of 10 alternated rounds: MobileNet 128 @56 0.295 -> 0.158 ms,
    64 @112 s2 0.194 -> 0.123; MobileNetV2 144 @56 0.250 -> 0.156, 96 @112 s2 0.237 -> 0.170.
    (Rounding 7-wide rows up to 8 columns, a whole ymm, did not pay: 576 @14 s2 0.027 -> 0.040.)"""
    for unit in dict.fromkeys([lanes, lanes // 2 if lanes > 8 else lanes]):
        chunk = next((c * unit for c in range(4 * lanes // unit, 0, -1) if ow % (c * unit) == 0), None)
        if chunk:
            return chunk
    return None


def _vectorize_in(sch, loop, piece):
    """Vectorize LOOP whole, or (PIECE) in unrolled vectors of PIECE lanes: LLVM legalizes a
    56-lane vector by widening it, and builds the widened part with inserts."""
    if piece:
        outer, loop = sch.split(loop, [None, piece])
        sch.unroll(outer)
    sch.vectorize(loop)


def _parallel_groups(sch, nf, par):
    """Loop NF over the (batch, channel) planes, parallel (PAR) over up to PARALLEL_GROUPS groups of
    planes that divide it, one after another in a group; returns the loop over a group's planes.
    TVM allocates a parallel iteration's buffers (the padded plane, the accumulators) in each
    iteration, through the workspace pool: per plane they cost more than the small planes' work
    (1 thread, thread time: 384 channels @14 0.070 -> 0.054 ms in groups of 12, 512 @14 0.091 ->
    0.069, 192 @28 stride 2 0.060 -> 0.051). A count with no such divisor (a prime over
    PARALLEL_GROUPS) stays one plane per iteration."""
    if not par:
        return nf
    total = int(sch.get(nf).extent)
    groups = divisor(total, PARALLEL_GROUPS)
    if groups == total or groups < PARALLEL_GROUPS // 2:
        sch.parallel(nf)
        return nf
    outer, nf = sch.split(nf, [groups, None])
    sch.parallel(outer)
    return nf


def _schedule_plane(sch, plane, at, padded, stride, lanes):
    """PLANE (computed at loop AT), written once: `_copy_inside` (a strided plane, de-interleaved,
    reads `stride` neighbouring columns per step: inside the input in vectors of LANES steps and
    halves of them, loaded whole and shuffled, see `deinterleave`)."""
    if not padded:  # a de-interleaved copy of the input, iterating (row, phase, q)
        own = loops_below(sch, plane, at)  # (loops of one iteration, one row or one q, are left out)
        if len(own) >= 2 and int(sch.get(own[-2]).extent) == stride:  # (row,) phase, q
            sch.reorder(own[-1], own[-2])
            sch.unroll(own[-2])
        elif own and int(sch.get(own[-1]).extent) == stride:  # (row,) phase
            sch.unroll(own[-1])
        return
    _copy_inside(sch, plane, stride, lanes)


def _copy_inside(sch, plane, stride, lanes):
    """The padding block writes its plane by itself, with no fill before it: its column loop is cut
    at the input's left and right edges, so inside them the column test folds away (a plain copy)
    and only the pad columns, and the pad rows (one test per row, which LLVM hoists out of the
    row's loop), are zeros. A fill of the whole plane first doubled the stores of the kernel's
    heaviest part (96 channels @112 stride 2, MobileNetV2 in place, 1 thread, thread time, fastest
    runs: 0.80 -> 0.47 ms; 144 @56 stride 2: 0.174 -> 0.143 ms). Stride 1 likewise (AVX2, 1 thread,
    standalone conv+bias+relu, pads 1, thread-time minima alternated, fill + copy -> copy inside:
    32 @112 0.179 -> 0.153 ms, 128 @56 0.190 -> 0.159, 144 @56 0.212 -> 0.175, 256 @28 0.138 ->
    0.121, 1024 @7 0.072 -> 0.055)."""
    block = sch.get(plane)
    read = block.reads[0]
    left = -int(pattern.detect_linear_equation(read.region[-1].min, [block.iter_vars[3].var])[1])
    q = sch.get_loops(plane)[-1]
    if stride > 1:
        q, phase = sch.split(q, [None, stride])  # column q * stride + phase
        sch.unroll(phase)
    lo, hi = inside_steps(left, int(read.source.shape[3]), stride, int(sch.get(q).extent))
    vectors, rest = [], max(hi - lo, 0)  # strided: the inside in vectors of LANES steps, then halves
    width = lanes if stride > 1 else 0
    while width >= MIN_DEINTERLEAVE and (width >= MIN_DEINTERLEAVE_ALONE or vectors and vectors[0][1] == lanes):
        if rest >= width:
            vectors.append((rest // width * width, width))
            rest -= vectors[-1][0]
        width //= 2
    sizes = [lo] + [n for n, _ in vectors] + [rest, int(sch.get(q).extent) - hi]
    parts = [p for p in sizes if p > 0]
    loops = sch.loop_partition(q, parts[:-1] + [None]) if hi > lo and len(parts) > 1 else [q]
    for loop, (_, width) in zip(loops[1 if lo else 0:], vectors):
        sch.annotate(loop, DEINTERLEAVE, width)


DEINTERLEAVE = "edgec_deinterleave"  # loop annotation: de-interleave this copy in vectors of N steps
# The narrowest such vector, after a whole vector of steps (fewer steps stay LLVM's, one at a time),
# and without one. 2 steps after a vector: a 28-wide stride-2 input's 14 steps inside as 8 + 4 + 2
# (were 8 + 4 and two single steps). AVX2, in model, per-kernel minima alternated (kab, 8-10
# rounds, busy machine), 256 @28 s2 (MobileNet v1) 1 thread 0.056-0.059 -> 0.048-0.052 ms, 2 threads
# 0.042-0.063 -> 0.035-0.056; 192 @28 s2 (MobileNetV2) 0.044-0.046 -> 0.039-0.040, 2 threads 0.025
# -> 0.022 and 0.050 -> 0.042; every other kernel compiles to the same code. A 2-step vector
# without a whole one before it (a 14-wide input's 7 steps as 4 + 2 + 1) made LLVM unroll the
# whole plane loop into the conv: 512 @14 s2 0.027 -> 0.038 ms, 576 @14 s2 0.030 -> 0.043.
MIN_DEINTERLEAVE = 2
MIN_DEINTERLEAVE_ALONE = 4


def deinterleave(func):
    """FUNC with each loop annotated DEINTERLEAVE (lanes L) -- a strided plane's copy inside the
    input: L steps q, each writing column q * s + phase to [phase][q] for the s phases -- written
    as one load of s * L contiguous columns per L steps and a shuffle + vector store per phase
    (AVX2: two loads, two vshufps, two vpermpd, two stores per 16 columns). TVM's vectorizer
    gathers a strided row element by element, and LLVM, left with the loop, de-interleaves only
    rows of 56 steps or more that it does not fully unroll first: shorter ones (MobileNet's 14-,
    28- and 56-wide stride-2 inputs) became partial loads, inserts and scalar moves, each phase on
    its own (the copy was 50-70% of those kernels' perf samples). AVX2, 1 thread, standalone
    conv+mul+clip, per-kernel minima of 20 alternated rounds, 2 runs, LLVM's -> this: 576 @14 s2
    0.042/0.043 -> 0.036/0.033 ms, 512 @14 s2 0.037/0.038 -> 0.033/0.030, 144 @56 s2 0.148/0.149 ->
    0.133/0.123, 128 @56 s2 0.128/0.137 -> 0.120/0.103, 192 @28 s2 0.054/0.053 -> 0.053/0.051,
    256 @28 s2 0.070/0.072 -> 0.068/0.064; the 112-wide ones (already LLVM's wide form) within
    noise. A loop that is not such a copy keeps LLVM's form."""
    ana = Analyzer()
    return tvm_ffi.structural_map(func, [(tirx.For, lambda loop: _deinterleaved(loop, ana))])


def _deinterleaved(loop, ana):
    """LOOP as `deinterleave` writes it, or LOOP (its annotation dropped) when it is not the
    padding block's copy: q, then its unrolled phases, then the block storing
    if_then_else(inside, input[.., column], 0) to [.., phase, q]."""
    if DEINTERLEAVE not in loop.annotations:
        return loop
    lanes = int(loop.annotations[DEINTERLEAVE])
    phases, realize = loop.body, getattr(loop.body, "body", None)
    store = getattr(getattr(realize, "block", None), "body", None)
    value = getattr(store, "value", None)
    if not (isinstance(phases, tirx.For) and isinstance(store, tirx.BufferStore)
            and getattr(value, "op", None) is not None and value.op.same_as(_IF_THEN_ELSE)):
        return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, loop.body, loop.thread_binding,
                        {k: v for k, v in loop.annotations.items() if k != DEINTERLEAVE})
    cond, load, _ = value.args
    stride, block = int(phases.extent), realize.block
    index = str(loop.loop_var.ty)
    step = tirx.Var("step", index)
    first = loop.min + step * lanes  # the vector's first step q

    def at(expr, phase):  # EXPR with the block's variables bound at step FIRST and PHASE
        outer = {loop.loop_var: first, phases.loop_var: tirx.IntImm(index, phase)}
        binds = {v.var: substitute(b, outer) for v, b in zip(block.iter_vars, realize.iter_values)}
        return ana.simplify(substitute(expr, binds))

    column = block.iter_vars[-1].var
    rows = [t for t in _conjuncts(cond) if not _uses(t, column)]  # the pad rows' test
    idx = [at(i, 0) for i in load.indices]
    wide = stride * lanes
    read = tirx.BufferLoad(load.source, idx[:-1] + [tirx.Ramp(idx[-1], tirx.IntImm(index, 1), wide)])
    if rows:
        zeros = tirx.Broadcast(tirx.FloatImm(str(load.source.dtype), 0.0), wide)
        read = tirx.if_then_else(at(functools.reduce(tirx.And, rows), 0), read, zeros)
    columns = tirx.Var("columns", read.ty)
    body = [tirx.LetStmt(columns, read)]
    for phase in range(stride):
        out = [at(i, phase) for i in store.indices]
        pick = tirx.Shuffle([columns], [tirx.IntImm("int32", phase + stride * k) for k in range(lanes)])
        vector = tirx.Ramp(out[-1], tirx.IntImm(index, 1), lanes)
        body.append(tirx.BufferStore(store.buffer, pick, out[:-1] + [vector]))
    steps = tirx.IntImm(index, int(loop.extent) // lanes)
    return tirx.For(step, tirx.IntImm(index, 0), steps, tirx.ForKind.SERIAL, tirx.SeqStmt(body))


_IF_THEN_ELSE = tirx.if_then_else(tirx.Var("c", "bool"), tirx.FloatImm("float32", 1.0),
                                   tirx.FloatImm("float32", 0.0)).op


def _conjuncts(cond):
    return _conjuncts(cond.a) + _conjuncts(cond.b) if isinstance(cond, tirx.And) else [cond]


def _uses(expr, var):
    seen = []
    tvm_ffi.structural_map(expr, [(tirx.Var, lambda v: seen.append(v) or v)])
    return any(v.same_as(var) for v in seen)


def _band(sch, plane, oh, preset):
    """Output rows per band of the conv's plane PLANE (see band_rows); a de-interleaved plane
    (n, c, row, phase, q) is a strided conv's."""
    buf = sch.get(plane).writes[0].source
    size = buf.dtype.bits // 8
    for v in buf.shape[2:]:
        size *= int(v)
    stride = int(buf.shape[3]) if len(buf.shape) == 5 else 1
    return band_rows(size, oh, preset.l1_kib * 1024, stride)


def band_rows(plane, oh, l1, stride):
    """Output rows per band where a channel's whole plane (PLANE bytes, OH output rows) would take
    over half of L1 (L1 bytes; the conv then read its taps from L2): the largest divisor of OH whose
    share of the plane fits there. None where the plane fits, or where no band of MIN_BAND rows
    does (the rows a band shares with the next, copied twice, would cost more than L2 reads).
    A strided conv's bands are smaller where they can be (MIN_BAND rows or more): their share of
    the plane fits in L1 / STRIDED_BAND_L1_SHARE. Its de-interleaving copy then alternates with the
    taps every few rows, so the input stream (from L2/L3: MobileNet's 56- and 112-wide planes come
    from a 1x1 conv's MB-sized output) keeps coming while the taps compute (perf, in model: the copy
    was 50-60% of a stride-2 kernel's samples, piled on the stores that wait for its loads). AVX2,
    standalone conv+mul+clip, per-kernel minima of 20 alternated rounds, half of L1 -> an eighth,
    1 thread, 3 runs: 144 @56 s2 (unbanded -> bands of 7) 0.161/0.170/0.166 -> 0.148/0.160/0.158 ms,
    128 @56 s2 0.147/0.157/0.156 -> 0.130/0.147/0.143, 96 @112 s2 (14 -> 4 rows) 0.409/0.400/0.397
    -> 0.378/0.392/0.381, 64 @112 s2 0.270/0.265/0.256 -> 0.253/0.266/0.261; 2 threads, 2 runs:
    144 @56 0.081/0.093 -> 0.068/0.071, 128 @56 0.070/0.084 -> 0.062/0.064, 96 @112 0.173/0.271 ->
    0.167/0.167, 64 @112 0.119/0.142 -> 0.105/0.134. In MobileNet v1/v2 (busier machine) the same
    kernels moved -9%..+4% run to run. A quarter of L1 (96 @112: bands of 8) and a sixteenth (2
    rows) measured no better than an eighth. Stride 1 keeps half of L1: an eighth there was within
    noise (32 @112 0.17-0.19 ms either way)."""
    for share in (STRIDED_BAND_L1_SHARE, 2) if stride > 1 else (2,):
        budget = l1 // share
        if plane <= budget:
            return None
        band = max(b for b in range(1, oh + 1) if oh % b == 0 and (b == 1 or b * plane <= budget * oh))
        if band >= MIN_BAND:
            return band
    return None


MIN_BAND = 4
STRIDED_BAND_L1_SHARE = 8
POOL_STAGES = ("pool_rows", *POOL_BLOCKS)
PARALLEL_GROUPS = 32


def _row_stride(sch, conv):
    """The step of the conv's input column per output column (the stride of its last axis)."""
    x = sch.get(conv).iter_vars[3].var
    coef = pattern.detect_linear_equation(sch.get(conv).reads[0].region[-1].min, [x])
    return int(coef[0]) if len(coef) and isinstance(coef[0], tirx.IntImm) else 1
