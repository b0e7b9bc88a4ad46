"""fold_constants: evaluate every node whose inputs are all constants (numpy reference) and
replace its outputs by constants. Shape/ConstantOfShape/Reshape chains and weight transposes
made by frontends fold this way, so they are computed once at compile time, never per run."""
from ..ops import get_op

NAME = "fold_constants"


def run(graph):
    kept = []
    for node in graph.nodes:
        if node.inputs and all(i in graph.constants for i in node.inputs) or not node.inputs:
            outs = get_op(node.op).run(node, [graph.constants[i] for i in node.inputs])
            for name, arr in zip(node.outputs, outs):
                val = graph.values[name]
                graph.constants[name] = arr.astype(val.dtype).reshape(val.shape)
        else:
            kept.append(node)
    graph.nodes = kept
    return graph
