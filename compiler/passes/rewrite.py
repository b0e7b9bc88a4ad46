"""Helpers the passes share for rewriting a Graph in place (not a pass)."""
import numpy as np


def replace_uses(graph, old, new):
    """Make every node (and graph output) that reads OLD read NEW instead."""
    for n in graph.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
    graph.outputs = [new if o == old else o for o in graph.outputs]


def sole_consumer(graph, value, users=None):
    """The one node that reads VALUE, or None if it has several readers or is a graph output."""
    users = graph.consumers() if users is None else users
    readers = users.get(value, [])
    if value in graph.outputs or len(readers) != 1 or readers[0].inputs.count(value) != 1:
        return None
    return readers[0]


def constant_conv(graph, node):
    """NODE is a float32 conv2d of groups 1 on 4-D tensors whose weights (and bias) are constants."""
    if node.op != "conv2d" or node.attrs.get("groups", 1) != 1 or len(node.inputs) < 2:
        return False
    x, w = graph.values[node.inputs[0]], graph.values[node.inputs[1]]
    if w.name not in graph.constants or x.dtype != "float32" or len(x.shape) != 4 or len(w.shape) != 4:
        return False
    return len(node.inputs) < 3 or node.inputs[2] in graph.constants


def fold_channels(graph, node, into, scale=None, shift=None):
    """Fold `INTO = NODE's output * SCALE + SHIFT` (float64 vectors over its output channels; None:
    none) into NODE, a conv2d or dense with constant weights (and bias): new weight and bias
    constants, and NODE takes over INTO's outputs and layer names (INTO is then dropped)."""
    dtype = graph.values[into.outputs[0]].dtype
    w, b = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None
    bias = graph.constants[b].astype(np.float64).reshape(-1) if b is not None else 0.0
    if scale is not None:
        weights = graph.constants[w].astype(np.float64)
        w = graph.add_const((weights * scale.reshape((-1,) + (1,) * (weights.ndim - 1))).astype(dtype),
                            graph.fresh(f"{node.name}_w"))
        bias = bias * scale
    if shift is not None:
        bias = bias + shift
    bias = np.broadcast_to(bias, (graph.constants[w].shape[0],))
    node.inputs = [node.inputs[0], w, graph.add_const(bias.astype(dtype), graph.fresh(f"{node.name}_b"))]
    node.outputs = list(into.outputs)
    merge_source(node, into)


def merge_source(into, node):
    """Append NODE's user layer names to INTO's, so profiles still name the removed layer."""
    into.source += [s for s in node.source if s not in into.source]


def make_node(graph, op, inputs, name, source, outputs=None, attrs=None):
    """A typed Node that is not yet placed in graph.nodes. OUTPUTS may name values already
    recorded (a node that takes over another's output); new ones get fresh names and records."""
    from ..ir import Node, Value
    from ..ops import get_op
    node = Node(op, name, list(inputs), [], dict(attrs or {}), list(source))
    types = get_op(op).infer(node, [graph.values[i] for i in inputs])
    node.outputs = list(outputs) if outputs else [graph.fresh(name) for _ in types]
    for out, (shape, dtype) in zip(node.outputs, types):
        if out not in graph.values:
            graph.values[out] = Value(out, tuple(int(d) for d in shape), str(dtype))
    return node
