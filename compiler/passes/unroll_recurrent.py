"""unroll_recurrent: rewrite each lstm/gru/rnn node into one loop kernel that runs every time step
of every direction, with its weights packed per hidden tile.

    WP = W [D, G*H, I] as [D, G, tiles, lanes, I] -> [D, tiles, I, G, lanes]    folded (constant)
    RP = R [D, G*H, H] as [D, G, tiles, lanes, H] -> [D, tiles, H, G, lanes]    folded (constant)
    bias = B[:, :G*H] + B[:, G*H:]     (GRU linear_before_reset: the h gate's R bias stays in the step)
    Y, Y_h (, Y_c) = <kind>_loop(X, WP, bias, h0 (, c0), RP (, P | R bias of the h gate) (, lens))

The loop kernel (compiler/lower/recurrent.py) first projects the whole input X.W^T + bias (a GEMM
per tile, the tile's weights staying in cache), then runs the steps: h.R^T, the gates and the
state update in one pass over hidden tiles of `lanes` units, two vectors of the preset's width,
so each step keeps 2 x G accumulators in registers and streams RP once. Steps are not separate
kernels: per-step kernels (tried up to seq 64) spent more time in kernel calls than in the step
(lstm seq 32 / hidden 128: 15 us per step kernel vs ~2.5 us per step inside the loop), and one
kernel keeps compile time and code size independent of the sequence length. Bidirectional
nodes run both directions in the same kernel and write Y [T, 2, B, H] as ONNX lays it out;
stacked layers are separate nodes, each rewritten the same way. It runs before fold_constants,
which then folds the bias arithmetic and the packing.
"""
import numpy as np

from ..ops.recurrent import GATES, dirs

NAME = "unroll_recurrent"


def tile_lanes(hidden, preset=None):
    """Hidden units per tile: two vectors of the preset's width (8 floats without a preset) when
    they divide HIDDEN, else the largest power of two below that which does."""
    if preset is not None and preset.device == "cuda":
        return 1  # a GPU thread per hidden unit
    lanes = 2 * (preset.vector_bits if preset is not None else 256) // 32
    while hidden % lanes:
        lanes //= 2
    return lanes


def project_rows(gates, preset=None):
    """Rows of X the input projection handles at once: 2 when their accumulators (rows x gates x
    2 vectors) fit half of a 32-register file (AVX-512, NEON), else 1 (AVX2's 16 registers spill:
    lstm seq 32 / hidden 128 on AVX2 ran 116 us with 1 row, 123 us with 2; on AVX-512 107 vs 103)."""
    if preset is None or not (preset.arch == "aarch64" or preset.vector_bits >= 512):
        return 1
    return 2 if 2 * gates * 2 <= 16 else 1


def run(graph, preset=None):
    nodes, graph.nodes = graph.nodes, []
    for node in nodes:
        if node.op in GATES:
            _expand(graph, node, preset)
        else:
            graph.nodes.append(node)
    return graph


def _expand(graph, node, preset):
    kind, a = node.op, node.attrs
    g, hid = GATES[kind], a["hidden"]
    x, w, r, b, h0 = node.inputs[:5]
    n_dirs, width = dirs(a), graph.values[x].shape[2]
    lanes = tile_lanes(hid, preset)

    def add(op, ins, attrs=None, out=None):
        return graph.add_node(op, ins, attrs, name=graph.fresh(f"{node.name}_{op}"), source=node.source,
                              outputs=out)

    def pack(v, k):
        """[D, G*H, K] weights -> [D, tiles, K, G, lanes]."""
        v5 = add("reshape", [v], {"shape": [n_dirs, g, hid // lanes, lanes, k]})[0]
        return add("transpose", [v5], {"perm": [0, 2, 4, 1, 3]})[0]

    def cols(lo, hi):
        return add("slice", [b], {"starts": [lo], "ends": [hi], "axes": [1]})[0]

    rb = cols(g * hid, 2 * g * hid)
    if a.get("linear_before_reset"):  # the h gate's recurrent bias is added inside the step
        mask = np.ones(g * hid, np.float32)
        mask[2 * hid:] = 0
        rb = add("mul", [rb, graph.add_const(mask, graph.fresh("mask"))])[0]
    bias = add("add", [cols(0, g * hid), rb])[0]
    state = [h0] + ([node.inputs[5]] if kind == "lstm" else [])
    extra = node.inputs[6:7] if kind == "lstm" else [cols(5 * hid, 6 * hid)] if kind == "gru" else []  # P, rbh
    lens = [node.inputs[-1]] if a.get("masked") else []
    attrs = {k: a[k] for k in ("hidden", "direction", "acts", "clip", "masked", "input_forget", "linear_before_reset")
             if k in a}
    attrs["seq"] = graph.values[x].shape[0]
    attrs["project_rows"] = project_rows(g, preset)
    if preset is not None and preset.device == "cpu":  # the step's register tile (compiler/lower/recurrent.py)
        attrs["registers"], attrs["vector_lanes"] = preset.regs, max(preset.vector_bits // 32, 4)
    if preset is not None and preset.device == "cuda":
        attrs["gpu"] = True
    outputs = list(node.outputs)
    for o in outputs:
        graph.values.pop(o)
    add(f"{kind}_loop", [x, pack(w, width), bias] + state + [pack(r, hid)] + extra + lens, attrs, out=outputs)
