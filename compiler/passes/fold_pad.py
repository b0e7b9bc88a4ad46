"""fold_pad: fold a zero Pad of the spatial axes into the padding of the conv2d that reads it,
so the padded copy is never written (the conv's schedule pads in cache, per channel).

    y = pad(x; pads [0, 0, t, l, 0, 0, b, r], constant 0); z = conv2d(y, W; pads p)
        ->  z = conv2d(x, W; pads [p0 + t, p1 + l, p2 + b, p3 + r])
    y = pad(x; NHWC pads, constant 0); u = transpose(y, to NCHW); z = conv2d(u, W; pads p)
        ->  z = conv2d(transpose(x, to NCHW), W; pads p + the pads moved to NCHW order)

The second form is what Keras's ZeroPadding2D before a Conv2D/DepthwiseConv2D imports to (the
pad runs on the NHWC tensor); where x is itself transpose(v, to NHWC), the conv reads v and the
two transposes disappear. Pads may be asymmetric. Left alone: a non-zero pad value, reflect or
edge modes, negative pads (crops), pads on the batch or channel axes, and a padded (or
transposed) value with another reader or that is a graph output.
"""
from .rewrite import make_node, merge_source, sole_consumer

NAME = "fold_pad"


def _zero_pad(node):
    """NODE's pads (before, after per axis of a rank-4 tensor) if it is a constant-zero Pad
    that only adds, else None."""
    if node is None or node.op != "pad" or node.attrs.get("mode", "constant") != "constant":
        return None
    if node.attrs.get("value", 0) != 0:
        return None
    p = [int(v) for v in node.attrs["pads"]]
    return p if len(p) == 8 and min(p) >= 0 else None


def run(graph):
    producers, users = graph.producers(), graph.consumers()
    removed, replaced = set(), {}
    for conv in graph.nodes:
        if conv.op != "conv2d":
            continue
        src = producers.get(conv.inputs[0])
        perm = [0, 1, 2, 3]
        tr = None
        if src is not None and src.op == "transpose" and sole_consumer(graph, src.outputs[0], users) is conv:
            tr, perm = src, [int(v) for v in src.attrs["perm"]]
            src = producers.get(src.inputs[0])
        p = _zero_pad(src)
        if p is None or sole_consumer(graph, src.outputs[0], users) is not (tr or conv):
            continue
        before, after = [p[a] for a in perm], [p[4 + a] for a in perm]  # in the conv's axis order
        if before[:2] != [0, 0] or after[:2] != [0, 0]:
            continue
        cp = [int(v) for v in conv.attrs.get("pads", [0] * 4)]
        conv.attrs = dict(conv.attrs, pads=[cp[0] + before[2], cp[1] + before[3], cp[2] + after[2], cp[3] + after[3]])
        removed.add(id(src))
        merge_source(conv, src)
        x = src.inputs[0]
        if tr is None:
            conv.inputs[0] = x
            continue
        inner = producers.get(x)
        if inner is not None and inner.op == "transpose" and [inner.attrs["perm"][a] for a in perm] == [0, 1, 2, 3]:
            conv.inputs[0] = inner.inputs[0]  # transpose(transpose(v)) == v; dead code sweeps the inner one
            removed.add(id(tr))
            merge_source(conv, tr)
        else:  # the transpose now reads the unpadded x: a smaller value of its own
            new = make_node(graph, "transpose", [x], graph.fresh(tr.name), tr.source, attrs=tr.attrs)
            replaced[id(tr)] = new
            conv.inputs[0] = new.outputs[0]
    graph.nodes = [replaced.get(id(n), n) for n in graph.nodes if id(n) not in removed]
    return graph
