"""3x3 stride-1 convs with few channels on x86 (targets/schedules/winograd.py few_channels): which of
them take Winograd with the default bounds (SqueezeNet's and DenseNet's layers), and the compiled
kernel on shapes that take that branch with channels, tiles and blocks that do not divide
(host and x86-avx2, parallel and serial) against the numpy reference."""
import numpy as np
import pytest

from edgec import targets
from edgec.compiler.interp import interpret
from edgec.targets import schedules
from edgec.targets.schedules.winograd import plan

from test_winograd import _graph, compiled_winograd, seeded_feed


def test_few_channel_choice():
    avx2 = targets.get("x86-avx2")
    taken = [(16, 64, 55, 55), (32, 128, 27, 27), (48, 192, 13, 13),  # SqueezeNet's expand 3x3
             (128, 32, 56, 56), (128, 32, 28, 28), (16, 32, 56, 56)]  # DenseNet's @56 and @28
    left = [(128, 32, 14, 14), (32, 128, 14, 14),  # under FEW_MFLOP
            (32, 16, 56, 56), (16, 16, 56, 56), (64, 16, 56, 56),  # one channel block out
            (8, 64, 56, 56), (3, 64, 224, 224),  # few input channels: the row conv
            (16, 24, 13, 19), (64, 64, 12, 14)]  # small; fewer than MIN_TILES tiles
    assert all(plan(avx2, *s) for s in taken)
    assert not any(plan(avx2, *s) for s in left)
    assert plan(targets.get("rpi4"), 16, 64, 55, 55) is None  # (NEON: unmeasured)
    assert not any(plan(targets.get("x86-avx512"), *s) for s in taken)  # (AVX-512: the direct convs' pace)
    assert all(plan(targets.get("x86-zen4"), *s) for s in taken)  # (AVX-512 on 256-bit FMA units: AVX2's pace)


CASES = [  # n, c, o, (h, w), pads, epilogue: channels no whole vector / block, odd sizes
    (1, 20, 40, (45, 43), (1, 1, 1, 1), ("relu",)),  # 23 x 22 tiles, the last row and column cut
    (1, 24, 36, (47, 45), (0, 1, 2, 0), ("add", "relu")),  # asymmetric pads
]


@pytest.mark.parametrize("preset", ["host", "x86-avx2", "x86-zen4"])
@pytest.mark.parametrize("par", ["parallel", "serial"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"c{c[1]}o{c[2]}h{c[3][0]}w{c[3][1]}")
def test_few_channel_winograd_matches_numpy(tmp_path, monkeypatch, preset, par, case):
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86 code")
    if preset == "x86-zen4" and "avx512f" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX-512 to run x86-zen4 code (its choice is tested above)")
    if preset == "host" and targets.get("host").fma_width >= 512:
        pytest.skip("few-channel Winograd is for 256-bit FMA units (winograd.plan); the x86-avx2 cases run it here")
    n, c, o, hw, pads, post = case
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if par == "parallel" else float("inf"))
    g = _graph(n, c, o, hw, pads, post)
    m, feed = compiled_winograd(tmp_path, g, preset), seeded_feed(g)
    np.testing.assert_allclose(m.run(feed)[0], interpret(g, feed)[g.outputs[0]], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("vendor,family,bits,fma", [("AuthenticAMD", "25", 512, 256), ("AuthenticAMD", "25", 256, 256),
                                                    ("AuthenticAMD", "26", 512, 512), ("GenuineIntel", "6", 512, 512)])
def test_host_fma_width(monkeypatch, vendor, family, bits, fma):
    """The host preset knows Zen 3/4 (AMD family 25) run AVX-512 on 256-bit FMA units, so its
    rules that pay for AVX-512's doubled FMA rate (few-channel Winograd left to AVX2) are not its."""
    monkeypatch.setattr(targets, "cpu_info", lambda *keys: {"vendor_id": vendor, "cpu family": family})
    assert targets._fma_bits(bits) == fma
