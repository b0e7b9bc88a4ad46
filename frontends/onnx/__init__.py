"""ONNX frontend: ONNX ModelProto / .onnx file -> edgec IR Graph.

    from edgec.frontends.onnx import from_onnx, supported_ops
    graph = from_onnx("model.onnx", input_shapes={"input": (1, 3, 224, 224)})

`importer.py` is the driver; every other module holds the converters of one op family,
registered with `@converter("OpType")` (registry.py).
"""
from . import (activation, arithmetic, constant, control, conv, einsum, indexing, layer_norm, linear,  # noqa: F401
               normalization, pool, quantize, recurrent, reduce, sequence, shape, upsample)
from .importer import import_onnx
from .registry import supported_ops


def from_onnx(model_or_path, input_shapes=None, name=None):
    """Import an ONNX model (path or ModelProto). INPUT_SHAPES: {input name: shape} for symbolic dims."""
    return import_onnx(model_or_path, input_shapes, name)


__all__ = ["from_onnx", "supported_ops"]
