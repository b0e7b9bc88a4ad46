"""Pointwise GEMMs at 13x13 (SqueezeNet's last fire modules: 169 pixels, 7 short of 11 tiles of 16):
the expansions pad their last tile (pointwise.PADDING_SHARE), their write-back (bias, add, relu) in
the tile, not a tail GEMM and a pass of its own; the projections stay the direct conv
(pack.PROJECTION_PADDING). Numerics against numpy (host, x86-avx2) and onnxruntime (rpi4 under qemu)
on channels that are no whole number of blocks."""
import dataclasses

import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.runtime import load
from edgec.targets import schedules
from edgec.targets.schedules import pointwise
from edgec.targets.schedules.pack import pointwise_gemm, pointwise_tile
from test_pointwise_narrow import _projection
from structure import fixed

AVX2 = "avx2" in open("/proc/cpuinfo").read()


def test_padding_choice_at_13x13():
    """169 pixels in tiles of 16 (4.1% padding): an expansion pads its last tile, a projection of
    many input channels stays the direct conv; ResNet-50's 196 pixels (6.1%) keep their tail."""
    p = dataclasses.replace(targets.get("x86-avx2"), l1_kib=32, l2_kib=512)  # (znver3's caches)
    assert pointwise_tile(p, 256, 169) == (6, 16)
    assert pointwise.padded_last_tile(p, 64, 6, 169, 16) and pointwise.padded_last_tile(p, 48, 6, 169, 16)
    assert pointwise_gemm(64, 256, 169, 16, False, True)
    assert not pointwise_gemm(384, 48, 169, 16, False, True) and not pointwise_gemm(512, 64, 169, 16, False, True)
    assert pointwise_gemm(32, 64, 169, 16, False, True)  # (few input channels: a GEMM anyway)
    assert not pointwise.padded_last_tile(p, 256, 6, 196, 16)


def test_padding_allowed_grows_as_the_reduction_shrinks():
    """A tail's write-back pass costs the GEMM about PASS_CHANNELS_PER_LANE reduction channels per
    lane: a short reduction pads more of its last tile. AVX-512's 64-pixel tiles at 28x28 (784
    pixels, 6.1% padding): 128->512 pads (9.4% allowed), 256-> keeps its tail (4.7%); AVX2's
    16-pixel tiles at 15x15 (6.7%): 32-> pads (18.8%), 128-> keeps its tail."""
    p512 = targets.get("x86-avx512")
    assert pointwise.padded_last_tile(p512, 128, 6, 784, 64) and not pointwise.padded_last_tile(p512, 256, 6, 784, 64)
    p = dataclasses.replace(targets.get("x86-avx2"), l1_kib=32, l2_kib=512)
    assert pointwise.padded_last_tile(p, 32, 6, 225, 16) and not pointwise.padded_last_tile(p, 128, 6, 225, 16)


def _no_tail(monkeypatch):
    passes = []
    monkeypatch.setattr(pointwise, "write_back_pass", lambda *a: passes.append(a))
    monkeypatch.setattr(pointwise, "tail_gemm", lambda *a: pytest.fail("a tail GEMM"))
    return passes


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", [(36, 200, (13, 13), ("relu",)), (52, 130, (13, 13), ("add", "relu")),
                                  (32, 96, (15, 15), ("add", "relu"))], ids=["36-200", "52-130-add", "32-96-add@15"])
def test_expansion_pads_its_last_tile(tmp_path, monkeypatch, preset, parallel, case):
    """36->200 and 52->130 + add @13x13 (partial last channel blocks of 6), and 32->96 + add @15x15
    (6.7% padding on AVX2: allowed for a reduction of 32, see the test above): the padded last
    tile, the write-back in the tile, matches numpy (batch 2)."""
    if preset != "host" and not AVX2:
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0 if parallel else float("inf"))
    passes = _no_tail(monkeypatch) if fixed(preset) else []
    c, o, hw, post = case
    g = _projection(c, o, 2, hw, post)
    compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    assert not passes
    m = load(str(tmp_path / "m.edgec"))
    rng = np.random.default_rng(1)
    feed = {v.name: rng.standard_normal(v.shape).astype(v.dtype) for v in g.inputs}
    np.testing.assert_allclose(m.run(feed)[0], interpret(g, feed)[g.outputs[0]], rtol=1e-4, atol=1e-5)


@pytest.mark.arm
def test_expansion_pads_its_last_tile_on_rpi4(tmp_path, monkeypatch):
    """The same path on rpi4 (NEON, under qemu), parallel regions forced on, vs onnxruntime."""
    import arm_env
    import onnx
    from edgec import api
    from test_arm import check, onnxruntime_outputs
    from test_arm_schedules import _Model
    arm_env.require_tools()
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0)
    passes = _no_tail(monkeypatch)
    m = _Model()
    m.output(m.conv(m.input((1, 36, 13, 13)), 36, 200, k=1, pad=0))
    model = m.save(str(tmp_path / "expansion.onnx"))
    art = api.compile(model, "rpi4", str(tmp_path / "m.edgec"), progress=False)
    assert not passes
    rng = np.random.default_rng(1)
    inputs = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
              for i in onnx.load(model).graph.input}
    expected = onnxruntime_outputs(model, inputs)
    check(arm_env.run_artifact(art, inputs.values(), tmp_path, len(expected)), expected)
