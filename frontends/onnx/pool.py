"""MaxPool (also of int8 / uint8), AveragePool (1-D and 2-D, 1-D via H = 1), GlobalAveragePool,
GlobalMaxPool."""
from .conv import to_2d, window_attrs
from .registry import converter


def _pool(ctx, op):
    x = ctx.input(0)
    xs = ctx.shape(x)
    rank = len(xs) - 2
    if rank not in (1, 2):
        raise ctx.unsupported(f"{rank}-D pooling is not supported (1-D and 2-D only)")
    ints = ("int8", "uint8") if op == "max_pool2d" else ()  # MaxPool takes 8-bit integers (opset 12)
    if not ctx.dtype(x).startswith("float") and ctx.dtype(x) not in ints:
        raise ctx.unsupported(f"input dtype {ctx.dtype(x)} is not supported (floats{' and 8-bit ints' if ints else ''} only)")
    kernel = list(ctx.attr("kernel_shape"))
    strides, dilations, pads = window_attrs(ctx, xs[2:], kernel)
    attrs = {"ceil_mode": bool(ctx.attr("ceil_mode", 0))}
    if op == "avg_pool2d":
        attrs["count_include_pad"] = bool(ctx.attr("count_include_pad", 0))
    else:
        ctx.ignore("storage_order")  # only affects the Indices output
        if len(ctx.outputs) > 1 and ctx.outputs[1]:
            raise ctx.unsupported("the Indices output of MaxPool is not supported")
    if rank == 1:
        x, strides, dilations, pads = to_2d(ctx, x, strides, dilations, pads)
        kernel = [1, kernel[0]]
    attrs.update(kernel=kernel, strides=strides, dilations=dilations, pads=pads)
    y = ctx.add1(op, [x], attrs)
    if rank == 1:
        ys = ctx.shape(y)
        y = ctx.reshape(y, (ys[0], ys[1], ys[3]))
    return [y]


@converter("MaxPool")
def max_pool(ctx):
    return _pool(ctx, "max_pool2d")


@converter("AveragePool")
def average_pool(ctx):
    return _pool(ctx, "avg_pool2d")


@converter("GlobalAveragePool")
def global_average_pool(ctx):
    return [ctx.add1("global_avg_pool", [ctx.input(0)])]


@converter("GlobalMaxPool")
def global_max_pool(ctx):
    return [ctx.add1("global_max_pool", [ctx.input(0)])]
