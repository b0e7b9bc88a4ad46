"""The x86 register tiles per ISA, proven on the code itself (no AVX-512 machine is needed to
compile for one): for x86-avx2 (16 ymm) and x86-avx512 (32 zmm), the innermost FMA loops of the
3x3 direct conv, the Winograd GEMM, the 1x1 GEMM (a tail of 4 pixels; a cache-chunked reduction;
a 7x7 image's leftover pixel folded into its last tile), the stems' row tiles and the dense GEMV
use vector FMAs of the ISA's width, touch no stack slot (no spills), store nothing (no accumulator
kept in memory), and the GEMM's tile holds the accumulators the preset's register file allows
(pack.pointwise_tile: 12 of AVX2's 16, 24 of AVX-512's 32 (12 for a reduction of up to 64
channels), 12 on x86-zen4's 256-bit FMA units (8 for such a short reduction); AVX-512's 1x1s at 14x14 and 7x7 run the direct
conv, pack.pointwise_direct: up to 28, 14 pixels x two vectors). Numerics of these schedules:
tests/test_schedules.py."""
import shutil

import pytest

from disasm import accumulators, innermost_fma_loops, library, stack_accesses, vector_fmas, vector_stores
from edgec import api
from edgec.targets import get as preset_of
from edgec.targets.schedules import conv2d, pointwise
from edgec.targets.schedules.pack import pointwise_direct, pointwise_tile
from test_arm_schedules import _Model, conv_library

pytestmark = pytest.mark.skipif(not shutil.which("objdump"), reason="objdump (binutils) is not installed")
REGISTER = {"x86-avx2": "%ymm", "x86-avx512": "%zmm", "x86-zen4": "%zmm"}
CONVS = [(512, 512, 7, 3), (64, 64, 56, 3), (512, 512, 14, 1), (3072, 128, 7, 1), (32, 96, 56, 1)]


def assert_fits(loops, preset):
    assert loops, "no FMA loop found"
    for body in loops:
        fmas = vector_fmas(body)
        assert len(fmas) >= 8 and all(REGISTER[preset] in a for _, a in fmas), body
        assert not stack_accesses(body), stack_accesses(body)
        assert not vector_stores(body), vector_stores(body)  # (an accumulator in memory)


@pytest.mark.parametrize("preset", list(REGISTER))
@pytest.mark.parametrize("c,o,hw,k", CONVS, ids=["3x3@7", "winograd@56", "1x1-tail@14", "1x1-chunked@7", "1x1-short@56"])
def test_x86_conv_tiles_fit_registers(tmp_path, preset, c, o, hw, k):
    loops = innermost_fma_loops(conv_library(tmp_path, preset, c, o, hw, k))
    assert_fits(loops, preset)
    p = preset_of(preset)
    if k == 1 and pointwise_direct(p, c, o, hw * hw):  # the direct conv: two vectors of channels a pixel
        most = max(len(accumulators(b)) for b in loops)
        assert most % 2 == 0 and 14 <= most <= p.regs - 3, most  # (+ two weight vectors and a broadcast)
    elif k == 1:  # the GEMM's whole tiles: channels x pixel vectors accumulators
        channels, pixels = pointwise_tile(preset_of(preset), o, hw * hw, in_channels=c)
        tile = channels * pixels // (preset_of(preset).vector_bits // 32)
        # (a short reduction: 12 on full-width AVX-512 too, pack.accumulator_budget; 8 on Zen 4's
        # units where 2-vector tiles divide the pixels, pack.short_tile)
        zen4 = 8 if c <= 64 and hw * hw % 32 == 0 else 12
        assert tile == {"x86-avx2": 12, "x86-avx512": 24 if c > 64 else 12, "x86-zen4": zen4}[preset]
        assert max(len(accumulators(b)) for b in loops) == tile


@pytest.mark.parametrize("preset", list(REGISTER))
@pytest.mark.parametrize("c,o,hw,k,stride", [(3, 32, 224, 3, 2), (3, 64, 224, 7, 2), (1024, 1024, 7, 1, 1)],
                         ids=["stem-row-tiles", "7x7-stem-row-tiles", "1x1-folded-pixel@7"])
def test_x86_stem_and_folded_tiles_fit_registers(tmp_path, monkeypatch, preset, c, o, hw, k, stride):
    """A stem's row tiles (conv2d._schedule_row_tiles) and a 7x7 image's leftover pixel folded into
    the 1x1 GEMM's last tile (pointwise.fold_tail, 13 FMAs a step on AVX2; AVX-512's 1x1 tiles
    leave no single pixel over at 7x7) hold in registers too."""
    used = []
    for module, name in ((conv2d, "_schedule_row_tiles"), (pointwise, "fold_tail")):
        monkeypatch.setattr(module, name, lambda *a, _f=getattr(module, name), _n=name: used.append(_n) or _f(*a))
    assert_fits(innermost_fma_loops(conv_library(tmp_path, preset, c, o, hw, k, stride)), preset)
    assert used == (["_schedule_row_tiles"] if c == 3 else ["fold_tail"] if preset == "x86-avx2" else []), used


@pytest.mark.parametrize("preset", list(REGISTER))
def test_x86_dense_tile_fits_registers(tmp_path, preset):
    m = _Model()
    m.output(m.dense(m.node("Flatten", [m.input((1, 1000))]), 1000, 300))
    art = api.compile(m.save(str(tmp_path / "dense.onnx")), preset, str(tmp_path / "d.edgec"), progress=False)
    assert_fits(innermost_fma_loops(library(art, tmp_path)), preset)


def test_short_tile_choice():
    """8-accumulator tiles (pack.short_tile) only on 256-bit FMA units (x86-zen4), for up to 64
    input channels, on pixels that are whole 2-vector tiles (SqueezeNet's 55x55 keeps 12)."""
    def tile(preset, out, pixels, c):
        channels, px = pointwise_tile(preset_of(preset), out, pixels, in_channels=c)
        return channels * px // (preset_of(preset).vector_bits // 32)
    assert pointwise_tile(preset_of("x86-zen4"), 256, 3136, in_channels=64) == (4, 32)
    assert tile("x86-zen4", 256, 3136, 128) == 12 and tile("x86-zen4", 64, 3025, 16) == 12
    assert tile("x86-avx512", 256, 3136, 64) == 12 and tile("x86-avx2", 256, 3136, 64) == 12
