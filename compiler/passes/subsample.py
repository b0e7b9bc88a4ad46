"""subsample: on an x86 CPU target, a strided 1x1 conv without padding that runs as the pointwise
GEMM or the direct conv reads a strided slice of its input (a kernel of its own) and runs with
stride 1.

    z = conv2d(x, W[O, C, 1, 1]; strides (sh, sw), pads 0)
 -> s = slice(x; axes [2, 3], steps [sh, sw]);  z = conv2d(s, W; strides 1)

The GEMM copies its input into contiguous panels, one pixel tile at a time; with a stride each
panel row is a gather of every other pixel across output rows from C channel planes at once
(`vgatherdps` on x86, a quarter of the kernel's time: perf, Zen 4, 1 thread, ResNet-50's 1x1 s2
256->512 @28). The direct conv (pack.pointwise_direct: AVX-512's deep 1x1s at 14x14 and below)
broadcasts its input pixels from strided addresses. The slice streams each plane once, in order,
and leaves a tensor a quarter the size, still in cache for the stride-1 conv. ResNet-50 in model,
1 thread, per-kernel minima of alternated rounds (kab), strided conv -> slice + conv: Zen 4
(AVX-512) GEMM 256->512 @28 2.42-2.59 -> 0.105 + 1.92-1.97 ms, direct 1024->2048 @7 2.17-2.28 ->
0.028 + 1.94-2.02, 512->1024 @14 2.02 -> 0.061 + 1.93; AVX2 code on Zen 4, all three GEMMs:
2.27 -> 0.10 + 1.90, 2.20 -> 0.06 + 2.10, 2.49 -> 0.04 + 2.35. Slices of one value with the same
steps are shared. Left alone: strided 1x1s that run over rows (pack.pointwise_gemm: a strided GEMM
only with 128 output channels and more; fewer run as the row conv or the direct conv), grouped,
padded or int8 convs, non-x86 targets (NEON unmeasured) and CUDA; everything with
layout.CHANNELS_LAST (its NHWC direct convs read a strided input in place).
"""
from . import layout
from .rewrite import constant_conv, make_node

NAME = "subsample"


def strided_pointwise(graph, node, preset):
    """NODE is a float32 1x1 conv with a stride and no padding that runs as PRESET's pointwise GEMM
    or its direct 1x1 conv."""
    from ...targets.schedules.pack import pointwise_direct, pointwise_gemm, pointwise_tile
    if not constant_conv(graph, node) or not layout.pointwise(node, graph.constants[node.inputs[1]]) or \
            all(s == 1 for s in node.attrs.get("strides", [1, 1])):
        return False
    o, c = graph.values[node.inputs[1]].shape[:2]
    _, _, oh, ow = graph.values[node.outputs[0]].shape
    o, c, pixels = int(o), int(c), int(oh * ow)
    return pointwise_direct(preset, c, o, pixels) or \
        pointwise_gemm(c, o, pixels, pointwise_tile(preset, o, pixels, in_channels=c)[1], strided=True)


def run(graph, preset=None):
    if preset is None or preset.device != "cpu" or preset.arch != "x86_64" or layout.CHANNELS_LAST:
        return graph
    nodes, graph.nodes, slices = graph.nodes, [], {}
    for node in nodes:
        if strided_pointwise(graph, node, preset):
            x, (h, w) = node.inputs[0], graph.values[node.inputs[0]].shape[2:]
            steps = [int(s) for s in node.attrs["strides"]]
            key = (x, *steps)
            if key not in slices:
                sl = make_node(graph, "slice", [x], graph.fresh(f"{node.name}_subsample"), node.source,
                               attrs={"starts": [0, 0], "ends": [int(h), int(w)], "axes": [2, 3], "steps": steps})
                graph.nodes.append(sl)
                slices[key] = sl.outputs[0]
            node.inputs = [slices[key]] + node.inputs[1:]
            node.attrs = dict(node.attrs, strides=[1, 1])
        graph.nodes.append(node)
    return graph
