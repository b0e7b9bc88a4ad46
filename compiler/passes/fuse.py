"""fuse: group each anchor op with the elementwise epilogue (and pool) that follows it; every group
becomes one kernel (`Node.kernel` = `<ops>_<kernel index>`, anchor first, like `conv2d_relu_maxpool_3`).

    y = conv2d(x, W, b); r = relu(y); p = max_pool2d(r)    ->  one kernel conv2d_relu_maxpool_K
    y = conv2d(x, ...); s = add(y, shortcut); r = relu(s)  ->  one kernel conv2d_add_relu_K
    y = dense(x, W, b); t = tanh(y)                         ->  one kernel dense_tanh_K
    a = mul(x, c); b = add(a, d); r = clip(b)               ->  one kernel mul_add_clip_K

Anchors are conv2d, dense/matmul, pool and elementwise nodes. A group grows from its anchor along
the single chain of values: the next node joins if it is the *only* reader of the current tail
value (which is not a graph output) and it is elementwise with the tail's shape (activations,
Clip, scale/shift, a residual Add whose other operand comes from outside), or, after a conv2d
anchor, one max/average/global pool. So a value with two readers, or a graph output, ends a group
and is the group's single output: a fused kernel never has to write an intermediate twice, and
it has exactly one output. Because every value inside a group has exactly one reader, also inside,
no path can leave a group and re-enter it: groups are convex. Each group's nodes are moved
together to where its last node was, so a kernel's operands are all computed before it runs.
A group stops at MAX_GROUP nodes: TVM's compile time grows faster than linearly in the depth of
one kernel's expression (a 2,000-op elementwise kernel took 107 s, 32 kernels of 64 ops take ~3 s).
Ops whose compute reads its input more than once (leaky_relu: x >= 0 ? x : a*x) multiply the size
of the inlined expression: a group stops before that growth passes MAX_GROWTH (24 chained leaky
relus did not compile in 200 s as one kernel).
"""
from ..ir import fold_bytes
from ..ops import get_op
from .rewrite import sole_consumer

NAME = "fuse"

ANCHORS = {"conv2d", "dense", "pool", "elementwise"}
POOLS = {"max_pool2d", "avg_pool2d", "global_avg_pool", "global_max_pool"}
MAX_GROUP = 64
MAX_GROWTH = 64
READS = {"leaky_relu": 3, "elu": 3, "selu": 3, "softsign": 2, "hard_swish": 2, "thresholded_relu": 2,
         "softplus": 2, "prelu": 3, "where": 2, "maximum": 3, "minimum": 3}  # how often the compute reads its first operand
SHORT = {"max_pool2d": "maxpool", "avg_pool2d": "avgpool", "global_avg_pool": "gap",
         "global_max_pool": "gmp", "batch_norm": "bn"}


def short_name(op):
    return SHORT.get(op, op)


def _ops_name(ops):
    """`conv2d_relu`, with runs of one op shortened: 64 relus -> `relux64`."""
    runs = []
    for op in ops:
        if runs and runs[-1][0] == op:
            runs[-1][1] += 1
        else:
            runs.append([op, 1])
    return "_".join(op if n < 3 else f"{op}x{n}" for op, n in runs)


def _joins(graph, tail, node, anchor, pooled):
    if len(node.outputs) != 1:
        return False
    if get_op(node.op).kind == "elementwise":
        return graph.values[node.outputs[0]].shape == graph.values[tail.outputs[0]].shape
    return node.op in POOLS and anchor.op == "conv2d" and not pooled and not _reads_past_a_stack_buffer(graph, tail, node)


STACK_BYTES = 1024  # TVM 0.27 places a kernel's intermediate buffers smaller than this on the stack


def _reads_past_a_stack_buffer(graph, tail, pool):
    """Whether POOL, fused, would read its input (TAIL's output) past its edges from a stack buffer:
    a padded (or ceil-mode) window's taps outside the plane are read and selected away (TVM
    simplifies the lowering's clamps away under the select), which is undefined behaviour on an
    alloca: LLVM computed wrong averages (conv 64->8 of a 4 x 1 output + 3x3 average pool, AVX2).
    Such a pool runs as a kernel of its own, its input a buffer of the graph."""
    pads = pool.attrs.get("pads") or [0]
    v = graph.values[tail.outputs[0]]
    return (any(pads) or pool.attrs.get("ceil_mode")) and fold_bytes(v.shape, v.dtype) < STACK_BYTES


def _groups(graph):
    users = graph.consumers()
    claimed, groups = set(), []
    for node in graph.nodes:
        if id(node) in claimed or get_op(node.op).kind not in ANCHORS:
            continue
        group, pooled, growth = [node], False, READS.get(node.op, 1)
        while len(group[-1].outputs) == 1 and len(group) < MAX_GROUP:
            nxt = sole_consumer(graph, group[-1].outputs[0], users)
            if nxt is None or id(nxt) in claimed or not _joins(graph, group[-1], nxt, node, pooled):
                break
            growth *= READS.get(nxt.op, 1)
            if growth > MAX_GROWTH:
                break
            pooled = pooled or nxt.op in POOLS
            group.append(nxt)
        if len(group) > 1:
            claimed.update(id(n) for n in group)
            groups.append(group)
    return groups


def run(graph):
    for node in graph.nodes:  # this pass owns the marks: recompute them
        node.kernel = ""
    groups = _groups(graph)
    last = {id(g[-1]): g for g in groups}
    member = {id(n) for g in groups for n in g}
    order = []
    for node in graph.nodes:  # each group moves to its last node's place
        if id(node) in last:
            order.append(last[id(node)])
        elif id(node) not in member:
            order.append([node])
    graph.nodes = []
    for k, nodes in enumerate(order):
        if len(nodes) > 1:
            name = f"{_ops_name([short_name(n.op) for n in nodes])}_{k}"
            for n in nodes:
                n.kernel = name
        graph.nodes += nodes
    return graph
