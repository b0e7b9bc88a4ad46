"""unroll_recurrent: rewrite each lstm/gru/rnn node into one input-projection GEMM per direction
plus one loop kernel per direction that runs every time step.

    XP_d = dense(X as [T*B, I], W_d, W_bias_d + R_bias_d)        all time steps in one GEMM
    RP_d = R_d as [G, tiles, lanes, H] -> [tiles, H, G, lanes]     packed per hidden tile, folded
    Y_d, h, (c) = <kind>_loop(XP_d, h0, (c0), RP_d, ...)           all steps, one kernel call

The loop kernel (compiler/lower/recurrent.py) computes h.R^T, the gates and the state update per
step in one pass over hidden tiles of `lanes` units: two vectors of the preset's width, so each
step keeps 2 x G accumulators in registers and streams RP once. Steps are not separate kernels:
per-step kernels (tried up to seq 64) spent more time in kernel calls than in the step itself
(lstm seq 32 / hidden 128: 15 us per step kernel, vs ~2 us per step inside the loop), and one
kernel keeps compile time and code size independent of the sequence length.
Bidirectional nodes run the two directions as separate chains and concatenate them as ONNX does
(Y [T, 2, B, H]); stacked layers are separate nodes, each rewritten the same way. It runs before
fold_constants, which then folds the weight slices and the packing.
"""
import numpy as np

from ..ops.recurrent import GATES, dirs

NAME = "unroll_recurrent"


def tile_lanes(hidden, preset=None):
    """Hidden units per tile: two vectors of the preset's width (8 floats without a preset) when
    they divide HIDDEN, else the largest power of two below that which does."""
    lanes = 2 * (preset.vector_bits if preset is not None else 256) // 32
    while hidden % lanes:
        lanes //= 2
    return lanes


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
    c0, p = node.inputs[5:7] if kind == "lstm" else (None, None)
    lens = [node.inputs[-1]] if a.get("masked") else []
    t, n, i = graph.values[x].shape
    n_dirs = dirs(a)

    def add(op, ins, attrs=None, n_out=None, out=None):
        return graph.add_node(op, ins, attrs, name=graph.fresh(f"{node.name}_{op}"), source=node.source,
                              n_outputs=n_out, outputs=out)

    def take(v, d, shape, lo=None, hi=None):
        """V[d] (optionally V[d, lo:hi]) reshaped to SHAPE."""
        s = add("slice", [v], {"starts": [d] + ([lo] if lo is not None else []),
                               "ends": [d + 1] + ([hi] if hi is not None else []),
                               "axes": [0, 1][:1 + (lo is not None)]})[0]
        return add("reshape", [s], {"shape": list(shape)})[0]

    final = {o: graph.values.pop(o) for o in node.outputs}
    x2 = add("reshape", [x], {"shape": [t * n, i]})[0]
    ys, hs, cs = [], [], []
    for d in range(n_dirs):
        reverse = a["direction"] == "reverse" or d == 1
        rb = take(b, d, (g * hid,), g * hid, 2 * g * hid)
        if a.get("linear_before_reset"):  # the h gate's recurrent bias is added inside the step
            mask = np.ones(g * hid, np.float32)
            mask[2 * hid:] = 0
            rb = add("mul", [rb, graph.add_const(mask, graph.fresh("mask"))])[0]
        bias = add("add", [take(b, d, (g * hid,), 0, g * hid), rb])[0]
        extra = [take(b, d, (hid,), (2 * g - 1) * hid, 2 * g * hid)] if kind == "gru" else []
        if kind == "lstm":
            extra = [take(p, d, (3 * hid,))]
        xp = add("dense", [x2, take(w, d, (g * hid, i)), bias])[0]
        lanes = tile_lanes(hid, preset)
        r4 = add("reshape", [take(r, d, (g * hid, hid))], {"shape": [g, hid // lanes, lanes, hid]})[0]
        rp = add("transpose", [r4], {"perm": [1, 3, 0, 2]})[0]
        h = take(h0, d, (n, hid))
        c = [take(c0, d, (n, hid))] if kind == "lstm" else []
        attrs = {"hidden": hid, "acts": a["acts"][d], "clip": a.get("clip"), "seq": t, "reverse": reverse,
                 "masked": bool(a.get("masked"))}
        for key in ("input_forget", "linear_before_reset"):
            if key in a:
                attrs[key] = a[key]
        outs = add(f"{kind}_loop", [xp, h] + c + [rp] + extra + lens, attrs, n_out=3 if kind == "lstm" else 2)
        ys.append(outs[0])
        hs.append(outs[1])
        cs += outs[2:]

    def join(parts, name, shape, axis):
        """Stack per-direction PARTS of SHAPE along new axis AXIS into output NAME."""
        if name not in final:
            return
        shape = list(shape[:axis]) + [1] + list(shape[axis:])
        if len(parts) == 1:
            add("reshape", parts, {"shape": shape}, out=[name])
        else:
            add("concat", [add("reshape", [v], {"shape": shape})[0] for v in parts], {"axis": axis}, out=[name])

    join(ys, node.outputs[0], (t, n, hid), 1)
    join(hs, node.outputs[1], (n, hid), 0)
    if kind == "lstm":
        join(cs, node.outputs[2], (n, hid), 0)
