"""split_k: on a CUDA target, a conv2d whose output is too small to fill the GPU sums S partial
convs over input-channel chunks, computed as one grouped conv (S times the thread blocks).

    y = conv2d(x[N, C, H, W], W[O, C, kh, kw], b; groups 1)
 -> p = conv2d(x, W'[S*O, C/S, kh, kw]; groups S)        W' = W's input channels cut into S chunks, chunk-major
    y = add(reduce_sum(reshape(p, [N, S, O, oh, ow]), axes [1], keepdims 0), b[1, O, 1, 1])

dlight's GEMM rule gives a thread block 32 output pixels x 64 output channels and runs the whole
reduction (C*kh*kw) inside it, so a deep layer at a small resolution gets a handful of blocks:
ResNet-50's 3x3 512->512 @7x7 had 16 blocks on an H200's 132 SMs (0.486 ms; split into S = 8,
0.154 ms). Measured on an H200 (sm_90), batch 1, end to end, whole -> split: ResNet-50 5.09 ->
2.64 ms (44 convs split), DenseNet-121 9.67 -> 4.86, Inception v1 3.47 -> 2.73-2.79, Inception v2
5.56 -> 3.26, ZFNet-512 1.74 -> 1.19, AlexNet 1.00 -> 0.85, VGG-19 6.79 -> 6.18, MobileNetV2
2.64-2.71 -> 2.53-2.57, MobileNet v1 and ShuffleNet unchanged, SqueezeNet 0.755-0.770 ->
0.783-0.799 (its splits are 1x1 convs of 2-6 MMACs, where two more launches cost more than the
grid gains; but leaving convs under 8, 16 or 32 MMACs whole lost Inception v1 50-83% of its gain
and Inception v2 6-77%).
S doubles while the grid has fewer than two waves of blocks (the preset's SM count) and each chunk
keeps at least MIN_CHUNK input channels. Only convs with constant weights (and bias), float32.
The sum is a kernel of its own (fusion does not anchor on reductions); the bias and the
element-wise ops after it (relu, a residual add) fuse into one more.
"""
import numpy as np

from .rewrite import constant_conv, make_node

NAME = "split_k"

BLOCK_PIXELS, BLOCK_CHANNELS = 32, 64  # dlight's GEMM tile for a conv on CUDA targets (TVM 0.27)
MIN_CHUNK = 64  # input channels per partial conv


def blocks(n, o, oh, ow):
    """Thread blocks dlight's GEMM rule launches for a conv with N*oh*ow pixels and O channels."""
    return -(-n * oh * ow // BLOCK_PIXELS) * -(-o // BLOCK_CHANNELS)


def splits(c, grid, sms):
    """How many input-channel chunks a conv with C input channels and GRID blocks is cut into."""
    s = 1
    while grid * s < 2 * sms and c % (2 * s) == 0 and c // (2 * s) >= MIN_CHUNK:
        s *= 2
    return s


def run(graph, preset=None):
    if preset is None or preset.device != "cuda":
        return graph
    nodes, graph.nodes = graph.nodes, []
    for node in nodes:
        s = 1
        if constant_conv(graph, node):
            n, o, oh, ow = graph.values[node.outputs[0]].shape
            s = splits(graph.values[node.inputs[0]].shape[1], blocks(n, o, oh, ow), preset.sms)
        if s == 1:
            graph.nodes.append(node)
            continue
        graph.nodes += _split(graph, node, s)
    graph.prune_values()
    return graph


def _split(graph, node, s):
    x, w = node.inputs[:2]
    weight = graph.constants[w]
    o, c, kh, kw = weight.shape
    n, _, oh, ow = graph.values[node.outputs[0]].shape
    chunked = weight.reshape(o, s, c // s, kh, kw).transpose(1, 0, 2, 3, 4).reshape(s * o, c // s, kh, kw)
    w2 = graph.add_const(np.ascontiguousarray(chunked), name=graph.fresh(f"{w}_split{s}"))
    parts = make_node(graph, "conv2d", [x, w2], node.name, node.source, attrs=dict(node.attrs, groups=s))
    stacked = make_node(graph, "reshape", parts.outputs, graph.fresh(f"{node.name}_parts"), node.source,
                        attrs={"shape": [n, s, o, oh, ow]})
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    total = make_node(graph, "reduce_sum", stacked.outputs, graph.fresh(f"{node.name}_sum"), node.source,
                      outputs=None if bias else node.outputs, attrs={"axes": [1], "keepdims": False})
    out = [parts, stacked, total]
    if bias:
        b = graph.add_const(graph.constants[bias].reshape(1, o, 1, 1), name=graph.fresh(f"{bias}_nchw"))
        out.append(make_node(graph, "add", [total.outputs[0], b], graph.fresh(f"{node.name}_bias"), node.source,
                             outputs=node.outputs))
    return out
