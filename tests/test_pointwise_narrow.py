"""Projections with few output channels (the in-place pointwise GEMM, pointwise.reads_in_place): the
x86 software prefetch of the next pixel tile's rows (pointwise.prefetch_next_tile) against the
numpy reference on shapes that do not divide the tiles, batch > 1, and in the disassembly."""
import shutil

import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.runtime import load
from edgec.targets import schedules
from edgec.targets.schedules import pointwise
from edgec.targets.schedules.pack import pointwise_tile
from structure import fixed

AVX2 = "avx2" in open("/proc/cpuinfo").read()


def _projection(c, o, batch, hw, post):
    rng = np.random.default_rng(0)
    g = Graph("projection")
    x = g.add_input("x", (batch, c) + hw)
    w = g.add_const((rng.standard_normal((o, c, 1, 1)) / np.sqrt(c)).astype("float32"))
    y, = g.add_node("conv2d", [x, w, g.add_const(rng.standard_normal(o).astype("float32"))],
                    {"strides": [1, 1], "pads": [0, 0, 0, 0]})
    for op in post:
        if op == "add":
            y, = g.add_node("add", [y, g.add_input("skip", g.values[y].shape)])
        else:
            y, = g.add_node(op, [y])
    g.outputs = [y]
    return g


def matches_interpreter(g, path):
    """The artifact at PATH, compiled from graph G, matches the interpreter on random inputs."""
    m = load(str(path))
    rng = np.random.default_rng(1)
    feed = {v.name: rng.standard_normal(v.shape).astype(v.dtype) for v in g.inputs}
    np.testing.assert_allclose(m.run(feed)[0], interpret(g, feed)[g.outputs[0]], rtol=1e-4, atol=1e-5)


def compile_for_rpi4(g, path):
    """Compile G for rpi4 (the schedules run; the cross toolchain links), else skip saying why."""
    try:
        compile_graph(g, targets.get("rpi4"), str(path), progress=False)
    except Exception as e:  # noqa: BLE001 - no cross toolchain on this machine
        pytest.skip(f"rpi4 does not compile here: {e}")


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", [(40, 12, 2, (13, 11), ("relu",)), (64, 16, 3, (9, 23), ("add", "relu")),
                                  (24, 24, 2, (8, 8), ()), (80, 58, 2, (41, 43), ("add", "relu"))],
                         ids=["2x143px", "3x207px-add", "2x64px", "streamed-2x1763px-add"])
def test_in_place_prefetch_matches_numpy(tmp_path, monkeypatch, preset, parallel, case):
    """A projection read in place prefetches the next tile's rows (clamped to each image; batches
    of 2-3 images, pixels no whole number of tiles) and matches numpy."""
    if preset != "host" and not AVX2:
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if parallel else float("inf"))
    calls = []
    orig = pointwise.prefetch_next_tile
    monkeypatch.setattr(pointwise, "prefetch_next_tile", lambda *a: calls.append(a[-1]) or orig(*a))
    c, o, batch, hw, post = case
    g = _projection(c, o, batch, hw, post)
    compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    p = targets.get(preset)
    assert not fixed(preset) or len(calls) == (p.arch == "x86_64"), calls
    assert all(loc == (2 if o > pointwise.IN_PLACE_ROWS else 3) for loc in calls), calls  # (streamed: into L2)
    matches_interpreter(g, tmp_path / "m.edgec")


def test_prefetch_choice():
    """x86 only (the hardware prefetchers measured), and only with the weights in half of the L1
    (SqueezeNet's 256->32: 32 KB of weights, the whole L1, ran slower with it)."""
    avx2, rpi4 = targets.get("x86-avx2"), targets.get("rpi4")
    assert pointwise.prefetches(avx2, 128 * 32) and pointwise.prefetches(avx2, 144 * 24)
    assert not pointwise.prefetches(avx2, 256 * 32) and not pointwise.prefetches(rpi4, 64 * 16)


def test_streamed_in_place_choice():
    """x86 projections of up to 64 channels whose input outgrows the L2 read it in place (ResNet-50's
    256->64 @56 where a quarter of the L2 holds its weights, 64->64 @56), prefetching into L2; not
    where the input fits the L2 (MobileNetV2's 384->64 @14) or a tile's rows outgrow half the L1
    (384->32 @27, 24-pixel tiles), nor with more channels, a stride, or on rpi4. The projections
    whose weights fit the L1 keep their choice (192->32 @28: in place, no prefetch)."""
    import dataclasses
    avx2, rpi4 = targets.get("x86-avx2"), targets.get("rpi4")
    assert not pointwise.in_place(avx2, 256, 64, 6, 3136, 16, False)  # (67 KB of weights: past a quarter of 256 KB)
    for p in (avx2, dataclasses.replace(avx2, l2_kib=512)):  # (znver3's L2)
        assert pointwise.in_place(p, 256, 64, 6, 3136, 16, False) == (p.l2_kib == 512)
        assert pointwise.in_place(p, 64, 64, 6, 3136, 16, False)
        assert pointwise.prefetch_locality(p, 256, 64, 256 * 66) == 2
        assert pointwise.prefetch_locality(p, 64, 64, 64 * 66) == 2
        assert not pointwise.in_place(p, 384, 64, 6, 196, 16, False)
        assert not pointwise.in_place(p, 256, 128, 6, 3136, 16, False)
        assert not pointwise.in_place(p, 256, 64, 6, 3136, 16, True)
        assert not pointwise.in_place(p, 384, 32, 4, 729, 24, False)
        assert pointwise.in_place(p, 192, 32, 6, 784, 16, False) and pointwise.prefetch_locality(p, 192, 32, 192 * 36) is None
    assert not pointwise.in_place(rpi4, 256, 64, 8, 3136, 16, False)
    # Zen 4's 64-pixel tiles: 4 whole lines of each of 256 rows (64 KB, past half the L1) are read
    # in place all the same, no line shared with the next tile, prefetched into L2 (12 accumulators
    # on the stack); not rows of 55 pixels (lines shared), nor 24 accumulators (no prefetch)
    zen4, avx512 = targets.get("x86-zen4"), targets.get("x86-avx512")
    assert pointwise_tile(zen4, 64, 3136, in_channels=256) == (3, 64)
    assert pointwise.in_place(zen4, 256, 64, 3, 3136, 64, False)
    assert not pointwise.in_place(zen4, 256, 64, 3, 3025, 64, False)
    block, tile = pointwise_tile(avx512, 64, 3136, in_channels=256)
    assert not pointwise.in_place(avx512, 256, 64, block, 3136, tile, False)


@pytest.mark.parametrize("preset", ["host", "x86-zen4"])
def test_whole_line_in_place_matches_numpy(tmp_path, preset):
    """256->64 over 2 images of 32 x 40 (1.3 MB of input, past a 1 MB L2) in 64-pixel tiles:
    read in place with its rows prefetched into L2, and matches numpy."""
    p = targets.get(preset)
    if p.vector_bits < 512:
        pytest.skip("this machine has no AVX-512: its tiles are not 64 pixels")
    if preset != "host" and "avx512f" not in open("/proc/cpuinfo").read():
        pytest.skip(f"this machine has no AVX-512 to run {preset} code")
    block, tile = pointwise_tile(p, 64, 1280, in_channels=256)
    if (block, tile) != (3, 64) or p.l2_kib > 1024:
        pytest.skip(f"{preset}'s tile ({block} x {tile}) or L2 ({p.l2_kib} KB) differs from the case's")
    calls = []
    orig = pointwise.prefetch_next_tile
    g = _projection(256, 64, 2, (32, 40), ("relu",))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pointwise, "prefetch_next_tile", lambda *a: calls.append(a[-1]) or orig(*a))
        compile_graph(g, p, str(tmp_path / "m.edgec"), progress=False)
    assert calls == [2]
    matches_interpreter(g, tmp_path / "m.edgec")


def test_avx2_in_place_gemm_prefetches_in_its_reduction_loop(tmp_path):
    """The x86-avx2 in-place GEMM (64->16 @23x23) prefetches in its innermost FMA loop, one line per
    64 bytes of a tile's row, and still spills nothing; with weights past half the L1 (256->32) it
    does not prefetch."""
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    from disasm import innermost_fma_loops, stack_accesses
    from test_arm_schedules import conv_library
    from edgec.targets.schedules.pack import pointwise_tile
    _, tile = pointwise_tile(targets.get("x86-avx2"), 16, 23 * 23)
    loops = innermost_fma_loops(conv_library(tmp_path, "x86-avx2", 64, 16, 23, 1))
    main = max(loops, key=len)
    prefetches = [a for o, a in main if o == "prefetcht0"]
    assert len(prefetches) >= -(-tile * 4 // pointwise.LINE_BYTES), main
    assert not stack_accesses(main), stack_accesses(main)
    (tmp_path / "wide").mkdir()
    loops = innermost_fma_loops(conv_library(tmp_path / "wide", "x86-avx2", 256, 32, 23, 1))
    assert not [o for body in loops for o, _ in body if o.startswith("prefetch")]


def test_avx512_in_place_gemm_keeps_its_accumulators_in_registers(tmp_path):
    """x86-avx512's in-place GEMM (96->24 @56, MobileNetV2's: 8 x 48 tiles, 1.5 KB of accumulators,
    workspace memory rather than the stack) stores nothing in its reduction loop: it does not
    prefetch there (with the prefetch LLVM stored every accumulator in every step, 2x the time)."""
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    from disasm import innermost_fma_loops, vector_fmas
    from test_arm_schedules import conv_library
    main = max(innermost_fma_loops(conv_library(tmp_path, "x86-avx512", 96, 24, 56, 1)), key=len)
    stores = [(o, a) for o, a in main if o.startswith("vmov") and "(" in a.split(",")[-1]]
    assert len(vector_fmas(main)) >= 24 and not stores, stores


def test_avx2_tile_has_at_least_three_channels():
    """AVX2's 16 registers allow a tile of 2 channels x 4 pixel vectors; it is never chosen (MobileNetV2's
    32->16 @112 took it: 8 channel blocks, each re-reading the tile's rows), 4 x 3 instead."""
    from edgec.targets.schedules.pack import pointwise_tile
    avx2 = targets.get("x86-avx2")
    assert pointwise_tile(avx2, 16, 112 * 112) == (4, 24)
    assert all(pointwise_tile(avx2, o, p)[0] >= 3 for o in (2, 8, 16, 32, 34) for p in (64, 3136, 12544))
