"""TE computes for elementwise ops (topi handles broadcasting)."""
from tvm import te, tirx, topi

from . import fastmath, lowering


def _c(x, v):
    return tirx.const(v, x.dtype)


def nan_max(v, c):
    """max(v, c) that keeps a NaN in V, as onnxruntime's Relu, Clip and HardSigmoid do. TVM lowers
    max(a, b) to `a > b ? a : b`, which returns b when either is NaN: the constant goes first.
    (A select on v would read v twice, and chains of fused ops would grow exponentially.)"""
    return te.max(c, v)


def nan_min(v, c):
    return te.min(c, v)


def _fast(fn, fallback):
    """float32: FN(x, bind) of fastmath's polynomial forms (vectorizes; the `exp` / `tanh`
    intrinsics are a scalar libm call per lane); other dtypes FALLBACK."""
    def lowered(x, v):
        return fastmath.expression(fn, v) if x.dtype == "float32" else fallback(x, v)
    return lowered


def _sigmoid_op(v, bind):
    """sigmoid, 0 below -88 (past exp_parts' clamp): x * sigmoid(x) at -inf is then NaN, as numpy
    and onnxruntime have it."""
    v = bind(v)
    return tirx.Select(v < fastmath.f32(-88), fastmath.f32(0), fastmath.sigmoid(v, bind))


def _swish_op(v, bind):
    v = bind(v)
    return v * _sigmoid_op(v, bind)


def _libm_sigmoid(x, v):
    return _c(x, 1) / (_c(x, 1) + te.exp(-v))


_expm1 = _fast(fastmath.expm1, lambda x, v: te.exp(v) - _c(x, 1))  # (elu's and selu's x <= 0)
_sigmoid = _fast(_sigmoid_op, _libm_sigmoid)
_tanh = _fast(fastmath.tanh, lambda x, v: te.tanh(v))
_swish = _fast(_swish_op, lambda x, v: v * _libm_sigmoid(x, v))


def _unary(fn):
    return lambda a, x: te.compute(x.shape, lambda *i: fn(a, x, x(*i)), name="ew")


UNARY = {
    "relu": lambda a, x, v: nan_max(v, _c(x, 0)),
    "leaky_relu": lambda a, x, v: tirx.Select(v >= _c(x, 0), v, v * _c(x, a.get("alpha", 0.01))),
    "sigmoid": lambda a, x, v: _sigmoid(x, v),
    "hard_sigmoid": lambda a, x, v: nan_min(nan_max(v * _c(x, a.get("alpha", 0.2)) + _c(x, a.get("beta", 0.5)),
                                                    _c(x, 0)), _c(x, 1)),
    "tanh": lambda a, x, v: _tanh(x, v),
    "exp": lambda a, x, v: te.exp(v),
    "log": lambda a, x, v: te.log(v),
    "sqrt": lambda a, x, v: te.sqrt(v),
    "neg": lambda a, x, v: -v,
    "abs": lambda a, x, v: te.abs(v),
    "floor": lambda a, x, v: te.floor(v),
    "ceil": lambda a, x, v: te.ceil(v),
    "reciprocal": lambda a, x, v: _c(x, 1) / v,
    "erf": lambda a, x, v: te.erf(v),
    "elu": lambda a, x, v: tirx.Select(v > _c(x, 0), v, _c(x, a.get("alpha", 1.0)) * _expm1(x, v)),
    "selu": lambda a, x, v: _c(x, a.get("gamma", 1.0507009873554805)) * tirx.Select(
        v > _c(x, 0), v, _c(x, a.get("alpha", 1.6732632423543772)) * _expm1(x, v)),
    "softplus": lambda a, x, v: te.max(v, _c(x, 0)) + tirx.log1p(te.exp(-te.abs(v))),
    "softsign": lambda a, x, v: v / (_c(x, 1) + te.abs(v)),
    "swish": lambda a, x, v: _swish(x, v),
    "hard_swish": lambda a, x, v: v * te.min(te.max(v / _c(x, 6) + _c(x, 0.5), _c(x, 0)), _c(x, 1)),
    "thresholded_relu": lambda a, x, v: tirx.Select(v > _c(x, a.get("alpha", 1.0)), v, _c(x, 0)),
}
for _name, _fn in UNARY.items():
    lowering(_name)(_unary(_fn))


@lowering("clip")
def clip(a, x):
    def f(*i):
        v = x(*i)
        if a.get("min") is not None:
            v = nan_max(v, _c(x, a["min"]))
        if a.get("max") is not None:
            v = nan_min(v, _c(x, a["max"]))
        return v
    return te.compute(x.shape, f, name="clip")


@lowering("cast")
def cast(a, x):
    return topi.cast(x, a["dtype"])


def _nan_extremum(compare):
    """Max/Min of broadcast operands where a NaN in either wins (onnxruntime's Max and Min)."""
    def fn(x, y):
        if not str(x.dtype).startswith("float"):
            return (topi.maximum if compare is topi.less else topi.minimum)(x, y)
        return topi.where(compare(x, y), y, topi.where(topi.isnan(y), y, x))
    return fn


BINARY = {"add": topi.add, "sub": topi.subtract, "mul": topi.multiply,
          "maximum": _nan_extremum(topi.less), "minimum": _nan_extremum(topi.greater)}
for _name, _fn in BINARY.items():
    lowering(_name)(lambda a, x, y, _fn=_fn: _fn(x, y))


@lowering("pow")
def pow_(a, x, y):
    if str(x.dtype).startswith("float"):
        return topi.power(x, topi.cast(y, x.dtype))
    # integer powers: exact in float64 for results below 2**53, then rounded back
    p = topi.power(topi.cast(x, "float64"), topi.cast(y, "float64"))
    return te.compute(p.shape, lambda *i: te.round(p(*i)).astype(x.dtype), name="pow")


@lowering("div")
def div(a, x, y):
    return topi.divide(x, y) if str(x.dtype).startswith("float") else topi.floor_divide(x, y)


@lowering("prelu")
def prelu(a, x, s):
    return topi.where(topi.greater_equal(x, _c(x, 0)), x, topi.multiply(x, s))


@lowering("where")
def where(a, c, x, y):
    return topi.where(c, x, y)


COMPARE = {"equal": topi.equal, "less": topi.less, "greater": topi.greater, "less_equal": topi.less_equal,
           "greater_equal": topi.greater_equal, "logical_and": topi.logical_and,
           "logical_or": topi.logical_or, "logical_xor": topi.logical_xor}
for _name, _fn in COMPARE.items():
    lowering(_name)(lambda a, x, y, _fn=_fn: _fn(x, y))


@lowering("logical_not")
def logical_not(a, x):
    return topi.logical_not(x)
