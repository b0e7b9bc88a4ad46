"""ReduceMean/Sum/Max/Min/Prod (+ L1, L2, SumSquare, LogSum, LogSumExp), Where, comparisons, logic."""
from .registry import converter
from .shape import _ints

REDUCE = {"ReduceMean": "reduce_mean", "ReduceSum": "reduce_sum", "ReduceMax": "reduce_max",
          "ReduceMin": "reduce_min", "ReduceProd": "reduce_prod", "ReduceL1": "reduce_sum",
          "ReduceL2": "reduce_sum", "ReduceSumSquare": "reduce_sum", "ReduceLogSum": "reduce_sum",
          "ReduceLogSumExp": "reduce_sum"}


def _reduce(ctx, onnx_op, ir_op):
    x = ctx.input(0)
    xs = ctx.shape(x)
    axes_from_input = ctx.opset >= (13 if onnx_op == "ReduceSum" else 18)
    if axes_from_input:
        axes = ctx.const(1, "axes")
        axes = None if axes is None else _ints(ctx, axes, "axes")
        noop = int(ctx.attr("noop_with_empty_axes", 0))
    else:
        axes = ctx.attr("axes")
        noop = 0
    keepdims = bool(int(ctx.attr("keepdims", 1)))
    if not axes:
        if noop:
            return ctx.add1("reshape", [x], {"shape": list(xs)})
        axes = list(range(len(xs)))
    axes = sorted({int(a) % max(len(xs), 1) for a in axes})
    if any(xs[a] == 0 for a in axes) and ir_op in ("reduce_max", "reduce_min"):
        raise ctx.unsupported(f"{onnx_op} over an empty axis is not supported")
    float_only = onnx_op in ("ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMean")
    if float_only and not ctx.dtype(x).startswith("float"):
        raise ctx.unsupported(f"input dtype {ctx.dtype(x)} is not supported (floats only)")
    if onnx_op == "ReduceL1":
        x = ctx.add1("abs", [x])
    elif onnx_op in ("ReduceL2", "ReduceSumSquare"):
        x = ctx.add1("mul", [x, x])
    elif onnx_op == "ReduceLogSumExp":
        x = ctx.add1("exp", [x])
    y = ctx.add1(ir_op, [x], {"axes": axes, "keepdims": keepdims})
    if onnx_op == "ReduceL2":
        y = ctx.add1("sqrt", [y])
    elif onnx_op in ("ReduceLogSum", "ReduceLogSumExp"):
        y = ctx.add1("log", [y])
    return y


def _make(onnx_op, ir_op):
    @converter(onnx_op)
    def convert(ctx):
        return [_reduce(ctx, onnx_op, ir_op)]
    convert.__name__ = onnx_op.lower()


for _op, _ir in REDUCE.items():
    _make(_op, _ir)


@converter("Where")
def where(ctx):
    c, x, y = ctx.input(0), ctx.input(1), ctx.input(2)
    if ctx.dtype(c) != "bool":
        raise ctx.error(f"condition must be bool, got {ctx.dtype(c)}")
    if ctx.dtype(x) != ctx.dtype(y):
        raise ctx.error(f"operand dtypes differ: {ctx.dtype(x)} and {ctx.dtype(y)}")
    return [ctx.add1("where", [c, x, y])]


COMPARE = {"Equal": "equal", "Less": "less", "Greater": "greater", "LessOrEqual": "less_equal",
           "GreaterOrEqual": "greater_equal", "And": "logical_and", "Or": "logical_or",
           "Xor": "logical_xor"}


def _make_cmp(onnx_op, ir_op):
    @converter(onnx_op)
    def convert(ctx):
        a, b = ctx.input(0), ctx.input(1)
        if ctx.dtype(a) != ctx.dtype(b):
            raise ctx.error(f"operand dtypes differ: {ctx.dtype(a)} and {ctx.dtype(b)}")
        return [ctx.add1(ir_op, [a, b])]
    convert.__name__ = onnx_op.lower()


for _op, _ir in COMPARE.items():
    _make_cmp(_op, _ir)


@converter("Not")
def not_(ctx):
    return [ctx.add1("logical_not", [ctx.input(0)])]
