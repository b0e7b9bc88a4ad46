"""TE computes for the quantized ops (compiler/ops/quant.py), with the references' arithmetic:
float32 division / product, round half to even (`nearbyint`), saturate.

qconv2d / qdense / qmatmul subtract the zero points into int32 operands and reuse the float
lowerings' loops with int32 accumulation (exact); the int8 schedules (targets/schedules/int8.py)
replace these with u8 x s8 dot-product kernels where the preset has them.
"""
from tvm import te, tirx

from ..ops.quant import clamp_bounds, qrange
from . import lowering
from . import nn as float_nn


def bcast(t, idx):
    """T (shape broadcastable to len(IDX) dims) read at the broadcast index IDX."""
    r = len(t.shape)
    off = len(idx) - r
    return t(*[0 if int(t.shape[k]) == 1 else idx[off + k] for k in range(r)])


def _saturate(v, lo, hi, dtype):
    return te.min(te.max(v, tirx.const(lo, "float32")), tirx.const(hi, "float32")).astype(dtype)


@lowering("quantize_linear")
def quantize_linear(a, x, scale, zp):
    lo, hi = qrange(a["dtype"])

    def f(*i):
        q = tirx.nearbyint(x(*i).astype("float32") / bcast(scale, i).astype("float32"))
        return _saturate(q + bcast(zp, i).astype("float32"), lo, hi, a["dtype"])
    return te.compute(x.shape, f, name="quantize")


@lowering("dequantize_linear")
def dequantize_linear(a, x, scale, zp):
    out = a.get("dtype", str(scale.dtype))
    return te.compute(x.shape, lambda *i: ((x(*i).astype("int32") - bcast(zp, i).astype("int32")).astype("float32")
                                           * bcast(scale, i).astype("float32")).astype(out), name="dequantize")


@lowering("requantize")
def requantize(a, acc, m, zp):
    lo, hi = clamp_bounds(a)

    def f(*i):
        q = tirx.nearbyint(acc(*i).astype("float32") * bcast(m, i).astype("float32"))
        return _saturate(q + bcast(zp, i).astype("float32"), lo, hi, a["dtype"])
    return te.compute(acc.shape, f, name="requantize")


def centered(t, zp, axis):
    """int32 T - ZP, ZP a scalar or one value per index of AXIS."""
    def f(*i):
        z = zp() if len(zp.shape) == 0 else zp[0 if int(zp.shape[0]) == 1 else i[axis]]
        return t(*i).astype("int32") - z.astype("int32")
    return te.compute(t.shape, f, name="centered")


@lowering("qconv2d")
def qconv2d(a, x, w, x_zp, w_zp, b=None):
    # padding the centered input with 0 is padding the input with its zero point
    return float_nn.conv2d(a, centered(x, x_zp, 1), centered(w, w_zp, 0), b)


@lowering("qdense")
def qdense(a, x, w, x_zp, w_zp, b=None):
    return float_nn.dense(a, centered(x, x_zp, 0), centered(w, w_zp, 0), b)


@lowering("qmatmul")
def qmatmul(a, x, y, x_zp, y_zp):
    return float_nn.matmul(a, centered(x, x_zp, len(x.shape) - 2), centered(y, y_zp, len(y.shape) - 1))
