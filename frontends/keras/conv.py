"""Conv1D, Conv2D, DepthwiseConv2D, SeparableConv2D and ZeroPadding2D.

The IR's conv2d is NCHW with OIHW weights, so a convolution is NHWC -> transpose -> conv2d ->
transpose -> NHWC (a layout pass cancels back-to-back transposes). Keras kernels are HWIO;
"same" padding is TensorFlow's: the odd extra row/column goes at the bottom/right.
"""

from . import activations
from .registry import converter

TO_NCHW, TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)

def _pair(v):
    return [int(v), int(v)] if isinstance(v, (int, float)) else [int(x) for x in v]

def same_pads(sizes, kernel, strides, dilations):
    """[top, left, bottom, right] for TensorFlow 'same' padding."""
    begin, end = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end

def window(ctx, sizes, kernel, strides, dilations, allow_causal=False):
    """Pads for the layer's `padding` option (valid, same, causal for Conv1D)."""
    padding = ctx.require("padding", "valid", "same", *(["causal"] if allow_causal else []))
    if padding == "same":
        return same_pads(sizes, kernel, strides, dilations)
    if padding == "causal":  # all padding before the sequence
        return [0, (kernel[1] - 1) * dilations[1], 0, 0]
    return [0, 0, 0, 0]

def conv_nhwc(ctx, x, w_oihw, bias, strides, dilations, pads, groups=1):
    """conv2d on an NHWC value through NCHW, then the layer's activation; returns NHWC."""
    inputs = [ctx.transpose(x, TO_NCHW), ctx.const(w_oihw)] + ([ctx.const(bias)] if bias is not None else [])
    y = ctx.add("conv2d", inputs, {"strides": strides, "dilations": dilations, "pads": pads, "groups": groups})
    return activate_nchw(ctx, y)


def activate_nchw(ctx, y):
    """The layer's activation on NCHW Y (before the transpose back when it is elementwise)."""
    spec = ctx.opt("activation")
    if activations.is_elementwise(spec):
        return ctx.transpose(activations.apply(ctx, y, spec), TO_NHWC)
    return activations.apply(ctx, ctx.transpose(y, TO_NHWC), spec)

def _strides_dilations(ctx):
    strides, dilations = _pair(ctx.opt("strides", 1)), _pair(ctx.opt("dilation_rate", 1))
    if max(strides) > 1 and max(dilations) > 1:
        raise ctx.unsupported("strides > 1 together with dilation_rate > 1 is not supported (Keras rejects it too)")
    return strides, dilations

@converter("Conv2D")
def conv2d(ctx, inputs):
    x = inputs[0]
    n, h, w, c = _rank(ctx, x, 4)
    filters, (kh, kw) = int(ctx.opt("filters")), _pair(ctx.opt("kernel_size"))
    groups = int(ctx.opt("groups", 1))
    strides, dilations = _strides_dilations(ctx)
    kernel = ctx.weight(0, (kh, kw, c // groups, filters))
    bias = ctx.weight(1, (filters,)) if ctx.opt("use_bias", True) else None
    pads = window(ctx, (h, w), (kh, kw), strides, dilations)
    return [conv_nhwc(ctx, x, kernel.transpose(3, 2, 0, 1), bias, strides, dilations, pads, groups)]

@converter("Conv1D")
def conv1d(ctx, inputs):
    x = inputs[0]
    n, length, c = _rank(ctx, x, 3)
    filters, (k,) = int(ctx.opt("filters")), _pair(ctx.opt("kernel_size"))[:1]
    groups = int(ctx.opt("groups", 1))
    s, d = _pair(ctx.opt("strides", 1))[0], _pair(ctx.opt("dilation_rate", 1))[0]
    kernel = ctx.weight(0, (k, c // groups, filters))
    bias = ctx.weight(1, (filters,)) if ctx.opt("use_bias", True) else None
    pads = window(ctx, (1, length), (1, k), [1, s], [1, d], allow_causal=True)
    x4 = ctx.reshape(x, (n, 1, length, c))
    y = conv_nhwc(ctx, x4, kernel.transpose(2, 1, 0)[:, :, None, :], bias, [1, s], [1, d], pads, groups)
    return [ctx.reshape(y, (n,) + tuple(ctx.shape(y)[2:]))]

def _depthwise_oihw(kernel):
    """(kh, kw, C, mult) -> (C*mult, 1, kh, kw); output channel c*mult + m."""
    kh, kw, c, m = kernel.shape
    return kernel.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None]

@converter("DepthwiseConv2D")
def depthwise_conv2d(ctx, inputs):
    x = inputs[0]
    n, h, w, c = _rank(ctx, x, 4)
    (kh, kw), mult = _pair(ctx.opt("kernel_size")), int(ctx.opt("depth_multiplier", 1))
    strides, dilations = _strides_dilations(ctx)
    kernel = ctx.weight(0, (kh, kw, c, mult))
    bias = ctx.weight(1, (c * mult,)) if ctx.opt("use_bias", True) else None
    pads = window(ctx, (h, w), (kh, kw), strides, dilations)
    return [conv_nhwc(ctx, x, _depthwise_oihw(kernel), bias, strides, dilations, pads, groups=c)]

@converter("SeparableConv2D")
def separable_conv2d(ctx, inputs):
    x = inputs[0]
    n, h, w, c = _rank(ctx, x, 4)
    (kh, kw), mult = _pair(ctx.opt("kernel_size")), int(ctx.opt("depth_multiplier", 1))
    filters = int(ctx.opt("filters"))
    strides, dilations = _strides_dilations(ctx)
    depthwise = ctx.weight(0, (kh, kw, c, mult))
    pointwise = ctx.weight(1, (1, 1, c * mult, filters))
    bias = ctx.weight(2, (filters,)) if ctx.opt("use_bias", True) else None
    pads = window(ctx, (h, w), (kh, kw), strides, dilations)
    y = ctx.add("conv2d", [ctx.transpose(x, TO_NCHW), ctx.const(_depthwise_oihw(depthwise))],
                {"strides": strides, "dilations": dilations, "pads": pads, "groups": c})
    y = ctx.add("conv2d", [y, ctx.const(pointwise.transpose(3, 2, 0, 1))]
                + ([ctx.const(bias)] if bias is not None else []), {})
    return [activate_nchw(ctx, y)]

@converter("ZeroPadding2D")
def zero_padding2d(ctx, inputs):
    x = inputs[0]
    _rank(ctx, x, 4)
    (t, b), (l, r) = edges_2d(ctx.opt("padding", 1))
    return [ctx.add("pad", [x], {"pads": [0, int(t), int(l), 0, 0, int(b), int(r), 0]})]

def edges_2d(p):
    """Keras's 2-D padding/cropping argument (n, (h, w) or ((top, bottom), (left, right))) as the last."""
    if isinstance(p, (int, float)):
        return (p, p), (p, p)
    if isinstance(p[0], (int, float)):
        return (p[0], p[0]), (p[1], p[1])
    return p


def _rank(ctx, x, rank):
    shape = ctx.shape(x)
    if len(shape) != rank:
        raise ctx.error(f"expects a rank-{rank} input, got shape {list(shape)}")
    return shape
