"""How small kernels use the threads: a copied pointwise GEMM whose weights outgrow the L2 runs its
pixels as one chunk, parallel over channel blocks (pointwise.one_chunk); its copy and write-back
passes fork only when their own bytes are worth it (pointwise.pass_forks); no parallel loop of one
iteration (generic); SqueezeNet's 48->192 @13 and 256-channel max pool @13 fork."""
import re

import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph, lowered_kernels
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.runtime import load
from edgec.targets import schedules
from edgec.targets.schedules import pointwise

AVX2 = "avx2" in open("/proc/cpuinfo").read()


def _pointwise(c, o, hw, post=()):
    rng = np.random.default_rng(0)
    g = Graph("pw")
    x = g.add_input("x", (1, c) + hw)
    w = g.add_const((rng.standard_normal((o, c, 1, 1)) / np.sqrt(c)).astype("float32"))
    y, = g.add_node("conv2d", [x, w, g.add_const(rng.standard_normal(o).astype("float32"))],
                    {"groups": 1, "strides": [1, 1], "dilations": [1, 1], "pads": [0] * 4})
    for op in post:
        y, = g.add_node(op, [y])
    g.outputs = [y]
    return g


def _parallel_loops(graph, preset):
    (kernel, func), = lowered_kernels(graph, preset)
    return re.findall(r"T\.parallel\(([^)]*)\)", schedules.schedule(func, kernel, preset).script())


def test_one_chunk_choice():
    """SqueezeNet's 512->1000 @13 (2 MB of weights, a 352 KB panel) on znver3's 512 KB L2; not
    with weights that fit the L2 (64->256 @13) nor a panel that outgrows it (1024->1024 @14)."""
    import dataclasses
    p = dataclasses.replace(targets.get("x86-avx2"), l2_kib=512)
    assert pointwise.one_chunk(p, 512, 1002, 176)
    assert not pointwise.one_chunk(p, 64, 258, 176) and not pointwise.one_chunk(p, 1024, 1024, 208)


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
def test_one_chunk_matches_numpy(tmp_path, monkeypatch, preset, parallel):
    """A classifier-like 1x1 conv + relu + global pool whose weights outgrow the L2 (200 -> 530
    channels, not whole channel blocks; 11x13 pixels, not whole tiles) runs as one chunk and
    matches numpy; the global pool's scaling pass has no parallel loop of one iteration."""
    if preset != "host" and not AVX2:
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    import dataclasses
    p = dataclasses.replace(targets.get(preset), l2_kib=256)
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if parallel else float("inf"))
    calls = []
    orig = pointwise.one_chunk
    monkeypatch.setattr(pointwise, "one_chunk", lambda *a: calls.append(orig(*a)) or calls[-1])
    g = _pointwise(200, 530, (11, 13), ("relu", "global_avg_pool"))
    assert "T.int64(1" not in _parallel_loops(g, p)  # (each entry: an extent without its ")")
    assert calls == [True], calls
    compile_graph(g, p, str(tmp_path / "m.edgec"), progress=False)
    m = load(str(tmp_path / "m.edgec"))
    feed = {"x": np.random.default_rng(1).standard_normal((1, 200, 11, 13)).astype("float32")}
    np.testing.assert_allclose(m.run(feed)[0], interpret(g, feed)[g.outputs[0]], rtol=1e-4, atol=1e-5)


def test_small_expansion_forks_without_its_copy():
    """SqueezeNet's 48->192 @13 (3.15 MFLOP, 43 us on one AVX2 core) forks for its GEMM, over its 32
    blocks of 6 channels (the write-back runs in the padded tiles), not for its panel copy (67 KB,
    see pass_forks)."""
    loops = _parallel_loops(_pointwise(48, 192, (13, 13), ("relu",)), targets.get("x86-avx2"))
    assert len(loops) == 1 and re.findall(r"\d+", loops[0])[-1] == "32", loops


def test_small_max_pool_forks():
    """SqueezeNet's 3x3 s2 max pool of 256 channels @27 (0.92 MB of arguments) forks."""
    g = Graph("pool")
    x = g.add_input("x", (1, 256, 27, 27))
    y, = g.add_node("max_pool2d", [x], {"kernel": [3, 3], "strides": [2, 2]})
    g.outputs = [y]
    assert _parallel_loops(g, targets.get("x86-avx2"))
