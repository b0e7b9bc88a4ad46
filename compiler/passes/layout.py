"""layout: the point where a target chooses the data layout of each conv2d kernel. Activations
stay NCHW today (the layout of the IR and of every lowering); with a CPU preset, constant conv2d
and dense weights are pre-packed for the target's schedules (conv2d -> conv2d_packed,
dense -> dense_packed, see targets/schedules/pack.py), which changes no activation layout.

The seam: `choose_layout(nodes, preset)` gets a conv2d kernel's nodes (its fused group) and the
target preset and returns a layout name. A target that wants NCHW[x]c (x86) or NHWC (ARM) makes
it return that; the rewrite that must then be written here is: convert the group's weights to the
new layout as constants, give the group's nodes the layout in their attrs (which their lowerings
must honour), and insert `layout_transform` nodes only where a value crosses from a kernel in one
layout to a kernel in another (group boundaries, graph inputs/outputs). Until that rewrite and
those lowerings exist, a layout other than NCHW is refused with a clear error rather than ignored.
"""
from ...errors import UnsupportedError

NAME = "layout"
DEFAULT = "NCHW"


def choose_layout(nodes, preset):
    """The layout for a conv2d kernel made of NODES on PRESET (None = no target known)."""
    return DEFAULT


def _conv_kernels(graph):
    groups = {}
    for i, n in enumerate(graph.nodes):
        groups.setdefault(n.kernel or f"#{i}", []).append(n)
    return [g for g in groups.values() if any(n.op == "conv2d" for n in g)]


def run(graph, preset=None):
    for nodes in _conv_kernels(graph):
        layout = choose_layout(nodes, preset)
        if layout != DEFAULT:
            raise UnsupportedError(f"model '{graph.name}': kernel of {nodes[0].op} node '{nodes[0].name}': "
                                   f"layout {layout} was chosen but only {DEFAULT} is implemented")
    if preset is not None:  # weights (constants) pre-packed for the target's conv2d schedule
        from ...targets.schedules.pack import pack_conv_weights
        graph = pack_conv_weights(graph, preset)
    return graph
