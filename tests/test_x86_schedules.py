"""The direct conv's register tile fits AVX2's 16 ymm registers: the disassembled inner loops of
x86-avx2 conv kernels (a 6-pixel tile, a 4-pixel tile, 3 input channels, 5x5 stride 2) are vector
FMAs without stack loads/stores (their numbers are checked in test_schedules.py)."""
import shutil

import numpy as np
import pytest

from disasm import innermost_fma_loops, library, stack_accesses, vector_fmas
from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.compiler.ir import Graph


@pytest.mark.parametrize("c,o,hw,k,stride", [(64, 64, 30, 3, 1), (32, 48, 28, 3, 1), (3, 32, 30, 3, 1),
                                             (32, 32, 17, 5, 2)],
                         ids=["3x3-tile6", "3x3-tile4", "3x3-rgb", "5x5-s2"])
def test_avx2_conv_inner_loops_fit_ymm_registers(tmp_path, c, o, hw, k, stride):
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed: cannot disassemble the kernel")
    rng = np.random.default_rng(0)
    g = Graph("conv")
    x = g.add_input("x", (1, c, hw, hw))
    w = g.add_const(rng.standard_normal((o, c, k, k)).astype("float32"))
    y, = g.add_node("conv2d", [x, w], {"strides": [stride] * 2, "pads": [k // 2] * 4})
    y, = g.add_node("relu", [y])
    g.outputs = [y]
    compile_graph(g, targets.get("x86-avx2"), str(tmp_path / "m.edgec"), progress=False)
    loops = innermost_fma_loops(library(tmp_path / "m.edgec", tmp_path))
    assert loops, "no FMA loop found"
    for body in loops:
        assert len(vector_fmas(body)) >= 8, body
        assert not stack_accesses(body), stack_accesses(body)
