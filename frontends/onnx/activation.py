"""Unary activations and math functions (one IR elementwise op each)."""
import numpy as np

from .registry import converter

# ONNX op -> (IR op, {ONNX attribute: default})
UNARY = {
    "Relu": ("relu", {}), "Sigmoid": ("sigmoid", {}), "Tanh": ("tanh", {}), "Exp": ("exp", {}),
    "Log": ("log", {}), "Sqrt": ("sqrt", {}), "Neg": ("neg", {}), "Abs": ("abs", {}), "Erf": ("erf", {}),
    "Floor": ("floor", {}), "Ceil": ("ceil", {}), "Reciprocal": ("reciprocal", {}),
    "Softplus": ("softplus", {}), "Softsign": ("softsign", {}), "HardSwish": ("hard_swish", {}),
    "LeakyRelu": ("leaky_relu", {"alpha": 0.01}), "Elu": ("elu", {"alpha": 1.0}),
    "Selu": ("selu", {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875}),
    "HardSigmoid": ("hard_sigmoid", {"alpha": 0.2, "beta": 0.5}),
    "ThresholdedRelu": ("thresholded_relu", {"alpha": 1.0}),
}

# IR ops that only make sense on floats (integer inputs are refused, not silently truncated)
FLOAT_ONLY = {"sigmoid", "tanh", "exp", "log", "sqrt", "erf", "reciprocal", "softplus", "softsign",
              "hard_swish", "elu", "selu", "hard_sigmoid", "floor", "ceil"}


def unary(ctx, op, attrs=None):
    x = ctx.input(0)
    if op in FLOAT_ONLY and not ctx.dtype(x).startswith("float"):
        raise ctx.unsupported(f"input dtype {ctx.dtype(x)} is not supported (floats only)")
    return ctx.add1(op, [x], attrs or {})


def _make(onnx_op, ir_op, defaults):
    @converter(onnx_op)
    def convert(ctx):
        ctx.ignore("consumed_inputs")  # opset < 6 bookkeeping
        return [unary(ctx, ir_op, {k: float(ctx.attr(k, d)) for k, d in defaults.items()})]
    convert.__name__ = onnx_op.lower()
    return convert


for _op, (_ir, _defaults) in UNARY.items():
    _make(_op, _ir, _defaults)


@converter("PRelu")
def prelu(ctx):
    x, slope = ctx.input(0), ctx.input(1)
    xs, ss = ctx.shape(x), ctx.shape(slope)
    if len(ss) == 1 and len(xs) > 2 and ss[0] == xs[1] and ss[0] != xs[-1]:  # per-channel slope
        slope = ctx.reshape(slope, (ss[0],) + (1,) * (len(xs) - 2))
    return [ctx.add1("prelu", [x, ctx.cast(slope, ctx.dtype(x))])]


@converter("Clip")
def clip(ctx):
    x = ctx.input(0)
    if ctx.opset < 11:
        lo, hi = ctx.attr("min"), ctx.attr("max")
    else:
        lo = ctx.const(1, "min")
        hi = ctx.const(2, "max")
    attrs = {}
    if lo is not None:
        attrs["min"] = np.asarray(lo).item()
    if hi is not None:
        attrs["max"] = np.asarray(hi).item()
    return [ctx.add1("clip", [x], attrs)]


@converter("Gelu")
def gelu(ctx):
    """0.5 * x * (1 + erf(x / sqrt 2)) (approximate='none'); the tanh form for 'tanh'."""
    x = ctx.input(0)
    dt = ctx.dtype(x)
    if not dt.startswith("float"):
        raise ctx.unsupported(f"input dtype {dt} is not supported (floats only)")

    def c(v):
        return ctx.add_const(np.asarray(v, dt))
    approx = ctx.attr("approximate", "none")
    if approx == "none":
        inner = ctx.add1("erf", [ctx.add1("mul", [x, c(1 / np.sqrt(2))])])
    elif approx == "tanh":
        cube = ctx.add1("mul", [ctx.add1("mul", [x, x]), x])
        poly = ctx.add1("add", [x, ctx.add1("mul", [cube, c(0.044715)])])
        inner = ctx.add1("tanh", [ctx.add1("mul", [poly, c(np.sqrt(2 / np.pi))])])
    else:
        raise ctx.unsupported(f"approximate={approx!r} is not supported")
    half_x = ctx.add1("mul", [x, c(0.5)])
    return [ctx.add1("mul", [half_x, ctx.add1("add", [inner, c(1.0)])])]
