"""BatchNormalization (inference form), LRN, Softmax and LogSoftmax."""
import numpy as np

from .registry import converter


@converter("BatchNormalization")
def batch_norm(ctx):
    ctx.ignore("momentum", "consumed_inputs", "is_test")
    if int(ctx.attr("training_mode", 0)):
        raise ctx.unsupported("training_mode=1 is not supported (inference only)")
    if not int(ctx.attr("spatial", 1)):
        raise ctx.unsupported("spatial=0 is not supported")
    if any(o for o in ctx.outputs[1:]):
        raise ctx.unsupported("training outputs (running mean/var, saved mean/var) are not supported")
    x = ctx.input(0)
    if not ctx.dtype(x).startswith("float"):
        raise ctx.unsupported(f"input dtype {ctx.dtype(x)} is not supported (floats only)")
    params = [ctx.cast(ctx.input(i), ctx.dtype(x)) for i in range(1, 5)]
    return [ctx.add1("batch_norm", [x] + params, {"epsilon": float(ctx.attr("epsilon", 1e-5))})]


@converter("LRN")
def lrn(ctx):
    attrs = {"size": int(ctx.attr("size")), "alpha": float(ctx.attr("alpha", 1e-4)),
             "beta": float(ctx.attr("beta", 0.75)), "bias": float(ctx.attr("bias", 1.0))}
    return [ctx.add1("lrn", [ctx.input(0)], attrs)]


def _softmax(ctx, op):
    x = ctx.input(0)
    shape = ctx.shape(x)
    r = len(shape)
    if not ctx.dtype(x).startswith("float"):
        raise ctx.unsupported(f"input dtype {ctx.dtype(x)} is not supported (floats only)")
    if ctx.opset >= 13:
        axis = int(ctx.attr("axis", -1))
        if not -r <= axis < r:
            raise ctx.error(f"axis {axis} is out of range for rank {r}")
        return [ctx.add1(op, [x], {"axis": axis % r})]
    # opset < 13: the input is seen as 2-D (prod(shape[:axis]), prod(shape[axis:]))
    axis = int(ctx.attr("axis", 1))
    if not -r <= axis <= r:
        raise ctx.error(f"axis {axis} is out of range for rank {r}")
    axis %= r if r else 1
    flat = ctx.reshape(x, (int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))))
    y = ctx.add1(op, [flat], {"axis": 1})
    return [ctx.reshape(y, shape)]


@converter("Softmax")
def softmax(ctx):
    return _softmax(ctx, "softmax")


@converter("LogSoftmax")
def log_softmax(ctx):
    return _softmax(ctx, "log_softmax")
