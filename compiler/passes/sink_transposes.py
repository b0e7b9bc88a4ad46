"""sink_transposes: move transposes down through the element-by-element ops, pads and reductions
after them, so that a transpose meets its inverse and both disappear.

    t = transpose(x; perm p); y = f(t, c)          ->  y' = f(x, c'); y = transpose(y'; p)
    t = transpose(x; p); u = transpose(v; p); y = f(t, u)  ->  y = transpose(f(x, v); p)
    t = transpose(x; p); y = pad(t; pads) / reduce_mean(t; axes)
                                                    ->  the pads / axes moved to x's axis order
                                                        (no transpose after a reduction that keeps
                                                        the remaining axes in order: NHWC means
                                                        over H, W without keepdims)
    transpose(transpose(x; p); q)                   ->  transpose(x; p[q]), nothing where that is
                                                        the identity

f is an op that works element by element in any layout (layout.LAYOUT_FREE: activations, add/mul/...
with a constant c, which is permuted to x's axis order, or with another operand transposed the same
way; not batch norm, LRN or a quantize, whose channel axis is fixed). This is what a Keras model exported by
tf2onnx needs: its convs run NCHW between transposes to and from NHWC, and the activations,
batch-norm scales and squeeze-excitation blocks in between (per-channel constants of shape [C],
means over axes [1, 2]) keep the transposes apart (MobileNetV3: 106 transposes, a third of its
time). Each reader that can take a transpose does (the hard-swish x * relu6(x + 3) / 6 reads the
transposed x twice, through the add first: both sink, and the mul then reads two transposes of the
same order); a transpose no one reads any more goes. Where the result moves more transposed
elements than the graph did (readers that cannot take one: a reshape, a graph output), the graph
stays as it was. One worklist over the transposes: linear in the graph's size.
"""
import numpy as np

from .layout import LAYOUT_FREE
from .rewrite import make_node, replace_uses

NAME = "sink_transposes"

REDUCTIONS = {"reduce_mean", "reduce_sum", "reduce_max", "reduce_min"}


def _perm(node):
    return [int(v) for v in node.attrs["perm"]]


def _sinks(graph, node, perm, producers):
    """Whether NODE can read the untransposed operands of its PERM-transposed inputs."""
    if len(node.outputs) != 1 or node.outputs[0] in graph.outputs:
        return False
    rank = len(perm)
    if node.op == "pad":
        return node.attrs.get("mode", "constant") == "constant" and len(node.inputs) == 1
    if node.op in REDUCTIONS:
        return len(node.inputs) == 1
    if node.op not in LAYOUT_FREE or len(graph.values[node.outputs[0]].shape) != rank:
        return False
    for i in node.inputs:
        src = producers.get(i)
        if src is not None and src.op == "transpose" and _perm(src) == perm:
            continue
        if i in graph.constants and graph.constants[i].ndim <= rank:
            continue
        return False
    return True


def _moved(graph):
    """Elements the graph's transposes move."""
    return sum(int(np.prod(graph.values[n.outputs[0]].shape)) for n in graph.nodes if n.op == "transpose")


def run(graph):
    before = _moved(graph)
    original = graph.copy()
    producers, users = graph.producers(), graph.consumers()
    after, removed = {}, set()  # node -> transposes placed right after it; nodes dropped

    def drop_if_unread(t):
        if not users.get(t.outputs[0]) and t.outputs[0] not in graph.outputs and id(t) not in removed:
            removed.add(id(t))
            users[t.inputs[0]] = [u for u in users.get(t.inputs[0], []) if u is not t]

    work = [n for n in graph.nodes if n.op == "transpose"]
    while work:
        t = work.pop()
        if id(t) in removed:
            continue
        perm, out, x = _perm(t), t.outputs[0], t.inputs[0]
        for r in list({id(r): r for r in users.get(out, [])}.values()):
            if r.op == "transpose":  # compose: r reads x
                q = _perm(r)
                r.inputs = [x]
                r.attrs = dict(r.attrs, perm=[perm[k] for k in q])
                users[out] = [u for u in users[out] if u is not r]
                if _perm(r) == list(range(len(q))) and r.outputs[0] not in graph.outputs:
                    replace_uses(graph, r.outputs[0], x)
                    for u in users.pop(r.outputs[0], []):
                        users.setdefault(x, []).append(u)
                        if u.op == "transpose":
                            work.append(u)
                    removed.add(id(r))
                else:
                    users.setdefault(x, []).append(r)
                    work.append(r)
            elif _sinks(graph, r, perm, producers):
                sources = [producers[i] for i in r.inputs if i in producers and producers[i].op == "transpose"]
                t2 = _sink(graph, r, perm, producers, users, after)
                work.extend([t2] if t2 is not None else [])
                for src in sources:
                    drop_if_unread(src)
        drop_if_unread(t)
    graph.nodes = [m for n in graph.nodes if id(n) not in removed for m in (n, *after.get(id(n), []))
                   if id(m) not in removed]
    graph.prune_values()
    # readers that could not take a transpose (a graph output, a reshape) may leave more transposed
    # elements than there were: then nothing changes
    return graph if _moved(graph) < before else original


def _sink(graph, node, perm, producers, users, after):
    """NODE on its operands' axis order (PERM undone), then a transpose to its old output (PERM;
    for a reduction without keepdims the order of its kept axes, none where that is the identity).
    Returns that transpose, or None."""
    inverse = [int(v) for v in np.argsort(perm)]
    rank = len(perm)
    inputs = []
    for i in node.inputs:
        src = producers.get(i)
        if src is not None and src.op == "transpose" and _perm(src) == perm:
            inputs.append(src.inputs[0])
            users.setdefault(src.inputs[0], []).append(node)
        elif i in graph.constants:
            c = graph.constants[i]
            inputs.append(graph.add_const(np.ascontiguousarray(
                np.transpose(c.reshape((1,) * (rank - c.ndim) + c.shape), inverse))))
        else:  # (not reached: _sinks checked)
            inputs.append(i)
        if node in users.get(i, []):
            users[i].remove(node)
    attrs, out_perm = dict(node.attrs), list(perm)
    if node.op == "pad":
        p = [int(v) for v in attrs["pads"]]
        attrs["pads"] = [p[inverse[a]] for a in range(rank)] + [p[rank + inverse[a]] for a in range(rank)]
    elif node.op in REDUCTIONS:
        axes = {a % rank for a in attrs.get("axes", range(rank))}
        attrs["axes"] = sorted(perm[a] for a in axes)
        if not attrs.get("keepdims", True):  # the kept axes, in x's order: the transpose between them
            kept = sorted(perm[k] for k in range(rank) if k not in axes)
            out_perm = [kept.index(perm[k]) for k in range(rank) if k not in axes]
    out = node.outputs[0]
    if out_perm == list(range(len(out_perm))):  # (a reduction that leaves the kept axes in order)
        moved = make_node(graph, node.op, inputs, node.name, node.source, outputs=[out], attrs=attrs)
        node.inputs, node.attrs = moved.inputs, moved.attrs
        return None
    moved = make_node(graph, node.op, inputs, node.name, node.source, attrs=attrs)
    node.inputs, node.attrs, node.outputs = moved.inputs, moved.attrs, moved.outputs
    producers[node.outputs[0]] = node
    t = make_node(graph, "transpose", [node.outputs[0]], graph.fresh(node.name + "_t"), node.source,
                  outputs=[out], attrs={"perm": out_perm})
    producers[out] = t
    users[node.outputs[0]] = [t]
    after.setdefault(id(node), []).append(t)
    return t
