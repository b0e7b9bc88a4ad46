"""Lowering: edgec IR -> a TVM Relax module, one PrimFunc (kernel) per group of IR nodes.

Each op has a TE compute registered with `@lowering(op)`: `fn(attrs, *te_inputs) -> te.Tensor`
(or a list for multi-output ops). A kernel is a group of nodes (one node, or a group formed by the
fusion pass via `Node.kernel`); its TE computes are chained inside one `emit_te`, so the group
becomes one PrimFunc named after the group. Graph constants become parameters of `main` after
the graph inputs, so weights live outside the compiled library.
"""
from dataclasses import dataclass, field

from ...errors import UnsupportedError

LOWERINGS: dict = {}

# which op kind anchors a kernel when several are fused (schedules key on the anchor)
_KIND_RANK = ["recurrent", "conv2d", "dense", "pool", "reduce", "elementwise", "layout"]


def lowering(*ops):
    def deco(fn):
        for op in ops:
            LOWERINGS[op] = fn
        return fn
    return deco


@dataclass
class Kernel:
    name: str
    nodes: list  # Node objects in topological order
    inputs: list = field(default_factory=list)  # value names read from outside the group
    outputs: list = field(default_factory=list)  # value names used outside the group
    anchor: str = ""  # op of the anchor node
    kind: str = ""  # op kind of the anchor node

    def describe(self, graph):
        from ..ops import get_op
        sources = []
        for n in self.nodes:
            sources += [s for s in n.source if s not in sources]
        flops = sum(get_op(n.op).flops(n, [graph.values[i] for i in n.inputs],
                                       [graph.values[o] for o in n.outputs]) for n in self.nodes)
        return {"name": self.name, "nodes": [n.name for n in self.nodes], "ops": [n.op for n in self.nodes],
                "anchor": self.anchor, "kind": self.kind, "sources": sources, "flops": int(flops),
                "inputs": self.inputs, "outputs": self.outputs,
                "output_shapes": [list(graph.values[o].shape) for o in self.outputs]}


def partition(graph):
    """Group nodes into kernels by `Node.kernel` (a fused group is named by it, anchor first), else
    one kernel per node named `<op>_<index>`. A group's nodes must be contiguous (the fuse pass
    places them so)."""
    from ..ops import get_op
    from ..passes.fuse import short_name
    groups, order = {}, []
    for i, n in enumerate(graph.nodes):
        key = n.kernel or f"#{i}"
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(n)
    users = graph.consumers()
    graph_outputs = set(graph.outputs)
    kernels = []
    for idx, key in enumerate(order):
        nodes = groups[key]
        produced = {o for n in nodes for o in n.outputs}
        inputs = []
        for n in nodes:
            inputs += [i for i in n.inputs if i not in produced and i not in inputs]
        members = {id(n) for n in nodes}
        outputs = [o for n in nodes for o in n.outputs
                   if o in graph_outputs or any(id(u) not in members for u in users.get(o, []))]
        anchor = min(nodes, key=lambda n: _KIND_RANK.index(get_op(n.op).kind))
        name = nodes[0].kernel or f"{short_name(nodes[0].op)}_{idx}"
        kernels.append(Kernel(name, nodes, inputs, outputs, anchor.op, get_op(anchor.op).kind))
    return kernels


def te_kernel(graph, kernel):
    """A function of the kernel's inputs (TE tensors) returning its outputs, for emit_te."""
    def fn(*te_inputs):
        env = dict(zip(kernel.inputs, te_inputs))
        for node in kernel.nodes:
            try:
                low = LOWERINGS[node.op]
            except KeyError:
                raise UnsupportedError(f"{node.op} node '{node.name}' has no lowering to TVM") from None
            outs = low(node.attrs, *[env[i] for i in node.inputs])
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            env.update(zip(node.outputs, outs))
        res = [env[o] for o in kernel.outputs]
        return res[0] if len(res) == 1 else res
    return fn


from . import elementwise, nn, packed, quant, recurrent, tensor, upsample, winograd  # noqa: E402,F401  (registers the lowerings)
