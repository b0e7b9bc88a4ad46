"""unroll_recurrent: rewrite each lstm/gru/rnn node into one loop kernel that runs every time step
of every direction, with its weights packed per hidden tile.

    WP = W [D, G*H, I] as [D, G, tiles, lanes, I] -> [D, tiles, I, G, lanes]    folded (constant)
    RP = R [D, G*H, H] as [D, G, tiles, lanes, H] -> [D, tiles, H, G, lanes]    folded (constant)
    bias = B[:, :G*H] + B[:, G*H:]     (GRU linear_before_reset: the h gate's R bias stays in the step)
    Y, Y_h (, Y_c) = <kind>_loop(X, WP, bias, h0 (, c0), RP (, P | R bias of the h gate) (, lens))
    (an LSTM's P only when some peephole is nonzero: ONNX's default P is zeros)

The loop kernel (compiler/lower/recurrent.py) first projects the whole input X.W^T + bias (a GEMM
per tile, the tile's weights staying in cache), then runs the steps: h.R^T, the gates and the
state update in one pass over hidden tiles of `lanes` units, with the accumulators of a group of
batch rows in registers, streaming RP once per group and step. WP and RP are each packed at the
width of their register tile (`register_tile`: two vectors of the preset's width, or one where
that lets more rows share each weight load), so a tile reads whole cache lines. Steps are not separate
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


# Vectors of gate math per iteration of the loop that runs a step's gate math after all its tiles
# (lower/recurrent.py, _Direction.gate_pass): independent exp/division chains hide each other's
# latency (AVX2, 1 thread, batch 3 LSTM hidden 64, ms: 1 vector 0.119, 2: 0.117, 4: 0.113).
CELL_VECTORS = 4


def tile_lanes(hidden, preset=None):
    """Hidden units per tile: two vectors of the preset's width (8 floats without a preset) when
    they divide HIDDEN, else the largest power of two below that which does."""
    if preset is not None and preset.device == "cuda":
        # one tile of every unit, unit-minor: a GPU thread per unit, and a warp's threads read 32
        # consecutive weights (with a tile per unit each thread's weights were H*G floats apart)
        return hidden
    lanes = 2 * (preset.vector_bits if preset is not None else 256) // 32
    while hidden % lanes:
        lanes //= 2
    return lanes


def register_tile(gates, rows, widths, preset, fewest_groups):
    """(rows, width) of a GEMV register tile: WIDTH is one of WIDTHS (whole vectors); ROWS' (at most)
    accumulators of GATES x WIDTH lanes, each row's broadcast input and the weight vectors in flight
    stay in the preset's vector registers (rows * (w + 1) + in_flight <= regs, w = accumulator vectors
    per row; LLVM keeps 1 weight vector in flight with 16 registers, 3 with 32: more rows spilled,
    e.g. 4 rows x 3 gates on AVX2, 7 x 4 on NEON, 6 x 4 on AVX-512). Each k then costs w weight loads +
    rows broadcasts for rows * w FMAs; the tile with the most FMAs per load wins. FEWEST_GROUPS (the
    step): first as few row groups as possible, since each group streams the weights once more.
    E.g. AVX2 LSTM: 3 rows x 4 gates x 1 vector (12 FMAs per 7 loads; 1 row x 2 vectors: 8 per 9)."""
    if preset is None or preset.device != "cpu":
        return 1, widths[0]
    regs, vl = preset.regs, max(preset.vector_bits // 32, 4)
    in_flight = 1 if regs <= 16 else 3
    best, key = (1, widths[0]), None
    for width in widths:
        if width < vl and width != widths[0]:  # a tile below one vector only where nothing wider divides
            continue
        w = gates * max(1, width // vl)
        r = max(1, min(rows, (regs - in_flight) // (w + 1)))
        k = (-(-rows // r) if fewest_groups else 0, -r * w / (r + w), -width)
        if key is None or k < key:
            best, key = (r, width), k
    return best


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
    seq, batch, width = graph.values[x].shape
    n_dirs, lanes = dirs(a), tile_lanes(hid, preset)
    lbr0 = kind == "gru" and not a.get("linear_before_reset")  # two passes per step: z, r*h; then the h gate
    step_rows, step_lanes = register_tile(2 if lbr0 else g, batch, (lanes, lanes // 2), preset, True)
    rows = [step_rows] + [register_tile(1, batch, (step_lanes,), preset, True)[0]] * lbr0
    proj_rows, proj_lanes = register_tile(g, seq * batch, (lanes, lanes // 2), preset, False)

    def add(op, ins, attrs=None, out=None):
        return graph.add_node(op, ins, attrs, name=graph.fresh(f"{node.name}_{op}"), source=node.source,
                              outputs=out)

    def pack(v, k, lanes):
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
    if kind == "lstm" and not np.any(graph.constants.get(extra[0], 1)):
        extra = []  # no peepholes (ONNX's default P): 3 loads and multiply-adds less per unit and step
    lens = [node.inputs[-1]] if a.get("masked") else []
    attrs = {k: a[k] for k in ("hidden", "direction", "acts", "clip", "masked", "input_forget", "linear_before_reset")
             if k in a}
    attrs["seq"], attrs["project_rows"], attrs["step_rows"] = seq, proj_rows, rows
    attrs["cell_lanes"] = CELL_VECTORS * (preset.vector_bits if preset is not None else 256) // 32
    if preset is not None and preset.device == "cuda":
        attrs["gpu"] = True
    outputs = list(node.outputs)
    for o in outputs:
        graph.values.pop(o)
    add(f"{kind}_loop", [x, pack(w, width, proj_lanes), bias] + state + [pack(r, hid, step_lanes)] + extra + lens,
        attrs, out=outputs)
