"""Depthwise conv2d on CPU (one input channel per output channel)."""
from tvm import tirx
from tvm.sym import pattern

from . import worth_parallel
from .common import inline_epilogue, parallel, schedule_rest, vectorize
from .pool import contiguous_reads


def schedule(sch, kernel, preset):
    """A conv2d with one input channel per output channel (depthwise): per (batch, channel), the
    channel's padded plane is built (in cache); each output row, in chunks of up to 4 vectors that
    divide it, accumulates over the taps in registers, then the epilogue writes the chunk. A strided
    conv (stride s) reads a de-interleaved copy of the plane, column q * s + phase at [phase][q], so
    each tap's row is contiguous and vectorizes like stride 1 (read in place, a stride-2 row was
    element-wise gathers or LLVM's shuffles per tap). Returns None for other convs."""
    try:
        conv = sch.get_sblock("conv2d")
    except Exception:  # noqa: BLE001
        return None
    loops = sch.get_loops(conv)
    if len(loops) != 7 or int(sch.get(loops[4]).extent) != 1:
        return None
    pads = list(sch.get_producers(conv))
    stride = _row_stride(sch, conv)
    split = None
    if stride > 1:  # the conv reads a de-interleaved copy: column q * stride + phase at [phase, q]
        split = sch.cache_read(conv, 0, "global")
        sch.transform_layout(split, ("write", 0), lambda n, c, h, w: (n, c, h, w % stride, w // stride),
                             pad_value=0.0)
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
    if not strided:  # a strided row not split above (stride not a constant) is left to LLVM
        sch.vectorize(xi)
    for l in sch.get_loops(conv)[-3:-1]:
        sch.unroll(l)
    sch.decompose_reduction(conv, rc)
    if split is not None:  # LLVM's vectorizer turns the strided reads into wide loads and shuffles
        sch.compute_at(split, nf)
        sch.unroll(sch.split(sch.get_loops(split)[-1], [None, stride])[1])
    for pad in pads:  # each channel's padded plane just before its conv, while it is in cache
        sch.compute_at(pad, nf)
        vectorize(sch, sch.get_loops(pad)[-1], lanes)
    names = ["conv2d", *[sch.get(b).name_hint for b in pads + consumers + ([split] if split else [])]]
    schedule_rest(sch, preset, names, par)
    return sch.mod["main"]


def _row_stride(sch, conv):
    """The step of the conv's input column per output column (the stride of its last axis)."""
    x = sch.get(conv).iter_vars[3].var
    coef = pattern.detect_linear_equation(sch.get(conv).reads[0].region[-1].min, [x])
    return int(coef[0]) if len(coef) and isinstance(coef[0], tirx.IntImm) else 1
