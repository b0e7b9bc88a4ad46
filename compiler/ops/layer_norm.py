"""layer_norm(x, scale[, bias]): ONNX LayerNormalization / Keras LayerNormalization.

x is normalized over its axes from `axis` to the last: y = (x - mean) / sqrt(var + epsilon) *
scale + bias, scale and bias broadcasting against those axes. Outputs y, mean and 1/std (the
statistics with the normalized axes kept as 1, as ONNX returns them).
"""
import numpy as np

from . import ShapeError, defop
from .elementwise import broadcast_shape


def norm_axis(a, rank):
    ax = a.get("axis", -1)
    if not -rank <= ax < rank:
        raise ShapeError(f"axis {ax} is out of range for rank {rank}")
    return ax % rank


def _infer(a, x, scale, bias=None):
    ax = norm_axis(a, len(x.shape))
    inner = tuple(x.shape[ax:])
    for p in (scale, bias):
        if p is not None and broadcast_shape(inner, p.shape) != inner:
            raise ShapeError(f"scale/bias {list(p.shape)} does not broadcast to the normalized shape {list(inner)}")
    stats = tuple(x.shape[:ax]) + (1,) * len(inner)
    return [(x.shape, x.dtype), (stats, x.dtype), (stats, x.dtype)]


@defop("layer_norm", "reduce", _infer, lambda a, i, o: 8 * int(np.prod(o[0].shape)))
def layer_norm(attrs, x, scale, bias=None):
    axes = tuple(range(norm_axis(attrs, x.ndim), x.ndim))
    z = x.astype(np.float64)
    mean = z.mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(((z - mean) ** 2).mean(axis=axes, keepdims=True) + attrs.get("epsilon", 1e-5))
    y = (z - mean) * inv * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype), mean.astype(x.dtype), inv.astype(x.dtype)
