"""`edgec quantize`: post-training static int8 quantization with calibration data.

Built on onnxruntime's quantization tools (`quantize_static`), which write standard QDQ ONNX
(QuantizeLinear / DequantizeLinear around Conv, Gemm, MatMul, pools, ...) that any runtime reads
and edgec's fold_qdq pass turns into int8 kernels. Activations are uint8, weights int8 (per
tensor, or per output channel with `per_channel`). Ops onnxruntime's QDQ quantizer has no rule
for (recurrent layers: LSTM, GRU, RNN; Add, Softmax, ...) stay float32; the report says which.

Calibration data: an .npz whose arrays are named after the model's inputs (a model with one
input accepts any single array), samples stacked on axis 0; they are fed in batches of the
model's own batch size. Keras models are converted to ONNX first (tf2onnx, which needs
TensorFlow: `pip install tensorflow tf2onnx`).
"""
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import EdgecError, InputError, ModelError

METHODS = ("minmax", "percentile", "entropy")
FLOAT_KEPT = ("LSTM", "GRU", "RNN")  # recurrent ops: no int8 rule in onnxruntime's QDQ quantizer


@dataclass
class Report:
    output: str
    samples: int
    method: str
    per_channel: bool
    reduce_range: bool = False
    why: str = ""  # why 7-bit weights were chosen (auto)
    quantized: dict = field(default_factory=dict)  # op type -> count of int8 nodes
    float_kept: dict = field(default_factory=dict)  # op type -> count of float32 nodes (no int8 rule)

    def lines(self):
        out = [f"wrote {self.output} ({self.method} calibration on {self.samples} samples, "
               f"{'per-channel' if self.per_channel else 'per-tensor'} {'7-bit' if self.reduce_range else 'int8'} "
               f"weights{f' ({self.why})' if self.why else ''}, uint8 activations)"]
        if self.quantized:
            out.append("int8 kernels: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.quantized.items())))
        recurrent = {k: v for k, v in self.float_kept.items() if k in FLOAT_KEPT}
        if recurrent:
            out.append("kept float32 (recurrent layers are not quantized): "
                       + ", ".join(f"{k} x{v}" for k, v in sorted(recurrent.items())))
        rest = {k: v for k, v in self.float_kept.items() if k not in FLOAT_KEPT}
        if rest:
            out.append("float32 (between dequantize and quantize): "
                       + ", ".join(f"{k} x{v}" for k, v in sorted(rest.items())))
        return out


def load_calibration(path, model):
    """{input name: array of samples} from the .npz at PATH for the ONNX MODEL's inputs."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise InputError(f"calibration data '{path}': cannot read it as .npz ({e})") from None
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    if len(names) == 1 and len(arrays) == 1:
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise InputError(f"calibration data '{path}' has arrays {sorted(arrays)}; the model's inputs "
                         f"{missing} are missing")
    counts = {len(arrays[n]) for n in names}
    if len(counts) != 1 or 0 in counts:
        raise InputError(f"calibration data '{path}': inputs hold different or zero sample counts {sorted(counts)}")
    return {n: arrays[n] for n in names}


def _batches(model, data):
    """Feeds of the model's static batch size (1 where the batch dim is symbolic)."""
    import onnx
    elem = {i.name: i for i in model.graph.input}
    feeds = []
    n = len(next(iter(data.values())))
    first = elem[next(iter(data))].type.tensor_type.shape.dim
    batch = first[0].dim_value if first and first[0].HasField("dim_value") else 1
    for start in range(0, n - batch + 1, batch):
        feed = {}
        for name, arr in data.items():
            tt = elem[name].type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
            chunk = arr[start:start + batch].astype(dtype)
            try:
                feed[name] = chunk.reshape([batch] + [d if d > 0 else s for d, s in zip(dims[1:], chunk.shape[1:])])
            except ValueError:
                raise InputError(f"calibration samples of '{name}' have shape {list(arr.shape[1:])}; the model "
                                 f"wants {dims[1:]}") from None
        feeds.append(feed)
    if not feeds:
        raise InputError(f"calibration data has {n} samples, fewer than one batch of {batch}")
    return feeds


def keras_to_onnx(path, out_dir):
    """Convert a Keras model file to ONNX with tf2onnx (saved-model route); return the .onnx path."""
    try:
        import keras  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        raise EdgecError(f"'{path}': quantizing a Keras model needs TensorFlow and tf2onnx to convert it to ONNX "
                         "first (pip install tensorflow tf2onnx), or pass an ONNX export of it") from None
    import keras
    saved, onnx_path = os.path.join(out_dir, "sm"), os.path.join(out_dir, Path(path).stem + ".onnx")
    keras.models.load_model(path).export(saved, format="tf_saved_model", verbose=False)
    run = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved, "--opset", "17",
                          "--output", onnx_path], capture_output=True, text=True)
    if run.returncode:
        raise EdgecError(f"'{path}': tf2onnx could not convert it: {run.stderr.strip().splitlines()[-1:]}")
    return onnx_path


def auto_reduce_range(target):
    """(7-bit weights?, why) for TARGET (a preset name): on x86 without VNNI, yes: edgec's exact
    kernels for 8-bit weights multiply in 16 bits (`vpmaddwd`, twice the instructions), 7-bit weights
    take `vpmaddubsw` exactly (onnxruntime's documentation also advises 7-bit weights there: its
    own U8S8 kernels saturate); VNNI and ARM dot products are exact for 8-bit weights."""
    from . import targets
    from .targets.schedules.int8 import has_vnni
    preset = targets.get(target)
    if preset.device == "cpu" and preset.arch == "x86_64" and not has_vnni(preset):
        return True, f"auto for {preset.name}: x86 without VNNI, where 7-bit weights take the exact vpmaddubsw kernels"
    return False, ""


def quantize(model, calibration, output=None, method="minmax", per_channel=False, reduce_range="auto",
             target="host"):
    """Quantize MODEL (.onnx, .keras, .h5) to a QDQ int8 ONNX file OUTPUT; return a Report.
    REDUCE_RANGE: True for 7-bit weights (x86 without VNNI then takes u8 x s8 `vpmaddubsw`, which
    8-bit weights could saturate; a little less precision), False for 8-bit, "auto" for what suits
    TARGET (auto_reduce_range)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    if method not in METHODS:
        raise EdgecError(f"unknown calibration method '{method}' (choose {', '.join(METHODS)})")
    why = ""
    if reduce_range == "auto":
        reduce_range, why = auto_reduce_range(target)
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"model file '{model}' does not exist")
    output = output or str(path.with_suffix("")) + ".int8.onnx"
    with tempfile.TemporaryDirectory(prefix="edgec-quantize-") as tmp:
        src = keras_to_onnx(str(path), tmp) if path.suffix.lower() in (".keras", ".h5", ".hdf5") else str(path)
        try:
            fmodel = onnx.load(src)
        except Exception as e:  # noqa: BLE001 - protobuf decode errors
            raise ModelError(f"ONNX model '{src}' is corrupt: {type(e).__name__}") from None
        feeds = _batches(fmodel, load_calibration(calibration, fmodel))
        src = _modern_opset(fmodel, src, os.path.join(tmp, "opset13.onnx"))
        prepared = os.path.join(tmp, "prepared.onnx")
        try:
            quant_pre_process(src, prepared, skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - optional optimisation: quantize the model as it is
            prepared = src

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(feeds)

            def get_next(self):
                return next(self.it, None)

        quantize_static(prepared, output, Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                          "percentile": CalibrationMethod.Percentile}[method],
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    report = Report(output, sum(len(next(iter(f.values()))) for f in feeds), method, per_channel, reduce_range, why)
    _census(onnx.load(output), report)
    return report


def _modern_opset(model, path, out):
    """onnxruntime's quantizer wants opset >= 11: convert older models to opset 13 (initializers
    listed as graph inputs, as IR version 3 required, are dropped from the inputs first)."""
    import onnx
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset >= 11:
        return path
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.ir_version = max(model.ir_version, 7)
    try:
        onnx.save(onnx.version_converter.convert_version(model, 13), out)
    except Exception as e:  # noqa: BLE001 - the converter raises its own types
        raise ModelError(f"'{path}': opset {opset} is too old for onnxruntime's quantizer and converting it to "
                         f"opset 13 failed ({str(e).splitlines()[0]})") from None
    return out


INT8_OPS = ("Conv", "Gemm", "MatMul", "MaxPool", "Reshape", "Flatten", "Transpose", "Slice")  # fold_qdq's


def _census(model, report):
    """Count the ops edgec runs in int8 (those fold_qdq folds, fed by DequantizeLinear) and the rest,
    which run in float32 between dequantize and quantize (or stay float: recurrent layers)."""
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        int8 = n.op_type in INT8_OPS and n.input and n.input[0] in dq_out
        target = report.quantized if int8 else report.float_kept
        target[n.op_type] = target.get(n.op_type, 0) + 1


def is_qdq(model):
    """Whether the ONNX MODEL (path or ModelProto) holds QuantizeLinear / DequantizeLinear nodes."""
    import onnx
    m = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node)


SATURATING = ("QLinearConv", "QLinearMatMul", "QGemm")  # onnxruntime runs these on its U8S8 GEMM
INTEGER = ("MatMulInteger",)  # so does this (quantize_dynamic's): its int32 result saturates
DYNAMIC = ("DynamicQuantizeLSTM",)  # onnxruntime quantizes their activations per step; edgec does not


def qdq_form(model):
    """MODEL (path or ModelProto) with its QLinearConv, QLinearMatMul and com.microsoft QGemm nodes
    written as DequantizeLinear -> the float op -> QuantizeLinear, or None where it has none (or an
    opset below 13, whose DequantizeLinear has no axis). onnxruntime runs these ops on U8S8 kernels
    that saturate 16-bit pair sums on AVX2 without VNNI (8-bit weights: off by several steps);
    the QDQ form, run as written (optimizations off), is the exact reference. A MatMulInteger (on
    the same kernels: thousands off in int32 with u8 x s8 operands) becomes the int32 MatMul of its
    operands less their zero points, exact. A DynamicQuantizeLSTM
    becomes the float LSTM of its dequantized weights (what edgec runs; onnxruntime's also rounds
    X and H to 8 bits per step)."""
    import onnx
    from onnx import helper
    src = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    opset = next((o.version for o in src.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13 or not any(n.op_type in SATURATING + INTEGER + DYNAMIC for n in src.graph.node):
        return None
    m = onnx.ModelProto()
    m.CopyFrom(src)
    nodes = []
    for n in m.graph.node:
        if n.op_type in DYNAMIC and n.domain == "com.microsoft":
            nodes.append(_float_lstm(m, n))
            continue
        if n.op_type in INTEGER and n.domain in ("", "ai.onnx"):
            nodes.extend(_int32_matmul(m, n))
            continue
        if n.op_type not in SATURATING or (n.op_type == "QGemm") != (n.domain == "com.microsoft"):
            nodes.append(n)
            continue
        ins, attrs = list(n.input) + [""] * (9 - len(n.input)), {a.name: helper.get_attribute_value(a) for a in n.attribute}
        tag = (n.name or n.output[0]) + "/qdq"

        def dq(x, scale, zp, axis, name):
            inputs = [x, scale] + ([zp] if zp else [])
            nodes.append(helper.make_node("DequantizeLinear", inputs, [f"{tag}/{name}"], axis=axis))
            return f"{tag}/{name}"
        if n.op_type == "QLinearConv":
            x, w = dq(ins[0], ins[1], ins[2], 1, "x"), dq(ins[3], ins[4], ins[5], 0, "w")
            float_ins, out_scale = [x, w], (ins[6], ins[7])
            if ins[8]:
                nodes.append(helper.make_node("Mul", [ins[1], ins[4]], [f"{tag}/bs"]))
                float_ins.append(dq(ins[8], f"{tag}/bs", "", 0, "b"))
            nodes.append(helper.make_node("Conv", float_ins, [f"{tag}/y"], **attrs))
        elif n.op_type == "QLinearMatMul":
            a, b = dq(ins[0], ins[1], ins[2], 0, "a"), dq(ins[3], ins[4], ins[5], -1, "b")
            out_scale = (ins[6], ins[7])
            nodes.append(helper.make_node("MatMul", [a, b], [f"{tag}/y"]))
        else:  # QGemm (A, a_s, a_zp, B, b_s, b_zp, C, y_s, y_zp)
            a, b = dq(ins[0], ins[1], ins[2], 0, "a"), dq(ins[3], ins[4], ins[5], 0 if attrs.get("transB") else 1, "b")
            float_ins, out_scale = [a, b], (ins[7], ins[8])
            if ins[6]:
                nodes.append(helper.make_node("Mul", [ins[1], ins[4]], [f"{tag}/cs"]))
                float_ins.append(dq(ins[6], f"{tag}/cs", "", -1, "c"))
            nodes.append(helper.make_node("Gemm", float_ins, [f"{tag}/y"], **attrs))
        if out_scale[0]:
            nodes.append(helper.make_node("QuantizeLinear", [f"{tag}/y", *[v for v in out_scale if v]], list(n.output)))
        else:
            nodes.append(helper.make_node("Identity", [f"{tag}/y"], list(n.output)))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


def _int32_matmul(m, n):
    """Nodes computing MatMulInteger N of model M as (A - a_zp) @ (B - b_zp) in int32 (a_zp, one
    value or one a row of A, made a column)."""
    from onnx import TensorProto, helper
    ins = list(n.input) + [""] * (4 - len(n.input))
    tag, nodes = (n.name or n.output[0]) + "/int32", []
    operands = []
    for x, zp, name in ((ins[0], ins[2], "a"), (ins[1], ins[3], "b")):
        nodes.append(helper.make_node("Cast", [x], [f"{tag}/{name}"], to=TensorProto.INT32))
        if zp:
            nodes.append(helper.make_node("Cast", [zp], [f"{tag}/{name}_zp"], to=TensorProto.INT32))
            zp = f"{tag}/{name}_zp"
            if name == "a":
                m.graph.initializer.append(helper.make_tensor(f"{tag}/column", TensorProto.INT64, [2], [-1, 1]))
                nodes.append(helper.make_node("Reshape", [zp, f"{tag}/column"], [f"{tag}/a_zp_column"]))
                zp = f"{tag}/a_zp_column"
            nodes.append(helper.make_node("Sub", [f"{tag}/{name}", zp], [f"{tag}/{name}_centered"]))
        operands.append(f"{tag}/{name}_centered" if zp else f"{tag}/{name}")
    nodes.append(helper.make_node("MatMul", operands, list(n.output)))
    return nodes


def _float_lstm(m, n):
    """The LSTM a DynamicQuantizeLSTM node N of model M computes with its dequantized weights (new
    initializers in M; N as it is where its weights are not constants)."""
    from onnx import helper, numpy_helper
    inits = {t.name: t for t in m.graph.initializer}
    ins = list(n.input) + [""] * (12 - len(n.input))
    if any(ins[i] not in inits for i in (1, 2, 8, 9, 10, 11)):
        return n
    weights = []
    for w_i, s_i, z_i in ((1, 8, 9), (2, 10, 11)):
        w, s, z = (numpy_helper.to_array(inits[ins[i]]) for i in (w_i, s_i, z_i))
        shape = (len(w), 1, -1)
        f = (w.astype(np.float32) - z.reshape(shape).astype(np.float32)) * s.reshape(shape).astype(np.float32)
        name = f"{n.name or n.output[0]}/float_{w_i}"
        m.graph.initializer.append(numpy_helper.from_array(f.transpose(0, 2, 1).copy(), name))
        weights.append(name)
    inputs = [ins[0], *weights, *ins[3:8]]
    while inputs[-1] == "":
        inputs.pop()
    return helper.make_node("LSTM", inputs, list(n.output), name=n.name, **{a.name: helper.get_attribute_value(a)
                                                                           for a in n.attribute})


def output_steps(model):
    """{output name: quantization step} of an ONNX model's outputs that a DequantizeLinear with a
    per-tensor constant scale produces (1 for integer outputs); other outputs are left out."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(str(model), load_external_data=False)
    consts = {t.name: t for t in m.graph.initializer}
    consts.update({n.output[0]: n.attribute[0].t for n in m.graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    producers = {o: n for n in m.graph.node for o in n.output}
    steps = {}
    for out in m.graph.output:
        n = producers.get(out.name)
        if out.type.tensor_type.elem_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            steps[out.name] = 1.0
        elif n is not None and n.op_type == "DequantizeLinear" and n.input[1] in consts:
            scale = numpy_helper.to_array(consts[n.input[1]])
            if scale.size == 1:
                steps[out.name] = float(scale.reshape(-1)[0])
    return steps
