"""The int8 conv schedule's inner loops, disassembled: x86 `vpmaddwd` (or `vpmaddubsw` for 7-bit
weights) on ymm (AVX2) and zmm (AVX-512), `vpdpbusd` with AVX-512 VNNI, without stack traffic; rpi4
NEON `smlal`, rpi5 `sdot`, and the ARM kernels run under qemu against onnxruntime (within one
quantization step)."""
import re
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import api, targets
from disasm import _BRANCH, _LINE, _TARGET, library, stack_accesses
from structure import fixed


def qconv_model(path, c=32, o=40, hw=11, k=3, stride=1, seed=0, wmax=63, group=1):
    """One QLinearConv, u8 input, per-channel s8 weights within [-WMAX-1, WMAX] (7-bit by default:
    onnxruntime's AVX2 U8S8 kernels saturate 16-bit pair sums beyond that)."""
    rng = np.random.default_rng(seed)

    def t(name, a):
        return numpy_helper.from_array(np.asarray(a), name)
    inits = [t("xs", np.float32(0.02)), t("xz", np.uint8(120)),
             t("w", rng.integers(-wmax - 1, wmax + 1, (o, c // group, k, k)).astype(np.int8)),
             t("ws", rng.uniform(0.002, 0.004, o).astype(np.float32)), t("wz", np.zeros(o, np.int8)),
             t("ys", np.float32(0.08)), t("yz", np.uint8(100)), t("b", rng.integers(-3000, 3000, o).astype(np.int32))]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            pads=[k // 2] * 4, strides=[stride] * 2, group=group)
    g = helper.make_graph([node], "qconv", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, c, hw, hw])],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def qconv_chain_model(path, c=32, hw=11, seed=0, wmax=63, m=20):
    """y1 = QLinearConv 3x3 (C -> M) read by a QLinearConv 3x3 stride 2 (-> y2) and a depthwise 3x3
    whose result a 1x1 conv reads (-> y3); y4 = QLinearConv 1x1 (QLinearAdd(y1, y3)) and y5 = depthwise
    3x3 stride 2 (the add), y6 its global average pool (QDQ): int8 values read only by int8 convs, an
    add (a residual) and the pool. M = 20
    channels: not a whole number of vectors. Weights within [-WMAX-1, WMAX], per channel."""
    rng = np.random.default_rng(seed)

    def t(name, a):
        return numpy_helper.from_array(np.asarray(a), name)
    inits = [t("xs", np.float32(0.02)), t("xz", np.uint8(120)), t("ys", np.float32(0.08)), t("yz", np.uint8(100))]
    nodes = []
    for i, (ci, co, k, stride, group, src, dst) in enumerate([
            (c, m, 3, 1, 1, "x", "y1"), (m, 20, 3, 2, 1, "y1", "y2"), (m, m, 3, 1, m, "y1", "yd"),
            (m, m, 1, 1, 1, "yd", "y3"), (m, 16, 1, 1, 1, "ya", "y4"), (m, m, 3, 2, m, "ya", "y5")]):
        scale = 0.01 if group > 1 else 0.003 if k == 1 else 0.0005  # weight scales for a fan-in of 9, M, 9 C / 9 M
        inits += [t(f"w{i}", rng.integers(-wmax - 1, wmax + 1, (co, ci // group, k, k)).astype(np.int8)),
                  t(f"ws{i}", rng.uniform(scale, 2 * scale, co).astype(np.float32)), t(f"wz{i}", np.zeros(co, np.int8)),
                  t(f"b{i}", rng.integers(-3000, 3000, co).astype(np.int32))]
        xq = ["xs", "xz"] if i == 0 else ["ys", "yz"]
        nodes.append(helper.make_node("QLinearConv", [src, *xq, f"w{i}", f"ws{i}", f"wz{i}", "ys", "yz", f"b{i}"],
                                      [dst], pads=[k // 2] * 4, strides=[stride] * 2, group=group))
    nodes.insert(4, helper.make_node("QLinearAdd", ["y1", "ys", "yz", "y3", "ys", "yz", "as", "yz"], ["ya"],
                                     domain="com.microsoft"))
    nodes += [helper.make_node("DequantizeLinear", ["ya", "as", "yz"], ["yad"]),
              helper.make_node("GlobalAveragePool", ["yad"], ["yp"]),
              helper.make_node("QuantizeLinear", ["yp", "ps", "yz"], ["y6"])]
    inits += [t("as", np.float32(0.12)), t("ps", np.float32(0.06))]
    g = helper.make_graph(nodes, "qchain", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, c, hw, hw])],
                          [helper.make_tensor_value_info(y, TensorProto.UINT8, None) for y in ("y2", "y4", "y5", "y6")],
                          inits)
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)]
    onnx.save(helper.make_model(g, opset_imports=opsets), path)
    return path


def innermost_loops(lib, pattern, objdump="objdump"):
    """Bodies [(mnemonic, operands)] of the innermost loops of LIB holding an instruction matching PATTERN."""
    asm = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                         check=True).stdout
    ins = [(int(m[1], 16), m[2], m[3]) for m in map(_LINE.match, asm.splitlines()) if m]
    loops = []
    for addr, op, args in ins:
        target = _TARGET.search(args) if _BRANCH.match(op) else None
        if target and int(target[1], 16) < addr:
            body = [(o, a) for x, o, a in ins if int(target[1], 16) <= x <= addr]
            if any(re.match(pattern, o) for o, _ in body):
                loops.append((int(target[1], 16), addr, body))
    return [body for lo, hi, body in loops
            if not any((lo, hi) != (l2, h2) and lo <= l2 and h2 <= hi for l2, h2, _ in loops)]


@pytest.mark.parametrize("preset,register", [("x86-avx2", "%ymm"), ("x86-avx512", "%zmm")])
@pytest.mark.parametrize("wmax,instruction", [(127, "vpmaddwd"), (63, "vpmaddubsw")], ids=["8-bit", "7-bit"])
def test_x86_int8_conv_inner_loop(tmp_path, preset, register, wmax, instruction):
    """Full-range int8 weights: int16 vpmaddwd (exact); weights whose channel pairs cannot saturate
    16 bits (7-bit weights): u8 x s8 vpmaddubsw, twice the multiply-adds per instruction."""
    art = api.compile(qconv_model(str(tmp_path / "q.onnx"), wmax=wmax), preset, str(tmp_path / "q.edgec"),
                      progress=False)
    loops = innermost_loops(library(art, tmp_path), rf"^{instruction}$")
    assert loops, f"no {instruction} loop"
    for body in loops:
        assert len([1 for o, a in body if o == instruction and register in a]) >= 4, body
        assert not stack_accesses(body), stack_accesses(body)


@pytest.mark.parametrize("preset,register", [("x86-avx2", "%ymm"), ("x86-avx512", "%zmm")])
@pytest.mark.parametrize("stride", [1, 2])
def test_x86_int8_depthwise_inner_loop(tmp_path, preset, register, stride):
    """A depthwise int8 conv multiplies a vector of channels of one pixel (u8 input, s8 weights, both
    widened to int32 lanes: LLVM's vpmaddwd, the high halves zero) and adds, tap by tap."""
    model = qconv_model(str(tmp_path / "q.onnx"), c=64, o=64, hw=14, stride=stride, wmax=127, group=64)
    loops = innermost_loops(library(api.compile(model, preset, str(tmp_path / "q.edgec"), progress=False), tmp_path),
                            r"^vpmaddwd$")
    assert loops, "no vpmaddwd loop"
    for body in loops:
        assert len([1 for o, a in body if o == "vpmaddwd" and register in a]) >= 9, body


@pytest.mark.parametrize("wmax", [127, 63], ids=["8-bit", "7-bit"])
def test_int8_activations_stay_channels_last_between_int8_convs(tmp_path, wmax):
    """An int8 conv's requantized result read only by int8 convs (depthwise ones too) stays
    channels-last (NHWC) between them on every CPU preset, the residual add fused into the conv;
    compiled here, the outputs equal the IR reference of the unpacked graph (and are within one
    step of onnxruntime where its AVX2 kernels cannot saturate: 7-bit weights)."""
    from edgec.compiler.interp import interpret
    from edgec.compiler.passes import run_passes
    from edgec.frontends.onnx import from_onnx
    from edgec.runtime import load
    model = qconv_chain_model(str(tmp_path / "c.onnx"), wmax=wmax)
    for preset in ("x86-avx2", "rpi4", "rpi5"):
        graph = run_passes(from_onnx(onnx.load(model)), preset=targets.get(preset))
        layouts = [(n.attrs.get("groups", 1), n.attrs.get("in_layout"), n.attrs.get("out_layout"))
                   for n in graph.nodes if n.op == "qconv2d_packed"]
        assert layouts == [(1, None, "NHWC"), (1, "NHWC", None), (20, "NHWC", "NHWC"), (1, "NHWC", "NHWC"),
                           (1, "NHWC", None), (20, "NHWC", None)], (preset, layouts)
        # the residual add runs on the int8 operands inside the kernel of the conv before it
        assert [n.kernel for n in graph.nodes if n.op in ("add", "qadd")] == ["qconv2d_packed_requantize_qadd_3"]
        assert [n.attrs.get("in_layout") for n in graph.nodes if n.op == "qglobal_avg_pool"] == ["NHWC"]
    x = np.random.default_rng(1).integers(0, 256, (1, 32, 11, 11)).astype(np.uint8)
    ref = interpret(run_passes(from_onnx(onnx.load(model))), {"x": x})
    got = load(api.compile(model, "host", str(tmp_path / "c.edgec"), progress=False)).run({"x": x})
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for name, g, w in zip(("y2", "y4", "y5", "y6"), got, want):
        assert g.shape == ref[name].shape and np.ptp(g) > 10 and np.array_equal(g, ref[name]), name
        assert wmax == 127 or np.abs(g.astype(int) - w.astype(int)).max() <= 1, name


def test_grouped_int8_conv_beyond_float_exact_fan_in_keeps_its_schedule(tmp_path, recwarn):
    """A strided depthwise int8 conv whose fan-in (17x17) is past float32's exact range runs in int32
    through the depthwise schedule (its de-interleaved copy padded with an int32 zero), no fallback."""
    from edgec.compiler.interp import interpret
    from edgec.compiler.passes import run_passes
    from edgec.frontends.onnx import from_onnx
    from edgec.runtime import load
    rng = np.random.default_rng(0)
    c, k = 4, 17
    inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in (
        ("s", np.float32(0.02)), ("z", np.uint8(120)), ("w", rng.integers(-128, 128, (c, 1, k, k)).astype(np.int8)),
        ("ws", np.float32(0.0001)), ("wz", np.int8(0)), ("ys", np.float32(0.08)), ("yz", np.uint8(100)))]
    node = helper.make_node("QLinearConv", ["x", "s", "z", "w", "ws", "wz", "ys", "yz"], ["y"], group=c,
                            pads=[k // 2] * 4, strides=[2, 2])
    g = helper.make_graph([node], "dw17", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, c, 20, 20])],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "dw.onnx")
    art = api.compile(str(tmp_path / "dw.onnx"), "host", str(tmp_path / "dw.edgec"), progress=False)
    assert not [w for w in recwarn if "falling back" in str(w.message)], [str(w.message) for w in recwarn]
    x = rng.integers(0, 256, (1, c, 20, 20)).astype(np.uint8)
    got = load(art).run({"x": x})[0]
    assert np.ptp(got) > 5 and np.array_equal(got, interpret(run_passes(from_onnx(model)), {"x": x})["y"])


def qconv_stack_model(path, layers, c=24, hw=(11, 13), seed=0, wmax=63):
    """QLinearConvs in a chain from x (1, C, *HW): LAYERS are (out channels, kernel) per conv, or
    ("maxpool", pads) for a QDQ 3x3 stride-2 max pool."""
    rng = np.random.default_rng(seed)

    def t(name, a):
        return numpy_helper.from_array(np.asarray(a), name)
    inits = [t("xs", np.float32(0.02)), t("xz", np.uint8(120)), t("ys", np.float32(0.08)), t("yz", np.uint8(100))]
    nodes, ci, src = [], c, "x"
    for i, (co, k) in enumerate(layers):
        dst = "y" if i == len(layers) - 1 else f"a{i}"
        if co == "maxpool":  # QDQ max pool, kernel 3, stride 2, pads K
            nodes += [helper.make_node("DequantizeLinear", [src, "ys", "yz"], [f"d{i}"]),
                      helper.make_node("MaxPool", [f"d{i}"], [f"m{i}"], kernel_shape=[3, 3], strides=[2, 2], pads=[k] * 4),
                      helper.make_node("QuantizeLinear", [f"m{i}", "ys", "yz"], [dst])]
            src = dst
            continue
        inits += [t(f"w{i}", rng.integers(-wmax - 1, wmax + 1, (co, ci, k, k)).astype(np.int8)),
                  t(f"ws{i}", rng.uniform(0.1, 0.2, co).astype(np.float32) / (ci * k * k)),
                  t(f"wz{i}", np.zeros(co, np.int8)), t(f"b{i}", rng.integers(-3000, 3000, co).astype(np.int32))]
        xq = ["xs", "xz"] if i == 0 else ["ys", "yz"]
        nodes.append(helper.make_node("QLinearConv", [src, *xq, f"w{i}", f"ws{i}", f"wz{i}", "ys", "yz", f"b{i}"],
                                      [dst], pads=[k // 2] * 4))
        ci, src = co, dst
    g = helper.make_graph(nodes, "qstack", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, c, *hw])],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.mark.parametrize("wmax", [127, 63], ids=["8-bit", "7-bit"])
def test_int8_flat_pointwise_paired_blocks_and_fused_taps(tmp_path, recwarn, wmax):
    """A 3x3 conv with few input channels (its column taps and channel steps one loop on AVX2) into
    40 channels (5 blocks of 8: a zero block pairs them up), then 1x1 convs on its channels-last
    result, computed over one flat row of 11 x 13 pixels (tiles spanning image rows, the last one
    partial): exact vs the IR reference, within one step of onnxruntime (7-bit), no fallback."""
    from edgec.compiler.interp import interpret
    from edgec.compiler.passes import run_passes
    from edgec.frontends.onnx import from_onnx
    from edgec.runtime import load
    from edgec.targets.schedules.int8 import kernel_tile
    model = qconv_stack_model(str(tmp_path / "s.onnx"), [(40, 3), (40, 1), (16, 1)], wmax=wmax)
    preset = targets.get("x86-avx2")
    graph = run_passes(from_onnx(onnx.load(model)), preset=preset)
    convs = [n for n in graph.nodes if n.op == "qconv2d_packed"]
    assert [graph.constants[n.inputs[1]].shape[0] for n in convs] == [6, 6, 2]  # 40 channels: 6 blocks
    flat = convs[1].attrs
    assert flat["in_layout"] == flat["out_layout"] == "NHWC" and 143 % flat["tile"] and \
        kernel_tile(-(-143 // flat["tile"]) * flat["tile"], preset, 2, graph.constants[convs[1].inputs[1]].shape[-1]) \
        == flat["tile"] > 2
    x = np.random.default_rng(1).integers(0, 256, (1, 24, 11, 13)).astype(np.uint8)
    got = load(api.compile(model, "x86-avx2", str(tmp_path / "s.edgec"), progress=False)).run({"x": x})[0]
    assert not [w for w in recwarn if "falling back" in str(w.message)], [str(w.message) for w in recwarn]
    assert np.ptp(got) > 10 and np.array_equal(got, interpret(run_passes(from_onnx(onnx.load(model))), {"x": x})["y"])
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert wmax == 127 or np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_int8_max_pools_keep_int8_convs_channels_last(tmp_path, recwarn):
    """QDQ max pools (3x3 stride 2, with pads 1 and without) between int8 convs run on int8 and
    channels-last, so the convs around them read and write NHWC: exact vs the IR reference of the
    graph as folded for no target (NCHW), within one step of onnxruntime, no fallback."""
    from edgec.compiler.interp import interpret
    from edgec.compiler.passes import run_passes
    from edgec.frontends.onnx import from_onnx
    from edgec.runtime import load
    model = qconv_stack_model(str(tmp_path / "p.onnx"), [(40, 3), ("maxpool", 1), (24, 1), ("maxpool", 0), (16, 3)],
                              hw=(23, 26))
    graph = run_passes(from_onnx(onnx.load(model)), preset=targets.get("x86-avx2"))
    assert [(n.op, n.attrs.get("layout") or (n.attrs.get("in_layout"), n.attrs.get("out_layout")))
            for n in graph.nodes if n.op in ("qconv2d_packed", "qmax_pool2d", "max_pool2d", "pad")] == [
        ("qconv2d_packed", (None, "NHWC")), ("qmax_pool2d", "NHWC"), ("qconv2d_packed", ("NHWC", "NHWC")),
        ("qmax_pool2d", "NHWC"), ("qconv2d_packed", ("NHWC", None))]
    x = np.random.default_rng(1).integers(0, 256, (1, 24, 23, 26)).astype(np.uint8)
    got = load(api.compile(model, "x86-avx2", str(tmp_path / "p.edgec"), progress=False)).run({"x": x})[0]
    assert not [w for w in recwarn if "falling back" in str(w.message)], [str(w.message) for w in recwarn]
    ref = interpret(run_passes(from_onnx(onnx.load(model))), {"x": x})["y"]
    assert got.shape == (1, 16, 5, 6) and np.ptp(got) > 10 and np.array_equal(got, ref)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_nhwc_graph_input_is_quantized_before_its_transpose_and_read_in_place(tmp_path, recwarn):
    """A Keras export's NHWC input: Transpose -> QuantizeLinear -> DQ -> Conv. The quantize runs on
    the NHWC input and the int8 conv reads the quantized input in place (no transpose left): within
    one step of the QDQ graph interpreted as written and of onnxruntime."""
    from edgec.compiler.interp import interpret
    from edgec.compiler.passes import run_passes
    from edgec.frontends.onnx import from_onnx
    from edgec.runtime import load
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in (
        ("s", np.float32(0.03)), ("z", np.uint8(128)), ("w", rng.integers(-64, 64, (12, 5, 3, 3)).astype(np.int8)),
        ("ws", np.float32(0.01)), ("wz", np.int8(0)), ("ys", np.float32(0.05)), ("yz", np.uint8(100)))]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("QuantizeLinear", ["t", "s", "z"], ["tq"]),
             helper.make_node("DequantizeLinear", ["tq", "s", "z"], ["td"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
             helper.make_node("Conv", ["td", "wd"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["y"])]
    g = helper.make_graph(nodes, "nhwc_in", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 9, 10, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    graph = run_passes(from_onnx(model), preset=targets.get("x86-avx2"))
    assert [n.op for n in graph.nodes if n.op in ("transpose", "quantize_linear", "qconv2d_packed")] == \
        ["quantize_linear", "qconv2d_packed"]
    assert next(n for n in graph.nodes if n.op == "qconv2d_packed").attrs["in_layout"] == "NHWC"
    onnx.save(model, tmp_path / "t.onnx")
    x = rng.standard_normal((1, 9, 10, 5)).astype(np.float32) * 2
    got = load(api.compile(str(tmp_path / "t.onnx"), "x86-avx2", str(tmp_path / "t.edgec"), progress=False)).run(
        {"x": x})[0]
    assert not [w for w in recwarn if "falling back" in str(w.message)], [str(w.message) for w in recwarn]
    ref = interpret(run_passes(from_onnx(model), disable=["fold_qdq"]), {"x": x})["y"]
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.shape == (1, 12, 9, 10) and np.ptp(want) > 1
    assert np.abs(got - ref).max() <= 0.05 * 1.0001 and np.abs(got - want).max() <= 0.05 * 1.0001


@pytest.mark.arm
@pytest.mark.parametrize("preset,instruction,cpu", [("rpi4", "smlal", "cortex-a72"), ("rpi5", "sdot", "cortex-a76")])
def test_arm_int8_conv_inner_loop_and_parity_under_qemu(tmp_path, monkeypatch, preset, instruction, cpu):
    """rpi4 (Cortex-A72): int16 widening multiply-adds; rpi5 (Cortex-A76, dotprod): sdot on the
    input shifted to int8; depthwise convs on both: int32 multiply-accumulates of widened channel
    vectors. The packaged kernels (the chain of convs, depthwise ones and a residual add,
    channels-last between them) run under qemu with that CPU."""
    import arm_env
    arm_env.require_tools()
    monkeypatch.setattr(arm_env, "QEMU_CPU", cpu)
    model = qconv_chain_model(str(tmp_path / "q.onnx"))
    art = api.compile(model, preset, str(tmp_path / "q.edgec"), progress=False)
    lib = library(art, tmp_path)
    loops = innermost_loops(lib, rf"^{instruction}2?$", "aarch64-linux-gnu-objdump")
    assert loops and all(len([1 for o, _ in body if o.startswith(instruction)]) >= 4 for body in loops), loops
    # the depthwise convs: channel vectors widened to int32 lanes, multiply-accumulated (mla .4s)
    loops = innermost_loops(lib, r"^mla$", "aarch64-linux-gnu-objdump")
    assert loops and all(len([1 for o, a in body if o == "mla" and ".4s" in a]) >= 9 for body in loops), loops
    x = np.random.default_rng(1).integers(0, 256, (1, 32, 11, 11)).astype(np.uint8)
    wants = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for got, want in zip(arm_env.run_artifact(art, [x], tmp_path, 4), wants):
        assert got.shape == want.shape and np.ptp(want) > 10
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.mark.arm
@pytest.mark.parametrize("preset,cpu", [("rpi4", "cortex-a72"), ("rpi5", "cortex-a76")])
def test_arm_int8_flat_pointwise_and_max_pools_under_qemu(tmp_path, monkeypatch, preset, cpu):
    """The flat 1x1 convs and the channels-last int8 max pools (as in the two tests above) under
    qemu: within one step of onnxruntime."""
    import arm_env
    arm_env.require_tools()
    monkeypatch.setattr(arm_env, "QEMU_CPU", cpu)
    model = qconv_stack_model(str(tmp_path / "p.onnx"), [(40, 3), ("maxpool", 1), (24, 1), (40, 1), ("maxpool", 0),
                                                         (16, 3)], hw=(23, 26))
    art = api.compile(model, preset, str(tmp_path / "p.edgec"), progress=False)
    x = np.random.default_rng(1).integers(0, 256, (1, 24, 23, 26)).astype(np.uint8)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = arm_env.run_artifact(art, [x], tmp_path, 1)[0]
    assert got.shape == want.shape and np.ptp(want) > 10 and np.abs(got.astype(int) - want.astype(int)).max() <= 1


VNNI = targets.Preset("x86-avx512-vnni", "test preset: Cascade Lake (AVX-512 VNNI)",
                      {"kind": "llvm", "mcpu": "cascadelake"}, "x86_64", vector_bits=512)


def test_vnni_int8_conv_inner_loop_is_vpdpbusd(tmp_path):
    """With AVX-512 VNNI, symmetric int8 weights take u8 x s8 vpdpbusd (zmm), no stack traffic."""
    art = api.compile(qconv_model(str(tmp_path / "q.onnx")), VNNI, str(tmp_path / "q.edgec"), progress=False)
    loops = innermost_loops(library(art, tmp_path), r"^vpdpbusd$")
    assert loops, "no vpdpbusd loop"
    for body in loops:
        assert len([1 for o, a in body if o == "vpdpbusd" and "%zmm" in a]) >= 4, body
        assert not stack_accesses(body), stack_accesses(body)


AVX_VNNI = targets.Preset("x86-avx-vnni", "test preset: Alder Lake (AVX2 + AVX-VNNI)",
                          {"kind": "llvm", "mcpu": "alderlake"}, "x86_64", vector_bits=256)


def test_avx_vnni_takes_8_bit_weights_raw_into_ymm_vpdpbusd(tmp_path):
    """AVX-VNNI (the VEX vpdpbusd of AVX2 machines): 8-bit weights, which vpmaddubsw would saturate,
    take u8 x s8 vpdpbusd on ymm as they are (no 16-bit multiplies), without stack traffic."""
    from edgec.compiler.passes import run_passes
    from edgec.frontends.onnx import from_onnx
    from edgec.quantize import auto_reduce_range
    model = qconv_model(str(tmp_path / "q.onnx"), wmax=127)
    graph = run_passes(from_onnx(model), preset=AVX_VNNI)
    assert [n.attrs.get("raw") for n in graph.nodes if n.op == "qconv2d_packed"] == [True]
    art = api.compile(model, AVX_VNNI, str(tmp_path / "q.edgec"), progress=False)
    loops = innermost_loops(library(art, tmp_path), r"(\{vex\} )?vpdpbusd$")
    assert loops, "no vpdpbusd loop"
    for body in loops:
        assert len([1 for o, a in body if o.endswith("vpdpbusd") and "%ymm" in a]) >= 4, body
        assert not any(o.startswith("vpmadd") for o, _ in body), body
        assert not stack_accesses(body), stack_accesses(body)
    targets.PRESETS[AVX_VNNI.name] = AVX_VNNI
    try:
        assert auto_reduce_range(AVX_VNNI.name) == (False, "")  # 8-bit weights are exact and fast there
    finally:
        del targets.PRESETS[AVX_VNNI.name]


def test_vnni_layout_numerics_on_this_machine(tmp_path, monkeypatch):
    """The VNNI kernel's compute (raw u8 input padded with its zero point, raw s8 weights, the zero
    point folded into the bias), compiled without the VNNI schedule so it runs here: within one
    step of onnxruntime, as is the IR reference."""
    from edgec.compiler.build import compile_graph
    from edgec.compiler.interp import interpret
    from edgec.compiler.passes import run_passes
    from edgec.frontends.onnx import from_onnx
    from edgec.runtime import load
    from edgec.targets.schedules import int8
    model = qconv_model(str(tmp_path / "q.onnx"), c=13, o=20, hw=9, stride=2)
    graph = run_passes(from_onnx(model), preset=VNNI)
    assert [n.attrs.get("raw") for n in graph.nodes if n.op == "qconv2d_packed"] == [True]
    x = np.random.default_rng(2).integers(0, 256, (1, 13, 9, 9)).astype(np.uint8)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0].astype(int)
    assert np.abs(interpret(graph, {"x": x})[graph.outputs[0]].astype(int) - want).max() <= 1
    monkeypatch.setattr(int8, "schedule", lambda func, kernel, preset: func)  # plain loops: no AVX-512 here
    compile_graph(graph, targets.get("host"), str(tmp_path / "raw.edgec"), progress=False)
    got = load(str(tmp_path / "raw.edgec")).run({"x": x})[0]
    assert np.abs(got.astype(int) - want).max() <= 1


def qconv_layers_model(path, layers, c, hw, outputs, seed=0, wmax=63):
    """QLinearConvs from x (1, C, *HW), u8, per-channel s8 weights within [-WMAX-1, WMAX]: LAYERS are
    (in channels, out channels, kernel, stride, group, source, destination); OUTPUTS the graph outputs."""
    rng = np.random.default_rng(seed)

    def t(name, a):
        return numpy_helper.from_array(np.asarray(a), name)
    inits = [t("xs", np.float32(0.02)), t("xz", np.uint8(120)), t("ys", np.float32(0.08)), t("yz", np.uint8(100))]
    nodes = []
    for i, (ci, co, k, stride, group, src, dst) in enumerate(layers):
        fan_in = ci // group * k * k
        inits += [t(f"w{i}", rng.integers(-wmax - 1, wmax + 1, (co, ci // group, k, k)).astype(np.int8)),
                  t(f"ws{i}", rng.uniform(0.1, 0.2, co).astype(np.float32) / fan_in),
                  t(f"wz{i}", np.zeros(co, np.int8)), t(f"b{i}", rng.integers(-3000, 3000, co).astype(np.int32))]
        xq = ["xs", "xz"] if src == "x" else ["ys", "yz"]
        nodes.append(helper.make_node("QLinearConv", [src, *xq, f"w{i}", f"ws{i}", f"wz{i}", "ys", "yz", f"b{i}"],
                                      [dst], pads=[k // 2] * 4, strides=[stride] * 2, group=group))
    g = helper.make_graph(nodes, "qlayers", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, c, *hw])],
                          [helper.make_tensor_value_info(y, TensorProto.UINT8, None) for y in outputs], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


# 40 and 36 channels of 83 x 89 pixels (not whole blocks or tiles): past INPUT_L2_SHARE of a 512 KiB L2
BIG_DW = [(5, 40, 1, 1, 1, "x", "a"), (40, 40, 3, 1, 40, "a", "b"), (40, 36, 1, 1, 1, "b", "c"),
          (36, 36, 3, 2, 36, "c", "y1"), (40, 40, 3, 2, 40, "a", "y2")]


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
def test_int8_large_depthwise_copies_rows_and_small_pointwise_runs_pixel_major(tmp_path, recwarn, preset):
    """Depthwise convs (stride 1 and 2) whose channels-last input is past INPUT_L2_SHARE of the L2
    pad-copy the input rows each output row reads as they compute it, and a flat 1x1 conv between
    them with weights in L1 runs pixel-major (all channel blocks of a tile in turn): exact vs the IR
    reference, within one step of onnxruntime (7-bit weights), no fallback."""
    from edgec.compiler.interp import interpret
    from edgec.compiler.passes import run_passes
    from edgec.frontends.onnx import from_onnx
    from edgec.runtime import load
    from edgec.targets.schedules.int8 import copies_rows, weights_in_l1
    model = qconv_layers_model(str(tmp_path / "d.onnx"), BIG_DW, 5, (83, 89), ["y1", "y2"])
    p = targets.get(preset)
    graph = run_passes(from_onnx(onnx.load(model)), preset=p)
    convs = [n for n in graph.nodes if n.op == "qconv2d_packed"]
    assert [(n.attrs.get("in_layout"), n.attrs.get("out_layout")) for n in convs] == [
        (None, "NHWC"), ("NHWC", "NHWC"), ("NHWC", "NHWC"), ("NHWC", None), ("NHWC", None)]
    if fixed(preset):  # (a 2 MB L2 holds the inputs)
        assert all(copies_rows(int(np.prod(graph.values[n.inputs[0]].shape)), p)
                   for n in convs if n.attrs.get("groups", 1) > 1)
    assert weights_in_l1(graph.constants[convs[2].inputs[1]].nbytes, p)
    x = np.random.default_rng(1).integers(0, 256, (1, 5, 83, 89)).astype(np.uint8)
    got = load(api.compile(model, preset, str(tmp_path / "d.edgec"), progress=False)).run({"x": x})
    assert not [w for w in recwarn if "falling back" in str(w.message)], [str(w.message) for w in recwarn]
    ref = interpret(run_passes(from_onnx(onnx.load(model))), {"x": x})
    wants = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for name, g, w in zip(("y1", "y2"), got, wants):
        assert g.shape == (1, 36 if name == "y1" else 40, 42, 45) and np.ptp(g) > 10, name
        assert np.array_equal(g, ref[name]), name
        assert np.abs(g.astype(int) - w.astype(int)).max() <= 1, name


@pytest.mark.arm
def test_arm_int8_large_depthwise_and_pixel_major_pointwise_under_qemu(tmp_path, monkeypatch):
    """The model of the test above for rpi4 (Cortex-A72) under qemu: within one step of onnxruntime.
    (The depthwise input copy had read the row above its input; qemu maps that input's buffer at the
    start of a mapping, and it segfaulted.)"""
    _arm_within_one_step(tmp_path, monkeypatch, "rpi4", "cortex-a72", BIG_DW, 5, (83, 89))


def _arm_within_one_step(tmp_path, monkeypatch, target, cpu, layers, channels, hw):
    """The layers' model (qconv_layers_model) compiled for TARGET and run under qemu as CPU: both
    outputs within one quantization step of onnxruntime."""
    import arm_env
    arm_env.require_tools()
    monkeypatch.setattr(arm_env, "QEMU_CPU", cpu)
    model = qconv_layers_model(str(tmp_path / "m.onnx"), layers, channels, hw, ["y1", "y2"])
    art = api.compile(model, target, str(tmp_path / "m.edgec"), progress=False)
    x = np.random.default_rng(1).integers(0, 256, (1, channels, *hw)).astype(np.uint8)
    wants = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for got, want in zip(arm_env.run_artifact(art, [x], tmp_path, 2), wants):
        assert got.shape == want.shape and np.ptp(want) > 10
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


# 76 channels (not whole blocks of 8 or 16) of 33 x 31 pixels: a stride-1 depthwise conv of 1.4 MFLOP,
# below worth_parallel's size for a conv FLOP but forking at DEPTHWISE_FLOP_COST; its input in the L2
MID_DW = [(5, 76, 1, 1, 1, "x", "a"), (76, 76, 3, 1, 76, "a", "y1"), (76, 76, 3, 2, 76, "a", "y2")]


@pytest.mark.parametrize("preset", ["host", "x86-avx2", "rpi4"])
def test_int8_mid_depthwise_forks_and_keeps_its_accumulators_off_the_workspace(tmp_path, recwarn, monkeypatch, preset):
    """A depthwise conv of 33x31 pixels runs its rows in parallel (the stride-2 one, a quarter of the
    work, on one thread); no int8 conv keeps a 'local' buffer, which TVM 0.27 allocates from the
    workspace pool (only 'global' ones under 1 KB stay on the stack), per iteration inside a parallel
    loop. Exact vs the IR reference on x86, within one step of onnxruntime (rpi4 under qemu)."""
    from edgec.compiler.interp import interpret
    from edgec.compiler.passes import run_passes
    from edgec.frontends.onnx import from_onnx
    from edgec.runtime.artifact import read_manifest
    from edgec.targets.schedules import int8, worth_parallel
    model = qconv_layers_model(str(tmp_path / "d.onnx"), MID_DW, 5, (33, 31), ["y1", "y2"])
    scopes = []
    schedule = int8.schedule

    def spy(func, kernel, p):
        out = schedule(func, kernel, p)
        scopes.extend(re.search(r'scope="(\w+)"', ln)[1] if "scope=" in ln else "global"
                      for ln in out.script().splitlines() if "sblock_alloc_buffer" in ln)
        return out
    monkeypatch.setattr(int8, "schedule", spy)
    art = api.compile(model, preset, str(tmp_path / "d.edgec"), progress=False)
    assert not [w for w in recwarn if "falling back" in str(w.message)], [str(w.message) for w in recwarn]
    assert scopes and "local" not in scopes, scopes
    dws = [k for k in read_manifest(art)["kernels"] if k["anchor"] == "qconv2d_packed"][1:]
    cost = lambda k: dict(k, flops=k["flops"] * int8.DEPTHWISE_FLOP_COST)  # noqa: E731
    assert [(worth_parallel(k), worth_parallel(cost(k))) for k in dws] == [(False, True), (False, False)]
    x = np.random.default_rng(1).integers(0, 256, (1, 5, 33, 31)).astype(np.uint8)
    wants = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    if preset == "rpi4":
        import arm_env
        arm_env.require_tools()
        monkeypatch.setattr(arm_env, "QEMU_CPU", "cortex-a72")
        gots = arm_env.run_artifact(art, [x], tmp_path, 2)
    else:
        from edgec.runtime import load
        gots = load(art).run({"x": x})
        ref = interpret(run_passes(from_onnx(onnx.load(model))), {"x": x})
        assert all(np.array_equal(g, ref[n]) for n, g in zip(("y1", "y2"), gots))
    for got, want in zip(gots, wants):
        assert got.shape == want.shape and np.ptp(want) > 10
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


# 1x1 convs on a 3x3 conv's channels-last result: on 36 channels (whole groups of 4, not of the 8- or
# 16-lane blocks) into 20 (not whole blocks), and on 34 (no whole groups of 4)
FLAT_IN_PLACE = [(24, 36, 3, 1, 1, "x", "a"), (36, 20, 1, 1, 1, "a", "y1"), (24, 34, 3, 1, 1, "x", "b"),
                 (34, 20, 1, 1, 1, "b", "y2")]


@pytest.mark.parametrize("preset,hw", [("host", (12, 10)), ("x86-avx2", (11, 13))])
def test_int8_flat_pointwise_reads_its_input_in_place(tmp_path, recwarn, monkeypatch, preset, hw):
    """With 8-bit dot products (7-bit weights: vpmaddubsw), a flat 1x1 conv whose input copy would be
    the input itself (whole groups of 4 channels) reads its channels-last input in place, no copy pass
    (120 pixels: whole tiles; 143: the last tile's pixels past the end read the last); on 34 channels
    it copies (pads the last group). Exact vs the IR reference,
    within one step of onnxruntime, no fallback. (Not on ARM: sdot shifts the input to int8, smlal
    widens it to int16: both copy.)"""
    from edgec.compiler.interp import interpret
    from edgec.compiler.passes import run_passes
    from edgec.frontends.onnx import from_onnx
    from edgec.runtime import load
    from edgec.targets.schedules import int8
    model = qconv_layers_model(str(tmp_path / "f.onnx"), FLAT_IN_PLACE, 24, hw, ["y1", "y2"])
    blocks = {}
    schedule = int8.schedule

    def spy(func, kernel, p):
        text = func.script()
        blocks[kernel["name"]] = ("qconv_input_view" in text, 'sblock("qconv_input")' in text)
        return schedule(func, kernel, p)
    monkeypatch.setattr(int8, "schedule", spy)
    x = np.random.default_rng(1).integers(0, 256, (1, 24, *hw)).astype(np.uint8)
    got = load(api.compile(model, preset, str(tmp_path / "f.edgec"), progress=False)).run({"x": x})
    assert not [w for w in recwarn if "falling back" in str(w.message)], [str(w.message) for w in recwarn]
    assert sorted(blocks.values()) == [(False, True)] * 3 + [(True, False)], blocks
    ref = interpret(run_passes(from_onnx(onnx.load(model))), {"x": x})
    wants = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for name, g, w in zip(("y1", "y2"), got, wants):
        assert g.shape == (1, 20, *hw) and np.ptp(g) > 10 and np.array_equal(g, ref[name]), name
        assert np.abs(g.astype(int) - w.astype(int)).max() <= 1, name


# 128 channels at 55x55 (a depthwise input past INPUT_L2_SHARE of the 256 KiB L2) and 28x28 (below it:
# 16 blocks of 8 lanes, 4 groups of plane_blocks), depthwise at stride 1 and 2
PLANES = [(3, 16, 3, 2, 1, "x", "a"), (16, 128, 3, 2, 1, "a", "b"), (128, 128, 3, 2, 128, "b", "c"),
          (128, 128, 3, 1, 128, "c", "y1"), (128, 128, 3, 2, 128, "c", "y2")]


def test_int8_small_depthwise_copies_its_planes_in_its_one_parallel_loop(tmp_path, recwarn, monkeypatch):
    """A depthwise conv whose input is below INPUT_L2_SHARE copies its channel groups' padded planes
    in the group's parallel iteration: one parallel loop (no copy pass of its own: a second fork and
    join of the pool). Exact vs the IR reference, within one step of onnxruntime, no fallback."""
    from edgec.compiler.interp import interpret
    from edgec.compiler.passes import run_passes
    from edgec.frontends.onnx import from_onnx
    from edgec.runtime import load
    from edgec.targets.schedules import int8
    model = qconv_layers_model(str(tmp_path / "p.onnx"), PLANES, 3, (220, 220), ["y1", "y2"])
    p = targets.get("x86-avx2")
    assert int8.plane_blocks(16, 8) == 4 and int8.copies_rows(55 * 55 * 128, p) and not int8.copies_rows(28 * 28 * 128, p)
    loops = {}
    schedule = int8.schedule

    def spy(func, kernel, p):
        out = schedule(func, kernel, p)
        loops[tuple(kernel["output_shapes"][0])] = out.script().count("T.parallel")
        return out
    monkeypatch.setattr(int8, "schedule", spy)
    x = np.random.default_rng(1).integers(0, 256, (1, 3, 220, 220)).astype(np.uint8)
    got = load(api.compile(model, p, str(tmp_path / "p.edgec"), progress=False)).run({"x": x})
    assert not [w for w in recwarn if "falling back" in str(w.message)], [str(w.message) for w in recwarn]
    # (writing NCHW graph outputs: a parallel write-back of their own)
    assert loops[(1, 28, 28, 128)] == 1 and loops[(1, 128, 28, 28)] == 2 and loops[(1, 128, 14, 14)] == 2, loops
    ref = interpret(run_passes(from_onnx(onnx.load(model))), {"x": x})
    wants = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for name, g, w in zip(("y1", "y2"), got, wants):
        assert g.shape == ((1, 128, 14, 14) if name == "y2" else (1, 128, 28, 28)) and np.ptp(g) > 10, name
        assert np.array_equal(g, ref[name]), name
        assert np.abs(g.astype(int) - w.astype(int)).max() <= 1, name


@pytest.mark.arm
def test_arm_int8_small_depthwise_planes_under_qemu(tmp_path, monkeypatch):
    """The model of the test above for rpi5 (sdot; 4-lane depthwise blocks, 8 to a group) under
    qemu: within one step of onnxruntime."""
    from edgec.targets.schedules import int8
    assert int8.plane_blocks(32, 4) == 8
    _arm_within_one_step(tmp_path, monkeypatch, "rpi5", "cortex-a76", PLANES, 3, (220, 220))
