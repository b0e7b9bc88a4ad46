"""layout: with a CPU preset, constant conv2d and dense weights are pre-packed for the target's
schedules (conv2d -> conv2d_packed, dense -> dense_packed, block sizes from
targets/schedules/pack.py), and float32 activations stay channels-last (NHWC) between packed convs.

The IR is NCHW; channels-last is built but off (CHANNELS_LAST: measured slower in place). Values
joined by layout-free element-wise ops (relu, the residual add, ...) must share a layout: they
form groups (activation_groups). A group goes NHWC (channels_last) when a direct packed conv writes
one of its values and every value is made by such a conv or a layout-free op: its convs then write each pixel's accumulator vectors as they are and read a
pixel's channels contiguously (NCHW made every write-back a transpose of channel vectors and every
input step a read from another channel plane), per-channel constants turn to (1, 1, 1, C). Values
of the group that a graph output or an op without NHWC (pool, concat, dense, a GEMM-tiled conv)
reads are transposed back to NCHW for them by a `transpose` node of their own, where those values
are few (BRIDGE_SHARE) and the reader is another kernel than the value's maker. The graph input
stays NCHW: a conv may read NCHW and write NHWC (a 1x1 conv that would be a GEMM reads an NHWC
transpose instead: the direct conv reads NCHW planes slowly). Convs that touch NHWC run the direct
conv (a 1x1 conv is the direct conv with one tap, reading a pixel's channels in place: no panel
copy); the others keep the pointwise GEMM or the row conv (pack.pointwise_gemm, pack.conv_rows_tile).
compiler/passes/fold_qdq.py channels_last groups int8 values with the same activation_groups.
A float32 3x3 stride-1 conv becomes conv2d_winograd instead (weights transformed here) where
targets/schedules/winograd.py `plan` picks it (not with channels-last: those stay direct).
"""
import numpy as np

from ..ops.packed import flat_pixels, nchw, pack_dense_weight, pack_weight
from .rewrite import make_node

NAME = "layout"

# element by element in any layout, when every operand is 4-D or one value (checked in layout_free)
LAYOUT_FREE = frozenset({"relu", "leaky_relu", "clip", "sigmoid", "hard_sigmoid", "tanh", "elu", "selu", "softplus",
                         "softsign", "hard_swish", "swish", "thresholded_relu", "add", "sub", "mul", "div", "maximum",
                         "minimum", "prelu"})
BRIDGE_SHARE = 4  # an NHWC group's transposes back to NCHW may move at most 1/4 of the elements its convs touch
# Off: measured slower in place. ResNet-50, AVX2 (znver3), 1 thread, per-kernel thread-time minima
# alternated, NCHW -> NHWC: 3x3 64->64 @56 3.16 -> 2.91 ms, 1x1 256->64 @56 1.72 -> 1.59, but 3x3
# 256->256 @14 2.97 -> 3.3, 3x3 512->512 @7 3.9-4.1 -> 4.9-5.0, 3x3 s2 256->512 4.4 -> 7.0, 1x1
# 64->256 @56 + add 1.53-1.78 -> 1.86-2.03; whole model 129 -> 138 ms. Tests turn it on.
# Nor for the 1x1 convs of MobileNet-style stacks (the blocked layout between kernels that
# onnxruntime runs, NCHWc): standalone 3x3 -> 1x1 -> 1x1 -> 3x3 chains + relu, AVX2, kab minima of
# 8 alternated rounds, 1x1 GEMM (NCHW, panel copy) -> direct conv (NHWC in and out, no copy, written
# back per tile): 1 thread, 512->512 @14 1.126 -> 1.072 ms, 256->512 @14 0.564 -> 0.541, but
# 1024->1024 @7 1.181 -> 1.740, 256->256 @28 1.073 -> 1.083; 2 threads, 512->512 @14 0.596 ->
# 0.710, 1024->1024 @7 0.655 -> 1.168, 256->256 @28 0.566 -> 0.724 (the NHWC direct conv splits
# fewer, larger pieces over the threads). MobileNet's depthwise convs have no NHWC kernel.
CHANNELS_LAST = False


def run(graph, preset=None):
    if preset is not None:  # weights (constants) pre-packed for the target's conv2d schedule
        graph = pack_conv_weights(graph, preset)
    return graph


# ---- channels-last groups (float32 here, int8 in fold_qdq) -------------------------------------
def activations(graph, node):
    """NODE's 4-D activation operands and results."""
    return [v for v in node.inputs + node.outputs if v not in graph.constants and len(graph.values[v].shape) == 4]


def activation_groups(graph, convs, layout_free):
    """The 4-D values that must share one layout: values joined by nodes with layout_free(node) form
    a group; returns (as sets) the groups holding the input or the result of a node with convs(node)."""
    parent = {}

    def find(v):
        while parent.setdefault(v, v) != v:
            v = parent[v]
        return v
    for node in graph.nodes:
        if layout_free(node):
            data = activations(graph, node)
            for v in data[1:]:
                parent[find(v)] = find(data[0])
    members = {}
    for node in graph.nodes:
        values = [node.inputs[0], node.outputs[0]] if convs(node) else \
            activations(graph, node) if layout_free(node) else []
        for v in values:
            members.setdefault(find(v), set()).add(v)
    return list(members.values())


def to_nhwc(graph, group, convs, producers, users):
    """Make GROUP's values NHWC: their conv makers write NHWC (out_layout), their conv readers read it
    (in_layout), the constants of their layout-free makers turn with them."""
    for v in group:
        node = producers[v]
        if convs(node):
            node.attrs = dict(node.attrs, out_layout="NHWC")
        else:
            node.inputs = [nhwc_const(graph, i) if i in graph.constants else i for i in node.inputs]
        for r in users.get(v, []):
            if convs(r) and r.inputs[0] == v:
                r.attrs = dict(r.attrs, in_layout="NHWC")
        old = graph.values[v]
        graph.values[v] = type(old)(v, tuple(old.shape[i] for i in (0, 2, 3, 1)), old.dtype)


def nhwc_const(graph, name):
    c = graph.constants[name]
    if c.ndim != 4 or c.size == 1:
        return name
    return graph.add_const(np.ascontiguousarray(c.transpose(0, 2, 3, 1)), graph.fresh(f"{name}_nhwc"))


def layout_free(graph, node):
    """A float NODE of LAYOUT_FREE on 4-D activations whose constants are one value or 4-D."""
    if node.op not in LAYOUT_FREE or node.op == "clip" and len(node.inputs) > 1 or not activations(graph, node):
        return False
    return all(graph.constants[i].size == 1 or graph.constants[i].ndim == 4 if i in graph.constants
               else len(graph.values[i].shape) == 4 for i in node.inputs + node.outputs)


def channels_last(graph, convs):
    """Turn the groups worth it NHWC (see the module docstring); CONVS(node): a direct packed conv."""
    producers, users, outputs = graph.producers(), graph.consumers(), set(graph.outputs)
    kernel = {id(n): n.kernel or f"#{i}" for i, n in enumerate(graph.nodes)}

    def free(node):
        return layout_free(graph, node)

    def foreign(v):  # readers that do not read V in NHWC
        return [r for r in users.get(v, []) if not free(r) and not (convs(r) and r.inputs.index(v) == 0)]

    def size(v):
        return int(np.prod(graph.values[v].shape))
    for group in activation_groups(graph, convs, free):
        if any(v not in producers or not (convs(producers[v]) or free(producers[v])) for v in group) or \
                not any(convs(producers[v]) for v in group):
            continue
        bridged = [v for v in group if foreign(v) or v in outputs]
        if any(kernel[id(r)] == kernel[id(producers[v])] for v in bridged for r in foreign(v)):
            continue  # (a fused pool reads its conv's result inside the kernel)
        touched = sum(size(v) for v in group if convs(producers[v]) or any(convs(r) for r in users.get(v, [])))
        if sum(size(v) for v in bridged) * BRIDGE_SHARE > touched:
            continue
        to_nhwc(graph, group, convs, producers, users)
        for v in bridged:
            _bridge(graph, v, foreign(v), producers[v], users.get(v, []), v in outputs)
    # a 1x1 conv that would be a GEMM on its NCHW input but writes NHWC reads an NHWC transpose of it,
    # shared by such readers (the direct conv on NCHW planes: 2048->512 @7 1.9 -> 5.0 ms)
    def nchw_gemm(n):
        return convs(n) and "tile" in n.attrs and n.attrs.get("out_layout") == "NHWC" and \
            n.attrs.get("in_layout") != "NHWC"
    for conv in [n for n in graph.nodes if nchw_gemm(n)]:
        if nchw_gemm(conv):  # (not served yet by the transpose of an earlier reader)
            _bridge_in(graph, [n for n in graph.nodes if nchw_gemm(n) and n.inputs[0] == conv.inputs[0]])


def _bridge_in(graph, readers):
    """READERS (convs) read an NHWC transpose of their NCHW input, computed before the first one's kernel."""
    v, conv = readers[0].inputs[0], readers[0]
    shape = tuple(graph.values[v].shape[i] for i in (0, 2, 3, 1))
    dst = graph.fresh(f"{v}_nhwc")
    graph.values[dst] = type(graph.values[v])(dst, shape, graph.values[v].dtype)
    node = make_node(graph, "transpose", [v], graph.fresh(f"{v}_to_nhwc"), conv.source, outputs=[dst],
                     attrs={"perm": [0, 2, 3, 1]})
    first = min(graph.nodes.index(r) for r in readers)
    kernel = graph.nodes[first].kernel
    while kernel and first > 0 and graph.nodes[first - 1].kernel == kernel:
        first -= 1
    graph.nodes.insert(first, node)
    for r in readers:
        r.inputs[0] = dst
        r.attrs = dict(r.attrs, in_layout="NHWC")


def _bridge(graph, v, readers, maker, users, output):
    """Give READERS (and the graph output) of the NHWC value V an NCHW transpose of it, computed right
    after MAKER's kernel."""
    shape = tuple(graph.values[v].shape[i] for i in (0, 3, 1, 2))
    src, dst = v, graph.fresh(f"{v}_nchw")
    if output:  # the output keeps its name (NCHW); the NHWC value is renamed
        src, dst = graph.fresh(f"{v}_nhwc"), v
        graph.values[src] = type(graph.values[v])(src, graph.values[v].shape, graph.values[v].dtype)
        maker.outputs = [src if o == v else o for o in maker.outputs]
        for r in users:
            if r not in readers:
                r.inputs = [src if i == v else i for i in r.inputs]
    graph.values[dst] = type(graph.values[v])(dst, shape, graph.values[v].dtype)
    for r in readers:
        r.inputs = [dst if i == v else i for i in r.inputs]
    node = make_node(graph, "transpose", [src], graph.fresh(f"{v}_to_nchw"), maker.source, outputs=[dst],
                     attrs={"perm": [0, 3, 1, 2]})
    at = max(i for i, n in enumerate(graph.nodes) if n is maker or (maker.kernel and n.kernel == maker.kernel))
    graph.nodes.insert(at + 1, node)


# ---- weights -----------------------------------------------------------------------------------
def packable(graph, node, preset):
    """The output channels per block of NODE's packed weight (pack.conv_block), or 0 where NODE
    stays a plain conv2d (not float32 with a constant weight, or a block over half padding)."""
    if node.op != "conv2d" or node.inputs[1] not in graph.constants:
        return 0
    from ...targets.schedules.pack import conv_block
    w = graph.constants[node.inputs[1]]
    per_group = w.shape[0] // node.attrs.get("groups", 1)
    block = conv_block(preset, per_group)
    return block if w.dtype.name == "float32" and w.ndim == 4 and per_group * 2 >= block else 0


def pointwise(node, w):
    """A 1x1 conv without padding: a GEMM over the output pixels (one per group)."""
    return w.shape[2] == w.shape[3] == 1 and not any(node.attrs.get("pads", [0] * 4))


def _conv_attrs(graph, node, w, preset, block, direct=False):
    """conv2d_packed's attrs for NODE with OIHW weight W: the pointwise GEMM's tile, the row conv's,
    or the direct conv's row padding (always the latter where DIRECT)."""
    from ...targets.schedules.pack import (conv_flat_rows, conv_row_padding, conv_row_width, conv_rows_tile,
                                           pointwise_direct, pointwise_gemm, pointwise_tail, pointwise_tile)
    from ...targets.schedules.pointwise import in_place as pointwise_in_place, padded_last_tile
    g = node.attrs.get("groups", 1)
    attrs = {k: v for k, v in node.attrs.items() if k not in ("tile", "tail", "row_tile", "row_band", "row_width",
                                                                 "width_tile", "flat_rows")}
    attrs.update(out_channels=int(w.shape[0]), block=block)
    out = nchw(node.attrs, "out_layout", graph.values[node.outputs[0]].shape)
    pixels = int(out[2] * out[3])
    mr, nr = pointwise_tile(preset, int(w.shape[0]), pixels, in_channels=int(w.shape[1]))
    strided = any(s != 1 for s in node.attrs.get("strides", [1, 1]))
    wq = int(nchw(node.attrs, "in_layout", graph.values[node.inputs[0]].shape)[3]) + \
        sum(node.attrs.get("pads", [0] * 4)[1::2])  # padded row
    # a grouped conv is one GEMM per group: its output channels per group pay for an input copy
    in_place = g == 1 and pointwise_in_place(preset, int(w.shape[1]), int(w.shape[0]), mr, pixels, nr, strided)
    padded = g == 1 and padded_last_tile(preset, int(w.shape[1]), mr, pixels, nr)
    gemm = pointwise(node, w) and not pointwise_direct(preset, int(w.shape[1]), int(w.shape[0]) // g, pixels)
    if not direct and gemm and (in_place or pointwise_gemm(int(w.shape[1]) * g, int(w.shape[0]) // g,
                                                           pixels, nr, strided, padded)):
        attrs["block"], attrs["tile"] = mr, nr  # a GEMM: tile of `block` channels x `tile` pixels
        # (pixels after the whole tiles; read in place, a padded last tile instead)
        attrs["tail"] = 0 if in_place or padded else pointwise_tail(preset, pixels, nr, mr)
    elif not direct and (rows := conv_rows_tile(preset, w.shape, int(out[2]), int(out[3]), wq,
                                                node.attrs.get("strides", [1, 1]), g)):
        attrs["block"], attrs["row_tile"], band = rows  # the direct conv over padded rows, a GEMM's tile
        width = conv_row_width(preset, int(w.shape[1]), int(out[3]))  # (a stem: tiles in one output row)
        attrs.update({"row_width": width} if width else {"row_band": band})
    else:  # the direct conv: rows (or all pixels as one row) in whole register tiles of `width_tile` pixels
        nchw_io = "NHWC" not in (attrs.get("in_layout"), attrs.get("out_layout"))
        if conv_flat_rows(preset, int(w.shape[2]), int(w.shape[3]), int(out[2]), int(out[3]), nchw_io):
            attrs["flat_rows"] = True  # (a partial last tile: see conv_flat_rows)
        attrs["width_tile"] = 1 if attrs.get("flat_rows") else \
            conv_row_padding(preset, pixels if flat_pixels(attrs, *w.shape[2:]) else int(out[3]))
    return attrs


def winograd(graph, node, preset):
    """Rewrite NODE (in place) to conv2d_winograd with its weight transformed and packed where it is
    a float32 3x3 stride-1 ungrouped conv with a constant weight and targets/schedules/winograd.py
    `plan` picks it; return whether it did."""
    from ...targets.schedules.winograd import plan
    from ..ops.winograd import transform_weight
    a = node.attrs
    if node.op != "conv2d" or node.inputs[1] not in graph.constants or a.get("groups", 1) != 1 or \
            any(v != 1 for v in list(a.get("strides", [1, 1])) + list(a.get("dilations", [1, 1]))):
        return False
    w, x, y = graph.constants[node.inputs[1]], graph.values[node.inputs[0]], graph.values[node.outputs[0]]
    if w.dtype.name != "float32" or x.dtype != "float32" or w.shape[2:] != (3, 3) or len(x.shape) != 4:
        return False
    attrs = plan(preset, int(w.shape[1]), int(w.shape[0]), int(y.shape[2]), int(y.shape[3]))
    if attrs is None:
        return False
    node.op = "conv2d_winograd"
    node.attrs = dict(pads=list(a.get("pads", [0] * 4)), out_channels=int(w.shape[0]), **attrs)
    node.inputs[1] = graph.add_const(transform_weight(w, attrs["m"], attrs["block"]),
                                     graph.fresh(node.inputs[1] + "_winograd"))
    return True


def pack_conv_weights(graph, preset):
    """Rewrite conv2d and dense nodes with constant weights (in place) to their packed ops, with
    float32 activations channels-last between direct convs (channels_last); return GRAPH."""
    if preset is None or preset.device != "cpu":
        return graph
    from ...targets.schedules.pack import dense_block
    weights = {}  # id(node) -> (weight, block)
    for node in graph.nodes:
        if not CHANNELS_LAST and winograd(graph, node, preset):  # (channels-last: the direct conv)
            continue
        block = packable(graph, node, preset)
        if block:
            w = graph.constants[node.inputs[1]]
            weights[id(node)] = w, block
            node.attrs = _conv_attrs(graph, node, w, preset, block)
            node.op = "conv2d_packed"
    if CHANNELS_LAST:  # (a conv with few input channels keeps its row form: NCHW rows)
        channels_last(graph, lambda n: id(n) in weights and "row_tile" not in n.attrs)
    for node in graph.nodes:
        if id(node) not in weights:
            continue
        w, block = weights[id(node)]
        if "NHWC" in (node.attrs.get("in_layout"), node.attrs.get("out_layout")):
            node.attrs = _conv_attrs(graph, node, w, preset, block, direct=True)
        g = node.attrs.get("groups", 1)
        node.inputs[1] = graph.add_const(pack_weight(w, g, node.attrs["block"]),
                                         graph.fresh(node.inputs[1] + "_packed"))
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
