"""CPU schedules against the numpy reference: the blocked conv2d (edge tiles, strides,
dilations, groups, padding, fused epilogues), and the kernels that fall back to generic."""
import warnings

import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.runtime import load
from edgec.targets import schedules
from edgec.targets.schedules.conv2d import width_tile
from edgec.targets.schedules.pack import conv_block, pointwise_tile
from structure import fixed


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True, params=["parallel", "serial"])
def threading(request, monkeypatch):
    """Every schedule both ways: parallel regions forced on, and kernels too small for them."""
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if request.param == "parallel" else float("inf"))


def _check(tmp_path, g, preset="host", want_ops=None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    fallbacks = [str(w.message) for w in caught if "falling back" in str(w.message)]
    assert not fallbacks, fallbacks  # every kernel here has a specialised schedule that must hold
    m = load(str(tmp_path / "m.edgec"))
    if want_ops:
        assert any(want_ops == k["ops"] for k in m.kernels), [k["ops"] for k in m.kernels]
    rng = np.random.default_rng(1)
    feed = {v.name: rng.standard_normal(v.shape).astype(v.dtype) for v in g.inputs}
    got = m.run(feed)
    want = interpret(g, feed)
    for o, a in zip(g.outputs, got):
        np.testing.assert_allclose(a, want[o], rtol=1e-4, atol=1e-4)


def _conv_graph(rng, c, o, hw, k, groups=1, stride=1, dil=1, pads=(0, 0, 0, 0), bias=True, post=()):
    g = Graph("conv")
    x = g.add_input("x", (1, c) + hw)
    w = g.add_const((rng.standard_normal((o, c // groups) + k) / np.sqrt(c * k[0] * k[1])).astype("float32"))
    ins = [x, w] + ([g.add_const(rng.standard_normal(o).astype("float32"))] if bias else [])
    y, = g.add_node("conv2d", ins, {"groups": groups, "strides": [stride] * 2, "dilations": [dil] * 2,
                                    "pads": list(pads)})
    for op in post:
        if op == "add":
            s = g.add_input("skip", g.values[y].shape)
            y, = g.add_node("add", [y, s])
        elif op == "max_pool2d":
            y, = g.add_node("max_pool2d", [y], {"kernel": [2, 2], "strides": [2, 2]})
        elif op == "avg_pool2d":
            y, = g.add_node("avg_pool2d", [y], {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]})
        else:
            y, = g.add_node(op, [y])
    g.outputs = [y]
    return g


CASES = [  # c, o, (h, w), (kh, kw), groups, stride, dilation, pads
    (16, 32, (14, 14), (3, 3), 1, 1, 1, (1, 1, 1, 1)),
    (3, 20, (13, 11), (3, 3), 1, 1, 1, (1, 1, 1, 1)),  # odd channels: a partial block
    (8, 16, (17, 31), (1, 1), 1, 1, 1, (0, 0, 0, 0)),  # 1x1, width 31 not a tile multiple
    (12, 24, (15, 15), (3, 3), 1, 2, 1, (1, 1, 1, 1)),  # stride 2
    (8, 16, (16, 16), (3, 3), 1, 1, 2, (2, 2, 2, 2)),  # dilation 2
    (3, 16, (23, 23), (7, 7), 1, 2, 1, (3, 2, 3, 1)),  # 7x7 stem, asymmetric pads
    (16, 48, (9, 9), (3, 3), 2, 1, 1, (1, 1, 1, 1)),  # grouped (24 per group)
    (16, 16, (10, 12), (3, 3), 16, 1, 1, (1, 1, 1, 1)),  # depthwise: row-vector schedule
    (24, 24, (9, 70), (3, 3), 24, 1, 1, (1, 1, 1, 1)),  # depthwise, width 70: split with a tail
    (8, 8, (28, 28), (3, 3), 8, 2, 1, (1, 1, 1, 1)),  # depthwise, stride 2
    (8, 16, (11, 11), (3, 3), 8, 1, 1, (1, 1, 1, 1)),  # depthwise with multiplier 2
    (16, 16, (9, 40), (3, 3), 16, 1, 1, (1, 1, 1, 1)),  # depthwise, rows in register chunks (40 = 5 x 8)
    (8, 8, (20, 64), (3, 3), 8, 2, 1, (1, 0, 1, 1)),  # depthwise, stride 2, chunks, asymmetric pads
    (5, 7, (6, 5), (2, 3), 1, 1, 1, (0, 1, 0, 0)),  # tiny, not packed (7 < block / 2 on AVX-512)
    # pointwise (1x1) GEMMs: pixels and channels that do not divide the tile, a stride (input copied),
    # a reduction in one chunk and one cut into cache chunks, channel blocks spread over PARALLEL_PARTS groups
    # (copied inputs only from 128 output channels: see pack.pointwise_gemm)
    (48, 130, (7, 7), (1, 1), 1, 1, 1, (0, 0, 0, 0)),
    (64, 52, (8, 14), (1, 1), 1, 1, 1, (0, 0, 0, 0)),
    (48, 128, (13, 13), (1, 1), 1, 2, 1, (0, 0, 0, 0)),
    (700, 136, (5, 5), (1, 1), 1, 1, 1, (0, 0, 0, 0)),
    (700, 200, (3, 5), (1, 1), 1, 1, 1, (0, 0, 0, 0)),
    (5600, 130, (4, 4), (1, 1), 1, 1, 1, (0, 0, 0, 0)),  # weight panel over PANEL_SHARE of L2: chunked
    # strided depthwise reads a de-interleaved copy of its plane (odd widths: a padded phase)
    (12, 12, (15, 17), (3, 3), 12, 2, 1, (0, 0, 0, 0)),  # no padding: the copy reads the input
    (6, 12, (13, 21), (3, 3), 6, 2, 2, (2, 1, 2, 2)),  # multiplier 2, dilation 2
    (8, 8, (16, 19), (5, 5), 8, 3, 1, (2, 2, 2, 1)),  # stride 3
    # planes over half of L1 are built per band of output rows (the bands share rows)
    (4, 4, (60, 130), (3, 3), 4, 1, 1, (1, 1, 1, 1)),
    (4, 4, (64, 131), (3, 3), 4, 2, 1, (1, 1, 1, 1)),  # strided: odd padded width, a column added
    # 1-D depthwise (one row: the plane's padding is written under the channel loop)
    (8, 8, (1, 40), (1, 5), 8, 1, 1, (0, 2, 0, 2)),
    (8, 8, (1, 41), (1, 5), 8, 2, 1, (0, 2, 0, 1)),
    # depthwise with one output column ([N, C, T, 1] sequences): the write-back (bias) has no loop of
    # its own under the row loop; vectorizing its innermost loop vectorized the rows and taps too
    (5, 5, (8, 1), (3, 3), 5, 1, 1, (1, 1, 1, 1)),
    (16, 16, (9, 1), (3, 1), 16, 1, 1, (1, 0, 1, 0)),
    (5, 5, (4, 3), (3, 3), 5, 2, 1, (1, 1, 1, 0)),  # stride 2, asymmetric pads: 2 x 1 outputs
    # grouped pointwise convs as one GEMM per group (ShuffleNet's): groups' channels not a whole
    # number of register tiles; pixels in place, or copied (not whole tiles, a stride: only with
    # 128+ output channels per group, see pack.pointwise_gemm)
    (24, 136, (8, 8), (1, 1), 4, 1, 1, (0, 0, 0, 0)),
    (100, 260, (7, 9), (1, 1), 2, 1, 1, (0, 0, 0, 0)),
    (100, 264, (11, 13), (1, 1), 2, 2, 1, (0, 0, 0, 0)),
]
DEPTHWISE_STRIDED = [c for c in CASES if c[4] == c[0] and c[5] > 1]
GROUPED_POINTWISE = [c for c in CASES if 1 < c[4] < c[0] and c[3] == (1, 1)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"c{c[0]}o{c[1]}k{c[3][0]}g{c[4]}s{c[5]}d{c[6]}")
def test_conv2d(tmp_path, rng, case):
    c, o, hw, k, groups, stride, dil, pads = case
    packed = (o // groups) * 2 >= conv_block(targets.get("host"), o // groups)  # the blocked schedule's; else generic
    _check(tmp_path, _conv_graph(rng, c, o, hw, k, groups, stride, dil, pads),
           want_ops=["conv2d_packed" if packed else "conv2d"])


# c, o, hw, kernel, groups: groups that end inside a channel block (10, 12 and 24 channels in blocks
# of 16 or 32; 28 in AVX-512's 32), direct convs in rows and flat rows
RAGGED_GROUPS = [(40, 40, (9, 9), (1, 1), 4), (48, 48, (28, 28), (1, 1), 4), (112, 112, (28, 28), (1, 1), 4),
                 (16, 48, (13, 13), (3, 3), 2)]


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", RAGGED_GROUPS, ids=lambda c: f"{c[0]}-{c[1]}g{c[4]}@{c[2][0]}")
def test_grouped_conv_groups_ending_inside_a_block(tmp_path, rng, preset, case):
    """A grouped conv whose groups end inside a channel block writes back as a pass of its own
    (conv2d._ragged_groups): per block, its write-back ran into the next group's channels, which
    another iteration of the parallel loop computes (wrong or NaN with parallel regions on)."""
    if preset != "host" and "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    c, o, hw, k, g = case
    graph = _conv_graph(rng, c, o, hw, k, g, post=("relu",))
    _check(tmp_path, graph, preset)
    m = load(str(tmp_path / "m.edgec"))
    for seed in range(2, 6):  # (a race: other inputs, other runs)
        feed = {"x": np.random.default_rng(seed).standard_normal((1, c) + hw).astype("float32")}
        np.testing.assert_allclose(m.run(feed)[0], interpret(graph, feed)[graph.outputs[0]], rtol=1e-4, atol=1e-4)


def test_depthwise_fused_relu(tmp_path, rng):
    for hw in [(14, 14), (6, 48)]:  # a row in one piece, rows in register chunks
        _check(tmp_path, _conv_graph(rng, 32, 32, hw, (3, 3), 32, pads=(1, 1, 1, 1), post=("relu",)),
               want_ops=["conv2d", "relu"])


@pytest.mark.parametrize("post", [("relu",), ("add", "relu"), ("relu", "max_pool2d")])
def test_conv2d_fused_epilogue(tmp_path, rng, post):
    _check(tmp_path, _conv_graph(rng, 16, 32, (15, 15), (3, 3), pads=(1, 1, 1, 1), post=post),
           want_ops=["conv2d_packed", *post])


@pytest.mark.parametrize("o,hw", [(4, (28, 42)), (5, (8, 9)), (4, (28, 40)), (12, (14, 15))])
def test_global_pool_after_a_generic_conv(tmp_path, rng, o, hw):
    """A conv with too few output channels for the blocked schedule (generic), relu and a global
    average pool in one kernel: the pool's total over the partial sums and the leftover pixels
    (1176 = 36 x 32 + 24) has its channels vectorized inside the reduction; with a Select there,
    TVM summed garbage (1e21). 28 x 40 has no leftover pixels; 14 x 15 (12 channels) is packed."""
    _check(tmp_path, _conv_graph(rng, 8, o, hw, (3, 3), pads=(1, 1, 1, 1), post=("relu", "global_avg_pool")))


@pytest.mark.parametrize("case", [CASES[i] for i in (15, 16)], ids=["p112", "s2copy"])
def test_pointwise_write_back_in_tile(tmp_path, rng, case):
    """Bias, residual add and relu computed on the GEMM's accumulator tile (channels and pixels
    that do not divide it, an input copy with padded pixels)."""
    c, o, hw, k, groups, stride, dil, pads = case
    _check(tmp_path, _conv_graph(rng, c, o, hw, k, groups, stride, dil, pads, post=("add", "relu")),
           want_ops=["conv2d_packed", "add", "relu"])


def test_conv2d_avx2_preset(tmp_path, rng):
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    _check(tmp_path, _conv_graph(rng, 16, 24, (13, 19), (3, 3), pads=(1, 1, 1, 1), post=("relu",)), "x86-avx2")


@pytest.mark.parametrize("case", [(64, 256, (23, 29), ("add", "relu")), (40, 100, (57, 9), ("relu",)),
                                  (96, 24, (19, 19), ())], ids=lambda c: f"c{c[0]}o{c[1]}h{c[2][0]}w{c[2][1]}")
def test_zen4_preset_pointwise_gemm(tmp_path, rng, case):
    """x86-zen4's 1x1 GEMMs (12-accumulator tiles: pack.accumulator_budget) on pixels and
    channels that no tile divides, copied panels and in place, against the numpy reference."""
    if "avx512f" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX-512 to run x86-zen4 code (its tiles are checked in test_x86_tiles)")
    c, o, hw, post = case
    _check(tmp_path, _conv_graph(rng, c, o, hw, (1, 1), post=post), "x86-zen4", want_ops=["conv2d_packed", *post])


@pytest.mark.parametrize("case", DEPTHWISE_STRIDED, ids=lambda c: f"c{c[0]}o{c[1]}w{c[2][1]}s{c[5]}d{c[6]}")
def test_depthwise_strided_avx2_preset(tmp_path, rng, case):
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    c, o, hw, k, groups, stride, dil, pads = case
    _check(tmp_path, _conv_graph(rng, c, o, hw, k, groups, stride, dil, pads, post=("relu",)), "x86-avx2")


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
def test_grouped_pointwise_is_a_gemm_per_group(tmp_path, rng, preset):
    if preset != "host" and "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    from edgec.compiler.passes import run_passes
    for c, o, hw, k, groups, stride, dil, pads in GROUPED_POINTWISE:
        g = _conv_graph(rng, c, o, hw, k, groups, stride, dil, pads, post=("relu",))
        conv = run_passes(g, preset=targets.get(preset)).nodes[0]
        assert conv.op == "conv2d_packed" and conv.attrs.get("tile"), conv.attrs  # the GEMM's pixel tile
        _check(tmp_path, g, preset)


ROWS = [(16, 24, (13, 19), (3, 3), 1, 1, (1, 1, 1, 1)),  # tiles and channel blocks not whole
        (12, 10, (17, 29), (3, 3), 1, 1, (1, 0, 1, 2)),  # asymmetric pads
        (8, 40, (9, 30), (3, 3), 1, 2, (2, 2, 2, 2)),  # dilation 2
        (3, 20, (23, 31), (3, 3), 2, 1, (1, 1, 1, 1)),  # stride 2 (phase planes), odd sizes
        (5, 12, (20, 17), (3, 3), 2, 1, (0, 1, 2, 0)),  # stride 2, asymmetric pads
        (3, 8, (20, 22), (3, 3), 3, 1, (1, 0, 1, 2)),  # stride 3: every tap column its own plane
        (2, 9, (11, 61), (3, 5), 2, 2, (2, 1, 0, 3)),  # stride 2 and dilation 2, a 3x5 kernel
        (8, 16, (15, 21), (1, 1), 2, 1, (0, 0, 0, 0)),  # strided 1x1 with few outputs
        (3, 20, (61, 400), (3, 3), 1, 1, (1, 1, 1, 1)),  # bands of rows, the last past the 61 rows
        (3, 16, (97, 450), (3, 3), 2, 1, (1, 1, 1, 1)),  # stride 2, bands of rows
        (3, 16, (45, 51), (7, 7), 2, 1, (3, 3, 3, 3)),  # a 7x7 s2 stem: kernel rows a loop, odd sizes
        (4, 12, (37, 29), (5, 5), 2, 1, (2, 1, 2, 1))]  # a 5x5 s2 stem of 4 channels, asymmetric pads


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
def test_conv_over_padded_rows(tmp_path, rng, preset):
    """Few-channel convs on x86 run over padded rows (pack.conv_rows_tile; strided ones over phase
    planes): the layout pass gives them a row tile, and they match the numpy reference with bias +
    relu fused."""
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86 code")
    from edgec.compiler.passes import run_passes
    for c, o, hw, k, stride, dil, pads in ROWS:
        conv = run_passes(_conv_graph(rng, c, o, hw, k, stride=stride, dil=dil, pads=pads),
                          preset=targets.get(preset)).nodes[0]
        assert conv.attrs.get("row_tile"), conv.attrs
        _check(tmp_path, _conv_graph(rng, c, o, hw, k, stride=stride, dil=dil, pads=pads, post=("relu",)), preset,
               want_ops=["conv2d_packed", "relu"])


ROW_POOLS = [  # c, o, (h, w), (kh, kw), stride, pads, pool op, pool attrs, pool per channel block
    (3, 64, (45, 47), (3, 3), 2, (0, 0, 0, 0), "max_pool2d", {"kernel": [3, 3], "strides": [2, 2]}, True),  # SqueezeNet's
    (1, 44, (33, 40), (3, 3), 2, (0, 0, 1, 1), "max_pool2d", {"kernel": [2, 2], "strides": [2, 2]}, True),  # partial block
    # a stride-1 pool (TVM's reverse_compute_at refuses its rows) and ResNet's padded one (rows
    # clamped): a pass of their own
    (4, 40, (24, 27), (3, 3), 1, (1, 1, 1, 1), "max_pool2d", {"kernel": [3, 3], "strides": [1, 1]}, False),
    (3, 48, (29, 31), (3, 3), 2, (1, 1, 1, 1), "avg_pool2d", {"kernel": [3, 3], "strides": [2, 2]}, True),
    (3, 40, (29, 31), (7, 7), 2, (3, 3, 3, 3), "max_pool2d", {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
     False),
    (3, 8, (17, 20), (3, 3), 2, (0, 0, 0, 0), "max_pool2d", {"kernel": [3, 3], "strides": [2, 2]}, False)]  # 2 blocks


@pytest.mark.parametrize("preset,case", [("x86-avx2", ROW_POOLS[0])] + [("host", c) for c in ROW_POOLS])
def test_row_conv_pools_per_channel_block(tmp_path, rng, preset, case):
    """A pool fused after a row conv runs inside the conv's parallel loop, per channel block
    (conv2d.schedule_rows: its input still in L2) where its rows are not clamped and there are
    POOL_MIN_BLOCKS blocks; else it is a parallel pass of its own. Both match the numpy reference."""
    import tvm
    from edgec.compiler.build import lowered_kernels
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86 code")
    c, o, hw, k, stride, pads, op, attrs, per_block = case
    g = _conv_graph(rng, c, o, hw, k, stride=stride, pads=pads, post=("relu",))
    y, = g.add_node(op, [g.outputs[0]], attrs)
    g.outputs = [y]
    if schedules.PARALLEL_MIN_WORK == 0 and op == "max_pool2d":  # copy, conv (+ pool)
        from edgec.compiler.passes import run_passes
        from edgec.targets.schedules.conv2d import POOL_MIN_BLOCKS
        block = run_passes(_conv_graph(rng, c, o, hw, k, stride=stride, pads=pads),
                           preset=targets.get(preset)).nodes[0].attrs["block"]
        per_block = per_block and -(-o // block) >= POOL_MIN_BLOCKS  # (AVX-512's wider blocks: fewer)
        (kernel, func), = lowered_kernels(g, targets.get(preset))
        script = schedules.schedule(func, kernel, targets.get(preset)).script()
        assert script.count("T.parallel") == (2 if per_block else 3), script
    _check(tmp_path, g, preset, want_ops=["conv2d_packed", "relu", op])


def test_conv_rows_choice():
    """The row form where few input channels make the direct conv's transposing write-back a large
    share: stride 1 up to ROWS_MAX_CHANNELS input channels, strided convs only with a short
    reduction or few input channels (stems: 3x3 or ResNet's 7x7; not 16 or 8 channels with 9 or 25
    taps); x86 only; rows that waste over 1/8 of their padded pixels stay direct."""
    from edgec.targets.schedules.pack import conv_rows_tile
    avx2, rpi4 = targets.get("x86-avx2"), targets.get("rpi4")
    assert conv_rows_tile(avx2, (64, 3, 3, 3), 111, 111, 224, (2, 2), 1)  # SqueezeNet's stem
    assert conv_rows_tile(avx2, (32, 3, 3, 3), 112, 112, 226, (2, 2), 1)  # MobileNet's stem
    assert conv_rows_tile(avx2, (64, 16, 3, 3), 55, 55, 57, (1, 1), 1)
    assert conv_rows_tile(avx2, (64, 3, 7, 7), 112, 112, 230, (2, 2), 1)  # ResNet's stem
    assert not conv_rows_tile(avx2, (32, 8, 5, 5), 56, 56, 116, (2, 2), 1)
    assert not conv_rows_tile(avx2, (64, 16, 3, 3), 56, 56, 114, (2, 2), 1)
    assert not conv_rows_tile(avx2, (64, 64, 3, 3), 56, 56, 58, (1, 1), 1)
    assert not conv_rows_tile(avx2, (192, 48, 3, 3), 13, 13, 15, (1, 1), 1)
    assert not conv_rows_tile(rpi4, (64, 3, 3, 3), 111, 111, 224, (2, 2), 1)


@pytest.mark.parametrize("oh,wq", [(111, 112), (55, 57), (61, 132), (13, 15), (2, 1000), (1, 30)])
def test_conv_rows_band(oh, wq):
    """The row conv's band of output rows (pack.conv_rows_band): partial sums in a quarter of L2
    (or 2 rows), at least 2 rows where OH has them, and few pixels computed past the rows' own
    (each band padded to whole tiles, the last band past OH): at most 1/16 more."""
    from edgec.targets.schedules.pack import conv_rows_band, conv_rows_tile
    avx2 = targets.get("x86-avx2")
    block, tile, band = conv_rows_tile(avx2, (64, 3, 3, 3), oh, wq - 1, wq, (1, 1), 1)
    assert band == conv_rows_band(avx2, oh, wq, block, tile)
    assert band * wq * block * 4 <= avx2.l2_kib * 1024 // 4 or band == min(2, oh)
    assert band >= min(2, oh)
    computed = -(-oh // band) * -(-(band * wq) // tile) * tile
    assert computed * 16 <= oh * wq * 17 or band * wq < 16 * tile, (band, computed, oh * wq)


FLAT_ROWS = [  # c, o, (h, w), (kh, kw), groups, stride, dilation, pads: output rows of 7 and 9 pixels
    (40, 40, (7, 7), (3, 3), 1, 1, 1, (1, 1, 1, 1)),  # 40 outputs: a partial channel block
    (36, 24, (13, 13), (3, 3), 1, 2, 1, (1, 1, 1, 1)),  # stride 2
    (34, 20, (9, 10), (5, 3), 1, 1, 2, (2, 1, 3, 0)),  # dilation 2, a 5x3 kernel, asymmetric pads
    (48, 64, (5, 9), (3, 3), 2, 1, 1, (1, 1, 1, 1))]  # grouped


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
def test_conv_flat_rows(tmp_path, rng, preset):
    """Direct convs whose rows cost more tiles than one flat row of all pixels compute that flat
    row (pack.conv_flat_rows: the layout pass marks them `flat_rows`, rows not padded), tiles
    spanning image rows, and match the numpy reference with bias + relu fused; rows covered as
    cheaply (14, 10: ties; 11: flat tiles of 3), channels-last convs and ARM's 1x1 convs keep their
    rows (x86's direct 1x1 convs go flat: tests/test_flat_tile.py)."""
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86 code")
    from edgec.compiler.passes import run_passes
    from edgec.targets.schedules.pack import conv_flat_rows
    avx2 = targets.get("x86-avx2")
    assert conv_flat_rows(avx2, 3, 3, 7, 7) and conv_flat_rows(avx2, 3, 3, 4, 4) and conv_flat_rows(avx2, 3, 3, 13, 13)
    assert conv_flat_rows(targets.get("rpi4"), 3, 3, 7, 7)
    assert not any(conv_flat_rows(avx2, 3, 3, w, w) for w in (14, 11, 10)) and not conv_flat_rows(targets.get("rpi4"), 1, 1, 7, 7)
    assert conv_flat_rows(avx2, 1, 1, 7, 7) and not conv_flat_rows(avx2, 1, 1, 7, 7, nchw=False)
    assert not conv_flat_rows(avx2, 3, 3, 7, 7, nchw=False)
    for c, o, hw, k, groups, stride, dil, pads in FLAT_ROWS:
        g = _conv_graph(rng, c, o, hw, k, groups, stride, dil, pads, post=("relu",))
        conv = run_passes(g, preset=targets.get(preset)).nodes[0]
        assert conv.attrs.get("flat_rows") and conv.attrs["width_tile"] == 1, conv.attrs
        _check(tmp_path, _conv_graph(rng, c, o, hw, k, groups, stride, dil, pads, post=("relu",)), preset,
               want_ops=["conv2d_packed", "relu"])
    conv = run_passes(_conv_graph(rng, 40, 40, (14, 14), (3, 3), pads=(1, 1, 1, 1)), preset=targets.get(preset)).nodes[0]
    assert not conv.attrs.get("flat_rows"), conv.attrs


def test_conv_chunk_grows_where_its_band_input_fits_l1():
    """The direct conv's chunk of input channels takes half of L1 for its weights where the chunk's
    input for the band fits in the other half, else a quarter (pack.conv_cache_blocks)."""
    from edgec.targets.schedules.pack import conv_cache_blocks
    avx2 = targets.get("x86-avx2")
    assert conv_cache_blocks(avx2, 512, 9, 1, 49, 16, (16, 16, 3)) == (16, 1)  # ResNet-50's 512 s2 @7 (flat)
    assert conv_cache_blocks(avx2, 512, 9, 1, 49, 16) == (8, 1)  # no input given: a quarter
    assert conv_cache_blocks(avx2, 256, 9, 14, 14, 16, (30, 30, 3)) == (8, 14)  # 16 channels: 57 KB of input


def test_pointwise_with_few_input_channels_is_a_gemm(tmp_path, rng):
    """A 1x1 conv with few input channels and no stride runs as the pointwise GEMM (with a tail)
    even where its pixels are not whole tiles and it has few output channels."""
    from edgec.compiler.passes import run_passes
    from edgec.targets.schedules.pack import pointwise_gemm
    assert pointwise_gemm(16, 64, 3025, 24, False) and not pointwise_gemm(16, 64, 3025, 24, True)
    assert not pointwise_gemm(64, 16, 3025, 24, False)
    g = _conv_graph(rng, 16, 40, (13, 17), (1, 1), post=("relu",))
    assert run_passes(g, preset=targets.get("host")).nodes[0].attrs.get("tile")
    _check(tmp_path, _conv_graph(rng, 16, 40, (13, 17), (1, 1), post=("relu",)), want_ops=["conv2d_packed", "relu"])


@pytest.mark.parametrize("case", [CASES[i] for i in (2, 14, 16, 18, 19)], ids=["w31", "p49", "s2", "k700", "k5600"])
def test_pointwise_avx2_preset(tmp_path, rng, case):
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    c, o, hw, k, groups, stride, dil, pads = case
    _check(tmp_path, _conv_graph(rng, c, o, hw, k, groups, stride, dil, pads, post=("relu",)), "x86-avx2")


@pytest.mark.parametrize("preset", ["x86-avx2", "x86-avx512", "rpi4"])
def test_pointwise_tile_fits_registers(preset):
    """The pointwise tile's accumulators plus its pixel vectors and a broadcast fit the register
    file, and its pixel count is a whole number of vectors."""
    p = targets.get(preset)
    lanes = p.vector_bits // 32
    for o, pixels in [(256, 3136), (64, 3136), (512, 49), (2048, 49), (256, 196), (1000, 1), (7, 5)]:
        mr, nr = pointwise_tile(p, o, pixels)
        assert nr % lanes == 0 and mr * (nr // lanes) + nr // lanes + 1 <= p.regs, (o, pixels, mr, nr)


@pytest.mark.parametrize("preset", ["x86-avx2", "x86-avx512", "rpi4"])
def test_pointwise_tail_is_whole_vectors_after_whole_tiles(preset):
    """Pixels after the whole tiles are a GEMM of their own in whole vectors, narrower than a tile
    (7x7 = 49 pixels in 16-pixel vectors on AVX-512: 48 + 1 vector); on x86 up to TAIL_PIXELS
    leftover pixels exactly (7x7 = 49: 48 + 1); and on x86 a tail with fewer than FMA_CHAINS
    accumulators takes in the last whole tile, in sub-tiles of at least that many (ResNet-50's
    14x14 = 196 pixels on AVX2 in 4 x 24 tiles: 168 + a tail of 32, two sub-tiles of 2 vectors)."""
    from edgec.targets.schedules.pack import FMA_CHAINS, TAIL_PIXELS, lanes, pointwise_tail, tail_vectors
    p = targets.get(preset)
    n = lanes(p)
    for o, pixels in [(2048, 49), (512, 49), (256, 196), (128, 20), (64, 3136), (1000, 1), (130, 15)]:
        mr, nr = pointwise_tile(p, o, pixels)
        tail = pointwise_tail(p, pixels, nr, mr)
        main = -(-(pixels - tail) // nr) * nr
        exact = p.arch == "x86_64" and pixels % nr <= TAIL_PIXELS
        if tail:
            assert main > 0 and (tail == pixels - main if exact else tail % n == 0), (o, pixels, nr, tail)
            assert pixels <= main + tail < main + (2 * nr if tail > nr else nr), (o, pixels, nr, tail)
        if tail > nr:  # (taken in the last whole tile: sub-tiles of at least FMA_CHAINS accumulators)
            assert p.arch == "x86_64" and mr * tail_vectors(p, mr, tail // n) >= FMA_CHAINS, (o, pixels, mr, tail)
    if p.arch == "x86_64":
        assert [pointwise_tail(p, px, 64, 8) for px in (129, 130, 131)] == [1, 2, n]  # (8 accumulators: no fold)
    if preset == "x86-avx2":  # 196 = 7 x 24 + 28 pixels in 2 sub-tiles of 4 x 16
        assert pointwise_tile(p, 256, 196) == (4, 24) and pointwise_tail(p, 196, 24, 4) == 32
        assert tail_vectors(p, 4, 4) == 2
    if preset != "x86-avx512":  # (64-pixel tiles there: 49 pixels are one tile)
        assert pointwise_tail(p, 49, *reversed(pointwise_tile(p, 2048, 49))) > 0


def strided_gemm(monkeypatch):
    """A strided 1x1 conv runs as the strided GEMM (ARM's; on x86 the subsample pass makes it a
    slice and a stride-1 GEMM: tests/test_subsample.py)."""
    from edgec.compiler.passes import subsample
    monkeypatch.setattr(subsample, "strided_pointwise", lambda *a: False)


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", [(64, 128, (7, 7), 1, 1, ("add", "relu")), (48, 128, (7, 7), 1, 2, ("relu",)),
                                  (32, 272, (7, 7), 2, 1, ("relu",)), (64, 128, (14, 14), 1, 1, ("relu",)),
                                  (40, 136, (5, 10), 1, 1, ("relu",)), (36, 130, (3, 17), 1, 1, ("relu",)),
                                  (72, 136, (14, 14), 1, 1, ("add", "relu")), (64, 128, (14, 14), 1, 2, ("relu",)),
                                  (32, 272, (14, 14), 2, 1, ())],
                         ids=["p49add", "p49s2", "p49g2", "p196", "p50", "p51", "p196add", "p196s2", "p196g2"])
def test_pointwise_tail_gemm(tmp_path, rng, monkeypatch, preset, case):
    """GEMMs with a tail (7x7 pixels: plain with a residual add, stride 2, grouped) match numpy, and
    with fewer channels than pixels (14x14: the tail a loop of its own); on x86 tails of 1 and 2
    pixels (49, 50) exactly (sums of neighbouring channel blocks in flight, the last group partial:
    22 blocks of 6), of 3 (51) in a whole vector; on x86, 14x14 in 4 x 24 tiles takes the last
    whole tile into the tail (168 + 32: two sub-tiles, the second past the image), with a residual
    add, a stride, groups (136 channels each: 34 blocks of 4). (64+ input channels: with fewer,
    pointwise.padded_last_tile pads the last tile instead.)"""
    if preset != "host" and "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    from edgec.compiler.passes import run_passes
    c, o, hw, groups, stride, post = case
    strided_gemm(monkeypatch)
    g = _conv_graph(rng, c, o, (hw[0] * stride, hw[1] * stride), (1, 1), groups, stride, post=post)
    conv = run_passes(g, preset=targets.get(preset)).nodes[0]
    assert not fixed(preset) or conv.attrs.get("tile") and conv.attrs.get("tail"), conv.attrs
    if preset == "x86-avx2" and hw == (14, 14):
        assert (conv.attrs["tile"], conv.attrs["tail"]) == (24, 32), conv.attrs
    _check(tmp_path, g, preset)


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", [(256, 72, (28, 28), ("add", "relu"), 1), (512, 36, (16, 16), ("relu",), 1),
                                  (256, 128, (24, 24), ("relu",), 2), (480, 192, (13, 13), ("relu",), 1)],
                         ids=["odd-chunks", "even-chunks", "strided", "padded-pixels"])
def test_pointwise_copy_per_chunk(tmp_path, rng, monkeypatch, preset, case):
    """Input panels copied per pixel chunk inside the parallel loop (49 tiles: chunks of 5, the
    last one of 4, see chunk_tiles; channel by channel, or tile by tile from a strided input)
    match numpy."""
    if preset != "host" and "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    from edgec.targets.schedules import pointwise
    calls = []
    orig = pointwise.copy_per_chunk
    monkeypatch.setattr(pointwise, "copy_per_chunk", lambda *a: calls.append((a[4], a[8])) or orig(*a))
    c, o, hw, post, stride = case
    strided_gemm(monkeypatch)
    _check(tmp_path, _conv_graph(rng, c, o, (hw[0] * stride, hw[1] * stride), (1, 1), stride=stride, post=post),
           preset)
    if fixed(preset):
        assert calls and calls[0][0] > 1 and calls[0][1] == (stride > 1), calls  # (chunks, strided)


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", [(45, 20, 1, ("relu",)), (48, 28, 2, ("add", "relu")), (20, 45, 1, ())],
                         ids=["projection", "grouped", "expansion-copies"])
def test_pointwise_reads_in_place(tmp_path, rng, monkeypatch, preset, case):
    """A projection whose weights fit in L1 reads the NCHW rows in place, pixel tile by tile (output
    channels not a whole number of blocks, grouped); an expansion copies its panels; both match numpy."""
    if preset != "host" and "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    from edgec.targets.schedules import pointwise
    calls = []
    orig = pointwise.reads_in_place
    monkeypatch.setattr(pointwise, "reads_in_place", lambda *a: calls.append(orig(*a)) or calls[-1])
    c, o, groups, post = case
    _check(tmp_path, _conv_graph(rng, c, o, (12, 16), (1, 1), groups, post=post), preset)
    assert calls == [c >= o], calls  # (12 x 16 pixels: whole tiles of 2-4 vectors of 8 or 16 lanes)


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", [(40, 12, (13, 11), ("relu",)), (64, 16, (9, 23), ("add", "relu")),
                                  (24, 24, (5, 7), ())], ids=["143px", "207px-add", "35px"])
def test_pointwise_in_place_padded_last_tile(tmp_path, rng, monkeypatch, preset, case):
    """A projection whose pixels are no whole number of tiles reads its input in place with a
    padded last tile (no tail), the write-back (bias, add, relu) in the tile, the tile loop split
    before the last tile (LoopPartition at the `likely` bound): matches numpy."""
    if preset != "host" and "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    from edgec.targets.schedules import pointwise
    calls = []
    orig = pointwise.reads_in_place
    monkeypatch.setattr(pointwise, "reads_in_place", lambda *a: calls.append((a[2], a[3], a[4], orig(*a))) or calls[-1][3])
    c, o, hw, post = case
    _check(tmp_path, _conv_graph(rng, c, o, hw, (1, 1), post=post), preset)
    (pixels, padded, tail, in_place), = calls
    assert in_place and not tail and padded > pixels == hw[0] * hw[1], calls


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", [(16, 40, (27, 27), ("relu",)), (24, 36, (25, 31), ("add", "relu")),
                                  (200, 28, (23, 29), ("add", "relu"))],
                         ids=["729px", "775px-add", "667px-projection-add"])
def test_pointwise_padded_last_tile_not_a_tail(tmp_path, rng, monkeypatch, preset, case):
    """An expansion whose pixels are a few short of whole tiles (at most PADDING_SHARE) pads its last
    tile instead of a tail GEMM, its write-back (bias, add, relu) in the tile, not a pass of its
    own: matches numpy. So does a projection whose weights are too many to read in place (a GEMM,
    not the direct conv)."""
    if preset != "host" and "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    from edgec.targets.schedules import pointwise
    passes = []
    if fixed(preset):
        monkeypatch.setattr(pointwise, "write_back_pass", lambda *a: passes.append(a))
        monkeypatch.setattr(pointwise, "tail_gemm", lambda *a: pytest.fail("a tail GEMM"))
    c, o, hw, post = case
    _check(tmp_path, _conv_graph(rng, c, o, hw, (1, 1), post=post), preset)
    assert not passes


def test_pointwise_in_place_choice():
    """The layout pass reads a projection in place with a padded last tile where its weights fit
    in L1 (SqueezeNet's 128->32 @27, 64->16 @55, 256->32 @27), not an expansion or a stride; a
    projection whose weights do not fit runs the GEMM with a padded last tile where few pixels are
    padding (384->32 @27), else the direct conv (256->48 @13)."""
    import dataclasses
    from edgec.targets.schedules.pack import pointwise_gemm
    from edgec.targets.schedules.pointwise import in_place, padded_last_tile
    p = dataclasses.replace(targets.get("x86-avx2"), l1_kib=32, l2_kib=512)  # (znver3's caches)
    assert in_place(p, 128, 32, 4, 729, 24, False)
    assert in_place(p, 64, 16, 4, 3025, 24, False) and in_place(p, 64, 16, 4, 3024, 24, False)
    assert padded_last_tile(p, 384, 4, 729, 24) and pointwise_gemm(384, 32, 729, 24, False, True)
    assert not padded_last_tile(p, 256, 4, 169, 24) and not pointwise_gemm(256, 48, 169, 24, False, False)
    assert not in_place(p, 32, 128, 4, 729, 24, False) and not in_place(p, 128, 32, 4, 729, 24, True)
    assert in_place(p, 256, 32, 4, 729, 24, False) and not in_place(p, 384, 32, 4, 729, 24, False)  # (L1: 32 KB)
    assert in_place(p, 64, 64, 6, 3136, 16, False)  # (an input past the L2: streamed, see test_pointwise_narrow)
    assert not in_place(p, 64, 64, 6, 1024, 16, False)  # (64 output row streams, the input in L2: copied panels)


def test_pointwise_chunks_even_where_they_copy():
    """Pixel chunks that copy their own panels come in an even number, so that the channel blocks
    are not split in halves each copying the chunk: the largest divisor at least half the largest
    that gives one (MobileNet's 128->128 @56: 196 tiles, 7 chunks of 28 -> 14 of 14), else chunks of
    equal size but the last (ResNet-50's 512->128 @28: 49 tiles, 7 of 7 -> 10 of 5); the largest
    divisor with one chunk, an even batch, or a pass copying all panels (N = 0)."""
    from edgec.targets.schedules.pointwise import chunk_tiles
    assert chunk_tiles(196, 32, 1) == 14 and chunk_tiles(196, 16, 1) == 14 and chunk_tiles(784, 128, 1) == 98
    assert chunk_tiles(49, 8, 1) == 5 and chunk_tiles(49, 32, 1) == 5 and chunk_tiles(50, 32, 1) == 25
    assert chunk_tiles(49, 64, 1) == 49 and chunk_tiles(49, 8, 2) == 7 and chunk_tiles(196, 32, 0) == 28
    assert chunk_tiles(196, 32, 2) == 28 and chunk_tiles(3, 1, 1) == 1  # (no even count: 3 chunks, in halves)


@pytest.mark.parametrize("preset,c,o,hw,k", [("x86-avx2", 64, 64, 14, 3), ("x86-avx2", 64, 64, 30, 3),
                                            ("x86-avx2", 3, 32, 30, 3), ("x86-avx2", 256, 128, 14, 1),
                                            ("x86-avx2", 1024, 128, 7, 1), ("x86-avx2", 16, 64, 23, 3),
                                            ("x86-avx512", 64, 64, 14, 3), ("x86-avx512", 16, 64, 23, 3)])
def test_x86_conv_inner_loops_fit_registers(tmp_path, preset, c, o, hw, k):
    """AVX2's 16 ymm registers (AVX-512's 32 zmm) hold the 3x3 and 1x1 register tiles, the row
    conv's (16 input channels) too: no spills in the inner loops, 8+ vector FMAs in each."""
    import shutil
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    from test_arm_schedules import assert_tile_fits, conv_library
    assert_tile_fits(conv_library(tmp_path, preset, c, o, hw, k), "objdump")


def test_row_conv_7x7_stem_inner_loop_fits_registers(tmp_path):
    """A 7x7 s2 stem over padded rows keeps its kernel rows a loop (conv2d.ROWS_UNROLL_TAPS): with
    all 49 taps unrolled LLVM hoisted the weight broadcasts and spilled them in the inner loop."""
    import shutil
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    from test_arm_schedules import assert_tile_fits, conv_library
    assert_tile_fits(conv_library(tmp_path, "x86-avx2", 3, 32, 45, 7, stride=2), "objdump")


def test_avx2_padded_pointwise_write_back_is_vector_code(tmp_path):
    """A pointwise GEMM whose pixels (11x11 = 121) do not fill whole tiles (and are too few to pad:
    a tail GEMM and a write-back pass of their own) writes bias + relu back in whole vectors, one
    scalar pixel per channel row at most (a vectorized loop with a tail was scalar throughout: one
    scalar max per pixel)."""
    import shutil
    import subprocess
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    from test_arm_schedules import conv_library
    lib = conv_library(tmp_path, "x86-avx2", 128, 192, 11, 1)  # (fewer input channels pad: padded_last_tile)
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                         check=True).stdout
    ops = [line.split()[1] for line in asm.splitlines() if line.strip() and ":" in line and len(line.split()) > 1]
    assert ops.count("vmaxps") >= 121 // 8 and ops.count("vmaxss") <= 1, (ops.count("vmaxps"), ops.count("vmaxss"))


def test_avx2_in_place_padded_pointwise_write_back_is_vector_code(tmp_path):
    """A projection read in place with a padded last tile (40->12 @13x13: 10 whole tiles of 16
    pixels and one of 9) writes bias + relu back in the whole tiles in vectors: LoopPartition split
    off the last tile at its `likely` bound (each tile's bound check had made the tiles' GEMM and
    write-back scalar)."""
    import shutil
    import subprocess
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    from test_arm_schedules import conv_library
    from edgec.targets.schedules.pack import pointwise_tile
    block, tile = pointwise_tile(targets.get("x86-avx2"), 12, 169)
    lib = conv_library(tmp_path, "x86-avx2", 40, 12, 13, 1)
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                         check=True).stdout
    ops = [line.split()[1] for line in asm.splitlines() if line.strip() and ":" in line and len(line.split()) > 1]
    fmas = sum(ops.count(f"vfmadd{order}ps") for order in (132, 213, 231))
    # (measured: 52 vector FMAs, 36 vector maxes; without the split 11 and 18, 48 scalar FMAs)
    assert fmas >= 2 * block * tile // 8 and ops.count("vmaxps") >= 2 * block * tile // 8, (fmas, ops.count("vmaxps"))


@pytest.mark.parametrize("hw,stride,band", [((60, 130), 1, 20), ((64, 131), 2, 8), ((56, 56), 1, None), ((59, 200), 1, None)])
def test_depthwise_band(rng, hw, stride, band):
    """Output rows per band: the largest divisor of the output height whose rows of the plane take at
    most half of L1 (32 KiB); none where the whole plane fits (58 x 58 floats), or where only bands
    shorter than MIN_BAND would (59 output rows: bands of 1)."""
    import tvm
    from tvm.s_tir import Schedule
    from edgec.compiler.build import lowered_kernels
    from edgec.targets.schedules import depthwise
    preset = targets.get("x86-avx2")
    g = _conv_graph(rng, 4, 4, hw, (3, 3), 4, stride, pads=(1, 1, 1, 1))
    (kernel, func), = lowered_kernels(g, preset)
    sch = Schedule(tvm.IRModule({"main": func}))
    oh = kernel["output_shapes"][0][2]
    assert depthwise._band(sch, sch.get_sblock("PadInput"), oh, preset) == band


def test_width_tile_wastes_little():
    assert width_tile(56, 14) == 14 and width_tile(7, 14) == 7 and width_tile(28, 14) == 14
    assert width_tile(55, 14) == 11  # 5 x 11 = 55: no partial tile


@pytest.mark.parametrize("m,k,n,bias", [(1, 300, 1000, True), (3, 64, 37, False), (2, 17, 130, True)])
def test_dense(tmp_path, rng, m, k, n, bias):
    g = Graph("dense")
    x = g.add_input("x", (m, k))
    w = g.add_const((rng.standard_normal((n, k)) / np.sqrt(k)).astype("float32"))
    ins = [x, w] + ([g.add_const(rng.standard_normal(n).astype("float32"))] if bias else [])
    y, = g.add_node("dense", ins)
    r, = g.add_node("relu", [y])
    g.outputs = [r]
    _check(tmp_path, g, want_ops=["dense_packed", "relu"])


@pytest.mark.parametrize("op,attrs", [
    ("max_pool2d", {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("max_pool2d", {"kernel": [3, 3], "strides": [2, 2], "ceil_mode": True}),
    ("avg_pool2d", {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),
    ("avg_pool2d", {"kernel": [2, 2], "strides": [2, 2], "count_include_pad": True, "pads": [0, 0, 1, 1]}),
])
def test_pool(tmp_path, op, attrs):
    g = Graph("pool")
    x = g.add_input("x", (1, 5, 23, 70))
    y, = g.add_node(op, [x], attrs)
    g.outputs = [y]
    _check(tmp_path, g, want_ops=[op])


def test_conv2d_fused_pool_with_padding(tmp_path, rng):
    g = _conv_graph(rng, 8, 16, (28, 28), (3, 3), pads=(1, 1, 1, 1), post=("relu",))
    y, = g.add_node("max_pool2d", [g.outputs[0]], {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})
    g.outputs = [y]
    _check(tmp_path, g, want_ops=["conv2d_packed", "relu", "max_pool2d"])


@pytest.mark.parametrize("axis", [1, 3, -1])
def test_concat(tmp_path, axis):
    g = Graph("concat")
    xs = [g.add_input(f"x{i}", (1, 3 + i, 9, 13) if axis == 1 else (1, 4, 9, 5 + 2 * i)) for i in range(3)]
    y, = g.add_node("concat", xs, {"axis": axis})
    r, = g.add_node("relu", [xs[0]])
    g.outputs = [y, r]
    _check(tmp_path, g, want_ops=["concat"])


def test_failing_schedule_falls_back_loudly_and_stays_correct(monkeypatch, tmp_path):
    """A specialised schedule that raises (an unusual kernel) must not fail the compile: the
    generic schedule takes over, with a warning naming the kernel, and numerics are unchanged."""
    import warnings

    def broken(func, kernel, preset):
        raise RuntimeError("cannot split this loop")
    for key in [k for k in schedules.RULES if k[0] == "pool"]:
        monkeypatch.setitem(schedules.RULES, key, broken)
    g = Graph("fallback")
    x = g.add_input("x", (1, 3, 9, 9))
    (y,) = g.add_node("max_pool2d", [x], {"kernel": [3, 3], "strides": [2, 2]}, source=["pool"])
    g.outputs = [y]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_graph(g, targets.get("host"), tmp_path / "f.edgec", progress=False)
    assert any("cannot split this loop" in str(w.message) and "kernel maxpool_0" in str(w.message) for w in caught)
    xv = np.random.default_rng(0).standard_normal((1, 3, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(load(tmp_path / "f.edgec").run({"x": xv})[0], interpret(g, {"x": xv})[y])


def test_avx2_pointwise_accumulators_stay_in_registers(tmp_path):
    """The pointwise GEMM's tile (64->256 @56 + relu: 6 channels x 16 pixels) keeps its accumulators
    in registers: the loop around the FMA loop stores only the write-back's vectors. Before, the
    accumulator buffer was memory (a workspace, first the whole pixel range of it): zeroed before
    the FMA loop and stored after it, 36 vector stores per tile instead of 12."""
    import shutil
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    from disasm import innermost_fma_loops
    from test_arm_schedules import conv_library
    block, tile = pointwise_tile(targets.get("x86-avx2"), 256, 56 * 56)
    lib = conv_library(tmp_path, "x86-avx2", 64, 256, 56, 1)
    tiles = innermost_fma_loops(lib, enclosing=True)
    assert tiles, "no loop around an FMA loop"
    for body in tiles:
        stores = [(o, a) for o, a in body if o in ("vmovups", "vmovaps") and a.split(",")[-1].endswith(")")
                  and "%ymm" in a.split(",")[0]]
        assert len(stores) <= block * tile // 8, stores


@pytest.mark.parametrize("hw", [(8, 56), (6, 54)], ids=["ow28", "ow27"])
def test_avx2_direct_conv_rows_in_exact_tiles(tmp_path, rng, hw):
    """The direct conv covers a row with tiles of two or three sizes, none padded or partial
    (pack.conv_width_tiles: 28 = 4 x 6 + 4, 27 = 3 x 6 + 5 + 4): matches numpy on x86-avx2, and the
    inner loops hold a 6-pixel x 2-vector tile (36 FMAs over the 3 taps) without spills (it ran 7
    tiles of 4 pixels, 8 accumulators, at OW 28)."""
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    from edgec.targets.schedules.pack import conv_width_tiles
    ow = (hw[1] + 2 - 3) // 2 + 1
    tiles = conv_width_tiles(targets.get("x86-avx2"), ow)
    assert sum(t * k for t, k in tiles) == ow and tiles[0][0] == 6 and len(tiles) <= 3, tiles
    _check(tmp_path, _conv_graph(rng, 16, 32, hw, (3, 3), 1, 2, 1, (1, 1, 1, 1), post=("relu",)),
           "x86-avx2", want_ops=["conv2d_packed", "relu"])
    import shutil
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    from disasm import innermost_fma_loops, stack_accesses, vector_fmas
    from test_arm_schedules import conv_library
    loops = innermost_fma_loops(conv_library(tmp_path, "x86-avx2", 16, 32, hw[1], 3, stride=2))
    assert max(len(vector_fmas(body)) for body in loops) == 36, [len(vector_fmas(b)) for b in loops]
    assert not [stack_accesses(body) for body in loops if stack_accesses(body)]


@pytest.mark.parametrize("case", [
    # c, o, hw, k, groups, stride, pads, post: a strided depthwise conv whose plane is copied (no
    # padding) over one input row, and depthwise convs with a fused pool after them
    (512, 512, (2, 8), (1, 1), 512, 2, (0, 0, 0, 0), ("relu", "avg_pool2d")),
    (1, 7, (1, 22), (1, 1), 1, 2, (0, 0, 0, 0), ("sigmoid",)),
    (3, 3, (24, 34), (3, 3), 3, 1, (0, 0, 1, 2), ("sigmoid", "max_pool2d")),
    (8, 8, (7, 36), (1, 1), 8, 2, (0, 0, 0, 0), ("sigmoid", "max_pool2d"))])
def test_depthwise_with_one_row_or_a_fused_pool(tmp_path, rng, case):
    """These fell back to the generic schedule (the plane's copy assumed a row loop; the pool's rows
    could not be placed after the plane's copy was cut into partitions)."""
    c, o, hw, k, g, s, pads, post = case
    _check(tmp_path, _conv_graph(rng, c, o, hw, k, g, s, pads=pads, post=post))


def test_depthwise_then_padded_max_pool(tmp_path, rng):
    """A depthwise conv (stride 3, no bias or activation) read straight by a padded 3x3 max pool:
    the pool's row pass is the pool schedule's, not placed in the conv's chunks (TVM could not
    bound its clamped rows there: a fallback to generic)."""
    g = _conv_graph(rng, 128, 128, (17, 21), (1, 1), 128, 3, bias=False)
    y, = g.add_node("max_pool2d", [g.outputs[0]], {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})
    g.outputs = [y]
    _check(tmp_path, g)


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
def test_strided_conv_of_one_output_pixel(tmp_path, rng, preset):
    """A 1x1 stride-3 conv of a 3 x 1 image (one output pixel): the direct conv, not the row conv
    (fewer pixels than its tile; TVM could not place that write-back: a fallback to generic)."""
    if preset != "host" and "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    _check(tmp_path, _conv_graph(rng, 24, 20, (3, 1), (1, 1), 1, 3, post=("relu",)), preset)


def test_padded_pool_after_a_small_conv_is_a_kernel_of_its_own(tmp_path, rng):
    """A 3x3 average pool (padded) after a conv whose output is under 1 KB (8 x 4 x 1 floats):
    fused, its reads past the plane's edges came from a stack buffer (undefined behaviour: wrong
    averages on AVX2); it runs as a kernel of its own (fuse.STACK_BYTES)."""
    g = _conv_graph(rng, 64, 8, (8, 2), (1, 1), 8, 2, post=("relu", "avg_pool2d"))
    _check(tmp_path, g)
    assert [k["ops"] for k in load(str(tmp_path / "m.edgec")).kernels] == [["conv2d", "relu"], ["avg_pool2d"]]


@pytest.mark.parametrize("case", [
    (64, 64, (6, 6), (3, 3), 64, 1, (1, 2, 1, 0), ("global_max_pool",)),  # a reduction reads the conv
    (100, 100, (2, 3), (1, 1), 100, 3, (0, 0, 0, 0), ("clip",))])  # one input element per plane
def test_depthwise_into_a_global_pool_or_of_one_element(tmp_path, rng, case):
    c, o, hw, k, g, s, pads, post = case
    _check(tmp_path, _conv_graph(rng, c, o, hw, k, g, s, pads=pads, post=post))
