"""Core layers: Dense, activations, BatchNormalization, Dropout, Embedding, reshaping."""
import numpy as np

from . import activations
from .registry import converter


def elementwise(ctx, x, fn):
    """FN (elementwise) on X; on the NCHW value behind X when X is a conv's NHWC output, so the
    transposes around consecutive convolutions cancel."""
    src = ctx.nchw_source(x)
    return fn(x) if src is None else ctx.transpose(fn(src), (0, 2, 3, 1))


@converter("Dense")
def dense(ctx, inputs):
    x = inputs[0]
    shape = ctx.shape(x)
    units = int(ctx.opt("units"))
    kernel = ctx.weight(0, (shape[-1], units))
    bias = ctx.weight(1, (units,)) if ctx.opt("use_bias", True) else None
    flat = ctx.reshape(x, (int(np.prod(shape[:-1])), shape[-1]))
    y = ctx.add("dense", [flat, ctx.const(kernel.T)] + ([ctx.const(bias)] if bias is not None else []))
    y = ctx.reshape(y, tuple(shape[:-1]) + (units,))
    return [activations.apply(ctx, y, ctx.opt("activation"))]


@converter("Activation")
def activation(ctx, inputs):
    spec = ctx.opt("activation")
    if not activations.is_elementwise(spec):
        return [activations.apply(ctx, inputs[0], spec)]
    return [elementwise(ctx, inputs[0], lambda x: activations.apply(ctx, x, spec))]


@converter("ReLU")
def relu(ctx, inputs):
    """Keras: f(x) = x if x > threshold (clipped to max_value) else 0, minus
    negative_slope * relu(threshold - x)."""
    return [elementwise(ctx, inputs[0], lambda x: _relu(ctx, x))]


def _relu(ctx, x):
    slope, top, thr = float(ctx.opt("negative_slope", 0.0)), ctx.opt("max_value"), float(ctx.opt("threshold", 0.0))
    if slope != 0 and top is None and thr == 0:
        return ctx.add("leaky_relu", [x], {"alpha": slope})
    y = ctx.add("thresholded_relu", [x], {"alpha": thr}) if thr != 0 else ctx.add("relu", [x])
    if top is not None:
        y = ctx.add("clip", [y], {"min": 0.0, "max": float(top)})
    if slope != 0:
        below = ctx.add("relu", [ctx.add("sub", [ctx.const(np.float32(thr)), x])])
        y = ctx.add("sub", [y, ctx.add("mul", [below, ctx.const(np.float32(slope))])])
    return y


@converter("LeakyReLU")
def leaky_relu(ctx, inputs):
    slope = ctx.opt("negative_slope", ctx.opt("alpha", 0.3))
    return [elementwise(ctx, inputs[0], lambda x: ctx.add("leaky_relu", [x], {"alpha": float(slope)}))]


@converter("ELU")
def elu(ctx, inputs):
    return [elementwise(ctx, inputs[0], lambda x: ctx.add("elu", [x], {"alpha": float(ctx.opt("alpha", 1.0))}))]


@converter("Softmax")
def softmax(ctx, inputs):
    axis = ctx.opt("axis", -1)
    if isinstance(axis, list):
        if len(axis) != 1:
            raise ctx.unsupported(f"option axis={axis} (softmax over several axes) is not supported")
        axis = axis[0]
    return [ctx.add("softmax", [inputs[0]], {"axis": int(axis)})]


@converter("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
           "AlphaDropout", "ActivityRegularization", "Identity")
def inference_identity(ctx, inputs):
    """Training-only layers: the identity at inference."""
    return [inputs[0]]


@converter("BatchNormalization")
def batch_norm(ctx, inputs):
    """Inference batch norm folded to x * scale + shift along the layer's axis."""
    x = inputs[0]
    shape = ctx.shape(x)
    axis = ctx.opt("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if not isinstance(axis, int):
        raise ctx.unsupported(f"option axis={axis} (several axes) is not supported")
    axis %= len(shape)
    c = shape[axis]
    i = 0
    gamma = beta = None
    if ctx.opt("scale", True):
        gamma, i = ctx.weight(i, (c,)), i + 1
    if ctx.opt("center", True):
        beta, i = ctx.weight(i, (c,)), i + 1
    mean, var = ctx.weight(i, (c,)), ctx.weight(i + 1, (c,))
    inv = 1.0 / np.sqrt(var.astype(np.float64) + float(ctx.opt("epsilon", 1e-3)))
    scale = inv * (gamma if gamma is not None else 1.0)
    shift = (beta if beta is not None else 0.0) - mean * scale
    def affine(v):
        channel = 1 if v != x else axis
        if channel == 1:  # the IR's batch_norm (channels on axis 1): passes fold it into a conv or dense
            params = [gamma if gamma is not None else np.ones(c, np.float32),
                      beta if beta is not None else np.zeros(c, np.float32), mean, var]
            return ctx.add("batch_norm", [v] + [ctx.const(np.asarray(p, np.float32)) for p in params],
                           {"epsilon": float(ctx.opt("epsilon", 1e-3))})
        bshape = [1] * len(shape)
        bshape[channel] = c
        y = ctx.add("mul", [v, ctx.const(scale.reshape(bshape))])
        return ctx.add("add", [y, ctx.const(shift.reshape(bshape))])
    return [elementwise(ctx, x, affine) if axis == 3 else affine(x)]


@converter("Embedding")
def embedding(ctx, inputs):
    if ctx.opt("mask_zero", False):
        raise ctx.unsupported("option mask_zero=True is not supported (masks are not propagated)")
    x = inputs[0]
    table = ctx.weight(0, (int(ctx.opt("input_dim")), int(ctx.opt("output_dim"))))
    if x in {v.name for v in ctx.graph.inputs}:  # random test inputs must be valid token ids
        ctx.graph.input_ranges[x] = [0, int(ctx.opt("input_dim"))]
    if not ctx.dtype(x).startswith("int"):
        x = ctx.add("cast", [x], {"dtype": "int32"})
    return [ctx.add("gather", [ctx.const(table), x], {"axis": 0})]


@converter("Flatten")
def flatten(ctx, inputs):
    shape = ctx.shape(inputs[0])  # NHWC, so this is Keras's H, W, C order
    return [ctx.reshape(inputs[0], (shape[0], int(np.prod(shape[1:]))))]


@converter("Reshape")
def reshape(ctx, inputs):
    shape = ctx.shape(inputs[0])
    target = [int(d) for d in ctx.opt("target_shape")]
    total = int(np.prod(shape[1:]))
    if target.count(-1) == 1:
        known = int(np.prod([d for d in target if d != -1]))
        target[target.index(-1)] = total // max(known, 1)
    if int(np.prod(target)) != total:
        raise ctx.error(f"cannot reshape {list(shape[1:])} to target_shape {ctx.opt('target_shape')}")
    return [ctx.reshape(inputs[0], (shape[0],) + tuple(target))]


@converter("Permute")
def permute(ctx, inputs):
    dims = [int(d) for d in ctx.opt("dims")]
    return [ctx.transpose(inputs[0], [0] + dims)]


@converter("InputLayer")
def input_layer(ctx, inputs):
    return [inputs[0]]
