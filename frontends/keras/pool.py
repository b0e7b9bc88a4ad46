"""Pooling: MaxPooling1D/2D, AveragePooling1D/2D (valid/same) and global pooling.

Window pooling runs through the IR's NCHW ops. Keras 'same' average pooling divides by the
number of input elements in each window (padding excluded), as the IR's avg_pool2d does with
count_include_pad off. Global pooling reduces the NHWC value directly.
"""
from .conv import TO_NCHW, TO_NHWC, _pair, _rank, same_pads
from .registry import converter


def _pool2d(ctx, x, op, kernel, strides):
    n, h, w, c = ctx.shape(x)
    padding = ctx.require("padding", "valid", "same")
    pads = same_pads((h, w), kernel, strides, (1, 1)) if padding == "same" else [0, 0, 0, 0]
    y = ctx.add(op, [ctx.transpose(x, TO_NCHW)], {"kernel": list(kernel), "strides": list(strides), "pads": pads,
                                                   "count_include_pad": False})
    return ctx.transpose(y, TO_NHWC)


def _window(ctx):
    kernel = _pair(ctx.opt("pool_size", 2))
    strides = ctx.opt("strides")
    return kernel, kernel if strides is None else _pair(strides)


@converter("MaxPooling2D", "AveragePooling2D")
def pool2d(ctx, inputs):
    _rank(ctx, inputs[0], 4)
    kernel, strides = _window(ctx)
    op = "max_pool2d" if ctx.cls.startswith("Max") else "avg_pool2d"
    return [_pool2d(ctx, inputs[0], op, kernel, strides)]


@converter("MaxPooling1D", "AveragePooling1D")
def pool1d(ctx, inputs):
    n, length, c = _rank(ctx, inputs[0], 3)
    kernel, strides = _window(ctx)
    op = "max_pool2d" if ctx.cls.startswith("Max") else "avg_pool2d"
    y = _pool2d(ctx, ctx.reshape(inputs[0], (n, 1, length, c)), op, (1, kernel[0]), (1, strides[0]))
    return [ctx.reshape(y, (n,) + tuple(ctx.shape(y)[2:]))]


@converter("GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalMaxPooling1D")
def global_pool(ctx, inputs):
    x = inputs[0]
    rank = 4 if ctx.cls.endswith("2D") else 3
    _rank(ctx, x, rank)
    op = "reduce_mean" if "Average" in ctx.cls else "reduce_max"
    return [ctx.add(op, [x], {"axes": list(range(1, rank - 1)), "keepdims": bool(ctx.opt("keepdims", False))})]
