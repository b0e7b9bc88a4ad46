"""layout: the point where a target chooses the data layout of each conv2d kernel. Activations
stay NCHW today (the layout of the IR and of every lowering); with a CPU preset, constant conv2d
and dense weights are pre-packed for the target's schedules (conv2d -> conv2d_packed,
dense -> dense_packed, block sizes from targets/schedules/pack.py), which changes no activation layout.

The seam: `choose_layout(nodes, preset)` gets a conv2d kernel's nodes (its fused group) and the
target preset and returns a layout name. A target that wants NCHW[x]c (x86) or NHWC (ARM) makes
it return that; the rewrite that must then be written here is: convert the group's weights to the
new layout as constants, give the group's nodes the layout in their attrs (which their lowerings
must honour), and insert `layout_transform` nodes only where a value crosses from a kernel in one
layout to a kernel in another (group boundaries, graph inputs/outputs). Until that rewrite and
those lowerings exist, a layout other than NCHW is refused with a clear error rather than ignored.
"""
from ...errors import UnsupportedError
from ..ops.packed import pack_dense_weight, pack_weight

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
        graph = pack_conv_weights(graph, preset)
    return graph


def packable(graph, node, block):
    if node.op != "conv2d" or node.inputs[1] not in graph.constants:
        return False
    w = graph.constants[node.inputs[1]]
    g = node.attrs.get("groups", 1)
    return w.dtype.name == "float32" and w.ndim == 4 and (w.shape[0] // g) * 2 >= block


def pointwise(node, w):
    """A 1x1 conv without padding: a GEMM over the output pixels (one per group)."""
    return w.shape[2] == w.shape[3] == 1 and not any(node.attrs.get("pads", [0] * 4))


def pack_conv_weights(graph, preset):
    """Rewrite conv2d and dense nodes with constant weights (in place) to their packed ops; return GRAPH."""
    if preset is None or preset.device != "cpu":
        return graph
    from ...targets.schedules.pack import (conv_params, conv_row_padding, conv_rows_tile, dense_block, pointwise_gemm,
                                           pointwise_tail, pointwise_tile)
    block, _ = conv_params(preset)
    for node in graph.nodes:
        if not packable(graph, node, block):
            continue
        w = graph.constants[node.inputs[1]]
        g = node.attrs.get("groups", 1)
        attrs = dict(node.attrs, out_channels=int(w.shape[0]), block=block)
        out = graph.values[node.outputs[0]].shape
        pixels = int(out[2] * out[3])
        mr, nr = pointwise_tile(preset, int(w.shape[0]), pixels)
        strided = any(s != 1 for s in node.attrs.get("strides", [1, 1]))
        wq = int(graph.values[node.inputs[0]].shape[3]) + sum(node.attrs.get("pads", [0] * 4)[1::2])  # padded row
        # a grouped conv is one GEMM per group: its output channels per group pay for an input copy
        if pointwise(node, w) and pointwise_gemm(int(w.shape[0]) // g, pixels, nr, strided):
            attrs["block"], attrs["tile"] = mr, nr  # a GEMM: tile of `block` channels x `tile` pixels
            attrs["tail"] = pointwise_tail(preset, pixels, nr)  # (pixels after the whole tiles)
        elif rows := conv_rows_tile(preset, int(w.shape[1]), int(w.shape[0]), int(out[2]), int(out[3]), wq, strided, g):
            attrs["block"], attrs["row_tile"] = rows  # the direct conv over padded rows, a GEMM's tile
        else:  # the direct conv computes its rows in whole register tiles of `width_tile` pixels
            attrs["width_tile"] = conv_row_padding(preset, int(out[3]))
        node.inputs[1] = graph.add_const(pack_weight(w, g, attrs["block"]), graph.fresh(node.inputs[1] + "_packed"))
        node.op = "conv2d_packed"
        node.attrs = attrs
    dblock = dense_block(preset)
    for node in graph.nodes:
        if node.op != "dense" or node.inputs[1] not in graph.constants:
            continue
        w = graph.constants[node.inputs[1]]
        if w.dtype.name != "float32" or w.shape[0] < dblock // 8:
            continue
        node.inputs[1] = graph.add_const(pack_dense_weight(w, dblock), graph.fresh(node.inputs[1] + "_packed"))
        node.op = "dense_packed"
        node.attrs = dict(node.attrs, out_features=int(w.shape[0]), block=dblock)
    return graph

