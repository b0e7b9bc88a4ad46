"""The CPU schedules on rpi4 (NEON, cortex-a72) under qemu: one ONNX model with a branch per schedule
kind (blocked 3x3 conv with odd sizes / stride 2 / dilation / groups / 3 input channels, 1x1 conv
as a GEMM (in place, stride 2, cache-chunked reduction),
depthwise incl. stride 2, dense, max/avg pool standalone and fused after a conv, global average
pool after a conv, concat), compiled once with parallel regions forced on and run once through the
packaged C++ runner under qemu-aarch64-static; every output is checked against onnxruntime on the
host at rtol 1e-4 / atol 1e-5."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import arm_env
from edgec import api
from edgec.runtime.artifact import read_manifest
from edgec.targets import schedules
from disasm import innermost_fma_loops, library, stack_accesses, vector_fmas
from test_arm import check, onnxruntime_outputs

pytestmark = pytest.mark.arm


class _Model:
    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []

    def _const(self, a):
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(a.astype(np.float32), name))
        return name

    def input(self, shape):
        name = f"x{len(self.inputs)}"
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def node(self, op, ins, **attrs):
        out = f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, ins, [out], name=f"{op.lower()}{len(self.nodes)}", **attrs))
        return out

    def conv(self, x, c, o, k=3, group=1, stride=1, dil=1, pad=1, relu=True):
        w = self.rng.standard_normal((o, c // group, k, k)) * np.sqrt(2.0 / (c // group * k * k))
        y = self.node("Conv", [x, self._const(w), self._const(self.rng.standard_normal(o) * 0.1)], group=group,
                      strides=[stride] * 2, dilations=[dil] * 2, pads=[pad] * 4, kernel_shape=[k, k])
        return self.node("Relu", [y]) if relu else y

    def dense(self, x, k, n):
        w, b = self.rng.standard_normal((k, n)) / np.sqrt(k), self.rng.standard_normal(n) * 0.1
        return self.node("Relu", [self.node("Gemm", [x, self._const(w), self._const(b)])])

    def output(self, y):
        self.outputs.append(helper.make_tensor_value_info(y, TensorProto.FLOAT, None))

    def save(self, path):
        g = helper.make_graph(self.nodes, "schedules", self.inputs, self.outputs, self.inits)
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
        return path


def schedule_model(path):
    m = _Model()
    x = m.input((1, 16, 9, 7))  # odd sizes
    m.output(m.conv(x, 16, 20))  # 3x3; 20 channels: a partial block of 8
    m.output(m.conv(x, 16, 24, stride=2))
    m.output(m.conv(x, 16, 16, dil=2, pad=2, relu=False))
    m.output(m.conv(x, 16, 32, group=2))
    m.output(m.conv(x, 16, 12, k=1, pad=0))  # 1x1
    m.output(m.conv(m.input((1, 40, 13, 11)), 40, 12, k=1, pad=0))  # 1x1 in place: 143 pixels, a padded last tile
    m.output(m.conv(m.input((1, 48, 9, 7)), 48, 128, k=1, pad=0, stride=2))  # 1x1 stride 2: 20 = 12 + a tail of 8
    m.output(m.conv(m.input((1, 200, 23, 29)), 200, 28, k=1, pad=0))  # projection GEMM (weights past L1): padded last tile
    deep = m.input((1, 3000, 5, 3))
    m.output(m.conv(deep, 3000, 130, k=1, pad=0))  # 1x1 with its reduction cut into chunks (weight panel > L2 share)
    m.output(m.conv(x, 16, 16, group=16))  # depthwise
    m.output(m.conv(x, 16, 16, group=16, stride=2))  # depthwise stride 2
    m.output(m.conv(x, 16, 16, group=16, stride=2, pad=0))  # depthwise stride 2, its copy reads the input
    for h, stride in [(30, 1), (32, 2)]:  # depthwise planes over half of L1: built per band of rows
        m.output(m.conv(m.input((1, 4, h, 131)), 4, 4, group=4, stride=stride))
    m.output(m.conv(m.input((1, 5, 48, 53)), 5, 5, group=5, stride=2))  # strided, over an eighth of L1: bands of 6 rows
    m.output(m.conv(m.input((1, 16, 6, 8)), 16, 36, k=1, pad=0, group=4))  # grouped 1x1: a GEMM per group
    img = m.input((1, 3, 15, 13))
    stem = m.conv(img, 3, 16, k=7, stride=2, pad=3)  # 3 input channels
    m.output(m.node("MaxPool", [stem], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4))  # pool fused after conv
    m.output(m.conv(m.input((1, 4, 17, 19)), 4, 12, k=5, stride=2, pad=2))  # a 4-channel 5x5 stem (x86: over rows)
    m.output(m.node("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4))
    m.output(m.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1))
    m.output(m.node("GlobalAveragePool", [m.conv(x, 16, 24, k=1, pad=0)]))  # global pool after a conv
    squeeze = m.conv(x, 16, 8, k=1, pad=0)  # a fire module: two expands concatenated
    m.output(m.node("Concat", [m.conv(squeeze, 8, 16, k=1, pad=0), m.conv(squeeze, 8, 16)], axis=1))
    m.output(m.node("Concat", [x, m.node("Relu", [x])], axis=3))  # concat on the innermost axis
    v = m.input((2, 40))
    m.output(m.dense(v, 40, 30))
    return m.save(path)


def test_schedules_on_rpi4_match_onnxruntime(tmp_path, monkeypatch):
    arm_env.require_tools()
    model = schedule_model(str(tmp_path / "schedules.onnx"))
    monkeypatch.setattr(schedules, "PARALLEL_MIN_WORK", 0)  # parallel regions everywhere
    art = api.compile(model, "rpi4", str(tmp_path / "m.edgec"), progress=False)
    ops = {op for k in read_manifest(art)["kernels"] for op in k["ops"]}
    assert {"conv2d_packed", "conv2d", "dense_packed", "max_pool2d", "avg_pool2d", "concat"} <= ops, ops
    rng = np.random.default_rng(1)
    inputs = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
              for i in onnx.load(model).graph.input}
    expected = onnxruntime_outputs(model, inputs)
    check(arm_env.run_artifact(art, inputs.values(), tmp_path, len(expected)), expected)


def conv_library(tmp_path, preset, c, o, hw, k, stride=1):
    """The compiled library of a one-conv model (k x k, padding k // 2, then Relu)."""
    m = _Model()
    m.output(m.conv(m.input((1, c, hw, hw)), c, o, k=k, stride=stride, pad=k // 2))
    art = api.compile(m.save(str(tmp_path / "conv.onnx")), preset, str(tmp_path / "conv.edgec"), progress=False)
    return library(art, tmp_path)


def assert_tile_fits(lib, objdump):
    """Every innermost FMA loop of LIB uses vector FMAs and touches no stack slot (no spills)."""
    loops = innermost_fma_loops(lib, objdump)
    assert loops, "no FMA loop found"
    for body in loops:
        assert len(vector_fmas(body)) >= 8, body
        assert not stack_accesses(body), stack_accesses(body)


@pytest.mark.parametrize("c,o,hw,k", [(64, 64, 14, 3), (512, 512, 7, 3), (256, 128, 14, 1), (3072, 128, 7, 1)],
                         ids=["3x3@14", "3x3@7", "1x1@14", "1x1-chunked@7"])
def test_rpi4_conv_inner_loops_fit_neon_registers(tmp_path, c, o, hw, k):
    """The register tiles of the rpi4 preset fit NEON's 32 registers: the disassembled inner loops
    of the 3x3 and 1x1 conv kernels are vector fmla without stack loads/stores."""
    arm_env.require_tools()
    assert_tile_fits(conv_library(tmp_path, "rpi4", c, o, hw, k), "aarch64-linux-gnu-objdump")
