"""Quantized ONNX: QDQ (QuantizeLinear / DequantizeLinear), the QOperator ops (QLinearConv,
QLinearMatMul, ConvInteger, MatMulInteger, DynamicQuantizeLinear) and the com.microsoft ones
onnxruntime's quantizer writes in its QOperator format (QLinearAdd / Mul / Concat / AveragePool /
GlobalAveragePool / LeakyRelu / Sigmoid / Softmax, QGemm; DynamicQuantizeLSTM as a float32 LSTM),
as IR int8 ops (compiler/ops/quant.py).
The com.microsoft ops are imported as dequantize -> the float op (through its own converter) ->
quantize, the QDQ form: the fold_qdq pass turns them into int8 kernels where it has them.

Per-axis and blocked scales / zero points are reshaped (blocked: gathered) so they broadcast to
the data. A DequantizeLinear of a constant stays a node (it is not folded at import), so the
fold_qdq pass still sees the int8 weight and its scale; constant folding removes the ones it
does not use.
"""
import warnings

import numpy as np
import onnx

from .conv import add_conv, conv_attrs
from ...errors import EdgecWarning
from .importer import Context
from .registry import converter

QTYPES = ("int8", "uint8", "int16", "uint16")
# ONNX TensorProto element types of output_dtype
OUTPUT_DTYPES = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 1: "float32", 10: "float16"}


def _unfolded(ctx, op, inputs, attrs):
    """Add IR node OP without folding it to a constant (ctx.add folds constant inputs)."""
    hint = ctx.imp.hint(ctx.name)
    out = ctx.graph.add_node(op, inputs, attrs, name=ctx.fresh(hint + "_" + op), source=[ctx.name],
                             outputs=[ctx.fresh(hint)])
    ctx._created.extend(out)
    return out[0]


def _zero(ctx, dtype):
    return ctx.add_const(np.zeros((), dtype), "zero_point")


def _broadcastable(ctx, param, x, axis, block):
    """PARAM (scalar, per-axis 1-D or blocked) reshaped / gathered to broadcast to X."""
    xs, ps = ctx.shape(x), ctx.shape(param)
    rank = len(xs)
    if int(np.prod(ps)) == 1 and not block:
        return ctx.reshape(param, ())
    axis = axis % max(rank, 1)
    if block:
        if len(ps) != rank or ps[axis] != -(-xs[axis] // block) or any(
                p != d for i, (p, d) in enumerate(zip(ps, xs)) if i != axis):
            raise ctx.error(f"blocked scale / zero point of shape {list(ps)} does not fit input {list(xs)} "
                            f"with block_size {block} on axis {axis}")
        index = ctx.add_const((np.arange(xs[axis]) // block).astype(np.int64), "block_index")
        return ctx.add1("gather", [param, index], {"axis": axis})
    if len(ps) != 1 or ps[0] != xs[axis]:
        raise ctx.error(f"scale / zero point of shape {list(ps)} does not match input {list(xs)} on axis {axis}")
    return ctx.reshape(param, tuple(xs[axis] if i == axis else 1 for i in range(rank)))


def _params(ctx, x, scale_i, zp_i, zp_dtype):
    axis = int(ctx.attr("axis", 1))
    block = int(ctx.attr("block_size", 0))
    scale = ctx.input(scale_i)
    if not ctx.dtype(scale).startswith("float"):
        raise ctx.unsupported(f"scale of type {ctx.dtype(scale)} is not supported")
    zp = ctx.input(zp_i) if ctx.has_input(zp_i) else _zero(ctx, zp_dtype)
    if ctx.dtype(zp) != zp_dtype:
        raise ctx.error(f"zero point is {ctx.dtype(zp)}, want {zp_dtype}")
    if not ctx.has_input(zp_i) and ctx.shape(scale) != ():
        zp = ctx.add_const(np.zeros(ctx.shape(scale), zp_dtype), "zero_point")
    return _broadcastable(ctx, scale, x, axis, block), _broadcastable(ctx, zp, x, axis, block)


def _output_dtype(ctx, default):
    code = int(ctx.attr("output_dtype", 0))
    if code == 0:
        return default
    if code not in OUTPUT_DTYPES:
        raise ctx.unsupported(f"output_dtype {code} is not supported (int8/uint8/int16/uint16 only)")
    return OUTPUT_DTYPES[code]


@converter("QuantizeLinear")
def quantize_linear(ctx):
    ctx.ignore("saturate")  # float8 outputs only
    if int(ctx.attr("precision", 0)):
        raise ctx.unsupported("attribute precision is not supported")
    x = ctx.input(0)
    if not ctx.dtype(x).startswith("float"):
        raise ctx.unsupported(f"input dtype {ctx.dtype(x)} is not supported (floats only)")
    dtype = ctx.dtype(ctx.input(2)) if ctx.has_input(2) else _output_dtype(ctx, "uint8")
    if ctx.has_input(2):
        _output_dtype(ctx, dtype)
    if dtype not in QTYPES:
        raise ctx.unsupported(f"quantizing to {dtype} is not supported ({', '.join(QTYPES)} only)")
    scale, zp = _params(ctx, x, 1, 2, dtype)
    return [ctx.add1("quantize_linear", [x, scale, zp], {"dtype": dtype})]


@converter("DequantizeLinear")
def dequantize_linear(ctx):
    x = ctx.input(0)
    dtype = ctx.dtype(x)
    if dtype not in QTYPES + ("int32",):
        raise ctx.unsupported(f"dequantizing {dtype} is not supported")
    scale, zp = _params(ctx, x, 1, 2, dtype)
    return [_dequantize(ctx, [x, scale, zp], _output_dtype(ctx, ctx.dtype(scale)))]


def _dequantize(ctx, inputs, dtype):
    """dequantize_linear of INPUTS (x, scale, zero point) to DTYPE; of a constant x kept as a node:
    fold_qdq wants the int8 weight."""
    if ctx.is_const(inputs[0]):
        return _unfolded(ctx, "dequantize_linear", inputs, {"dtype": dtype})
    return ctx.add1("dequantize_linear", inputs, {"dtype": dtype})


@converter("DynamicQuantizeLinear")
def dynamic_quantize_linear(ctx):
    """y_scale = (max(x, 0) - min(x, 0)) / 255, y_zp = sat(rint(-min / y_scale)), y = quantize."""
    x = ctx.input(0)
    if ctx.dtype(x) != "float32":
        raise ctx.unsupported(f"input dtype {ctx.dtype(x)} is not supported (float32 only)")
    zero = ctx.add_const(np.zeros((), "float32"))
    axes = {"axes": list(range(len(ctx.shape(x)))), "keepdims": False}
    lo = ctx.add1("minimum", [ctx.add1("reduce_min", [x], axes), zero])
    hi = ctx.add1("maximum", [ctx.add1("reduce_max", [x], axes), zero])
    scale = ctx.add1("div", [ctx.add1("sub", [hi, lo]), ctx.add_const(np.asarray(255, "float32"))])
    zp = ctx.add1("quantize_linear", [ctx.add1("neg", [lo]), scale, _zero(ctx, "uint8")], {"dtype": "uint8"})
    return [ctx.add1("quantize_linear", [x, scale, zp], {"dtype": "uint8"}), scale, zp]


def _int8(ctx, *names):
    for n in names:
        if ctx.dtype(n) not in ("int8", "uint8"):
            raise ctx.unsupported(f"operand type {ctx.dtype(n)} is not supported (int8 / uint8 only)")


def _zp(ctx, i, like, sizes, what):
    """Zero point input I (default 0) as a scalar or 1-D of one of SIZES."""
    if not ctx.has_input(i):
        return _zero(ctx, ctx.dtype(like))
    zp = ctx.input(i)
    if ctx.dtype(zp) != ctx.dtype(like):
        raise ctx.error(f"{what} zero point is {ctx.dtype(zp)}, its operand {ctx.dtype(like)}")
    n = int(np.prod(ctx.shape(zp)))
    if n == 1:
        return ctx.reshape(zp, ())
    if n not in sizes:
        raise ctx.unsupported(f"{what} zero point of shape {list(ctx.shape(zp))} is not supported "
                              f"(a scalar or {' / '.join(map(str, sizes))} values)")
    return ctx.reshape(zp, (n,))


def _conv(ctx, x, w, x_zp_i, w_zp_i, bias_i=None):
    """qconv2d of an (N, C, L) or (N, C, H, W) input; returns (int32 result, its 1-D flag)."""
    _int8(ctx, x, w)
    xs, ws = ctx.shape(x), ctx.shape(w)
    rank = len(xs) - 2
    if rank not in (1, 2) or len(ws) != len(xs):
        raise ctx.unsupported(f"{rank}-D integer convolution of input {list(xs)}, weight {list(ws)} is not "
                              "supported (1-D and 2-D only)")
    strides, dilations, pads, group = conv_attrs(ctx, xs, ws)
    ins = [x, w, _zp(ctx, x_zp_i, x, [], "input"), _zp(ctx, w_zp_i, w, [ws[0]], "weight")]
    if bias_i is not None and ctx.has_input(bias_i):
        ins.append(ctx.input(bias_i))
    return add_conv(ctx, "qconv2d", ins, strides, dilations, pads, group)


@converter("ConvInteger", since=10)
def conv_integer(ctx):
    return [_conv(ctx, ctx.input(0), ctx.input(1), 2, 3)]


def _matmul(ctx, b_i, a_zp_i, b_zp_i, a_zp_rows):
    """int32 qmatmul of input 0 (A) and input B_I (B) with zero points A_ZP_I (one value, or one a
    row of A where A_ZP_ROWS) and B_ZP_I (one value, or one a column of B)."""
    a, b = ctx.input(0), ctx.input(b_i)
    _int8(ctx, a, b)
    if len(ctx.shape(a)) < 2 or len(ctx.shape(b)) < 2:
        raise ctx.unsupported("integer matmul of 1-D operands is not supported")
    return ctx.add1("qmatmul", [a, b, _zp(ctx, a_zp_i, a, [ctx.shape(a)[-2]] if a_zp_rows else [], "A"),
                                _zp(ctx, b_zp_i, b, [ctx.shape(b)[-1]], "B")])


@converter("MatMulInteger", since=10)
def matmul_integer(ctx):
    return [_matmul(ctx, 1, 2, 3, a_zp_rows=True)]


def _multiplier(ctx, scales, out_shape, axis):
    """float32 s_a * s_b / s_y with a per-channel s_b (on AXIS of the output) made broadcastable."""
    sa, sb, sy = (ctx.cast(ctx.input(i), "float32") for i in scales)
    for s in (sa, sy):
        if int(np.prod(ctx.shape(s))) != 1:
            raise ctx.unsupported(f"a per-channel input or output scale {list(ctx.shape(s))} is not supported")
    n = int(np.prod(ctx.shape(sb)))
    if n != 1 and n != out_shape[axis]:
        raise ctx.error(f"weight scale of shape {list(ctx.shape(sb))} does not match {out_shape[axis]} channels")
    sb = ctx.reshape(sb, ()) if n == 1 else ctx.reshape(sb, tuple(n if i == axis % len(out_shape) else 1
                                                                  for i in range(len(out_shape))))
    return ctx.add1("div", [ctx.add1("mul", [ctx.reshape(sa, ()), sb]), ctx.reshape(sy, ())])


def _requantize(ctx, acc, m, zp_i):
    zp = ctx.input(zp_i) if ctx.has_input(zp_i) else _zero(ctx, "uint8")
    if ctx.dtype(zp) not in ("int8", "uint8") or int(np.prod(ctx.shape(zp))) != 1:
        raise ctx.unsupported(f"output zero point {ctx.dtype(zp)} {list(ctx.shape(zp))} is not supported "
                              "(one int8 / uint8 value)")
    return ctx.add1("requantize", [acc, m, ctx.reshape(zp, ())], {"dtype": ctx.dtype(zp)})


@converter("QLinearConv", since=10)
def qlinear_conv(ctx):
    acc = _conv(ctx, ctx.input(0), ctx.input(3), 2, 5, bias_i=8)
    return [_requantize(ctx, acc, _multiplier(ctx, (1, 4, 6), ctx.shape(acc), 1), 7)]


@converter("QLinearMatMul", since=10)
def qlinear_matmul(ctx):
    acc = _matmul(ctx, 3, 2, 5, a_zp_rows=False)
    return [_requantize(ctx, acc, _multiplier(ctx, (1, 4, 6), ctx.shape(acc), -1), 7)]


def _dequant(ctx, i):
    """Input I dequantized with the per-tensor scale and zero point at inputs I + 1, I + 2."""
    x = ctx.input(i)
    _int8(ctx, x)
    scale, zp = ctx.cast(ctx.input(i + 1), "float32"), ctx.input(i + 2) if ctx.has_input(i + 2) else \
        _zero(ctx, ctx.dtype(x))
    if int(np.prod(ctx.shape(scale))) != 1 or int(np.prod(ctx.shape(zp))) != 1:
        raise ctx.unsupported("per-channel scales are not supported")
    if ctx.dtype(zp) != ctx.dtype(x):
        raise ctx.error(f"zero point is {ctx.dtype(zp)}, its operand {ctx.dtype(x)}")
    return ctx.add1("dequantize_linear", [x, ctx.reshape(scale, ()), ctx.reshape(zp, ())])


def _quant(ctx, y, scale_i, zp_i, dtype):
    """Float Y quantized to the per-tensor scale and zero point at inputs SCALE_I, ZP_I (DTYPE
    where the zero point is absent)."""
    zp = ctx.input(zp_i) if ctx.has_input(zp_i) else _zero(ctx, dtype)
    _int8(ctx, zp)
    if int(np.prod(ctx.shape(ctx.input(scale_i)))) != 1 or int(np.prod(ctx.shape(zp))) != 1:
        raise ctx.unsupported("a per-channel output scale is not supported")
    return ctx.add1("quantize_linear", [y, ctx.reshape(ctx.cast(ctx.input(scale_i), "float32"), ()),
                                        ctx.reshape(zp, ())], {"dtype": ctx.dtype(zp)})


def _float_ops(ctx, op_type, inputs, drop=(), opset=None, n_outputs=1):
    """The float ONNX op OP_TYPE on the IR values INPUTS ("" for an absent one), with this node's
    attributes less DROP, converted by OP_TYPE's own converter (its checks, its attribute rules,
    this node's name in errors; OPSET: the opset whose semantics apply); returns its IR outputs."""
    imp = ctx.imp
    for name in inputs:
        if name:
            imp.env.setdefault(name, name)  # IR values stand for themselves as ONNX names
    outs = [imp.fresh(imp.hint(ctx.name) + "_float") for _ in range(n_outputs)]
    imp.reserved.update(outs)
    node = onnx.NodeProto(op_type=op_type, name=ctx.name, input=list(inputs), output=outs)
    node.attribute.extend(a for a in ctx.node.attribute if a.name not in drop)
    ctx.ignore(*(a.name for a in ctx.node.attribute if a.name not in drop))
    inner = Context(imp, node, 0)
    inner.name, inner.opset, inner.where = ctx.name, opset or ctx.opset, ctx.where  # errors name this node
    imp._convert(inner)
    return [imp.env[o] for o in outs]


def _float_op(ctx, op_type, inputs, drop=(), opset=None):
    return _float_ops(ctx, op_type, inputs, drop, opset)[0]


def _channels_first(ctx, x):
    """X as NCHW where the node says channels_last (onnxruntime's NHWC int8 ops)."""
    if not int(ctx.attr("channels_last", 0)):
        return x, lambda y: y
    r = len(ctx.shape(x))
    to_first, to_last = [0, r - 1, *range(1, r - 1)], [0, *range(2, r), 1]
    return ctx.add1("transpose", [x], {"perm": to_first}), lambda y: ctx.add1("transpose", [y], {"perm": to_last})


def _qlinear_unary(ctx, op_type, opset=None):
    """onnxruntime's QLinear{AveragePool, GlobalAveragePool, LeakyRelu, Sigmoid, Softmax} (X, x_scale,
    x_zp, y_scale, y_zp): dequantize, the float op, quantize (fold_qdq then keeps what it can in int8)."""
    x, back = _channels_first(ctx, _dequant(ctx, 0))
    y = _float_op(ctx, op_type, [x], drop=("channels_last", "opset"), opset=opset)
    return [_quant(ctx, back(y), 3, 4, ctx.dtype(ctx.input(0)))]


def _qlinear_binary(ctx, op):
    """onnxruntime's QLinearAdd / QLinearMul: dequantize both, OP in float32, quantize."""
    y = ctx.add1(op, [_dequant(ctx, 0), _dequant(ctx, 3)])
    return [_quant(ctx, y, 6, 7, ctx.dtype(ctx.input(0)))]


converter("com.microsoft:QLinearAdd")(lambda ctx: _qlinear_binary(ctx, "add"))
converter("com.microsoft:QLinearMul")(lambda ctx: _qlinear_binary(ctx, "mul"))
converter("com.microsoft:QLinearAveragePool")(lambda ctx: _qlinear_unary(ctx, "AveragePool"))
converter("com.microsoft:QLinearGlobalAveragePool")(lambda ctx: _qlinear_unary(ctx, "GlobalAveragePool"))
converter("com.microsoft:QLinearLeakyRelu")(lambda ctx: _qlinear_unary(ctx, "LeakyRelu"))
converter("com.microsoft:QLinearSigmoid")(lambda ctx: _qlinear_unary(ctx, "Sigmoid"))


@converter("com.microsoft:QLinearSoftmax")
def qlinear_softmax(ctx):
    """Softmax with the semantics of the `opset` attribute's Softmax (2-D coercion before 13)."""
    return _qlinear_unary(ctx, "Softmax", opset=int(ctx.attr("opset", ctx.opset)))


@converter("com.microsoft:QLinearConcat")
def qlinear_concat(ctx):
    """(y_scale, y_zp, then x, x_scale, x_zp per input): concat of the dequantized inputs, quantized."""
    if len(ctx.inputs) < 5 or (len(ctx.inputs) - 2) % 3:
        raise ctx.error(f"{len(ctx.inputs)} inputs: want y_scale, y_zero_point and (x, x_scale, x_zero_point) per input")
    xs = [_dequant(ctx, i) for i in range(2, len(ctx.inputs), 3)]
    return [_quant(ctx, _float_op(ctx, "Concat", xs), 0, 1, ctx.dtype(ctx.input(2)))]


@converter("com.microsoft:QGemm")
def qgemm(ctx):
    """(A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp): Gemm of the dequantized A and B (B per
    tensor or per output column), plus C (int32, scale a_scale * b_scale), quantized to y_scale /
    y_zp where given, else float32."""
    a, b = ctx.input(0), ctx.input(3)
    _int8(ctx, a, b)
    trans_b = int(ctx.attr("transB", 0))
    n = ctx.shape(b)[0 if trans_b else 1]
    sa, sb = ctx.cast(ctx.input(1), "float32"), ctx.cast(ctx.input(4), "float32")
    if int(np.prod(ctx.shape(sa))) != 1:
        raise ctx.unsupported("a per-row scale of A is not supported")
    sa, axis = ctx.reshape(sa, ()), 0 if trans_b else 1
    per_col = int(np.prod(ctx.shape(sb))) != 1
    if per_col and int(np.prod(ctx.shape(sb))) != n:
        raise ctx.error(f"B's scale of shape {list(ctx.shape(sb))} does not match its {n} output columns")
    sb = ctx.reshape(sb, (n,)) if per_col else ctx.reshape(sb, ())
    za = _zp(ctx, 2, a, [], "A")
    zb = _zp(ctx, 5, b, [n], "B")

    def along(v, rank_axis):  # a per-column vector shaped to broadcast over B / the output
        return ctx.reshape(v, tuple(n if i == rank_axis else 1 for i in range(2))) if ctx.shape(v) else v
    af = ctx.add1("dequantize_linear", [a, sa, za])
    ins = [af, _dequantize(ctx, [b, along(sb, axis), along(zb, axis)], "float32")]
    if ctx.has_input(6):
        c = ctx.input(6)
        if ctx.dtype(c) != "int32":
            raise ctx.error(f"C is {ctx.dtype(c)}, want int32")
        sc = ctx.add1("mul", [sa, sb])
        zc = ctx.add_const(np.zeros(ctx.shape(sc), "int32"), "zero_point")
        ins.append(_dequantize(ctx, [c, along(sc, 1) if len(ctx.shape(c)) == 2 else sc,
                                     along(zc, 1) if len(ctx.shape(c)) == 2 else zc], "float32"))
    y = _float_op(ctx, "Gemm", ins)
    if not ctx.has_input(7):
        return [y]
    return [_quant(ctx, y, 7, 8, ctx.dtype(a))]


@converter("com.microsoft:DynamicQuantizeLSTM")
def dynamic_quantize_lstm(ctx):
    """onnxruntime's dynamically quantized LSTM (quantize_dynamic): X, W (int8, [dirs, input, 4 x
    hidden]), R ([dirs, hidden, 4 x hidden]), B, sequence_lens, initial_h, initial_c, P, then W's
    and R's scales and zero points (per direction, or per direction and gate column). edgec has no
    int8 recurrent kernel: the LSTM runs in float32 on the dequantized weights (said at compile
    time); onnxruntime also quantizes X and H per step, so its outputs differ by that rounding."""
    def weights(i, scale_i, zp_i, what):
        w = ctx.input(i)
        _int8(ctx, w)
        d, _, gates = ctx.shape(w)
        scale, zp = ctx.cast(ctx.input(scale_i), "float32"), ctx.input(zp_i)
        if ctx.shape(scale) not in ((d,), (d, gates)) or ctx.shape(zp) != ctx.shape(scale):
            raise ctx.error(f"{what} scale {list(ctx.shape(scale))} / zero point {list(ctx.shape(zp))} do not fit "
                            f"{what} of shape {[d, _, gates]} (per direction, or per direction and column)")
        shape = (d, 1, gates) if len(ctx.shape(scale)) == 2 else (d, 1, 1)
        centered = ctx.add1("sub", [ctx.cast(w, "float32"), ctx.reshape(ctx.cast(zp, "float32"), shape)])
        return ctx.add1("transpose", [ctx.add1("mul", [centered, ctx.reshape(scale, shape)])], {"perm": [0, 2, 1]})
    warnings.warn(f"{ctx.where()}: runs as a float32 LSTM on its dequantized int8 weights (edgec has no int8 "
                  "recurrent kernel)", EdgecWarning, stacklevel=2)
    ins = [ctx.input(0), weights(1, 8, 9, "W"), weights(2, 10, 11, "R")]
    ins += [ctx.input(i) if ctx.has_input(i) else "" for i in range(3, 8)]
    while ins[-1] == "":
        ins.pop()
    return _float_ops(ctx, "LSTM", ins, n_outputs=len(ctx.outputs))
