"""Elementwise ops: unary activations and broadcasting binary arithmetic."""
import math

import numpy as np

from . import ShapeError, defop, same_as_input


def broadcast_shape(a, b):
    try:
        return tuple(np.broadcast_shapes(tuple(a), tuple(b)))
    except ValueError:
        raise ShapeError(f"shapes {list(a)} and {list(b)} do not broadcast") from None


def _binary_infer(attrs, a, b):
    if a.dtype != b.dtype:
        raise ShapeError(f"operand dtypes differ: {a.dtype} and {b.dtype}")
    return broadcast_shape(a.shape, b.shape), a.dtype


def _numel(values):
    return int(np.prod(values[0].shape)) if values else 0


def _ew_flops(attrs, ins, outs):
    return _numel(outs)


def _unary(name, fn):
    defop(name, "elementwise", same_as_input, _ew_flops)(fn)


def _binary(name, fn):
    defop(name, "elementwise", _binary_infer, _ew_flops)(fn)


def _f(x, v):
    return np.asarray(v, dtype=x.dtype)


def _erf(x):
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x


def _softplus(x):
    return np.logaddexp(x, _f(x, 0))


_unary("relu", lambda a, x: np.maximum(x, _f(x, 0)))
_unary("leaky_relu", lambda a, x: np.where(x >= 0, x, x * _f(x, a.get("alpha", 0.01))))
def _clip(a, x):
    # a missing bound is no bound (the old -inf/inf defaults overflowed for integer inputs)
    if a.get("min") is not None:
        x = np.maximum(x, _f(x, a["min"]))
    if a.get("max") is not None:
        x = np.minimum(x, _f(x, a["max"]))
    return x


_unary("clip", lambda a, x: _clip(a, x))
_unary("sigmoid", lambda a, x: (1 / (1 + np.exp(-x))).astype(x.dtype))
_unary("hard_sigmoid", lambda a, x: np.clip(x * _f(x, a.get("alpha", 0.2)) + _f(x, a.get("beta", 0.5)),
                                            _f(x, 0), _f(x, 1)))
_unary("tanh", lambda a, x: np.tanh(x))
_unary("exp", lambda a, x: np.exp(x))
_unary("log", lambda a, x: np.log(x))
_unary("sqrt", lambda a, x: np.sqrt(x))
_unary("neg", lambda a, x: -x)
_unary("abs", lambda a, x: np.abs(x))
_unary("floor", lambda a, x: np.floor(x))
_unary("ceil", lambda a, x: np.ceil(x))
_unary("reciprocal", lambda a, x: (_f(x, 1) / x).astype(x.dtype))
_unary("erf", lambda a, x: _erf(x))
_unary("elu", lambda a, x: np.where(x > 0, x, _f(x, a.get("alpha", 1.0)) * np.expm1(x)).astype(x.dtype))
_unary("selu", lambda a, x: (_f(x, a.get("gamma", 1.0507009873554805)) *
                             np.where(x > 0, x, _f(x, a.get("alpha", 1.6732632423543772)) * np.expm1(x))
                             ).astype(x.dtype))
_unary("softplus", lambda a, x: _softplus(x).astype(x.dtype))
_unary("softsign", lambda a, x: (x / (1 + np.abs(x))).astype(x.dtype))
_unary("hard_swish", lambda a, x: (x * np.clip(x / 6 + _f(x, 0.5), 0, 1)).astype(x.dtype))
_unary("swish", lambda a, x: (x * (1 / (1 + np.exp(-x)))).astype(x.dtype))  # x * sigmoid(x) (SiLU)
_unary("thresholded_relu", lambda a, x: np.where(x > _f(x, a.get("alpha", 1.0)), x, _f(x, 0)))

_binary("add", lambda a, x, y: x + y)
_binary("sub", lambda a, x, y: x - y)
_binary("mul", lambda a, x, y: x * y)
_binary("div", lambda a, x, y: (x / y).astype(x.dtype) if x.dtype.kind == "f" else x // y)
_binary("pow", lambda a, x, y: np.power(x, y))
_binary("maximum", lambda a, x, y: np.maximum(x, y))
_binary("minimum", lambda a, x, y: np.minimum(x, y))


@defop("cast", "elementwise", lambda a, x: (x.shape, a["dtype"]), _ew_flops)
def cast(attrs, x):
    return x.astype(attrs["dtype"])


@defop("prelu", "elementwise", lambda a, x, s: (broadcast_shape(x.shape, s.shape), x.dtype), _ew_flops)
def prelu(attrs, x, slope):
    return np.where(x >= 0, x, x * slope)


# ---- comparisons and logic (bool results) ---------------------------------------------------
def _compare_infer(attrs, a, b):
    return _binary_infer(attrs, a, b)[0], "bool"


def _logic_infer(attrs, a, b):
    if a.dtype != "bool" or b.dtype != "bool":
        raise ShapeError(f"logical ops want bool operands, got {a.dtype} and {b.dtype}")
    return broadcast_shape(a.shape, b.shape), "bool"


for _name, _fn in {"equal": np.equal, "less": np.less, "greater": np.greater,
                   "less_equal": np.less_equal, "greater_equal": np.greater_equal}.items():
    defop(_name, "elementwise", _compare_infer, _ew_flops)(lambda a, x, y, _fn=_fn: _fn(x, y))
for _name, _fn in {"logical_and": np.logical_and, "logical_or": np.logical_or,
                   "logical_xor": np.logical_xor}.items():
    defop(_name, "elementwise", _logic_infer, _ew_flops)(lambda a, x, y, _fn=_fn: _fn(x, y))


def _not_infer(attrs, x):
    if x.dtype != "bool":
        raise ShapeError(f"logical_not wants a bool operand, got {x.dtype}")
    return x.shape, "bool"


@defop("logical_not", "elementwise", _not_infer, _ew_flops)
def logical_not(attrs, x):
    return np.logical_not(x)
