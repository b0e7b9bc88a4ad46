"""conv2d_winograd (compiler/ops/winograd.py, F(2x2, 3x3)): its reference against the direct conv,
the layout pass's rewrite of eligible 3x3 convs (and only those), and the compiled kernel
(targets/schedules/winograd.py) against the numpy references and onnxruntime: odd sizes, channel
counts that are no whole blocks, batch 2, bias, fused epilogues, several blocks of tiles."""
import dataclasses
import warnings

import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.compiler.ops.nn import conv2d
from edgec.compiler.ops.winograd import conv2d_winograd, transform_weight
from edgec.compiler.passes import layout, run_passes
from edgec.runtime import load
from edgec.targets import schedules
from edgec.targets.schedules import winograd


@pytest.fixture(autouse=True)
def small_layers(monkeypatch):
    """The rewrite for any channel count and size here, so that small layers exercise it."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_TILES", 1)


def _graph(n, c, o, hw, pads=(1, 1, 1, 1), post=(), stride=1, k=3, groups=1, dil=1, seed=0):
    rng = np.random.default_rng(seed)
    g = Graph("wino")
    x = g.add_input("x", (n, c) + hw)
    w = g.add_const((rng.standard_normal((o, c // groups, k, k)) / np.sqrt(c * k * k)).astype("float32"))
    b = g.add_const(rng.standard_normal(o).astype("float32"))
    y, = g.add_node("conv2d", [x, w, b], {"pads": list(pads), "strides": [stride] * 2, "groups": groups,
                                          "dilations": [dil] * 2})
    for op in post:
        if op == "add":
            s = g.add_input("skip", g.values[y].shape)
            y, = g.add_node("add", [y, s])
        else:
            y, = g.add_node(op, [y])
    g.outputs = [y]
    return g


def compiled_winograd(tmp_path, g, preset):
    """G compiled for PRESET as one conv2d_winograd kernel (no schedule falling back), loaded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    assert not [str(w.message) for w in caught if "falling back" in str(w.message)]
    m = load(str(tmp_path / "m.edgec"))
    assert [k["ops"][0] for k in m.kernels] == ["conv2d_winograd"]
    return m


def seeded_feed(g):
    rng = np.random.default_rng(1)
    return {v.name: rng.standard_normal(v.shape).astype(v.dtype) for v in g.inputs}


@pytest.mark.parametrize("n,c,k,hw,pads", [(2, 5, 7, (7, 9), (1, 1, 1, 1)), (1, 3, 17, (1, 1), (1, 1, 1, 1)),
                                           (1, 4, 20, (13, 13), (0, 1, 2, 0)), (1, 6, 4, (3, 8), (0, 0, 0, 0))])
def test_reference_is_the_conv(n, c, k, hw, pads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c) + hw).astype("float32")
    w = rng.standard_normal((k, c, 3, 3)).astype("float32")
    b = rng.standard_normal(k).astype("float32")
    want = conv2d({"pads": list(pads)}, x, w, b)
    got = conv2d_winograd({"pads": list(pads), "m": 2, "out_channels": k, "block": 16}, x,
                          transform_weight(w, 2, 16), b)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _ops(g, preset="x86-avx2"):
    return [n.op for n in run_passes(g, preset=targets.get(preset)).nodes]


def test_rewrite_only_eligible_convs(monkeypatch):
    assert "conv2d_winograd" in _ops(_graph(1, 16, 32, (14, 14)))
    for kw in ({"stride": 2}, {"k": 5, "pads": (2, 2, 2, 2)}, {"groups": 2}, {"dil": 2, "pads": (2, 2, 2, 2)}):
        ops = _ops(_graph(1, 16, 32, (14, 14), **kw))
        assert "conv2d_winograd" not in ops and "conv2d_packed" in ops, (kw, ops)
    assert "conv2d_winograd" not in _ops(_graph(1, 16, 32, (14, 14)), "rpi4")  # (NEON: unmeasured)
    monkeypatch.setattr(layout, "CHANNELS_LAST", True)  # channels-last convs stay direct
    assert "conv2d_winograd" not in _ops(_graph(1, 16, 32, (14, 14)))


def test_plan_sizes(monkeypatch):
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 64)
    monkeypatch.setattr(winograd, "MIN_TILES", 49)
    assert "conv2d_winograd" not in _ops(_graph(1, 32, 128, (14, 14)))
    assert "conv2d_winograd" not in _ops(_graph(1, 64, 64, (12, 14)))  # 6 x 7 tiles
    assert "conv2d_winograd" in _ops(_graph(1, 64, 64, (14, 13)))


def test_block_rows():
    """Blocks of tile rows (winograd.block_rows): V within the preset's share of the L2, no rows
    padded where a count that divides them fits, a quarter of the L2 where AVX-512 runs on
    256-bit FMA units."""
    def rows(preset, c, hw):
        return winograd.plan(preset, c, c, hw, hw)["rows"]
    avx2_512k = dataclasses.replace(targets.get("x86-avx2"), l2_kib=512)  # (Zen 3's L2)
    assert rows(avx2_512k, 64, 56) == 4  # 28 tile rows, V 448 KB
    r = rows(avx2_512k, 128, 28)  # 14 x 14 tiles: blocks of 4 rows would pad 14 rows to 16
    assert -(-14 // r) * -(-(r * 14) // 6) * 6 <= 7 * 30  # (2 rows: 7 blocks of 28 tiles, in 6-tile registers)
    zen4, intel = targets.get("x86-zen4"), targets.get("x86-avx512")
    assert 16 * rows(zen4, 64, 56) * 28 * 64 * 4 <= zen4.l2_kib * 1024 // 4
    assert rows(zen4, 64, 56) == 2 and rows(zen4, 128, 28) == 2
    assert rows(intel, 64, 56) == 7 and rows(intel, 128, 28) == 7  # (V in all of its 1 MB; 9 rows padded 28 to 36)
    for preset in (zen4, intel, avx2_512k, targets.get("x86-avx2")):
        for c, hw in ((64, 56), (128, 28), (256, 14), (256, 56), (512, 28)):
            r, th = rows(preset, c, hw), hw // 2
            assert r >= -(-winograd.BLOCK_TILES // th) and r <= -(-th // 2), (preset.name, c, hw, r)


CASES = [  # n, c, k, (h, w), pads, epilogue, tile rows per block (None: the plan's)
    (1, 16, 32, (14, 14), (1, 1, 1, 1), (), None),
    (2, 5, 7, (7, 9), (1, 1, 1, 1), ("add", "relu"), None),  # batch 2, channels no whole block / vector
    (1, 3, 17, (1, 1), (1, 1, 1, 1), ("relu",), None),  # one pixel
    (1, 20, 40, (13, 13), (0, 1, 2, 0), ("relu",), 2),  # odd size, asymmetric pads, 4 blocks (last partial)
    (2, 24, 33, (11, 10), (1, 1, 1, 1), ("add", "relu"), 1),  # blocks of one tile row, batch 2
]


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("par", ["parallel", "serial"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c[0]}c{c[1]}k{c[2]}h{c[3][0]}w{c[3][1]}r{c[6]}")
def test_compiled_matches_reference(tmp_path, monkeypatch, preset, par, case):
    n, c, k, hw, pads, post, rows = case
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if par == "parallel" else float("inf"))
    if rows:
        plan = winograd.plan
        monkeypatch.setattr(winograd, "plan", lambda *a, **kw: dict(plan(*a, **kw), rows=rows))
    g = _graph(n, c, k, hw, pads, post)
    m, feed = compiled_winograd(tmp_path, g, preset), seeded_feed(g)
    got = m.run(feed)[0]
    want = interpret(g, feed)[g.outputs[0]]  # the direct conv's numpy reference (the graph before the passes)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    passed = interpret(run_passes(g, preset=targets.get(preset)), feed)  # the Winograd reference
    np.testing.assert_allclose(got, passed[g.outputs[0]], rtol=1e-4, atol=1e-5)


def test_matches_onnxruntime(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    from edgec import api
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((70, 66, 3, 3)) / 24).astype("float32")
    b = rng.standard_normal(70).astype("float32")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Add", ["c", "s"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 66, 9, 13]),
                                           helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, 70, 9, 13])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 70, 9, 13])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    api.compile(path, "x86-avx2", str(tmp_path / "m.edgec"), progress=False)
    m = load(str(tmp_path / "m.edgec"))
    assert m.kernels[0]["ops"][0] == "conv2d_winograd"
    feed = {"x": rng.standard_normal((2, 66, 9, 13)).astype("float32"),
            "s": rng.standard_normal((2, 70, 9, 13)).astype("float32")}
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_allclose(m.run(feed)[0], want, rtol=1e-4, atol=1e-5)


def test_avx2_gemm_inner_loop_is_the_register_tile(tmp_path):
    """The GEMM's inner loop on AVX2 is the 6-tile x 16-channel register tile: 12 vector FMAs, no
    stack (spill) traffic."""
    import shutil
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    from disasm import innermost_fma_loops, library, stack_accesses, vector_fmas
    compile_graph(_graph(1, 64, 64, (14, 14)), targets.get("x86-avx2"), str(tmp_path / "m.edgec"), progress=False)
    assert load(str(tmp_path / "m.edgec")).kernels[0]["ops"][0] == "conv2d_winograd"
    loops = innermost_fma_loops(library(str(tmp_path / "m.edgec"), tmp_path))
    assert loops and all(len(vector_fmas(b)) == 12 and not stack_accesses(b) for b in loops), loops
