"""remove_identity: delete copies: `identity` nodes (Identity, Dropout at inference) and
`reshape` nodes whose shape is their input's (frontends emit those as output copies).

    y = identity(x); z = f(y)   ->   z = f(x)

If y is a graph output, the node producing x is renamed to produce y instead, so output names
stay the user's. The identity is kept only where that is impossible: x is a graph input, a
constant or another graph output (then the copy is real work the model asks for).
One walk over the nodes with a table of renamed values (linear in the graph's size).
"""
from .rewrite import merge_source, replace_uses

NAME = "remove_identity"


def run(graph):
    producers = graph.producers()
    inputs = {v.name for v in graph.inputs}
    alias = {}  # removed copy's output -> the value it copied

    def resolve(name):
        seen = []
        while name in alias:
            seen.append(name)
            name = alias[name]
        for s in seen:
            alias[s] = name
        return name

    kept = []
    for node in graph.nodes:
        node.inputs = [resolve(i) for i in node.inputs]
        if not _is_copy(graph, node):
            kept.append(node)
            continue
        x, y = node.inputs[0], node.outputs[0]
        if y not in graph.outputs:
            alias[y] = x
            continue
        prod = producers.get(x)
        if prod is None or x in inputs or x in graph.outputs:
            kept.append(node)
            continue
        # y is a graph output: the producer of x now writes y directly (rare: one per output)
        prod.outputs = [y if o == x else o for o in prod.outputs]
        merge_source(prod, node)
        replace_uses(graph, x, y)
        alias[x] = y
        producers[y] = prod
    graph.outputs = [resolve(o) for o in graph.outputs]
    graph.nodes = kept
    return graph


def _is_copy(graph, node):
    return node.op == "identity" or (
        node.op == "reshape" and graph.values[node.inputs[0]].shape == graph.values[node.outputs[0]].shape)
