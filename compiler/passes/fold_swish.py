"""fold_swish: fold the swish (SiLU) and hard-swish compositions exporters emit into one op, so that
the activation fuses into the conv before it (fuse: a value with two readers ends a group, and
x * sigmoid(x) reads x twice) and is computed in one pass with x read once.

    s = sigmoid(x); y = mul(x, s)                                   ->  y = swish(x)
    h = hard_sigmoid(x; alpha 1/6, beta 1/2); y = mul(x, h)         ->  y = hard_swish(x)
    a = add(x, 3); r = clip(a; 0, 6); h = mul(r, 1/6); y = mul(x, h) ->  y = hard_swish(x)
    (also h = div(r, 6), and either operand order of the adds and muls)

The first is Keras' swish / silu (and EfficientNet's activation) as tf2onnx writes it, the others
Keras' hard_swish (MobileNetV3) from the Keras frontend and from tf2onnx. Every intermediate value
must have the final mul as its only reader (else it is needed anyway and nothing is folded), and
the constants must be scalars (one element) of the stated values in float32.
"""
import numpy as np

from .rewrite import make_node, merge_source, sole_consumer

NAME = "fold_swish"


def _scalar(graph, name, value):
    """Whether NAME is a one-element constant equal to VALUE in float32."""
    c = graph.constants.get(name)
    return c is not None and c.size == 1 and np.float32(c.reshape(())) == np.float32(value)


def _other(node, value):
    """NODE's operand that is not VALUE (a binary node reading VALUE once), else None."""
    a, b = node.inputs
    return b if a == value else a if b == value else None


def _chain(graph, producers, users, value, x, mul):
    """The nodes computing VALUE from X that MUL may absorb into swish(x) / hard_swish(x):
    (op, [nodes]) or None."""
    node = producers.get(value)
    if node is None or sole_consumer(graph, value, users) is not mul:
        return None
    if node.op == "sigmoid" and node.inputs == [x]:
        return "swish", [node]
    if node.op == "hard_sigmoid" and node.inputs == [x] and np.float32(node.attrs.get("alpha", 0.2)) == \
            np.float32(1 / 6) and np.float32(node.attrs.get("beta", 0.5)) == np.float32(0.5):
        return "hard_swish", [node]
    if node.op not in ("mul", "div") or len(node.inputs) != 2:
        return None
    scale, clipped = (node.inputs[1], node.inputs[0]) if node.op == "div" else next(
        ((c, v) for c, v in (node.inputs, node.inputs[::-1]) if c in graph.constants), (None, None))
    if scale is None or not _scalar(graph, scale, 6 if node.op == "div" else 1 / 6):
        return None
    clip = producers.get(clipped)
    if clip is None or clip.op != "clip" or sole_consumer(graph, clipped, users) is not node or \
            clip.attrs.get("min") != 0 or clip.attrs.get("max") != 6:
        return None
    add = producers.get(clip.inputs[0])
    if add is None or add.op != "add" or sole_consumer(graph, clip.inputs[0], users) is not clip:
        return None
    three = _other(add, x)
    if three is None or not _scalar(graph, three, 3):
        return None
    return "hard_swish", [add, clip, node]


def run(graph):
    producers, users = graph.producers(), graph.consumers()
    removed, replaced = set(), {}
    for mul in graph.nodes:
        if mul.op != "mul" or len(mul.inputs) != 2 or mul.inputs[0] == mul.inputs[1]:
            continue
        for x, value in (mul.inputs, mul.inputs[::-1]):
            found = _chain(graph, producers, users, value, x, mul)
            if found is None or graph.values[x].shape != graph.values[mul.outputs[0]].shape:
                continue
            op, chain = found
            folded = make_node(graph, op, [x], mul.name, [], outputs=mul.outputs)
            for node in (*chain, mul):
                merge_source(folded, node)
            removed.update(id(n) for n in chain)
            replaced[id(mul)] = folded
            break
    graph.nodes = [replaced.get(id(n), n) for n in graph.nodes if id(n) not in removed]
    graph.prune_values()
    return graph
