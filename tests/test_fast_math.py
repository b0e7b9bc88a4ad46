"""Elementwise sigmoid / tanh / elu / selu / swish in float32 as vector polynomials
(compiler/lower/fastmath.py) instead of a scalar libm call per lane: numerics against numpy over
the whole range (0, tiny, the saturation points, +-88.7 where exp overflows, +-100, infinities,
NaN), standalone and fused after a conv, on host and x86-avx2 and on rpi4 under qemu against
onnxruntime; and the compiled code calls no expf / tanhf (the feature itself: a scalar call per
lane ran EfficientNet-B0's swish kernels 7x slower, AVX2)."""
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from disasm import library
from edgec import api
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.runtime import load

OPS = ["sigmoid", "tanh", "elu", "selu", "swish"]
SPECIAL = [0.0, -0.0, 1e-30, -1e-30, 1e-4, -1e-4, 0.5, -0.5, 9.0, -9.0, 15.0, -15.0, 20.0, -20.0, 44.0, -44.0,
           87.0, -87.0, 88.5, 88.72, 88.73, 89.0, -88.73, -89.0, 100.0, -100.0, 1e30, -1e30,
           np.inf, -np.inf, np.nan]


def _feed(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 6
    flat = x.reshape(-1)
    flat[:len(SPECIAL)] = SPECIAL
    flat[len(SPECIAL):len(SPECIAL) + 200] = np.linspace(-30, 30, 200)
    return x


def _graph(shape, conv=False):
    g = Graph("fastmath")
    x = g.add_input("x", shape)
    if conv:  # the activation fused into the conv's write-back
        rng = np.random.default_rng(1)
        w = g.add_const((rng.standard_normal((shape[1], shape[1], 3, 3)) * 2).astype(np.float32))
        x, = g.add_node("conv2d", [x, w], {"pads": [1, 1, 1, 1]})
    for op in OPS:
        y, = g.add_node(op, [x], source=[op])
        g.outputs.append(y)
    return g


def _check(got, want, op, rtol=2e-6, atol=1e-30):
    """By default relative 2e-6 (a few ulps: exp's polynomial is within 1.2e-7, then one
    division), absolute 1e-30 (below exp's range the result is 0 or e^-87, not numpy's denormals);
    NaN where numpy has NaN, the same infinities."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=op)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=op)


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("conv", [False, True], ids=["standalone", "fused"])
def test_fast_math_matches_numpy(tmp_path, preset, conv):
    shape = (1, 3, 17, 23)  # rows that do not divide the vector width
    g = _graph(shape, conv)
    from edgec.compiler.build import compile_graph
    from edgec import targets
    compile_graph(g, targets.get(preset), str(tmp_path / "m.edgec"), progress=False)
    feed = {"x": _feed(shape)}
    got = load(str(tmp_path / "m.edgec")).run(feed)
    want = interpret(g, feed)
    for op, o, a in zip(OPS, g.outputs, got):  # (after a conv: its float32 sums' order differs from numpy's)
        _check(a, want[o], op, *((1e-4, 1e-5) if conv else ()))
    calls = subprocess.run(["objdump", "-d", str(library(str(tmp_path / "m.edgec"), tmp_path))],
                           capture_output=True, text=True, check=True).stdout
    assert not [line for line in calls.splitlines() if "call" in line and ("expf" in line or "tanhf" in line)]


def _onnx_model(path):
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Tanh", ["x"], ["t"]),
             helper.make_node("Selu", ["x"], ["e"]), helper.make_node("Elu", ["x"], ["u"]),
             helper.make_node("Mul", ["x", "s"], ["w"])]
    g = helper.make_graph(nodes, "fastmath", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 17, 23])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in "steuw"])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.mark.arm
def test_fast_math_on_rpi4_matches_numpy(tmp_path):
    """rpi4 (NEON) under qemu, against numpy in float64 (onnxruntime's own sigmoid is approximate in
    its tails: 0 below about -17)."""
    import arm_env
    arm_env.require_tools()
    model = _onnx_model(str(tmp_path / "f.onnx"))
    art = api.compile(model, "rpi4", str(tmp_path / "m.edgec"), progress=False)
    x = _feed((1, 3, 17, 23))
    with np.errstate(all="ignore"):
        d = x.astype(np.float64)
        sig = 1 / (1 + np.exp(-d))
        selu = 1.0507009873554805 * np.where(d > 0, d, 1.6732632423543772 * np.expm1(d))
        expected = [sig, np.tanh(d), selu, np.where(d > 0, d, np.expm1(d)), d * sig]
    for op, got, want in zip("steuw", arm_env.run_artifact(art, [x], tmp_path, len(expected)), expected):
        _check(got, want.astype(np.float32), op)


def test_fast_math_compiles_for_cuda(tmp_path):
    """The same polynomial forms in CUDA device code: nvcc builds the fatbin (execution is checked
    on a GPU machine: examples/gpu_check.sh)."""
    from test_cuda import check_device_code
    from edgec import targets
    if targets.get("cuda").missing_tools():
        pytest.skip(f"cuda needs {targets.get('cuda').missing_tools()}")
    model = _onnx_model(str(tmp_path / "f.onnx"))
    art = api.compile(model, "cuda", str(tmp_path / "m.edgec"), progress=False)
    check_device_code(art, targets.get("cuda").gpu_arch)
