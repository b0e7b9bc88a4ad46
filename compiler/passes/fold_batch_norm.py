"""fold_batch_norm: fold inference BatchNormalization into the conv2d/dense before it, or lower
a standalone one to a per-channel scale and shift.

    y = conv2d(x, W, b); z = batch_norm(y, g, beta, mean, var)
        ->  z = conv2d(x, W * s[:,None,None,None], (b - mean) * s + beta)      s = g / sqrt(var + eps)
    y = dense(x, W, b);  z = batch_norm(y, ...)   ->  z = dense(x, W * s[:,None], (b - mean) * s + beta)
    z = batch_norm(x, ...)  (anything else)        ->  z = add(mul(x, s), beta - mean * s)

Folding needs constant weights and BN parameters, and y read by the BN alone: if y is also a
graph output or has another reader, the BN becomes scale+shift instead (y must stay as it is).
The folded conv keeps the BN's layer names in its `source`, so profiles still show the BN.
New weights are fresh constants (the old ones may be shared); arithmetic is in float64.
"""
import numpy as np

from .rewrite import fold_channels, make_node, sole_consumer

NAME = "fold_batch_norm"


def _scale_shift(graph, bn):
    g, beta, mean, var = (graph.constants[i].astype(np.float64) for i in bn.inputs[1:])
    s = g / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
    return s, beta - mean * s


def _foldable(graph, node, bn, users):
    if node is None or node.op not in ("conv2d", "dense") or sole_consumer(graph, node.outputs[0], users) is not bn:
        return False
    return all(i in graph.constants for i in node.inputs[1:])


def run(graph):
    producers, users = graph.producers(), graph.consumers()
    kept = []
    for bn in graph.nodes:
        if bn.op != "batch_norm":
            kept.append(bn)
            continue
        if not all(i in graph.constants for i in bn.inputs[1:]):
            kept.append(bn)  # BN statistics computed at run time: leave it to its own lowering
            continue
        s, shift = _scale_shift(graph, bn)
        node = producers.get(bn.inputs[0])
        dtype = graph.values[bn.outputs[0]].dtype
        if _foldable(graph, node, bn, users):
            fold_channels(graph, node, bn, s, shift)
            producers[bn.outputs[0]] = node
            continue
        rank = len(graph.values[bn.inputs[0]].shape)
        shape = (-1,) + (1,) * (rank - 2)
        sc = graph.add_const(s.reshape(shape).astype(dtype), graph.fresh(f"{bn.name}_scale"))
        sh = graph.add_const(shift.reshape(shape).astype(dtype), graph.fresh(f"{bn.name}_shift"))
        mul = make_node(graph, "mul", [bn.inputs[0], sc], graph.fresh(f"{bn.name}_scale"), bn.source)
        kept += [mul, make_node(graph, "add", [mul.outputs[0], sh], graph.fresh(f"{bn.name}_shift"), bn.source,
                                outputs=bn.outputs)]
    graph.nodes = kept
    return graph
