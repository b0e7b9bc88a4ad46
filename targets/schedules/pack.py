"""Compile-time weight packing for the blocked conv2d schedule (called by the layout pass).

A conv2d whose weight is a constant becomes `conv2d_packed` with its weight pre-packed into
(blocks, I, KH, KW, block) (see compiler/ops/packed.py): the activations keep the IR's NCHW
layout, and the schedule computes `block` output channels per input pixel with broadcast FMAs.
Block and register tile sizes come from the preset's vector width and register count.
"""
from ...compiler.ops.packed import pack_dense_weight, pack_weight


def conv_params(preset):
    """(block, max width tile): block = output channels per accumulator row (one or two vectors),
    the width tile = how many such rows fit in the vector registers with room for operands."""
    lanes = max(preset.vector_bits // 32, 4)
    regs = 32 if preset.vector_bits >= 512 or preset.arch == "aarch64" else 16
    block = lanes if lanes >= 16 else 2 * lanes
    vecs = block // lanes
    return block, max(2, min(14, (regs - 4) // vecs))


def dense_block(preset):
    """Output features per dense accumulator tile: 8 vectors, enough FMAs in flight for a GEMV."""
    return 8 * max(preset.vector_bits // 32, 4)


def packable(graph, node, block):
    if node.op != "conv2d" or node.inputs[1] not in graph.constants:
        return False
    w = graph.constants[node.inputs[1]]
    g = node.attrs.get("groups", 1)
    return w.dtype.name == "float32" and w.ndim == 4 and (w.shape[0] // g) * 2 >= block


def pack_conv_weights(graph, preset):
    """Rewrite conv2d and dense nodes with constant weights (in place) to their packed ops; return GRAPH."""
    if preset is None or preset.device != "cpu":
        return graph
    block, _ = conv_params(preset)
    for node in graph.nodes:
        if not packable(graph, node, block):
            continue
        w = graph.constants[node.inputs[1]]
        g = node.attrs.get("groups", 1)
        node.inputs[1] = graph.add_const(pack_weight(w, g, block), graph.fresh(node.inputs[1] + "_packed"))
        node.op = "conv2d_packed"
        node.attrs = dict(node.attrs, out_channels=int(w.shape[0]), block=block)
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
