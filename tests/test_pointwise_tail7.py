"""The pointwise GEMM's few-pixel tail folded into each channel block's last whole tile
(pointwise.fold_tail: 7x7 = 3 x 16 + 1 pixels on x86): numerics against the interpreter on shapes
whose channels do not divide the blocks, batches of two images, a residual add, parallel and
serial; not folded: a two-pixel tail, a 4 x 24 tile's (on AVX2 their accumulators spilled), a
serial function's (a pointer spilled: test_schedules' register checks); rpi4 has no few-pixel
tail, so nothing is folded there."""
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.targets import schedules
from edgec.targets.schedules import pointwise
from structure import fixed
from test_pointwise_narrow import AVX2, _projection, compile_for_rpi4, matches_interpreter


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", [(40, 130, 1, (7, 7), ("relu",), True),
                                  (24, 50, 2, (7, 7), ("add", "relu"), True),
                                  (40, 131, 1, (5, 10), ("relu",), False),
                                  (200, 130, 2, (5, 29), (), False)],
                         ids=["130ch-49px", "2x49px-add", "50px-unfolded", "4x24-tile-unfolded"])
def test_folded_tail_matches_numpy(tmp_path, monkeypatch, preset, parallel, case):
    if preset != "host" and not AVX2:
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if parallel else float("inf"))
    c, o, batch, hw, post, folded = case
    folds = []
    orig = pointwise.fold_tail
    monkeypatch.setattr(pointwise, "fold_tail", lambda *a: folds.append(a[-1]) or orig(*a))
    g = _projection(c, o, batch, hw, post)
    compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    assert not fixed(preset) or bool(folds) == (folded and parallel), folds
    matches_interpreter(g, tmp_path / "m.edgec")


def test_no_fold_off_x86(tmp_path, monkeypatch):
    """rpi4 (NEON) computes 7x7's last pixel in a whole-vector tail: nothing folded."""
    folds = []
    monkeypatch.setattr(pointwise, "fold_tail", lambda *a: folds.append(a))
    g = _projection(40, 130, 1, (7, 7), ("relu",))
    compile_for_rpi4(g, tmp_path / "m.edgec")
    assert not folds
