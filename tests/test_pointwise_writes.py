"""The in-place pointwise GEMM's prefetch of the output lines its next tile writes
(pointwise.prefetch_writes): only with a short reduction (at most OUT_PREFETCH_CHANNELS input
channels) and on x86, where the next tile's rows are prefetched too (not where the register tile
is no stack buffer: AVX-512's, see pointwise.prefetch_locality); numerics against the
interpreter on shapes that do not divide the tiles or the channel blocks (the channel and pixel
clamped), batches of several images, with a residual add."""
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.targets import schedules
from edgec.targets.schedules import pointwise
from edgec.targets.schedules.common import acc_on_stack
from edgec.targets.schedules.pack import pointwise_tile
from test_pointwise_narrow import AVX2, _projection, compile_for_rpi4, matches_interpreter


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", [(40, 12, 2, (13, 11), ("relu",), True),
                                  (64, 16, 3, (9, 23), ("add", "relu"), True),
                                  (64, 58, 1, (47, 45), ("relu",), True),
                                  (80, 58, 2, (41, 43), ("add", "relu"), True),
                                  (160, 16, 2, (12, 14), ("add", "relu"), False)],
                         ids=["2x143px", "3x207px-add", "streamed-2115px", "streamed-2x1763px-add", "160ch-none"])
def test_write_prefetch_matches_numpy(tmp_path, monkeypatch, preset, parallel, case):
    if preset != "host" and not AVX2:
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if parallel else float("inf"))
    c, o, batch, hw, post, short = case
    p = targets.get(preset)
    if not pointwise.in_place(p, c, o, 6, hw[0] * hw[1], 16, False):
        pytest.skip("this preset's caches do not read this projection in place")
    calls, reads = [], []
    orig, orig_reads = pointwise.prefetch_writes, pointwise.prefetch_next_tile
    monkeypatch.setattr(pointwise, "prefetch_writes", lambda *a: calls.append(a[-2:]) or orig(*a))
    monkeypatch.setattr(pointwise, "prefetch_next_tile", lambda *a: reads.append(a) or orig_reads(*a))
    g = _projection(c, o, batch, hw, post)
    compile_graph(g, p, str(tmp_path / "m.edgec"), progress=False)
    block, tile = pointwise_tile(p, o, hw[0] * hw[1], in_channels=c)
    prefetching = p.arch == "x86_64" and acc_on_stack(block * tile)
    assert len(reads) == prefetching
    assert len(calls) == (prefetching and short), calls
    matches_interpreter(g, tmp_path / "m.edgec")


def test_no_write_prefetch_off_x86(tmp_path, monkeypatch):
    """rpi4 (NEON) reads such a projection in place without any prefetch: none for the writes."""
    calls = []
    monkeypatch.setattr(pointwise, "prefetch_writes", lambda *a: calls.append(a))
    g = _projection(40, 12, 2, (13, 11), ("relu",))
    compile_for_rpi4(g, tmp_path / "m.edgec")
    assert not calls


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("post", [("add", "relu"), ("relu",)], ids=["add", "no-add"])
def test_residual_prefetch_matches_numpy(tmp_path, monkeypatch, preset, parallel, post):
    """A copied GEMM whose write-back stays in the tile (whole tiles) prefetches the next tile's
    residual lines (pointwise.prefetch_residual): one per line of the tile's rows per channel of
    the block, none without a residual; numerics against the interpreter (2 images, the last
    tile's lines clamped to the image)."""
    if preset != "host" and not AVX2:
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if parallel else float("inf"))
    p = targets.get(preset)
    c, o, hw = 16, 96, (16, 24)  # 384 pixels: whole tiles of 16, 24, 32, 48 or 64
    block, tile = pointwise_tile(p, o, hw[0] * hw[1], in_channels=c)
    assert not pointwise.in_place(p, c, o, block, hw[0] * hw[1], tile, False)
    made = []
    orig = pointwise.prefetch_residual
    monkeypatch.setattr(pointwise, "prefetch_residual", lambda *a: made.append(orig(*a)) or made[-1])
    g = _projection(c, o, 2, hw, post)
    compile_graph(g, p, str(tmp_path / "m.edgec"), progress=False)
    assert len(made) == 1
    lines = block * -(-tile * 4 // 64) if "add" in post else 0
    assert str(made[0]).count("T.prefetch(") == lines
    matches_interpreter(g, tmp_path / "m.edgec")


def test_no_residual_prefetch_off_x86(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pointwise, "prefetch_residual", lambda *a: calls.append(a))
    g = _projection(16, 96, 2, (16, 24), ("add", "relu"))
    compile_for_rpi4(g, tmp_path / "m.edgec")
    assert not calls
