"""Broadcasting arithmetic (Add, Sub, Mul, Div, Pow), variadic Sum/Mean/Max/Min and comparisons."""
import numpy as np

from .registry import converter

BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow"}


def _check_same_dtype(ctx, a, b):
    if ctx.dtype(a) != ctx.dtype(b):
        raise ctx.error(f"operand dtypes differ: {ctx.dtype(a)} and {ctx.dtype(b)}")


def binary(ctx, op):
    a, b = ctx.input(0), ctx.input(1)
    if op == "pow":  # ONNX Pow allows another exponent dtype; the result has the base's dtype
        dt = ctx.dtype(a)
        if not dt.startswith("float") and ctx.dtype(b).startswith("float"):
            y = ctx.add1("pow", [ctx.cast(a, ctx.dtype(b)), b])
            return ctx.cast(y, dt)
        b = ctx.cast(b, dt)
    _check_same_dtype(ctx, a, b)
    if op == "div" and ctx.dtype(a).startswith("int"):
        return _trunc_div(ctx, a, b)
    return ctx.add1(op, [a, b])


def _trunc_div(ctx, a, b):
    """ONNX integer Div truncates toward zero; the IR's integer div floors: |a| // |b| with the sign."""
    q = ctx.add1("div", [ctx.add1("abs", [a]), ctx.add1("abs", [b])])
    zero = ctx.add_const(np.zeros((), ctx.dtype(a)))
    negative = ctx.add1("logical_xor", [ctx.add1("less", [a, zero]), ctx.add1("less", [b, zero])])
    return ctx.add1("where", [negative, ctx.add1("neg", [q]), q])


def _make(onnx_op, ir_op):
    @converter(onnx_op)
    def convert(ctx):
        ctx.ignore("consumed_inputs")
        if ctx.has_attr("broadcast") or ctx.has_attr("axis"):  # opset < 7 broadcasting rules
            raise ctx.unsupported("legacy broadcast/axis attributes (opset < 7) are not supported")
        return [binary(ctx, ir_op)]
    convert.__name__ = onnx_op.lower()


for _op, _ir in BINARY.items():
    _make(_op, _ir)


def _variadic(ctx, op):
    names = [ctx.input(i) for i in range(len(ctx.inputs)) if ctx.has_input(i)]
    if not names:
        raise ctx.error("needs at least one input")
    acc = names[0]
    for n in names[1:]:
        _check_same_dtype(ctx, acc, n)
        acc = ctx.add1(op, [acc, n])
    if len(names) == 1:  # a copy: keep the value but give the node an IR node of its own
        acc = ctx.add1("reshape", [acc], {"shape": list(ctx.shape(acc))})
    return acc, len(names)


@converter("Sum")
def sum_(ctx):
    ctx.ignore("consumed_inputs")
    return [_variadic(ctx, "add")[0]]


@converter("Max")
def max_(ctx):
    ctx.ignore("consumed_inputs")
    return [_variadic(ctx, "maximum")[0]]


@converter("Min")
def min_(ctx):
    ctx.ignore("consumed_inputs")
    return [_variadic(ctx, "minimum")[0]]


@converter("Mean")
def mean(ctx):
    ctx.ignore("consumed_inputs")
    acc, n = _variadic(ctx, "add")
    if not ctx.dtype(acc).startswith("float"):
        raise ctx.unsupported(f"integer Mean ({ctx.dtype(acc)}) is not supported")
    return [ctx.add1("div", [acc, ctx.add_const(np.asarray(n, ctx.dtype(acc)))])]
