"""conv2d_winograd's M (compiler/lower/winograd.py) is tile-major: a tile's transform points are one
run of memory for the output transform to read back. The layout, and the compiled kernel against
numpy on shapes that divide neither the tiles, the register tile, the blocks of tile rows nor the
channel blocks."""
import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import lowered_kernels
from edgec.compiler.interp import interpret
from edgec.targets import schedules
from edgec.targets.schedules import winograd

from test_winograd import _graph, compiled_winograd, seeded_feed


@pytest.fixture(autouse=True)
def small_layers(monkeypatch):
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_TILES", 1)


def _gemm_shape(func):
    from tvm import s_tir
    sch = s_tir.Schedule(func)
    return [int(v) for v in sch.get(sch.get_sblock("winograd_gemm")).writes[0].source.shape]


def test_m_is_tile_major():
    g = _graph(1, 20, 40, (15, 17))
    (_, func), = [(d, f) for d, f in lowered_kernels(g, targets.get("x86-avx2")) if "winograd" in str(f)]
    n, blocks, kb, q, points, block = _gemm_shape(func)
    assert (points, kb, block) == (16, 3, 16) and q % 6 == 0  # 8 x 9 tiles, AVX2's register tile of 6


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("par", ["parallel", "serial"])
def test_compiled_matches_numpy(tmp_path, monkeypatch, preset, par):
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86 code")
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if par == "parallel" else float("inf"))
    plan = winograd.plan
    monkeypatch.setattr(winograd, "plan", lambda *a, **kw: dict(plan(*a, **kw), rows=3))  # 3 blocks, last partial
    g = _graph(2, 20, 40, (15, 17), (1, 1, 1, 1), ("add", "relu"))  # 8 x 9 tiles (cut), 40 = 2.5 blocks
    m, feed = compiled_winograd(tmp_path, g, preset), seeded_feed(g)
    np.testing.assert_allclose(m.run(feed)[0], interpret(g, feed)[g.outputs[0]], rtol=1e-4, atol=1e-5)
