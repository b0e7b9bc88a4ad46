"""reduce_as_pool: a mean or max over the spatial axes of a 4-D NCHW tensor, keeping its dims, is a
global pool:

    y = reduce_mean(x[N, C, H, W]; axes [2, 3], keepdims)  ->  y = global_avg_pool(x)
    y = reduce_max(x; axes [2, 3], keepdims)                ->  y = global_max_pool(x)
    y = reduce_mean(x; axes [2, 3]) (no keepdims)          ->  y = reshape(global_avg_pool(x), [N, C])

(what a squeeze-excitation block's mean becomes once sink_transposes has moved it to NCHW): the
global pools' kernel reduces each plane in vector rows of partial results and fuses after a conv,
where the generic reduction ran one scalar chain of adds per channel.
"""
from .rewrite import make_node

NAME = "reduce_as_pool"

POOLS = {"reduce_mean": "global_avg_pool", "reduce_max": "global_max_pool"}


def run(graph):
    nodes = []
    for node in graph.nodes:
        x = graph.values[node.inputs[0]] if node.inputs else None
        if node.op not in POOLS or len(node.inputs) != 1 or len(x.shape) != 4 or not x.dtype.startswith("float") or \
                sorted(a % 4 for a in node.attrs.get("axes", range(4))) != [2, 3]:
            nodes.append(node)
        elif node.attrs.get("keepdims", True):
            nodes.append(make_node(graph, POOLS[node.op], node.inputs, node.name, node.source, outputs=node.outputs))
        else:
            pool = make_node(graph, POOLS[node.op], node.inputs, node.name, node.source)
            nodes += [pool, make_node(graph, "reshape", pool.outputs, graph.fresh(node.name + "_flat"), node.source,
                                      outputs=node.outputs, attrs={"shape": list(x.shape[:2])})]
    graph.nodes = nodes
    return graph
