"""When a kernel forks the thread pool (schedules.worth_parallel): by FLOPs (FLOP_WORK each), output
size, or the bytes of its arguments (ARGUMENT_WORK each), which every kernel streams at least once."""
import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import lowered_kernels
from edgec.compiler.ir import Graph
from edgec.targets import schedules


def _dense(k, n):
    g = Graph("dense")
    x = g.add_input("x", (1, k))
    y, = g.add_node("dense", [x, g.add_const(np.zeros((n, k), "float32"))])
    g.outputs = [y]
    return g


def _pointwise(c, o, hw):
    g = Graph("pw")
    x = g.add_input("x", (1, c, hw, hw))
    w = g.add_const(np.zeros((o, c, 1, 1), "float32"))
    y, = g.add_node("conv2d", [x, w], {"groups": 1, "strides": [1, 1], "dilations": [1, 1], "pads": [0] * 4})
    g.outputs = [y]
    return g


@pytest.mark.parametrize("graph,par", [
    (_dense(1280, 1000), True),  # MobileNetV2's classifier: 2.6 MFLOP, 5 MB of weights
    (_dense(256, 10), False),  # 5 KFLOP, 10 KB
    (_pointwise(64, 384, 14), True),  # 9.6 MFLOP, 0.45 MB
    (_pointwise(32, 96, 24), True),  # 3.5 MFLOP (by FLOPs alone: 0.3 MB)
    (_pointwise(16, 48, 16), False),  # 0.4 MFLOP, 0.07 MB
])
def test_kernels_fork_by_flops_and_argument_bytes(graph, par):
    """Kernels under PARALLEL_MIN_WORK FLOPs fork where FLOP_WORK per FLOP or ARGUMENT_WORK per byte
    of their arguments (inputs, weights, output) reach it."""
    preset = targets.get("x86-avx2")
    (kernel, func), = lowered_kernels(graph, preset)
    assert kernel["flops"] < schedules.PARALLEL_MIN_WORK
    work = max(kernel["flops"] * schedules.FLOP_WORK, schedules.argument_bytes(func) * schedules.ARGUMENT_WORK)
    assert (work >= schedules.PARALLEL_MIN_WORK) == par
    assert ("T.parallel" in schedules.schedule(func, kernel, preset).script()) == par
