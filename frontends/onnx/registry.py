"""The converter registry: ONNX op type -> converter function.

A converter is a plain function `fn(ctx) -> list of IR value names` (one per ONNX output of the
node, None for an output the converter does not produce) registered with

    @converter("Relu", "LeakyRelu")
    def relu(ctx): ...

`since` (the ONNX opset a converter starts at) lets an op have several converters; the driver
picks the newest one whose `since` is <= the model's default-domain opset.
"""
CONVERTERS: dict = {}


def converter(*op_types, since=1):
    def deco(fn):
        for op in op_types:
            CONVERTERS.setdefault(op, []).append((since, fn))
            CONVERTERS[op].sort(key=lambda p: p[0])
        return fn
    return deco


def lookup(op_type, opset):
    """The converter for OP_TYPE at OPSET, or None."""
    best = None
    for since, fn in CONVERTERS.get(op_type, []):
        if since <= opset:
            best = fn
    return best


def supported_ops():
    return sorted(CONVERTERS)
