"""A 1x1 GEMM whose register tile holds whole output rows of an image narrower than the tile
(12x12, 6x6, 3x3 ... : MobileNetV2 at 96 pixels) writes back one vector per row: a vector spanning
two rows was stored element by element (16->96 @12, AVX2, 1 thread: 0.033 -> 0.008 ms). The
schedule's write-back loop is a row, and the outputs match numpy, on host, x86-avx2 and rpi4."""
import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph, lowered_kernels
from edgec.compiler.interp import interpret
from edgec.targets import schedules
from test_schedules import _check, _conv_graph, rng, threading  # noqa: F401 (fixtures)

CASES = [(16, 96, 12), (96, 16, 12), (24, 144, 6), (56, 336, 3), (32, 40, 4)]


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("c,o,hw", CASES, ids=lambda v: str(v))
def test_pointwise_whole_rows_match_numpy(tmp_path, rng, preset, c, o, hw):  # noqa: F811
    _check(tmp_path, _conv_graph(rng, c, o, (hw, hw), (1, 1), post=("relu",)), preset,
           want_ops=["conv2d_packed", "relu"])


@pytest.mark.arm
def test_pointwise_whole_rows_on_rpi4_match_numpy(tmp_path, rng):  # noqa: F811
    import arm_env
    arm_env.require_tools()
    for c, o, hw in CASES:
        g = _conv_graph(rng, c, o, (hw, hw), (1, 1), post=("relu",))
        compile_graph(g, targets.get("rpi4"), str(tmp_path / "m.edgec"), progress=False)
        x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        got, = arm_env.run_artifact(str(tmp_path / "m.edgec"), [x], tmp_path, 1)
        np.testing.assert_allclose(got, interpret(g, {"x": x})[g.outputs[0]], rtol=1e-4, atol=1e-5)


def test_write_back_vector_is_a_row(rng):  # noqa: F811
    preset = targets.get("x86-avx2")
    (kernel, func), = lowered_kernels(_conv_graph(rng, 16, 96, (12, 12), (1, 1), post=("relu",)), preset)
    script = schedules.schedule(func, kernel, preset).script()
    assert "T.vectorized(T.int64(12))" in script and "T.vectorized(T.int64(24))" not in script
