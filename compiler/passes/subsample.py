"""subsample: on an x86 CPU target, a strided 1x1 conv without padding that runs as the pointwise
GEMM reads a strided slice of its input (a kernel of its own) and runs with stride 1.

    z = conv2d(x, W[O, C, 1, 1]; strides (sh, sw), pads 0)
 -> s = slice(x; axes [2, 3], steps [sh, sw]);  z = conv2d(s, W; strides 1)

The GEMM copies its input into contiguous panels, one pixel tile at a time; with a stride each
panel row is a gather of every other pixel across output rows from C channel planes at once
(`vgatherdps` on x86, a quarter of the kernel's time: perf, Zen 4, 1 thread, ResNet-50's 1x1 s2
256->512 @28). The slice streams each plane once, in order, and leaves a tensor a quarter the size,
still in cache for the stride-1 GEMM. Standalone relu + 1x1 s2 256->512 @56, Zen 4 AVX-512, 1
thread, minima of alternated runs: conv 2.31 ms -> slice 0.08 + conv 1.94. Slices of one value
with the same steps are shared. Left alone: strided 1x1s that run as the direct conv
(pack.pointwise_direct reads its input in place: AVX-512's deep 1x1s at 14x14 and below) or over
rows (pack.pointwise_gemm: a strided GEMM only with 128 output channels and more), grouped, padded
or int8 convs, non-x86 targets (NEON unmeasured) and CUDA; everything with layout.CHANNELS_LAST
(its NHWC direct convs read a strided input in place).
"""
from .rewrite import constant_conv, make_node

NAME = "subsample"


def strided_gemm(graph, node, preset):
    """NODE is a float32 1x1 conv with a stride and no padding that runs as PRESET's pointwise GEMM."""
    from ...targets.schedules.pack import pointwise_direct, pointwise_gemm, pointwise_tile
    if not constant_conv(graph, node) or graph.values[node.inputs[1]].shape[2:] != (1, 1):
        return False
    if any(node.attrs.get("pads", [0] * 4)) or all(s == 1 for s in node.attrs.get("strides", [1, 1])):
        return False
    o, c = graph.values[node.inputs[1]].shape[:2]
    _, _, oh, ow = graph.values[node.outputs[0]].shape
    o, c, pixels = int(o), int(c), int(oh * ow)
    return not pointwise_direct(preset, c, o, pixels) and \
        pointwise_gemm(c, o, pixels, pointwise_tile(preset, o, pixels)[1], strided=True)


def run(graph, preset=None):
    from . import layout
    if preset is None or preset.device != "cpu" or preset.arch != "x86_64" or layout.CHANNELS_LAST:
        return graph
    nodes, graph.nodes, slices = graph.nodes, [], {}
    for node in nodes:
        if strided_gemm(graph, node, preset):
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
