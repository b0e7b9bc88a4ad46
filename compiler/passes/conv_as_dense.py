"""conv_as_dense: a conv2d whose window covers its whole (unpadded) input is a dense layer.

    y = conv2d(x[N, C, kh, kw], W[O, C, kh, kw], b; pads 0, groups 1)   (y: [N, O, 1, 1])
 -> y = reshape(dense(reshape(x, [N, C*kh*kw]), W reshaped to [O, C*kh*kw], b), [N, O, 1, 1])

Classifier heads written as 1x1 convs on pooled features (Keras MobileNet's `conv_preds`,
squeeze-and-excitation blocks) and FC layers exported as convs are matrix-vector products: the
conv schedules would compute one output pixel as a whole register tile of pixels (MobileNet v1's
1024->1000 head: 16 pixels' work for 1), the dense schedule streams the weights once. Only convs
with constant weights (and bias) rewrite; it runs after batch-norm folding has changed the weights.
"""
from .rewrite import constant_conv, make_node

NAME = "conv_as_dense"


def _covers_input(graph, node):
    if not constant_conv(graph, node) or any(int(p) for p in node.attrs.get("pads", [0, 0, 0, 0])):
        return False
    x, w = graph.values[node.inputs[0]], graph.values[node.inputs[1]]
    return tuple(x.shape[2:]) == tuple(w.shape[2:])


def run(graph):
    nodes, graph.nodes = graph.nodes, []
    for node in nodes:
        if not _covers_input(graph, node):
            graph.nodes.append(node)
            continue
        x, w = node.inputs[:2]
        n, c, kh, kw = graph.values[x].shape
        o = graph.values[w].shape[0]
        flat_w = graph.add_const(graph.constants[w].reshape(o, c * kh * kw), name=graph.fresh(f"{w}_dense"))
        flat_x = make_node(graph, "reshape", [x], graph.fresh(f"{node.name}_flatten"), node.source,
                           attrs={"shape": [n, c * kh * kw]})
        dense = make_node(graph, "dense", [flat_x.outputs[0], flat_w, *node.inputs[2:3]], node.name, node.source)
        back = make_node(graph, "reshape", dense.outputs, graph.fresh(f"{node.name}_nchw"), node.source,
                         outputs=node.outputs, attrs={"shape": [n, o, 1, 1]})
        graph.nodes += [flat_x, dense, back]
    graph.prune_values()
    return graph
