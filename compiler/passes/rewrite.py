"""Helpers the passes share for rewriting a Graph in place (not a pass)."""


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
