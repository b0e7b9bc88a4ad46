"""Depthwise conv schedule decisions that the numerics tests (tests/test_schedules.py) do not show."""
import re

import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import lowered_kernels
from edgec.compiler.ir import Graph
from edgec.targets import schedules


def _depthwise(c, hw, stride=1):
    rng = np.random.default_rng(0)
    g = Graph("dw")
    x = g.add_input("x", (1, c, hw, hw))
    w = g.add_const(rng.standard_normal((c, 1, 3, 3)).astype("float32"))
    y, = g.add_node("conv2d", [x, w], {"groups": c, "strides": [stride] * 2, "dilations": [1, 1], "pads": [1] * 4})
    g.outputs = [y]
    return g


@pytest.mark.parametrize("c,hw,stride,par", [(960, 7, 1, True), (96, 112, 2, True), (16, 7, 1, False),
                                             (64, 14, 1, False)])
def test_depthwise_forks_by_bytes_streamed(c, hw, stride, par):
    """A depthwise conv forks by the bytes it streams, not its FLOPs (all these are far below
    PARALLEL_MIN_WORK FLOPs): 960 channels @7 (376 KB) runs in parallel, 64 @14 (100 KB) does not."""
    preset = targets.get("x86-avx2")
    (kernel, func), = lowered_kernels(_depthwise(c, hw, stride), preset)
    assert kernel["flops"] < schedules.PARALLEL_MIN_WORK
    assert ("T.parallel" in schedules.schedule(func, kernel, preset).script()) == par


PLANES = [  # c, (h, w), (kh, kw), stride, pads (top, left, bottom, right): none divide the vector blocks
    (5, (13, 21), (3, 3), 2, (1, 1, 1, 1)),  # a pad column on both sides
    (6, (15, 17), (3, 3), 2, (0, 0, 1, 1)),  # Keras' "same" stride 2: right and bottom only
    (3, (11, 19), (3, 3), 2, (2, 2, 0, 0)),  # left and top only, two columns
    (4, (16, 23), (5, 5), 3, (2, 1, 2, 2)),  # stride 3: the left pad not a whole step
    (4, (64, 131), (3, 3), 2, (1, 1, 1, 1)),  # plane over half of L1: built per band of rows
    (5, (48, 53), (3, 3), 2, (0, 0, 1, 1)),  # strided, over an eighth of L1: bands of 6 rows (AVX2)
    (3, (9, 30), (3, 3), 2, (0, 0, 1, 1)),  # 15 steps inside: vectors of 8, 4 and 2 steps, a single step
    (5, (14, 14), (3, 3), 2, (0, 0, 1, 1)),  # MobileNet's 14-wide s2: a vector of 4, 3 single steps (AVX2)
    (6, (7, 28), (3, 3), 2, (0, 0, 1, 1)),  # MobileNet's 28-wide s2: vectors of 8, 4 and 2 steps (AVX2)
    (4, (9, 45), (3, 3), 2, (1, 1, 1, 1)),  # a left pad, 22 steps inside: 16 + 4 + 2 (AVX2), 20 + 2 (NEON)
    (5, (13, 21), (3, 3), 1, (1, 1, 1, 1)),  # stride 1: a pad column on both sides
    (7, (16, 23), (5, 5), 1, (2, 1, 2, 2)),  # stride 1, pads of 1 and 2 columns
    (9, (11, 8), (3, 3), 1, (0, 1, 2, 0)),  # stride 1, left and bottom only
    (3, (1, 41), (1, 5), 1, (0, 2, 0, 2)),  # a one-row plane
    (4, (60, 130), (3, 3), 1, (1, 1, 1, 1)),  # stride 1 per band of rows
    (6, (7, 7), (3, 3), 1, (1, 1, 1, 1)),  # MobileNet's last: 7 columns, no whole vector
    (3, (10, 56), (3, 3), 1, (1, 1, 1, 1)),  # 56: AVX-512 in 7 half vectors (depthwise.row_chunk)
]


@pytest.mark.parametrize("plane,oh,stride,band", [
    (51528, 56, 2, 4),  # MobileNet's 96 @112 s2 (113 rows of 2 x 57): an eighth of L1
    (51528, 56, 1, 14),  # the same plane at stride 1: half of L1
    (15048, 28, 2, 7),  # 144 @56 s2
    (15048, 28, 1, None),  # fits half of L1
    (3480, 14, 2, None),  # fits an eighth
    (203400, 112, 2, 8),  # 224-wide: no band of 4+ rows in an eighth, so half of L1's
    (38544, 32, 2, 8),  # the same fallback (test_depthwise_plane_without_fill's 64 x 131 s2)
    (12936, 24, 2, 6),  # and its 48 x 53 s2: bands of 6 rows
    (30000, 7, 2, None),  # 7 rows: no divisor from MIN_BAND fits
])
def test_depthwise_band_rows(plane, oh, stride, band):
    """A depthwise plane over half of L1 (AVX2's 32 KB) is built per band of output rows; a strided
    one (de-interleaved) over an eighth, where bands of MIN_BAND rows or more fit there."""
    from edgec.targets.schedules.depthwise import band_rows
    assert band_rows(plane, oh, targets.get("x86-avx2").l1_kib * 1024, stride) == band


@pytest.mark.parametrize("preset,hw,steps", [("x86-avx2", 28, [16, 8, 4]), ("x86-avx2", 14, [8]),
                                             ("rpi4", 28, [8, 4]), ("rpi4", 14, [8, 4])])
def test_strided_plane_copy_half_vectors(preset, hw, steps):
    """After a whole vector of steps, the copy's rest inside the input goes in halves down to 2 steps
    (MIN_DEINTERLEAVE); without one, down to MIN_DEINTERLEAVE_ALONE: a 28-wide stride-2 input
    ("same" padding, 14 steps) is 8 + 4 + 2 steps on AVX2, 12 + 2 on NEON; a 14-wide one (7 steps)
    4 steps and 3 single ones on AVX2, 4 + 2 + 1 on NEON. STEPS: the loads' widths in columns."""
    preset = targets.get(preset)
    g = Graph("dw")
    x = g.add_input("x", (1, 4, hw, hw))
    w = g.add_const(np.ones((4, 1, 3, 3), "float32"))
    y, = g.add_node("conv2d", [x, w], {"groups": 4, "strides": [2, 2], "dilations": [1, 1], "pads": [0, 0, 1, 1]})
    g.outputs = [y]
    (kernel, func), = lowered_kernels(g, preset)
    script = schedules.schedule(func, kernel, preset).script()
    assert sorted({int(n) for n in re.findall(r"columns: T.let\[T.float32x(\d+)\]", script)}, reverse=True) == steps


@pytest.mark.parametrize("preset,lanes", [("x86-avx2", 8), ("rpi4", 4)])
def test_strided_plane_copy_deinterleaved(preset, lanes):
    """A strided plane's copy inside the input loads stride x lanes contiguous columns per vector of
    steps and shuffles each phase out (schedules.depthwise.deinterleave), then half vectors: 28
    columns after a left pad, at stride 2, are 13 steps inside: a vector of 8 and one of 4 on AVX2,
    3 vectors of 4 on NEON, then one single step; no annotation is left for the lowering."""
    preset = targets.get(preset)
    (kernel, func), = lowered_kernels(_depthwise(6, 28, 2), preset)
    script = schedules.schedule(func, kernel, preset).script()
    evens = ", ".join(str(2 * k) for k in range(lanes))
    assert f"T.Shuffle([columns], [{evens}])" in script and "edgec_deinterleave" not in script
    assert script.count(f"T.float32x{2 * lanes}]") == 1 and (lanes == 4 or "T.float32x8]" in script)


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
def test_depthwise_plane_without_fill(tmp_path, monkeypatch, preset):
    """A padded plane (strided or not) is written by its copy alone (the column loop cut at the
    input's edges, zeros only outside): every pad position still reads zero, against the
    interpreter, in parallel."""
    import warnings
    from edgec.compiler.build import compile_graph
    from edgec.compiler.interp import interpret
    from edgec.runtime import load
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0)
    rng = np.random.default_rng(0)
    g = Graph("strided")
    for i, (c, hw, k, s, pads) in enumerate(PLANES):
        x = g.add_input(f"x{i}", (1, c) + hw)
        w = g.add_const(rng.standard_normal((c, 1) + k).astype("float32"))
        y, = g.add_node("conv2d", [x, w], {"groups": c, "strides": [s] * 2, "dilations": [1, 1], "pads": list(pads)})
        g.outputs.append(y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    assert not [str(w.message) for w in caught if "falling back" in str(w.message)]
    feed = {v.name: rng.standard_normal(v.shape).astype("float32") for v in g.inputs}
    got, want = load(str(tmp_path / "m.edgec")).run(feed), interpret(g, feed)
    for o, a in zip(g.outputs, got):
        np.testing.assert_allclose(a, want[o], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
def test_parallel_depthwise_groups_of_planes(tmp_path, monkeypatch, preset):
    """In parallel, a depthwise conv runs groups of planes per parallel iteration (PARALLEL_GROUPS
    that divide the planes: 96 -> 32 groups of 3, 80 x 2 -> 32 of 5, 40 -> 20 of 2), or one plane
    per iteration where no such divisor exists (37, prime) or where there are few planes; against
    the interpreter, stride 1 and 2, a multiplier of 2, a band of rows."""
    import warnings
    from edgec.compiler.build import compile_graph
    from edgec.compiler.interp import interpret
    from edgec.runtime import load
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0)
    rng = np.random.default_rng(0)
    cases = [(96, 1, (13, 17), 1, 32), (96, 1, (15, 22), 2, 32), (80, 2, (9, 9), 1, 32), (40, 1, (70, 60), 1, 20),
             (37, 1, (11, 12), 2, 37), (16, 1, (7, 9), 1, 16)]  # c, multiplier, (h, w), stride, parallel iterations
    g = Graph("groups")
    for i, (c, m, hw, s, _) in enumerate(cases):
        x = g.add_input(f"x{i}", (1, c) + hw)
        w = g.add_const(rng.standard_normal((c * m, 1, 3, 3)).astype("float32"))
        y, = g.add_node("conv2d", [x, w], {"groups": c, "strides": [s] * 2, "dilations": [1, 1], "pads": [1] * 4})
        g.outputs.append(y)
    p = targets.get(preset)
    for (kernel, func), (c, m, _, _, iters) in zip(lowered_kernels(g, p), cases):
        script = schedules.schedule(func, kernel, p).script()
        assert f"in T.parallel(T.int64({iters}))" in script, (c, m)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_graph(g, p, str(tmp_path / "m.edgec"), progress=False)
    assert not [str(w.message) for w in caught if "falling back" in str(w.message)]
    feed = {v.name: rng.standard_normal(v.shape).astype("float32") for v in g.inputs}
    got, want = load(str(tmp_path / "m.edgec")).run(feed), interpret(g, feed)
    for o, a in zip(g.outputs, got):
        np.testing.assert_allclose(a, want[o], rtol=1e-4, atol=1e-5)


@pytest.mark.arm
def test_depthwise_planes_on_rpi4_match_onnxruntime(tmp_path, monkeypatch):
    """The PLANES convs (strided copies in vectors of 4 steps and halves of them down to 2, pad
    columns on either side, bands of rows) on rpi4 under qemu, in parallel, against onnxruntime."""
    import arm_env
    import onnx
    from edgec import api
    from test_arm import check, onnxruntime_outputs
    from test_arm_schedules import _Model
    arm_env.require_tools()
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0)
    m = _Model()
    for c, hw, k, s, pads in PLANES:
        w = m._const(m.rng.standard_normal((c, 1) + k))
        m.output(m.node("Conv", [m.input((1, c) + hw), w], group=c, strides=[s] * 2, pads=list(pads), kernel_shape=list(k)))
    model = m.save(str(tmp_path / "planes.onnx"))
    art = api.compile(model, "rpi4", str(tmp_path / "m.edgec"), progress=False)
    rng = np.random.default_rng(1)
    inputs = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
              for i in onnx.load(model).graph.input}
    expected = onnxruntime_outputs(model, inputs)
    check(arm_env.run_artifact(art, inputs.values(), tmp_path, len(expected)), expected)


def test_row_chunks():
    """A row is accumulated in whole vectors that divide it (up to 4), else on AVX-512 in half
    vectors (56 columns: 7 ymm), else None: the row is one vector of its width (7 columns on
    AVX-512)."""
    from edgec.targets.schedules.depthwise import row_chunk
    assert [row_chunk(w, 16) for w in (64, 112, 32, 56, 8, 24)] == [64, 16, 32, 56, 8, 24]
    assert [row_chunk(w, 8) for w in (56, 112, 8, 24)] == [8, 16, 8, 24]
    assert row_chunk(4, 4) == 4 and row_chunk(56, 4) == 8 and row_chunk(7, 16) is None


def test_avx512_half_vector_row_keeps_its_taps_in_registers(tmp_path):
    """x86-avx512's 56-wide depthwise rows (MobileNet's 128 @56) accumulate in 7 ymm registers
    over the 9 taps, with the tap weights in registers: no stack traffic, no lane inserts (a
    <56 x float> row, widened by LLVM, spilled its broadcast weights and was put together with
    vinsertps)."""
    import shutil
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    from disasm import accumulators, innermost_fma_loops, library, stack_accesses, vector_fmas
    from test_arm_schedules import _Model
    from edgec import api
    m = _Model()
    x = m.input((1, 32, 56, 56))
    m.output(m.node("Relu", [m.node("Conv", [x, m._const(m.rng.standard_normal((32, 1, 3, 3)))], group=32,
                                    pads=[1] * 4, kernel_shape=[3, 3])]))
    art = api.compile(m.save(str(tmp_path / "dw.onnx")), "x86-avx512", str(tmp_path / "dw.edgec"), progress=False)
    main = max(innermost_fma_loops(library(art, tmp_path)), key=len)
    assert len(vector_fmas(main)) == 63 and len(accumulators(main)) == 7, main
    assert all("%ymm" in a for _, a in vector_fmas(main))
    assert not stack_accesses(main) and not [o for o, _ in main if o.startswith("vinsert")], main
