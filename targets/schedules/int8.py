"""int8 convolution on CPU: weights packed at compile time, int16 dot products, int32 accumulators.

The packed conv (`qconv2d_packed`, compiler/lower/quant.py) reduces over input channel blocks of
KGROUP = 2, kernel rows and columns; each step broadcasts two centered input channels of one
pixel (x - x_zp, int16) and multiplies them with a (lanes x 2) int16 weight tile into `lanes`
int32 accumulators:
  - x86: `pmaddwd` (AVX2 `vpmaddwd ymm`, 8 lanes; AVX-512 `zmm`, 16 lanes): the two products
    summed in 32 bits, exact for every int8 / uint8 operand (u8 x s8 `vpmaddubsw` would saturate
    its 16-bit pair sums, as onnxruntime's U8S8 kernels do on AVX2);
  - aarch64: vectorized over the lanes, LLVM emits NEON widening multiply-adds (`smlal`).
Per (batch, channel block, output row) -- the parallel loop -- a row tile of `xt` pixels keeps
its accumulators in registers; the reduction runs kernel rows and columns outermost (channel
blocks inside them keep LLVM from interleaving unrolled taps into spills), and the packed weights
are laid out in that order, so consecutive steps read consecutive weights. The int32 result is
written back to NCHW with the requantize
epilogue (scale, zero point, ReLU/Clip clamp) fused into the write-back; a channels-last result
(between int8 kernels, fold_qdq.channels_last) is written from each tile's accumulators, a vector
of channels at a time, with no int32 intermediate. A 1x1 conv on a channels-last input tiles one
flat row of all its pixels (tiles span image rows) in a few bands; on x86 an odd count of output
channel blocks gets a zero block (out_blocks) so tiles take two; with 16 registers a conv with few
input channels runs a row's column taps and channel steps as one loop (FUSE_TAPS). A conv writing
channels-last with weights that fit in L1 (WEIGHTS_L1_SHARE) runs pixel-major, all channel blocks of
a pixel tile in turn.

A depthwise conv (one input channel per output channel) takes the same kernel shape with no
channel reduction: each tile's accumulators sum their own channels' taps, a vector of channels
(the input's, laid out channels-last) times a vector of packed weights, lane by lane; one channel
block per tile (no broadcast to share). An input larger than INPUT_L2_SHARE of the L2 is copied
(padded) row by row as the output rows need it, output rows outside the channel blocks, so the
input rows of one output row stay in L1 across its channels; a smaller one by groups of channel
blocks (plane_blocks), each group's padded planes copied and computed in one parallel iteration.
"""
import functools

import numpy as np
import tvm
from tvm.s_tir import Schedule, TensorIntrin
from tvm.script import tirx as T

from . import buffer_bytes, generic, worth_parallel
from .common import ACC_SCOPE, has_block

KGROUP = 2


def has_vnni(preset):
    """Whether PRESET has u8 x s8 `vpdpbusd`: AVX-512 VNNI (Cascade Lake, Zen 4), or AVX-VNNI, its
    256-bit VEX form on AVX2 machines (Alder Lake and later Intel clients)."""
    import tvm.target.codegen as cg
    target = preset.tvm_target()
    return preset.arch == "x86_64" and any(bool(cg.target_has_features(f, target)) for f in ("avx512vnni", "avxvnni"))


def has_dotprod(preset):
    import tvm.target.codegen as cg
    return preset.arch == "aarch64" and bool(cg.target_has_features("dotprod", preset.tvm_target()))


def raw_dot(preset):
    """The 8-bit dot product of PRESET that takes raw int8 weights: "vnni" (u8 x s8), "sdot"
    (s8 x s8), or None (int16 pmaddwd / smlal)."""
    return "vnni" if has_vnni(preset) else "sdot" if has_dotprod(preset) else None


def params(preset, raw=False):
    """(lanes, kgroup) of the packed int8 weights for PRESET; RAW: for `vpdpbusd` (16 lanes x 4
    channels with AVX-512 VNNI, 8 with AVX-VNNI), `vpmaddubsw` (8 or 16 lanes x 4 channels) without,
    `sdot` (4 lanes x 4 channels) with NEON dotprod."""
    if raw:
        return (max(preset.vector_bits // 32, 8), 4) if preset.arch == "x86_64" else (4, 4)
    return max(preset.vector_bits // 32, 4), KGROUP


def _index(index):
    """The constructor of INDEX, the dtype of the kernel's loop indices (int64 from Relax, int32
    from plain TE)."""
    return T.int64 if index == "int64" else T.int32


def _register(name, a_dtype, b_dtype, lanes, width, index, compute, scope):
    """Register the tensor intrinsic NAME for C[lanes] (int32, local) += A[width] (A_DTYPE)
    . B[lanes, width] (B_DTYPE), summed over width (the description: the loop nest `reduce`),
    implemented by COMPUTE (a TVMScript macro of the buffers A, B, C), C in storage SCOPE; return the
    name registered (NAME and SCOPE)."""
    i = _index(index)
    z, w, n = i(0), i(width), i(lanes)

    @T.macro
    def reduce(A, B, C):
        for j in T.serial(z, n):
            for k in T.serial(z, w):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [j, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    def func(body):
        @T.prim_func(s_tir=True)
        def f(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (w,), a_dtype, offset_factor=1)
            B = T.match_buffer(b, (n, w), b_dtype, offset_factor=1)
            C = T.match_buffer(c, (n,), "int32", offset_factor=1, scope=scope)
            with T.sblock("root"):
                T.reads(C[z:n], A[z:w], B[z:n, z:w])
                T.writes(C[z:n])
                body(A, B, C)
        return f

    name = f"{name}_{scope}"
    TensorIntrin.register(name, func(reduce), func(compute))
    return name


@functools.cache
def _pmaddwd_intrin(lanes, index, b_dtype, scope):
    """C[lanes] += A[2] (int16) . B[lanes, 2] via pmaddwd (registered once per LANES, INDEX, B_DTYPE);
    int8 B is sign-extended as it is loaded (`vpmovsxbw`): the packed weights stay int8 in memory."""
    llvm = {8: "llvm.x86.avx2.pmadd.wd", 16: "llvm.x86.avx512.pmaddw.d.512"}[lanes]
    half, acc = f"int16x{2 * lanes}", f"int32x{lanes}"
    i = _index(index)
    z = i(0)

    @T.macro
    def compute(A, B, C):  # one expression: a name assigned in a macro is a local buffer, which inside a
        # parallel loop costs a workspace allocation per iteration (TVMBackendAllocWorkspace)
        C[T.ramp(z, i(1), lanes)] = C.vload([z], acc) + T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id(llvm),
            T.reinterpret(T.broadcast(T.reinterpret(A.vload([z], "int16x2"), dtype="int32"), lanes), dtype=half),
            B.vload([z, z], f"{b_dtype}x{2 * lanes}") if b_dtype == "int16"
            else T.cast(B.vload([z, z], f"{b_dtype}x{2 * lanes}"), half), dtype=acc)

    return _register(f"edgec_pmaddwd_{lanes}x2_{b_dtype}_{index}", "int16", b_dtype, lanes, 2, index, compute, scope)


@functools.cache
def _dot4_intrin(kind, index, scope):
    """C[lanes] += A[4] . B[lanes, 4] (s8) in one accumulating instruction: KIND "vnni", AVX-512
    VNNI `vpdpbusd` (A u8, 16 lanes; exact: no saturation), "vnni256", its 8-lane form (AVX-VNNI's
    VEX encoding, or AVX-512 VL), or "sdot", NEON `sdot` (A s8, 4 lanes; ARMv8.2 dotprod)."""
    name, llvm, a_dtype, lanes = {"vnni": ("vpdpbusd_16x4", "llvm.x86.avx512.vpdpbusd.512", "uint8", 16),
                                  "vnni256": ("vpdpbusd_8x4", "llvm.x86.avx512.vpdpbusd.256", "uint8", 8),
                                  "sdot": ("sdot_4x4", "llvm.aarch64.neon.sdot.v4i32.v16i8", "int8", 4)}[kind]
    quad, bytes_, acc = f"{a_dtype}x4", f"int8x{4 * lanes}", f"int32x{lanes}"
    i = _index(index)
    z = i(0)

    @T.macro
    def compute(A, B, C):  # one expression (see _pmaddwd_intrin)
        C[T.ramp(z, i(1), lanes)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id(llvm), C.vload([z], acc),
            T.reinterpret(T.broadcast(T.reinterpret(A.vload([z], quad), dtype="int32"), lanes), dtype=bytes_),
            B.vload([z, z], bytes_), dtype=acc)

    return _register(f"edgec_{name}_{index}", a_dtype, "int8", lanes, 4, index, compute, scope)


def ubsw_exact(wp):
    """Whether u8 x s8 `vpmaddubsw` is exact for the raw packed weights WP (..., 4): its 16-bit sum
    of two products saturates unless each channel pair's positive (negative) weights sum to at most
    128 (at least -128), so that 255 * sum fits. Weights quantized to 7 bits always pass."""
    pairs = wp.astype(np.int32).reshape(wp.shape[:-1] + (2, 2))
    return bool(np.maximum(pairs, 0).sum(-1).max(initial=0) <= 128
                and np.minimum(pairs, 0).sum(-1).min(initial=0) >= -128)


@functools.cache
def _ubsw_intrin(lanes, index, scope):
    """C[lanes] += A[4] (u8) . B[lanes, 4] (s8) with vpmaddubsw + vpmaddwd (by ones) + vpaddd."""
    ub, wd = {8: ("llvm.x86.avx2.pmadd.ub.sw", "llvm.x86.avx2.pmadd.wd"),
              16: ("llvm.x86.avx512.pmaddubs.w.512", "llvm.x86.avx512.pmaddw.d.512")}[lanes]
    bytes_, halves, acc = f"int8x{4 * lanes}", f"int16x{2 * lanes}", f"int32x{lanes}"
    i = _index(index)
    z = i(0)

    @T.macro
    def compute(A, B, C):  # one expression (see _pmaddwd_intrin)
        C[T.ramp(z, i(1), lanes)] = C.vload([z], acc) + T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id(wd), T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(ub),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([z], "uint8x4"), dtype="int32"), lanes), dtype=bytes_),
                B.vload([z, z], bytes_), dtype=halves), T.broadcast(T.int16(1), 2 * lanes), dtype=acc)

    return _register(f"edgec_pmaddubsw_{lanes}x4_{index}", "uint8", "int8", lanes, 4, index, compute, scope)


def handles(kernel):
    return kernel.get("anchor") in ("qconv2d_packed", "qglobal_avg_pool", "qmax_pool2d")


def schedule(func, kernel, preset):
    if kernel.get("anchor") == "qglobal_avg_pool":
        return _global_avg_pool(func, kernel, preset)
    if kernel.get("anchor") == "qmax_pool2d":
        return _max_pool(func, kernel, preset)
    sch = Schedule(tvm.IRModule({"main": func}))
    conv = sch.get_sblock("qconv2d_packed")
    nhwc = has_block(sch, "qconv2d_unpack_nhwc")  # a channels-last result (fold_qdq.channels_last)
    unpack = sch.get_sblock("qconv2d_unpack_nhwc" if nhwc else "qconv2d_unpack")
    while True:  # the epilogue (requantize, clamps) joins the write-back
        consumers = sch.get_consumers(unpack)
        if len(consumers) != 1:
            break
        try:
            sch.reverse_compute_inline(consumers[0])
        except Exception:  # noqa: BLE001 - not injective: scheduled on its own below
            break
    if has_block(sch, "qconv_input_view"):  # (the lowering's copy-free input: read in place)
        sch.compute_inline(sch.get_sblock("qconv_input_view"))
    n, b, y, x, oi, *reduce = sch.get_loops(conv)
    depthwise = len(reduce) == 2  # (ry, rx), no channel reduction: each lane sums its own channel's taps
    par = worth_parallel(dict(kernel, flops=kernel.get("flops", 0) * DEPTHWISE_FLOP_COST) if depthwise else kernel)
    rc, ry, rx, rk = [None, *reduce, None] if depthwise else reduce
    taps = int(sch.get(ry).extent) * int(sch.get(rx).extent)
    lanes, kgroup = int(sch.get(oi).extent), 1 if depthwise else int(sch.get(rk).extent)
    groups = channel_groups(int(sch.get(b).extent), preset, kgroup)
    bo, bi = sch.split(b, [None, groups])
    tile = kernel_tile(int(sch.get(x).extent), preset, groups, kgroup)
    xo, xi = sch.split(x, [None, tile])
    flat = "flat" in sch.get(conv).annotations  # one row of all pixels (compiler/lower/quant.py)
    pixel_major = not depthwise and nhwc and weights_in_l1(_bytes(sch, conv, 6), preset)
    if flat:  # as few bands of pixels as give the parallel loop PARALLEL_SHARES iterations (whole tiles: a
        # partial band's predicate would keep the reduction from tensorizing). Each iteration costs: 96->576
        # @14, 1 thread, a band per tile of 4 pixels 0.19 ms, all pixels in one band 0.14 ms
        tiles, shares = int(sch.get(xo).extent), 1 if pixel_major else int(sch.get(bo).extent)
        band, xo = sch.split(xo, [None, max([d for d in range(1, tiles + 1)
                                             if tiles % d == 0 and tiles // d * shares >= PARALLEL_SHARES] or [1])])
    # (a depthwise conv copying input rows per output row: the rows parallel, the channel blocks inside)
    dw_rows = depthwise and copies_rows(_bytes(sch, sch.get_sblock("qconv_input"), 4), preset)
    planes = depthwise and not dw_rows and plane_blocks(int(sch.get(bo).extent), lanes)
    if planes:  # channel groups outermost, each copying its own channels' padded planes
        go, bo = sch.split(bo, [None, planes])
        outer = [n, go]
        sch.reorder(*outer, y, bo, xo, ry, rx, xi, bi, oi)
    elif depthwise:  # rows outside the channel blocks: the input rows a row reads (all channels) stay in L1
        outer = [n, y, bo]
        sch.reorder(*outer, xo, ry, rx, xi, bi, oi)
    else:  # (pixel-major: the channel groups inside each pixel tile)
        outer = ([n, y] if pixel_major else [n, bo, y]) + ([band] if flat else [])
        sch.reorder(*outer, *([xo, bo] if pixel_major else [xo]), ry, rx, rc, xi, bi, oi, rk)
        if int(sch.get(rx).extent) > 1 and 1 < int(sch.get(rc).extent) * kgroup <= FUSE_TAPS and preset.regs <= 16:
            rx = sch.fuse(rx, rc)  # (a tap's channels follow the previous tap's in the input: one stride)
    at = bo if pixel_major else xo
    # (the accumulators in registers: common.ACC_SCOPE. Not a pixel-major conv with taps: its channel
    # groups reuse a tile's input broadcasts of all taps, which LLVM then hoisted out of the groups'
    # loop and spilled: SqueezeNet's stem 3x3 s2 3->64, 1 thread 0.58 -> 0.99 ms; pixel-major 1x1s
    # gain: 24->144 @56 0.211 -> 0.201)
    scope = "local" if pixel_major and taps > 1 else ACC_SCOPE
    local = sch.cache_write(conv, 0, scope)
    sch.reverse_compute_at(local, at)
    if flat and nhwc:  # the write-back's pixels as the one flat row
        ow = int(sch.get(unpack).writes[0].source.shape[2])
        sch.transform_block_layout(unpack, lambda nn, yy, xx, f: (nn, yy * ow + xx, f))
    if nhwc:  # each tile's pixels written from its accumulators, a vector of channels at a time
        sch.reverse_compute_at(unpack, at)
        sch.compute_inline(local)
        sch.vectorize(sch.split(sch.get_loops(unpack)[-1], [None, lanes])[1])
    else:
        sch.vectorize(sch.get_loops(local)[-1])
    fused = sch.fuse(*outer[:2]) if dw_rows else sch.fuse(*outer)
    if par:
        sch.parallel(fused)
    index = str(sch.get(oi).extent.ty)
    wdtype = next(str(r.source.dtype) for r in sch.get(conv).reads if len(r.region) == 6)
    intrin = {("x86_64", 8, 2): lambda: _pmaddwd_intrin(8, index, wdtype, scope),
              ("x86_64", 16, 2): lambda: _pmaddwd_intrin(16, index, wdtype, scope),
              ("x86_64", 8, 4): lambda: _dot4_intrin("vnni256", index, scope) if has_vnni(preset)
              else _ubsw_intrin(8, index, scope),
              ("x86_64", 16, 4): lambda: _dot4_intrin("vnni", index, scope) if has_vnni(preset)
              else _ubsw_intrin(16, index, scope),
              ("aarch64", 4, 4): lambda: _dot4_intrin("sdot", index, scope)}
    if depthwise:  # lane by lane: u8/s8 operands widened to int32 lanes, multiplied and added (the
        # operands fit 16 bits, so LLVM emits x86 vpmaddwd; NEON widening multiply-adds)
        sch.vectorize(oi)
        sch.vectorize(sch.get_loops(sch.decompose_reduction(conv, ry))[-1])
        sch.unroll(ry)  # (the taps unrolled: neighbouring taps share their input loads; LLVM unrolled
        sch.unroll(rx)  # them on one thread, not in a parallel loop's body: 3x3 576 @14 0.064 -> 0.073 ms)
    elif (preset.arch, lanes, kgroup) in intrin:
        init = sch.decompose_reduction(conv, ry)
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(sch.get_loops(conv)[-2], intrin[(preset.arch, lanes, kgroup)]())
    else:  # lanes innermost: vector widening multiply-adds (NEON smlal)
        sch.reorder(rk, oi)
        sch.unroll(rk)
        sch.vectorize(oi)
    sch.unroll(xi)
    sch.unroll(bi)
    if has_block(sch, "qconv_input"):
        _schedule_input(sch, sch.get_sblock("qconv_input"), fused if dw_rows or planes else None, flat, par)
    vec = max(preset.vector_bits // 32, 4)
    if not nhwc:
        generic._schedule_block(sch, unpack, vec, par)
    return sch.mod["main"]


def _schedule_input(sch, src, at, flat, par):
    """The input copy SRC: computed at loop AT (rows as they are needed), or on its own, its rows in
    parallel with PAR (FLAT: its one row's pixels); a pixel's channels vectorized."""
    if at is not None:
        sch.compute_at(src, at)
        _, ly, lx, lc, lk = sch.get_loops(src)
    else:
        ln, ly, lx, lc, lk = sch.get_loops(src)
        if par:  # (a flat row's pixels in parallel: its one row gave the threads one share)
            sch.parallel(sch.fuse(ln, ly, lx) if flat else sch.fuse(ln, ly))
    chans = sch.fuse(lc, lk)
    if int(sch.get(chans).extent) % 16 == 0:
        sch.vectorize(sch.split(chans, [None, 16])[1])
    elif int(sch.get(chans).extent) <= 64:
        sch.vectorize(chans)


def plane_blocks(blocks, lanes):
    """Channel blocks of LANES per group of a depthwise conv whose input is not copied row by row
    (copies_rows): the fewest that span PLANE_BYTES of a pixel and divide BLOCKS; 0 where that
    leaves fewer than PLANE_GROUPS groups (the input then copied in a pass of its own)."""
    per = next((d for d in range(1, blocks + 1) if blocks % d == 0 and d * lanes >= PLANE_BYTES), blocks)
    return per if blocks // per >= PLANE_GROUPS else 0


def weights_in_l1(nbytes, preset):
    """Whether a conv with NBYTES of packed weights (and an NHWC result) runs pixel-major (WEIGHTS_L1_SHARE)."""
    return nbytes <= preset.l1_kib * 1024 * WEIGHTS_L1_SHARE


def copies_rows(nbytes, preset):
    """Whether a depthwise conv with an input of NBYTES copies its rows as they are read (INPUT_L2_SHARE)."""
    return nbytes > preset.l2_kib * 1024 * INPUT_L2_SHARE


def _bytes(sch, block, rank):
    """Bytes of the buffer of RANK dimensions that BLOCK reads (the packed weights: 6, the input: 4)."""
    return next(buffer_bytes(r.source) for r in sch.get(block).reads if len(r.region) == rank)


def _max_pool(func, kernel, preset):
    """The int8 max pool, taps unrolled: channels-last, output rows in parallel and a pixel's
    channels whole vectors of bytes (each tap one contiguous load, `vpmaxub`); NCHW the generic way."""
    sch = Schedule(tvm.IRModule({"main": func}))
    pool = sch.get_sblock("qmax_pool")
    par = worth_parallel(kernel)
    if "nhwc" not in sch.get(pool).annotations:
        generic.schedule_remaining(sch, preset, set(), par)
        return sch.mod["main"]
    n, i, j, c = sch.get_loops(pool)
    rows = sch.fuse(n, i)
    if par:
        sch.parallel(rows)
    vec, channels = preset.vector_bits // 8, int(sch.get(c).extent)
    if channels % vec == 0:
        sch.vectorize(sch.split(c, [None, vec])[1])
    elif channels <= 4 * vec:
        sch.vectorize(c)
    generic.schedule_remaining(sch, preset, {"qmax_pool"}, par)
    return sch.mod["main"]


def _global_avg_pool(func, kernel, preset):
    """The int8 global average pool: the window's pixels outermost and the channels innermost, so a
    channels-last input is summed a contiguous row of channels at a time (LLVM vectorizes that loop;
    channel outermost read one byte per cache line of an NHWC input)."""
    sch = Schedule(tvm.IRModule({"main": func}))
    total = sch.get_sblock("qgap_sum")
    n, f, i, j, ry, rx = sch.get_loops(total)
    sch.reorder(n, i, j, ry, rx, f)
    generic.schedule_remaining(sch, preset, {sch.get(total).name_hint}, worth_parallel(kernel))
    return sch.mod["main"]


# With 16 vector registers, a conv with column taps and at most this many input channels runs a
# row's column taps and channel steps as one loop: LLVM unrolled the short channel loop and then the
# taps around it, shared the broadcast pixels of neighbouring taps and spilled them (a 3x3 32->40
# @11 7-bit AVX2 loop: 823 instructions, 64 of them stack traffic). SqueezeNet, 7-bit, AVX2, 1
# thread, in-model minima: 3x3 16->64 @55 0.376 -> 0.350 and 0.497 -> 0.480 ms, 64->256 @13 0.337 ->
# 0.328, others unchanged
FUSE_TAPS = 64
# A conv with a channels-last result whose packed weights fit this share of the L1 runs pixel-major:
# per tile of pixels all channel groups, so each pixel's channels are written in one go (channel
# groups outermost swept the whole image per group, writing 16 of a pixel's bytes at a time:
# 112x112x96 = 1.2 MB re-streamed 6 times). MobileNetV2 7-bit, AVX2, 1 thread, in model, thread-time
# minima alternated: 1x1 16->96 @112 0.63-0.70 -> 0.46 ms, 24->144 @56 0.229 -> 0.221, 144->24 @56 +
# add, 32->192 @28 within noise; stem 3x3 s2 3->32 0.298 -> 0.284. SqueezeNet 7-bit: 3x3 16->64 @55
# 0.355 -> 0.343, its stem 3->64 0.566 -> 0.581, whole model 5.50 -> 5.43 (profile minima)
WEIGHTS_L1_SHARE = 0.5
# A depthwise conv whose input exceeds this share of the L2 copies (pads) the input rows an output row
# reads as it computes that row (in L1), not the whole input first (a pass over memory). Same setting:
# 3x3 96 s2 @56 (1.2 MB in) 0.33-0.37 -> 0.26-0.27 ms, 32 @112 0.273 -> 0.256, 144 @56 0.349 -> 0.332;
# below it (192 @28, 576 @14: 150 / 113 KB in) the row copies (kh per row) measured 5-10% slower.
# With the pixel-major convs and one block per depthwise tile (channel_groups), MobileNetV2 7-bit,
# AVX2, 1 thread, whole model, thread-time minima of alternated runs (two sets, load ~4): 7.51 / 7.40
# -> 7.14 / 6.94 ms; onnxruntime int8 on the same QDQ model 7.44 / 7.22, edgec float32 11.9 / 12.0
INPUT_L2_SHARE = 0.5
# An int8 depthwise multiply-add (lanes widened to int32, one vector of weights per tap) takes about
# the time of this many of the packed conv's FLOPs, for which worth_parallel is set: 3x3 384 @14 1.35
# MFLOP in 43 us on one AVX2 core (31 GOP/s; a 1x1 conv ~75). From this size a depthwise conv forks
# (it ran on one thread below 3.3 MFLOP). MobileNetV2 7-bit, AVX2, in-model minima alternated, load
# ~4: 2 threads 3x3 192 @28 0.080 -> 0.052-0.066 ms, 144 s2 @28 0.081 -> 0.054-0.058, 576 @14 0.063
# -> 0.054-0.060, 384 @14 0.043 -> 0.038-0.040; 1 thread unchanged (0.079-0.082, 0.063-0.068,
# 0.043-0.044); 960 @7 (0.028) and 576 s2 @7 (0.024) were slower on two threads (0.030-0.034) with
# their copy pass; copying planes in their one parallel loop (plane_blocks) they gain, so from 0.48
# MFLOP a depthwise conv forks (2.5: 1.33). MobileNetV2 7-bit, in-model minima of alternated
# processes, load ~3.5, 2.5 -> 7: 2 threads 960 @7 0.028-0.034 -> 0.023-0.026 ms (x3), 576 s2 @7
# 0.025-0.028 -> 0.022-0.024, 192 s2 @14 0.030-0.033 -> 0.029; 1 thread +0.001-0.002 ms each
DEPTHWISE_FLOP_COST = 7
# A depthwise conv whose input is below INPUT_L2_SHARE runs groups of channel blocks (PLANE_BYTES of
# each pixel, at least PLANE_GROUPS groups) in parallel, each padding (copying) its own channels'
# planes and computing them: one parallel region, where a copy pass of its own forked and joined the
# pool twice per conv (MobileNetV2's 3x3 384 @14: 0.043 ms on one AVX2 core, 0.042 on two).
# MobileNetV2 7-bit, AVX2, in-model minima of alternated processes (loaded machine): 2 threads 384 @14
# 0.028-0.041 -> 0.025-0.034 ms, 576 @14 0.047-0.059 -> 0.036-0.052; 1 thread unchanged (0.044, 0.065;
# 192 @28 0.089 -> 0.081). At load ~2 (10 rounds) within noise: 384 @14 0.027-0.039 -> 0.026-0.038,
# 576 @14 0.077-0.078 -> 0.075-0.076, 192 @28 0.051 -> 0.049. 64 bytes: the same on one thread
PLANE_BYTES = 32
PLANE_GROUPS = 4
PARALLEL_SHARES = 8  # a flat conv's parallel iterations (channel groups x bands of pixels), at least
PAIR_BLOCKS = 5  # an odd count of output channel blocks from this many on gets a zero block to pair up


def out_blocks(channels, lanes, preset):
    """Output channel blocks of LANES for CHANNELS: on x86 an odd count (from PAIR_BLOCKS) gets a
    block of zero weights, so the blocks pair up (channel_groups)."""
    blocks = -(-channels // lanes)
    return blocks + 1 if preset.arch == "x86_64" and blocks % 2 and blocks >= PAIR_BLOCKS else blocks


def channel_groups(blocks, preset, kgroup):
    """Output channel blocks per register tile: 2 on x86 when the BLOCKS pair up (each broadcast
    input group then feeds two multiply-adds: half the broadcasts per multiply-add), else 1. A
    depthwise conv (KGROUP 1) broadcasts nothing: one block, so the tile takes more pixels, each
    weight vector used by more of them (AVX2, 7-bit MobileNetV2, 1 thread, in-model thread-time minima
    alternated, load ~5: 3x3 384 @14 0.053 -> 0.046 ms, 576 @14 0.078 -> 0.068, 192 @28 0.089 ->
    0.085, 144 s2 @28 0.095 -> 0.090, 32 @112 0.262 -> 0.249)."""
    return 2 if preset.arch == "x86_64" and blocks % 2 == 0 and kgroup > 1 else 1


def _most(preset, groups, kgroup):
    """Most output pixels per register tile, at most 8: accumulators (pixels x GROUPS) and the
    operands fit the preset's registers (a broadcast, a product, GROUPS weight vectors, and for
    `vpmaddubsw` without VNNI the vector of ones it is summed with; x86 `vpmaddwd` on int8-stored
    weights one more: LLVM spilled a 6 x 2 AVX2 tile, all 16 registers taken)."""
    spare = preset.arch == "x86_64" and not has_vnni(preset)
    return max(2, min(8, (preset.regs - 2 - groups - spare) // groups))


def width_tile(ow, preset, groups=1, kgroup=KGROUP):
    """Output pixels per register tile (see _most): the size in [most/2, most] that pads OW least.
    The lowering computes rows in whole tiles."""
    most = _most(preset, groups, kgroup)
    if ow <= most:
        return ow
    return min(range(max(1, most // 2), most + 1), key=lambda t: (-(-ow // t) * t - ow, -t))


def kernel_tile(padded_ow, preset, groups=1, kgroup=KGROUP):
    """The tile width_tile chose for the row PADDED_OW was padded to (a multiple of it)."""
    most = _most(preset, groups, kgroup)
    return next(t for t in range(min(most, padded_ow), 0, -1) if padded_ow % t == 0)
