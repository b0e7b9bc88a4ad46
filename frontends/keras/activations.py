"""Keras 3 activation functions (the `activation` option and the Activation layer) as IR ops."""
import math

import numpy as np


def _scalar(ctx, v):
    return ctx.const(np.float32(v))


def _swish(ctx, x):
    return ctx.add("mul", [x, ctx.add("sigmoid", [x])])


def _gelu(ctx, x, approximate=False):
    if approximate:  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = ctx.add("mul", [ctx.add("mul", [x, x]), x])
        inner = ctx.add("add", [x, ctx.add("mul", [cube, _scalar(ctx, 0.044715)])])
        t = ctx.add("tanh", [ctx.add("mul", [inner, _scalar(ctx, math.sqrt(2 / math.pi))])])
    else:  # 0.5 x (1 + erf(x / sqrt 2))
        t = ctx.add("erf", [ctx.add("mul", [x, _scalar(ctx, 1 / math.sqrt(2))])])
    half = ctx.add("mul", [x, _scalar(ctx, 0.5)])
    return ctx.add("mul", [half, ctx.add("add", [t, _scalar(ctx, 1.0)])])


UNARY = {  # Keras name -> (IR op, attrs)
    "relu": ("relu", {}), "sigmoid": ("sigmoid", {}), "tanh": ("tanh", {}), "elu": ("elu", {"alpha": 1.0}),
    "selu": ("selu", {}), "softplus": ("softplus", {}), "softsign": ("softsign", {}),
    "exponential": ("exp", {}), "relu6": ("clip", {"min": 0.0, "max": 6.0}),
    "hard_sigmoid": ("hard_sigmoid", {"alpha": 1 / 6, "beta": 0.5}),  # Keras 3: relu6(x + 3) / 6
    "leaky_relu": ("leaky_relu", {"alpha": 0.2}),
}

COMPOSED = {
    "swish": _swish, "silu": _swish,
    "gelu": _gelu,
    "hard_silu": lambda ctx, x: ctx.add("mul", [x, apply(ctx, x, "hard_sigmoid")]),
    "hard_swish": lambda ctx, x: ctx.add("mul", [x, apply(ctx, x, "hard_sigmoid")]),
    "mish": lambda ctx, x: ctx.add("mul", [x, ctx.add("tanh", [ctx.add("softplus", [x])])]),
    "softmax": lambda ctx, x: ctx.add("softmax", [x], {"axis": -1}),
    "log_softmax": lambda ctx, x: ctx.add("log_softmax", [x], {"axis": -1}),
}


def name_of(spec):
    """The activation's name from a config entry (a string or a serialized function)."""
    if spec is None:
        return "linear"
    if isinstance(spec, dict):
        spec = spec.get("config", spec.get("class_name"))
        if isinstance(spec, dict):
            spec = spec.get("name")
    return str(spec)


def apply(ctx, x, spec):
    """X passed through the Keras activation SPEC (IR value name)."""
    name = name_of(spec)
    if name == "linear":
        return x
    if name in UNARY:
        op, attrs = UNARY[name]
        return ctx.add(op, [x], attrs)
    if name in COMPOSED:
        return COMPOSED[name](ctx, x)
    raise ctx.unsupported(f"activation {name!r} is not supported "
                          f"(supported: linear, {', '.join(sorted(set(UNARY) | set(COMPOSED)))})")


def is_elementwise(spec):
    """Whether the activation treats every element alone (so it commutes with a transpose)."""
    return name_of(spec) not in ("softmax", "log_softmax")

