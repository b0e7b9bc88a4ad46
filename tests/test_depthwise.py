"""Depthwise conv schedule decisions that the numerics tests (tests/test_schedules.py) do not show."""
import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import lowered_kernels
from edgec.compiler.ir import Graph
from edgec.targets import schedules


def _depthwise(c, hw, stride=1):
    rng = np.random.default_rng(0)
    g = Graph("dw")
    x = g.add_input("x", (1, c, hw, hw))
    w = g.add_const(rng.standard_normal((c, 1, 3, 3)).astype("float32"))
    y, = g.add_node("conv2d", [x, w], {"groups": c, "strides": [stride] * 2, "dilations": [1, 1], "pads": [1] * 4})
    g.outputs = [y]
    return g


@pytest.mark.parametrize("c,hw,stride,par", [(960, 7, 1, True), (96, 112, 2, True), (16, 7, 1, False),
                                             (64, 14, 1, False)])
def test_depthwise_forks_by_bytes_streamed(c, hw, stride, par):
    """A depthwise conv forks by the bytes it streams, not its FLOPs (all these are far below
    PARALLEL_MIN_WORK FLOPs): 960 channels @7 (376 KB) runs in parallel, 64 @14 (100 KB) does not."""
    preset = targets.get("x86-avx2")
    (kernel, func), = lowered_kernels(_depthwise(c, hw, stride), preset)
    assert kernel["flops"] < schedules.PARALLEL_MIN_WORK
    assert ("T.parallel" in schedules.schedule(func, kernel, preset).script()) == par
