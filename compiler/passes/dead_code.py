"""dead_code: remove nodes none of whose outputs reach a graph output."""
NAME = "dead_code"


def run(graph):
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(o in live for o in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    graph.nodes = kept[::-1]
    return graph
