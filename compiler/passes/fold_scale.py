"""fold_scale: fold a constant per-channel scale or shift into the conv2d/dense before it.

    y = conv2d(x, W, b); z = mul(y, s)     ->  z = conv2d(x, W * s[:,None,None,None], b * s)
    y = conv2d(x, W, b); z = add(y, t)     ->  z = conv2d(x, W, b + t)        (sub: b - t)
    y = dense(x, W, b);  z = mul(y, s)     ->  z = dense(x, W * s[:,None], b * s)   (add, sub alike)

s and t are constants that vary at most along the output channels (conv2d: axis 1 of NCHW;
dense: the last axis), or are one value. This is batch normalization as exporters write it when
they do not merge it into the conv, and Caffe's Scale layer: tf2onnx leaves a Keras
DepthwiseConv2D's BatchNormalization as `mul` (and `add`) after the depthwise Conv (13 in MobileNet
v1, 17 in MobileNetV2), the ONNX zoo's DenseNet-121 and Inception v2 carry a Mul and an Add after
59 and 69 of their convs. The kernels paid a multiply and an add per output element (and LLVM
rebuilt the depthwise scale vector with shuffles in every row); onnxruntime folds them too (its
ConvMulFusion and ConvAddFusion). Measured within noise in whole models (the kernels are bound by
their loads or FMAs, not the epilogue): Zen 1 (AVX2), 1 thread, medians of 8-20 alternated
blocks, MobileNet v1 35.08 -> 35.08 ms, MobileNetV2 21.98 -> 21.89, Inception v2 89.4 -> 88.5,
DenseNet-121 153.9 -> 156.4 and (order reversed) 162.0 -> 160.3.
Folding needs constant weights and bias, a float dtype, y read by the mul/add alone (not a graph
output), and finite constants. Chains (mul then add) fold one after the other. The folded node
keeps the mul's/add's layer names in its `source`. Arithmetic is in float64.
"""
import numpy as np

from .rewrite import fold_channels, sole_consumer

NAME = "fold_scale"

FOLDS = {"mul", "add", "sub"}


def run(graph):
    producers, users = graph.producers(), graph.consumers()
    kept = []
    for node in graph.nodes:
        folded = node.op in FOLDS and _fold(graph, node, producers, users)
        if not folded:
            kept.append(node)
    graph.nodes = kept
    return graph


def _fold(graph, node, producers, users):
    """Fold NODE (mul/add/sub of a conv2d/dense output and a constant) into that producer; False
    when it does not apply."""
    if len(node.inputs) != 2:
        return False
    y, c = node.inputs
    if node.op != "sub" and y in graph.constants:  # (mul and add commute; c - y does not fold)
        y, c = c, y
    prod = producers.get(y)
    if prod is None or c not in graph.constants or not _weighted(graph, prod):
        return False
    if sole_consumer(graph, y, users) is not node:
        return False
    out = graph.values[y]
    per_channel = _per_channel(graph.constants[c], out.shape, 1 if prod.op == "conv2d" else len(out.shape) - 1)
    if per_channel is None or not out.dtype.startswith("float") or graph.values[node.outputs[0]].shape != out.shape:
        return False
    v = np.broadcast_to(per_channel, (graph.constants[prod.inputs[1]].shape[0],))
    if node.op == "mul":
        fold_channels(graph, prod, node, scale=v)
    else:
        fold_channels(graph, prod, node, shift=v if node.op == "add" else -v)
    producers[node.outputs[0]] = prod
    return True


def _weighted(graph, node):
    """NODE is a conv2d or dense whose weights (and bias) are constants, the bias one per channel."""
    if node.op not in ("conv2d", "dense") or len(node.inputs) < 2:
        return False
    if not all(i in graph.constants for i in node.inputs[1:]):
        return False
    channels = graph.constants[node.inputs[1]].shape[0]
    return len(node.inputs) < 3 or graph.constants[node.inputs[2]].size == channels


def _per_channel(const, shape, axis):
    """CONST as a vector over axis AXIS of SHAPE (or one value), or None: it broadcasts to SHAPE
    without growing it, varies along AXIS alone, and is finite."""
    c = np.asarray(const, dtype=np.float64)
    if c.ndim > len(shape) or not np.all(np.isfinite(c)):
        return None
    full = c.reshape((1,) * (len(shape) - c.ndim) + c.shape)
    if any(d not in (1, shape[i]) for i, d in enumerate(full.shape)):
        return None
    if any(d != 1 for i, d in enumerate(full.shape) if i != axis):
        return None
    return full.reshape(-1)
