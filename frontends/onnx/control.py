"""Control flow with compile-time decisions: If with a constant condition, Loop with a trip count
known at compile time, Scan over static sequences.

Each becomes straight-line IR: the chosen If branch, or the body inlined once per iteration with
the iteration number (a constant) and the loop-carried values bound; a Loop that computes a GRU or
simple RNN layer becomes the fused recurrent op instead (loop_recurrent.py). A Loop's condition must fold
to a constant in every iteration (tf2onnx writes `i < max`); the unrolled size is bounded.
"""
import numpy as np

from . import loop_recurrent
from .importer import Context
from .registry import converter

MAX_UNROLLED_NODES = 20000  # body nodes x iterations


def inline(ctx, body, bindings, tag):
    """Convert subgraph BODY with its inputs bound to the IR values BINDINGS; return the IR values
    of its outputs. Names the body does not define resolve in the enclosing scopes."""
    imp = ctx.imp
    saved = dict(imp.env)
    try:
        for t in body.initializer:
            imp.env[t.name] = ctx.add_const(ctx.tensor_to_array(t, f"initializer '{t.name}' of {tag}"), "init")
        if len(body.input) != len(bindings):
            raise ctx.error(f"{tag} takes {len(body.input)} inputs, the node gives {len(bindings)}")
        for vi, v in zip(body.input, bindings):
            imp.env[vi.name] = v
        for i, node in enumerate(body.node):
            sub = Context(imp, node, i)
            sub.name = f"{ctx.name}/{tag}/{sub.name}"
            imp._convert(sub)
        return [imp.lookup(o.name, ctx) for o in body.output]
    finally:
        imp.env = saved


def _mark(fn):
    fn.subgraphs = True
    return fn


@converter("If")
@_mark
def if_(ctx):
    cond = ctx.const(0, "condition")
    if cond.size != 1:
        raise ctx.error(f"condition has {cond.size} elements")
    branch = "then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"
    ctx.attr("then_branch" if branch == "else_branch" else "else_branch")
    return inline(ctx, ctx.attr(branch), [], branch)


def _stack(ctx, values, axis=0):
    parts = []
    for v in values:
        shape = list(ctx.shape(v))
        parts.append(ctx.reshape(v, shape[:axis] + [1] + shape[axis:]))
    return parts[0] if len(parts) == 1 else ctx.add1("concat", parts, {"axis": axis})


@converter("Loop")
@_mark
def loop(ctx):
    body = ctx.attr("body")
    trip = ctx.const(0, "trip count M")
    cond = ctx.const(1, "condition") if ctx.has_input(1) else None
    if trip is None and cond is None:
        raise ctx.unsupported("a Loop without a trip count or condition (infinite) is not supported")
    limit = int(np.asarray(trip).reshape(-1)[0]) if trip is not None else None
    carried = [ctx.input(i) for i in range(2, len(ctx.inputs))]
    n_scan = len(body.output) - 1 - len(carried)
    if n_scan < 0:
        raise ctx.error(f"body has {len(body.output)} outputs for {len(carried)} loop-carried values")
    go = True if cond is None else bool(np.asarray(cond).reshape(-1)[0])
    if go and limit:
        fused = loop_recurrent.match(ctx, body, limit, carried)
        if fused is not None:
            return fused
    scans, i = [[] for _ in range(n_scan)], 0
    while go and (limit is None or i < limit):
        if (i + 1) * max(len(body.node), 1) > MAX_UNROLLED_NODES:
            raise ctx.unsupported(f"unrolling more than {i} iterations of a {len(body.node)}-node body "
                                  f"exceeds {MAX_UNROLLED_NODES} nodes")
        it = ctx.add_const(np.asarray(i, np.int64), "iter")
        c_in = ctx.add_const(np.asarray(go), "cond")
        outs = inline(ctx, body, [it, c_in] + carried, f"iter{i}")
        c_out, carried, new_scans = outs[0], outs[1:1 + len(carried)], outs[1 + len(carried):]
        for acc, v in zip(scans, new_scans):
            acc.append(v)
        if c_out not in ctx.graph.constants:
            raise ctx.unsupported("the loop condition is computed at run time (only loops whose iterations "
                                  "are known at compile time are supported)")
        go = bool(np.asarray(ctx.graph.constants[c_out]).reshape(-1)[0])
        i += 1
    if any(not acc for acc in scans):
        raise ctx.unsupported("a Loop that runs zero iterations has empty scan outputs, which edgec does not support")
    return carried + [_stack(ctx, acc) for acc in scans]


@converter("Scan", since=9)
@_mark
def scan(ctx):
    body = ctx.attr("body")
    n_in = int(ctx.attr("num_scan_inputs"))
    ins = [ctx.input(i) for i in range(len(ctx.inputs))]
    states, xs = ins[:len(ins) - n_in], ins[len(ins) - n_in:]
    in_axes = [int(a) for a in ctx.attr("scan_input_axes", [0] * n_in)]
    in_dirs = [int(d) for d in ctx.attr("scan_input_directions", [0] * n_in)]
    n_out = len(body.output) - len(states)
    out_axes = [int(a) for a in ctx.attr("scan_output_axes", [0] * n_out)]
    out_dirs = [int(d) for d in ctx.attr("scan_output_directions", [0] * n_out)]
    in_axes = [a % len(ctx.shape(x)) for a, x in zip(in_axes, xs)]
    lengths = {ctx.shape(x)[a] for x, a in zip(xs, in_axes)}
    if len(lengths) != 1:
        raise ctx.error(f"scan inputs have different sequence lengths {sorted(lengths)}")
    steps = lengths.pop()
    if steps * max(len(body.node), 1) > MAX_UNROLLED_NODES:
        raise ctx.unsupported(f"unrolling {steps} steps of a {len(body.node)}-node body exceeds {MAX_UNROLLED_NODES} nodes")
    scans = [[] for _ in range(n_out)]
    for t in range(steps):
        sl = []
        for x, a, d in zip(xs, in_axes, in_dirs):
            k = steps - 1 - t if d else t
            part = ctx.add1("slice", [x], {"starts": [k], "ends": [k + 1], "axes": [a]})
            shape = list(ctx.shape(x))
            sl.append(ctx.reshape(part, shape[:a] + shape[a + 1:]))
        outs = inline(ctx, body, states + sl, f"step{t}")
        states = outs[:len(states)]
        for acc, v in zip(scans, outs[len(states):]):
            acc.append(v)
    results = []
    for acc, a, d in zip(scans, out_axes, out_dirs):
        acc = acc[::-1] if d else acc
        results.append(_stack(ctx, acc, a % (len(ctx.shape(acc[0])) + 1)))
    return states + results
