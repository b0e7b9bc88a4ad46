"""The direct conv's software prefetch of the next chunk's weights (conv2d.prefetch_next_chunk):
numerics against the numpy reference where the chunks, bands, tiles and channel blocks do not
divide evenly (the last chunk prefetches the next block's first, the last block's past its end), on
the host and x86-avx2 presets; the prefetches sit outside the register tile's FMA loop, which keeps
its accumulators in registers."""
import shutil
import subprocess

import pytest

from edgec import targets
from test_schedules import _check, _conv_graph, rng, threading  # noqa: F401 (fixtures)

CASES = [  # c, o, (h, w), (kh, kw), stride, pads
    (40, 24, (15, 15), (3, 3), 2, (1, 1, 1, 1)),  # flat row (8x8 = 64 pixels), a partial channel block
    (24, 40, (30, 29), (3, 3), 2, (1, 1, 1, 1)),  # rows of 15 in bands, odd input width
    (36, 20, (9, 9), (3, 3), 1, (1, 0, 1, 1)),  # stride 1, asymmetric pads, flat
    (20, 32, (19, 23), (5, 5), 1, (2, 2, 2, 2)),  # 5x5, rows covered by tiles of two sizes
]


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"c{c[0]}o{c[1]}h{c[2][0]}k{c[3][0]}s{c[4]}")
def test_direct_conv_with_weight_prefetch_matches_numpy(tmp_path, rng, preset, case):  # noqa: F811
    if preset == "x86-avx2" and "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86 code")
    c, o, hw, k, stride, pads = case
    _check(tmp_path, _conv_graph(rng, c, o, hw, k, stride=stride, pads=pads, post=("relu",)), preset,
           want_ops=["conv2d_packed", "relu"])


@pytest.mark.parametrize("c,o,hw,stride", [(512, 512, 14, 2), (128, 128, 56, 2), (512, 512, 7, 1)])
def test_avx2_direct_conv_prefetches_outside_its_fma_loop(tmp_path, c, o, hw, stride):
    """x86-avx2 code of a 3x3 direct conv: prefetcht1 instructions, none in the innermost FMA loops,
    which keep their accumulators in registers (no stack access, no store of the tile per step)."""
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    from disasm import innermost_fma_loops, stack_accesses
    from test_arm_schedules import conv_library
    lib = conv_library(tmp_path, "x86-avx2", c, o, hw, 3, stride=stride)
    loops = innermost_fma_loops(lib, "objdump")
    assert loops and targets.get("x86-avx2").arch == "x86_64"
    for body in loops:
        assert not any(op.startswith("prefetch") for op, _ in body), body
        stores = [(op, a) for op, a in body if op.startswith("vmov") and a.startswith("%ymm") and "(" in a]
        assert not stores, stores  # (the prefetch in the reduction loop had LLVM store the tile each step)
        assert not stack_accesses(body), body
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True).stdout
    assert "prefetcht1" in asm
