"""The direct conv's bands of rows split its parallel loop evenly (conv2d.split_band): few channel
blocks of one band each (SqueezeNet's 1x1 384->48 @13: 3 blocks split 2/1 over 2 threads) are cut
into more bands, a partial last one; numerics vs numpy on rows and channels that do not divide. (On
x86 those 1x1 projections now run as one flat row, tests/test_flat_tile.py; a 3x3 conv with rows
takes the split here.)"""
import re

import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph, lowered_kernels
from edgec.compiler.interp import interpret
from edgec.runtime import load
from edgec.targets import schedules
from edgec.targets.schedules import conv2d, pack
from test_winograd import _graph

AVX2 = "avx2" in open("/proc/cpuinfo").read()


def test_split_band_choice():
    assert conv2d.split_band(3, 13, 13) == 7  # 3 blocks: 6 iterations, rows 20/19 over 2 threads
    assert conv2d.split_band(5, 13, 13) == 7
    assert conv2d.split_band(4, 13, 13) == 13  # already even over 2 and 4 threads
    assert conv2d.split_band(8, 56, 4) == 4  # a band sized for the cache: kept, never enlarged
    assert conv2d.split_band(1, 7, 7) == 7  # no even split of 7 rows: the cache's band
    assert conv2d.split_band(3, 13, 1) == 1


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
def test_split_bands_match_numpy(tmp_path, monkeypatch, preset):
    """3x3 100->40 @15x15 + relu (direct, in rows: 3 channel blocks, the last partial; 15 rows in bands of 8 and 7)."""
    if preset != "host" and not AVX2:
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    p = targets.get(preset)
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0)
    # in rows, the subject here (AVX-512's 14-pixel tiles make 15 x 15 one flat row, one band)
    monkeypatch.setattr(pack, "conv_flat_rows", lambda *a: False)
    calls = []
    orig = conv2d.split_band
    monkeypatch.setattr(conv2d, "split_band", lambda *a: calls.append((a, orig(*a))) or calls[-1][1])
    g = _graph(1, 100, 40, (15, 15), (1, 1, 1, 1), ("relu",))  # (a flat row would have one band)
    (kernel, func), = lowered_kernels(g, p)
    script = schedules.schedule(func, kernel, p).script()
    assert calls and calls[-1][1] < 15, calls
    # (3 blocks x 2 bands; each entry: an extent without its ")")
    assert any(e in ("T.int64(6", "6") for e in re.findall(r"T\.parallel\(([^)]*)\)", script)), calls
    compile_graph(g, p, str(tmp_path / "m.edgec"), progress=False)
    m = load(str(tmp_path / "m.edgec"))
    feed = {"x": np.random.default_rng(1).standard_normal((1, 100, 15, 15)).astype("float32")}
    np.testing.assert_allclose(m.run(feed)[0], interpret(g, feed)[g.outputs[0]], rtol=1e-4, atol=1e-5)
