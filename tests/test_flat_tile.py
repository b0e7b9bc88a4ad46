"""A direct 1x1 conv (a projection left off the GEMM, pack.PROJECTION_PADDING) computes its pixels
as one flat row on x86 (pack.conv_flat_rows), in the cheapest register tile with a partial last
one (pack.conv_flat_tile): SqueezeNet's 169 pixels in 28 tiles of 6 and one of 1, not rows of
4 + 4 + 5. Numerics against numpy (host, x86-avx2) on pixels and channels that are no whole number
of tiles and blocks, batches of 2, parallel and serial; rpi4 keeps its rows (not measured there)."""
import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.compiler.passes import run_passes
from edgec.runtime import load
from edgec.targets import schedules
from edgec.targets.schedules.pack import conv_flat_rows, conv_flat_tile, conv_width_tile
from test_pointwise_narrow import _projection
from structure import fixed

AVX2 = "avx2" in open("/proc/cpuinfo").read()


def test_flat_tile_choice():
    """1x1 at 13x13 on AVX2: a flat row in tiles of 6; KxK flat rows keep the tile that wastes
    fewest lanes (ResNet-50's 3x3 @28 and @14 keep their rows); rpi4's 1x1s keep their rows."""
    p = targets.get("x86-avx2")
    assert conv_flat_rows(p, 1, 1, 13, 13) and conv_flat_tile(p, 169, True) == 6
    assert conv_flat_tile(p, 169) == 5 and conv_flat_tile(p, 49) == 5
    assert not conv_flat_rows(p, 3, 3, 28, 28) and not conv_flat_rows(p, 3, 3, 14, 14)
    assert not conv_flat_rows(targets.get("rpi4"), 1, 1, 13, 13)
    # AVX-512: a 1x1's tile divides the row where one in [7, 14] does (no partial tile: its pixels'
    # accumulators were kept in memory in every tile); KxK and AVX2 keep theirs
    for name in ("x86-avx512", "x86-zen4"):
        q = targets.get(name)
        assert [conv_flat_tile(q, n, True) for n in (49, 169, 196, 225)] == [7, 13, 14, 9]
        assert conv_flat_tile(q, 53, True) == conv_width_tile(q, 53)  # (no divisor: the cheapest, partial)
    assert conv_flat_tile(p, 196, True) == 6 and conv_flat_tile(p, 225, True) == 6


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", [(384, 48, (13, 13), ("relu",)), (200, 40, (15, 15), ("add", "relu")),
                                  (288, 40, (14, 14), ()), (320, 48, (7, 7), ("add",))],
                         ids=["384-48@13", "200-40@15-add", "288-40@14", "320-48@7-add"])
def test_flat_projection_matches_numpy(tmp_path, monkeypatch, preset, parallel, case):
    """169, 225, 196 and 49 pixels (on AVX2 partial last tiles of 1, 3, 4 and 4; AVX-512's tiles
    divide them), 48 and 40 output channels (partial blocks of 16), batch 2: the flat direct 1x1
    matches numpy."""
    if preset != "host" and not AVX2:
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if parallel else float("inf"))
    c, o, hw, post = case
    g = _projection(c, o, 2, hw, post)
    conv, = [n for n in run_passes(_projection(c, o, 2, hw, post), preset=targets.get(preset)).nodes
             if n.op == "conv2d_packed"]
    # (the direct conv, not the GEMM: AVX-512's 288->40 @14 is a GEMM)
    assert not fixed(preset) or conv.attrs.get("flat_rows") and "tile" not in conv.attrs
    compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    m = load(str(tmp_path / "m.edgec"))
    rng = np.random.default_rng(1)
    feed = {v.name: rng.standard_normal(v.shape).astype(v.dtype) for v in g.inputs}
    np.testing.assert_allclose(m.run(feed)[0], interpret(g, feed)[g.outputs[0]], rtol=1e-4, atol=1e-5)


AVX512 = "avx512f" in open("/proc/cpuinfo").read()


def test_avx512_small_image_projections_run_direct():
    """On AVX-512, 1x1 convs of up to 14 x 14 pixels with a long reduction and whole 32-channel
    blocks run as the direct conv (pack.pointwise_direct); short reductions, padded channel blocks,
    larger images and AVX2 keep the GEMM."""
    avx512, avx2 = targets.get("x86-avx512"), targets.get("x86-avx2")

    def gemm(preset, c, o, hw):
        conv, = [n for n in run_passes(_projection(c, o, 1, hw, ()), preset=preset).nodes if n.op == "conv2d_packed"]
        return "tile" in conv.attrs
    assert not gemm(avx512, 1024, 256, (14, 14)) and not gemm(avx512, 512, 2048, (7, 7))
    assert gemm(avx512, 64, 384, (14, 14)) and gemm(avx512, 512, 1000, (13, 13)) and gemm(avx512, 512, 128, (28, 28))
    # images of at most 64 pixels: from 128 input channels (MobileNetV2's 160->960 @7), not 96
    assert not gemm(avx512, 160, 960, (7, 7)) and gemm(avx512, 96, 576, (7, 7)) and gemm(avx512, 160, 960, (14, 14))
    assert gemm(avx2, 1024, 256, (14, 14))


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("case", [(256, 64, (7, 7), ("add", "relu")), (288, 96, (13, 11), ("relu",)),
                                  (160, 96, (7, 7), ("relu",)), (256, 64, (3, 17), ())],
                         ids=["256-64@7-add", "288-96@13x11", "160-96@7", "256-64@3x17"])
def test_avx512_direct_projection_matches_numpy(tmp_path, monkeypatch, parallel, case):
    """The AVX-512 direct 1x1 (two-vector blocks, flat rows in tiles that divide them, or, 51
    pixels, with a partial last tile), batch 2."""
    if not AVX512:
        pytest.skip("this machine has no AVX-512 to run x86-avx512 code (the choice is tested above)")
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if parallel else float("inf"))
    c, o, hw, post = case
    g = _projection(c, o, 2, hw, post)
    p = targets.get("x86-avx512")
    conv, = [n for n in run_passes(_projection(c, o, 2, hw, post), preset=p).nodes if n.op == "conv2d_packed"]
    assert "tile" not in conv.attrs and conv.attrs["block"] == 32, conv.attrs
    compile_graph(g, p, str(tmp_path / "m.edgec"), progress=False)
    m = load(str(tmp_path / "m.edgec"))
    rng = np.random.default_rng(1)
    feed = {v.name: rng.standard_normal(v.shape).astype(v.dtype) for v in g.inputs}
    np.testing.assert_allclose(m.run(feed)[0], interpret(g, feed)[g.outputs[0]], rtol=1e-4, atol=1e-5)


def _vector_widths(func):
    """The extents of FUNC's vectorized loops."""
    import tvm_ffi
    from tvm import tirx
    widths = []

    def visit(loop):
        if loop.kind == tirx.ForKind.VECTORIZED:
            widths.append(int(loop.extent))
        return loop
    tvm_ffi.structural_map(func, [(tirx.For, visit)])
    return widths


@pytest.mark.parametrize("preset", ["x86-avx2", "x86-avx512", "rpi4"])
def test_long_flat_row_writes_back_in_pieces(preset):
    """A 5x5 conv of 60 x 5 pixels runs as one flat row of 300 (pack.conv_flat_rows); its write-back
    is vectorized in pieces, not as one 300-lane vector (LLVM took 11 s on that one, and over 5
    minutes on 1800 pixels: conv2d.MAX_FLAT_VECTOR)."""
    from edgec.compiler.build import lowered_kernels
    from edgec.compiler.ir import Graph
    from edgec.targets.schedules.pack import lanes
    p = targets.get(preset)
    assert conv_flat_rows(p, 5, 5, 60, 5)
    g = Graph("flat")
    x = g.add_input("x", (1, 16, 60, 5))
    w = g.add_const(np.random.default_rng(0).standard_normal((16, 16, 5, 5)).astype("float32"))
    y, = g.add_node("conv2d", [x, w], {"pads": [2, 2, 2, 2]})
    y, = g.add_node("relu", [y])
    g.outputs = [y]
    (kernel, func), = [kf for kf in lowered_kernels(g, p) if "conv" in kf[0]["name"]]
    with p.tvm_target():
        widths = _vector_widths(schedules.schedule(func, kernel, p))
    assert widths and max(widths) <= 4 * lanes(p), widths  # (pieces of up to 4 vectors)


@pytest.mark.parametrize("hw", [(60, 5), (45, 40)])
def test_long_flat_row_matches_numpy(tmp_path, hw):
    """Flat rows of 300 and 1800 pixels (5x5 convs, bias, relu) compile in seconds and match numpy."""
    from edgec.compiler.ir import Graph
    rng = np.random.default_rng(0)
    g = Graph("flat")
    x = g.add_input("x", (1, 12) + hw)
    w = g.add_const((rng.standard_normal((20, 12, 5, 5)) / 8).astype("float32"))
    b = g.add_const(rng.standard_normal(20).astype("float32"))
    y, = g.add_node("conv2d", [x, w, b], {"pads": [2, 2, 2, 2]})
    y, = g.add_node("relu", [y])
    g.outputs = [y]
    compile_graph(g, targets.get("host"), str(tmp_path / "m.edgec"), progress=False)
    feed = {"x": rng.standard_normal((1, 12) + hw).astype("float32")}
    np.testing.assert_allclose(load(str(tmp_path / "m.edgec")).run(feed)[0], interpret(g, feed)[y], rtol=1e-4, atol=1e-5)
