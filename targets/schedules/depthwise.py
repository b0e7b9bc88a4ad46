"""Depthwise conv2d on CPU (one input channel per output channel)."""
from . import worth_parallel
from .common import inline_epilogue, parallel, schedule_rest, vectorize
from .pool import contiguous_reads


def schedule(sch, kernel, preset):
    """A conv2d with one input channel per output channel (depthwise): per (batch, channel), the
    channel's padded plane is built (in cache); each output row, in chunks of up to 4 vectors that
    divide it, accumulates over the taps in registers, then the epilogue writes the chunk.
    Returns None for other convs."""
    try:
        conv = sch.get_sblock("conv2d")
    except Exception:  # noqa: BLE001
        return None
    loops = sch.get_loops(conv)
    if len(loops) != 7 or int(sch.get(loops[4]).extent) != 1:
        return None
    pads = list(sch.get_producers(conv))
    par = worth_parallel(kernel)
    n, f, y, x, rc, ry, rx = loops
    ow = int(sch.get(x).extent)
    lanes = max(preset.vector_bits // 32, 4)
    chunk = next((c * lanes for c in (4, 3, 2, 1) if ow % (c * lanes) == 0), None)
    xo, xi = sch.split(x, [None, chunk]) if chunk else (None, x)
    sch.reorder(*[l for l in (n, f, y, xo, rc, ry, rx, xi) if l is not None])
    at = xo if chunk else y
    strided = not contiguous_reads(sch, conv, 3)
    consumers = sch.get_consumers(conv)
    if chunk:  # the chunk's accumulators stay in registers over the taps
        acc = sch.cache_write(conv, 0, "local")
        sch.reverse_compute_at(acc, at)
        sch.vectorize(sch.get_loops(acc)[-1])
    if len(consumers) == 1:
        inline_epilogue(sch, consumers[0])
        sch.reverse_compute_at(consumers[0], at)
        sch.vectorize(sch.get_loops(consumers[0])[-1])
    nf = sch.fuse(n, f)
    parallel(sch, nf, par)
    if not strided:  # a strided row (stride 2) is left to LLVM's vectorizer
        sch.vectorize(xi)
    for l in sch.get_loops(conv)[-3:-1]:
        sch.unroll(l)
    sch.decompose_reduction(conv, rc)
    for pad in pads:  # each channel's padded plane just before its conv, while it is in cache
        sch.compute_at(pad, nf)
        vectorize(sch, sch.get_loops(pad)[-1], lanes)
    names = ["conv2d", *[sch.get(b).name_hint for b in pads + consumers]]
    schedule_rest(sch, preset, names, par)
    return sch.mod["main"]
