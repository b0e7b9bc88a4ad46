"""decompose: rewrite conv2d_transpose as a conv2d over the zero-upsampled input.

    y = conv2d_transpose(x, W[C, O/g, kh, kw], b; strides s, dilations d, pads p, output_padding q)
 -> u = reshape(pad(reshape(x, [N, C, H, 1, W, 1]), s-1 zeros after each pixel), [N, C, H*s, W*s])
    y = conv2d(u, W' , b; dilations d, pads (k-1)*d - p (+ q at the end, - (s-1) trailing zeros))
    W' = flip(W regrouped to [O, C/g, kh, kw]) (folded: W is a constant)

Negative pads (pads larger than the kernel's reach) crop u first. The conv then runs on the conv
schedules; a stride-s transposed conv does s*s times the multiply-adds of the direct form (the
inserted zeros are multiplied too). It runs first, before fold_constants folds W'.
"""
NAME = "decompose"


def run(graph):
    nodes, graph.nodes = graph.nodes, []
    for node in nodes:
        if node.op == "conv2d_transpose":
            _conv_transpose(graph, node)
        else:
            graph.nodes.append(node)
    return graph


def _conv_transpose(graph, node):
    from ..ops.upsample import transpose_geometry
    a = node.attrs
    x, w = node.inputs[:2]
    xs, ws = graph.values[x].shape, graph.values[w].shape
    s, d, p, q, _, _ = transpose_geometry(a, xs, ws)
    g = a.get("groups", 1)
    n, c, h, wd = xs
    og, kh, kw = ws[1:]

    def add(op, ins, attrs, out=None):
        return graph.add_node(op, ins, attrs, name=graph.fresh(f"{node.name}_{op}"), source=node.source,
                              outputs=out)[0]

    if s != [1, 1]:
        u = add("reshape", [x], {"shape": [n, c, h, 1, wd, 1]})
        u = add("pad", [u], {"pads": [0] * 9 + [s[0] - 1, 0, s[1] - 1]})
        x = add("reshape", [u], {"shape": [n, c, h * s[0], wd * s[1]]})
    trail = [s[0] - 1, s[1] - 1]  # zeros after the last pixel that the upsampled input does not have
    pads = [(kh - 1) * d[0] - p[0], (kw - 1) * d[1] - p[1],
            (kh - 1) * d[0] - p[2] + q[0] - trail[0], (kw - 1) * d[1] - p[3] + q[1] - trail[1]]
    if min(pads) < 0:
        x = add("pad", [x], {"pads": [0, 0, min(pads[0], 0), min(pads[1], 0), 0, 0, min(pads[2], 0), min(pads[3], 0)]})
    wg = add("reshape", [w], {"shape": [g, c // g, og, kh, kw]})
    wg = add("transpose", [wg], {"perm": [0, 2, 1, 3, 4]})
    wg = add("reshape", [wg], {"shape": [g * og, c // g, kh, kw]})
    wg = add("slice", [wg], {"starts": [-1, -1], "ends": [-(kh + 1), -(kw + 1)], "axes": [2, 3], "steps": [-1, -1]})
    outputs = list(node.outputs)
    graph.values.pop(outputs[0])
    add("conv2d", [x, wg] + node.inputs[2:], {"strides": [1, 1], "dilations": d, "groups": g,
                                              "pads": [max(v, 0) for v in pads]}, out=outputs)
