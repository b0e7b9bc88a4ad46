"""The converter registry: Keras layer class name -> converter function.

A converter is a plain function `fn(ctx, inputs) -> list of IR value names` (the layer's output
tensors, in order), registered with

    @converter("Dense")
    def dense(ctx, inputs): ...

It reads the layer's config through `ctx.opt`, its weights through `ctx.weights`, and adds IR
through `ctx.add`. Every value stays in the Keras layout (NHWC); converters of NCHW IR ops
transpose at their boundaries.
"""
CONVERTERS: dict = {}


def converter(*class_names):
    def deco(fn):
        for name in class_names:
            CONVERTERS[name] = fn
        return fn
    return deco


def supported_layers():
    return sorted(CONVERTERS)
