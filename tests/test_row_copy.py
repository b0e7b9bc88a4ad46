"""The strided row conv's copy into phase planes (conv2d._schedule_copy): each plane row cut at the
input's edges, its inside left to LLVM's vectorizer. Numerics against the numpy reference where the
inside is empty, one column, starts past several padded columns or ends before a partial phase, on
the host and x86-avx2 presets (tests/test_schedules.py ROWS has the common shapes)."""
import pytest

from edgec import targets
from test_schedules import _check, _conv_graph, rng, threading  # noqa: F401 (fixtures)

CASES = [  # c, o, (h, w), (kh, kw), stride, pads (top, left, bottom, right)
    (3, 16, (9, 2), (3, 3), 3, (2, 2, 2, 2)),  # no column inside for every phase: two edges
    (3, 16, (9, 2), (3, 3), 3, (0, 0, 1, 1)),  # one plane column, the last phase padded: no cut
    (3, 16, (9, 3), (3, 3), 3, (3, 3, 3, 3)),  # one inside column
    (3, 16, (9, 17), (5, 5), 3, (4, 5, 3, 2)),  # left pad past the stride: two edge columns
    (3, 16, (9, 33), (3, 3), 2, (0, 0, 1, 1)),  # no left pad, a padded last column (a Keras "same")
    (3, 16, (9, 41), (7, 7), 2, (3, 3, 3, 3)),  # a 7x7 stem's, odd width
]


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"w{c[2][1]}k{c[3][0]}s{c[4]}p{c[5][1]}{c[5][3]}")
def test_strided_row_conv_copy_matches_numpy(tmp_path, rng, preset, case):  # noqa: F811
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86 code")
    from edgec.compiler.passes import run_passes
    c, o, hw, k, stride, pads = case
    conv = run_passes(_conv_graph(rng, c, o, hw, k, stride=stride, pads=pads), preset=targets.get(preset)).nodes[0]
    assert conv.attrs.get("row_tile"), conv.attrs  # (the row conv, whose copy this is)
    _check(tmp_path, _conv_graph(rng, c, o, hw, k, stride=stride, pads=pads, post=("relu",)), preset,
           want_ops=["conv2d_packed", "relu"])
