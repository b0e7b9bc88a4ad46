"""fold_qdq: turn QDQ islands (DequantizeLinear -> float op -> QuantizeLinear, as onnxruntime's
quantizer writes them) into integer kernels, so int8 flows between int8 kernels and floats appear
only at the edges and around float-only ops.

    xf = dequantize(xq, sx, zx); wf = dequantize(Wq, sw, zw); bf = dequantize(Bq, sb, 0)
    y = conv2d(xf, wf, bf); r = relu|clip(y)...; q = quantize(r, sy, zy)
        ->  acc = qconv2d(xq, Wq, zx, zw, B);  q = requantize(acc, sx*sw/sy, zy; min, max)
    y = matmul(xf, wf) [+ bf] (or dense, or matmul(xf, transpose(wf)))   ->  qdense + requantize
        (an N-D xf: qdense on its rows flattened to 2-D, the result reshaped back)
    the same without a quantize after it  ->  acc = qconv2d/qdense(...); y = dequantize(acc, sx*sw, 0)
    q = quantize(max_pool2d|reshape|transpose|slice|pad(dequantize(xq, s, z)), s, z)  ->  the op on xq
        (max_pool2d: qmax_pool2d, which keeps a channels-last layout; pad: its value quantized)
    qconv2d(pad(xq; spatial pads, value zx), ..., zx)  ->  the conv with those pads (fold_pads)
    q = quantize([relu|clip] add(dequantize(a, sa, za), dequantize(b, sb, zb)), s, z)  ->  qadd(a, b, ...),
        the same float32 arithmetic on int8 operands (a residual add: fused into the conv before it)
    q = quantize(global_avg_pool(dequantize(x)))  ->  qglobal_avg_pool(x), the same on the int8 x
    q = quantize(concat(dequantize(r_i, s_i, z_i)...), s, z), r_i requantized  ->  concat(r_i) with
        each requantize writing s, z (fold_concat)

With a CPU preset, convs with constant weights then take the packed int8 kernel
(pack_weights), and activations that only flow between those kernels and element-wise ops stay
channels-last (channels_last).

B = rint(bias / (sx*sw)) as int32 (the quantizer's own int32 bias when it wrote one); what a float
bias (QuantizeBias=False) has beyond B is the requantize's offset, added before its rounding (rounded
into B alone, up to half an accumulator step moved ~0.5% of outputs across a rounding edge). ReLU and
Clip become the requantize clamp (exact: quantize is monotonic). Results are within one
quantization step of running the QDQ graph in float (the requantize multiplies once where the
float graph rounds twice). Needs constant weights, scales and zero points; per-tensor input and
output scales; per-tensor or per-output-channel weight scales. It runs before constant folding,
which would turn the int8 weights into float ones.
"""
import numpy as np

from ..ops.packed import flat_pixels
from ..ops.quant import clamp_bounds, nchw, pack_qweight, quantize_linear, zp_vector
from . import dead_code
from .layout import activation_groups, activations, nhwc_const
from .rewrite import make_node, merge_source, sole_consumer

NAME = "fold_qdq"
INT8 = ("int8", "uint8")
PASSTHROUGH = ("max_pool2d", "reshape", "transpose", "slice", "identity", "pad")


class _Q:
    """A dequantize / quantize node with constant scale and zero point."""

    def __init__(self, graph, node):
        self.node, self.data = node, node.inputs[0]
        self.scale = graph.constants[node.inputs[1]].astype(np.float32)
        self.zp = graph.constants[node.inputs[2]]
        self.dtype = graph.values[node.inputs[0] if node.op == "dequantize_linear" else node.outputs[0]].dtype

    @property
    def scalar(self):
        return self.scale.size == 1 and self.zp.size == 1

    def same(self, other):
        return (self.scalar and other.scalar and self.dtype == other.dtype
                and float(self.scale.reshape(-1)[0]) == float(other.scale.reshape(-1)[0])
                and int(self.zp.reshape(-1)[0]) == int(other.zp.reshape(-1)[0]))


def _qnode(graph, node, op):
    if node is None or node.op != op or not all(i in graph.constants for i in node.inputs[1:]):
        return None
    return _Q(graph, node)


def _channel_vector(arr, n, axis):
    """ARR (broadcastable, size 1 or N along AXIS only) as N values, or None if it is not."""
    if arr.size == 1:
        return np.broadcast_to(arr.reshape(-1), (n,))
    if arr.ndim > axis and arr.shape[axis] == n and arr.size == n:
        return arr.reshape(-1)
    return None


class _Fold:
    def __init__(self, graph):
        self.g = graph
        self.producers, self.users = graph.producers(), graph.consumers()
        self.replace = {}  # id(node) -> new nodes placed there
        self.removed = set()

    def dq(self, name, weight=False):
        q = _qnode(self.g, self.producers.get(name), "dequantize_linear")
        if q is None or q.dtype not in INT8 or (weight and q.data not in self.g.constants):
            return None
        return q

    def const(self, array, hint):
        return self.g.add_const(np.require(array, requirements="C"), self.g.fresh(hint))  # keeps 0-d

    # ---- the epilogue: [relu|clip]... quantize ----------------------------------------------
    def epilogue(self, value):
        """(quantize _Q, [activation nodes], clamp bounds) following VALUE, or None."""
        acts, lo, hi = [], -np.inf, np.inf
        while True:
            nxt = sole_consumer(self.g, value, self.users)
            if nxt is None:
                return None
            if nxt.op == "relu":
                lo = max(lo, 0.0)
            elif nxt.op == "clip":
                lo = max(lo, nxt.attrs.get("min") if nxt.attrs.get("min") is not None else -np.inf)
                hi = min(hi, nxt.attrs.get("max") if nxt.attrs.get("max") is not None else np.inf)
            else:
                q = _qnode(self.g, nxt, "quantize_linear")
                if q is None or not q.scalar or q.dtype not in INT8:
                    return None
                bounds = {}
                for key, v in (("min", lo), ("max", hi)):
                    if np.isfinite(v):
                        bounds[key] = int(quantize_linear({"dtype": q.dtype}, np.float32(v), q.scale, q.zp))
                return q, acts, bounds
            acts.append(nxt)
            value = nxt.outputs[0]

    def emit(self, anchor, op, ins, attrs, x, w, sw, bias, bias_nodes, out_axis, rows=None):
        """Replace ANCHOR (+ BIAS_NODES + epilogue) by OP -> requantize, or OP -> dequantize. ROWS:
        ANCHOR's N-D input as the 2-D (rows, K) OP takes, its result reshaped back."""
        g = self.g
        n = len(sw)
        acc_scale = (np.float32(x.scale.reshape(-1)[0]) * sw).astype(np.float32)
        b = np.zeros(n) if bias is None else np.broadcast_to(bias.astype(np.float64).reshape(-1), (n,))
        b = b / acc_scale.astype(np.float64)
        rest, b = b - np.rint(b), np.rint(b)  # (a float bias: what the int32 one leaves, in accumulator steps)
        if np.abs(b).max(initial=0) >= 2**31 - 1:
            return False
        tail = bias_nodes[-1] if bias_nodes else anchor
        rank = len(g.values[tail.outputs[0]].shape)
        shape = [1] * rank
        shape[out_axis] = n
        ins = ins + ([self.const(b.astype(np.int32), f"{anchor.name}_bias")] if bias is not None else [])
        placed = []
        if rows is not None:
            placed.append(make_node(g, "reshape", ins[:1], g.fresh(f"{anchor.name}_rows"), anchor.source,
                                    attrs={"shape": list(rows)}))
            ins = placed[-1].outputs + ins[1:]
        acc = make_node(g, op, ins, g.fresh(f"{anchor.name}_int8"), anchor.source, attrs=attrs)
        placed.append(acc)
        if rows is not None:
            acc = make_node(g, "reshape", acc.outputs, g.fresh(f"{anchor.name}_unrows"), anchor.source,
                            attrs={"shape": list(g.values[anchor.outputs[0]].shape)})
            placed.append(acc)
        epi = self.epilogue(tail.outputs[0])
        if epi is None:  # float result: dequantize the accumulator
            s = self.const(acc_scale.reshape(shape) if n > 1 else acc_scale[0], f"{anchor.name}_acc_scale")
            out = make_node(g, "dequantize_linear", [acc.outputs[0], s, self.const(np.int32(0), "zero")],
                            g.fresh(f"{anchor.name}_dequantize"), anchor.source, outputs=tail.outputs,
                            attrs={"dtype": g.values[tail.outputs[0]].dtype})
            done = [anchor] + bias_nodes
        else:
            q, acts, bounds = epi
            m = (acc_scale / q.scale.reshape(-1)[0]).astype(np.float32)
            mc = self.const(m.reshape(shape) if n > 1 else m[0], f"{anchor.name}_multiplier")
            off = (rest * m).astype(np.float32)  # added before the rounding: the float graph's bias, exactly
            offset = [self.const(off.reshape(shape), f"{anchor.name}_offset")] if np.abs(rest).max(initial=0) > 1e-6 else []
            out = make_node(g, "requantize", [acc.outputs[0], mc, self.const(q.zp.reshape(()), "zero_point")] + offset,
                            g.fresh(f"{anchor.name}_requantize"), anchor.source, outputs=q.node.outputs,
                            attrs=dict({"dtype": q.dtype}, **bounds))
            done = [anchor] + bias_nodes + acts + [q.node]
        for d in done:
            merge_source(out, d)
            self.removed.add(id(d))
        self.replace[id(anchor)] = placed + [out]
        return True

    # ---- anchors -----------------------------------------------------------------------------
    def bias_value(self, name):
        if name in self.g.constants and self.g.values[name].dtype.startswith("float"):
            return self.g.constants[name]
        b = self.dq_int32(name)
        return b

    def dq_int32(self, name):
        q = _qnode(self.g, self.producers.get(name), "dequantize_linear")
        if q is None or q.data not in self.g.constants:
            return None
        return (self.g.constants[q.data].astype(np.float64) - q.zp.astype(np.float64)) * q.scale

    def conv(self, node):
        g = self.g
        x, w = self.dq(node.inputs[0]), self.dq(node.inputs[1], weight=True)
        if x is None or w is None or not x.scalar:
            return False
        wq = g.constants[w.data]
        o = wq.shape[0]
        sw, zw = _channel_vector(w.scale, o, 0), _channel_vector(w.zp, o, 0)
        if sw is None or zw is None:
            return False
        bias = None
        if len(node.inputs) > 2:
            bias = self.bias_value(node.inputs[2])
            if bias is None:
                return False
        ins = [x.data, w.data, self.const(x.zp.reshape(()), "zero_point"),
               self.const(zw[:1].reshape(()) if w.zp.size == 1 else zw.copy(), "zero_point")]
        return self.emit(node, "qconv2d", ins, dict(node.attrs), x, w, sw, bias, [], 1)

    def dense(self, node):
        """dense(x, W (N,K)[, b]) or matmul(x, W (K,N)) [+ b] with 2-D x, or with N-D x (a matmul: x's
        rows flattened to 2-D, the result's shape restored)."""
        g = self.g
        x = self.dq(node.inputs[0])
        xshape = g.values[node.inputs[0]].shape
        if x is None or not x.scalar or len(xshape) < 2 or (len(xshape) > 2 and node.op != "matmul"):
            return False
        rows = (int(np.prod(xshape[:-1])), xshape[-1]) if len(xshape) > 2 else None
        wname, transposed = node.inputs[1], node.op == "dense"
        tr = self.producers.get(wname)
        if node.op == "matmul" and tr is not None and tr.op == "transpose" and list(tr.attrs["perm"]) == [1, 0] \
                and sole_consumer(g, wname, self.users) is node:
            wname, transposed = tr.inputs[0], True
        w = self.dq(wname, weight=True)
        if w is None or g.constants[w.data].ndim != 2:
            return False
        wq = g.constants[w.data]
        wq = wq if transposed else wq.T  # (N, K)
        n = wq.shape[0]
        sw, zw = _channel_vector(w.scale, n, 0 if transposed else 1), _channel_vector(w.zp, n, 0 if transposed else 1)
        if sw is None or zw is None:
            return False
        bias, bias_nodes = None, []
        if node.op == "dense" and len(node.inputs) > 2:
            bias = self.bias_value(node.inputs[2])
            if bias is None:
                return False
        elif node.op == "matmul":
            add = sole_consumer(g, node.outputs[0], self.users)
            if add is not None and add.op == "add" and add.inputs[0] == node.outputs[0]:
                b = self.bias_value(add.inputs[1])
                if b is not None and b.size == n and g.values[add.outputs[0]].shape == g.values[node.outputs[0]].shape:
                    bias, bias_nodes = b, [add]
        ins = [x.data, self.const(np.ascontiguousarray(wq), f"{node.name}_w"),
               self.const(x.zp.reshape(()), "zero_point"),
               self.const(zw[:1].reshape(()) if w.zp.size == 1 else zw.copy(), "zero_point")]
        return self.emit(node, "qdense", ins, {}, x, w, sw, bias, bias_nodes, len(xshape) - 1, rows)

    def add(self, node):
        """quantize([relu|clip] add(dequantize(a), dequantize(b))), per-tensor, one shape -> qadd(a, b)."""
        g = self.g
        a, b = self.dq(node.inputs[0]), self.dq(node.inputs[1])
        if a is None or b is None or not (a.scalar and b.scalar) or g.values[a.data].shape != g.values[b.data].shape:
            return False
        epi = self.epilogue(node.outputs[0])
        if epi is None:
            return False
        q, acts, bounds = epi
        params = [self.const(p.reshape(()).copy(), hint) for d in (a, b, q)
                  for p, hint in ((d.scale, "scale"), (d.zp, "zero_point"))]
        new = make_node(g, "qadd", [a.data, b.data] + params, g.fresh(f"{node.name}_int8"), node.source,
                        outputs=q.node.outputs, attrs=dict({"dtype": q.dtype}, **bounds))
        for d in [node] + acts + [q.node]:  # (the dequantizes stay for other readers; dead code sweeps them)
            merge_source(new, d)
            self.removed.add(id(d))
        self.replace[id(node)] = [new]
        return True

    def global_avg_pool(self, node):
        """quantize(global_avg_pool(dequantize(x))), per-tensor -> qglobal_avg_pool(x)."""
        x = self.dq(node.inputs[0])
        epi = self.epilogue(node.outputs[0]) if x is not None and x.scalar else None
        if epi is None or epi[1]:
            return False
        q = epi[0]
        params = [self.const(p.reshape(()).copy(), hint) for d in (x, q)
                  for p, hint in ((d.scale, "scale"), (d.zp, "zero_point"))]
        new = make_node(self.g, "qglobal_avg_pool", [x.data] + params, self.g.fresh(f"{node.name}_int8"),
                        node.source, outputs=q.node.outputs, attrs={"dtype": q.dtype})
        for d in (node, q.node):
            merge_source(new, d)
            self.removed.add(id(d))
        self.replace[id(node)] = [new]
        return True

    def passthrough(self, node):
        """quantize(op(dequantize(xq))) with equal parameters -> op on the int8 XQ."""
        x = self.dq(node.inputs[0])
        if x is None or not x.scalar or any(i not in self.g.constants for i in node.inputs[1:]):
            return False
        q = _qnode(self.g, sole_consumer(self.g, node.outputs[0], self.users), "quantize_linear")
        if q is None or not x.same(q):
            return False
        if node.op == "max_pool2d" and node.attrs.get("ceil_mode"):
            return False
        g, attrs = self.g, dict(node.attrs)
        if node.op == "pad" and attrs.get("mode", "constant") == "constant":  # the pad value, quantized
            lo, hi = np.iinfo(x.dtype).min, np.iinfo(x.dtype).max
            v = float(attrs.get("value", 0)) / float(x.scale.reshape(-1)[0]) + int(x.zp.reshape(-1)[0])
            if v != round(v) or not lo <= v <= hi:
                return False
            attrs["value"] = int(round(v))
        op = "qmax_pool2d" if node.op == "max_pool2d" else node.op  # (its pads hold the dtype's minimum)
        new = [make_node(g, op, [x.data] + node.inputs[1:], g.fresh(f"{node.name}_int8"), node.source,
                         outputs=q.node.outputs, attrs=attrs)]
        merge_source(new[-1], q.node)
        self.replace[id(node)] = new
        self.removed.update({id(node), id(q.node)})
        return True


def run(graph, preset=None):
    quantize_first(graph)
    f = _Fold(graph)
    for node in list(graph.nodes):
        if id(node) in f.removed:
            continue
        if node.op == "conv2d":
            f.conv(node)
        elif node.op in ("dense", "matmul"):
            f.dense(node)
        elif node.op == "add":
            f.add(node)
        elif node.op == "global_avg_pool":
            f.global_avg_pool(node)
        elif node.op in PASSTHROUGH:
            f.passthrough(node)
    nodes = []
    for node in graph.nodes:
        if id(node) in f.replace:
            nodes += f.replace[id(node)]
        elif id(node) not in f.removed:
            nodes.append(node)
    graph.nodes = nodes
    fold_concat(graph)
    fold_pads(graph)
    return pack_weights(graph, preset)


def fold_pads(graph):
    """An int8 pad of the spatial axes with the input's zero point, read only by a qconv2d, becomes
    that conv's padding (which pads with the zero point): Keras's ZeroPadding2D before a strided
    conv, as onnxruntime's QOperator format and the QDQ passthrough above leave it, was a kernel of
    its own writing NCHW between channels-last int8 convs."""
    dead_code.run(graph)  # the dequantize nodes the folds above left unread still read the pads
    producers, users = graph.producers(), graph.consumers()
    removed = set()
    for node in graph.nodes:
        src = producers.get(node.inputs[0]) if node.op == "qconv2d" else None
        if src is None or src.op != "pad" or src.attrs.get("mode", "constant") != "constant" or \
                sole_consumer(graph, src.outputs[0], users) is not node or node.inputs[2] not in graph.constants:
            continue
        p, zx = [int(v) for v in src.attrs["pads"]], graph.constants[node.inputs[2]]
        if len(p) != 8 or min(p) < 0 or p[0] or p[1] or p[4] or p[5] or zx.size != 1 or \
                int(src.attrs.get("value", 0)) != int(zx.reshape(-1)[0]):
            continue
        cp = [int(v) for v in node.attrs.get("pads", [0] * 4)]
        node.attrs = dict(node.attrs, pads=[cp[0] + p[2], cp[1] + p[3], cp[2] + p[6], cp[3] + p[7]])
        node.inputs = [src.inputs[0]] + node.inputs[1:]
        merge_source(node, src)
        removed.add(id(src))
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]


def quantize_first(graph):
    """quantize(transpose(x)) with per-tensor parameters, the transpose read only there ->
    transpose(quantize(x)): the same values, the transpose now on int8 (a quarter of the bytes),
    where a conv reading it can take its input in place (absorb_transposes: a Keras model's NHWC
    input)."""
    producers, users = graph.producers(), graph.consumers()
    nodes = []
    for node in graph.nodes:
        tr = producers.get(node.inputs[0]) if node.op == "quantize_linear" else None
        if tr is None or tr.op != "transpose" or sole_consumer(graph, tr.outputs[0], users) is not node or \
                any(i not in graph.constants or graph.constants[i].size != 1 for i in node.inputs[1:]):
            nodes.append(node)
            continue
        nodes.remove(tr)
        q = make_node(graph, "quantize_linear", [tr.inputs[0]] + node.inputs[1:], graph.fresh(node.name), node.source,
                      attrs=node.attrs)
        nodes += [q, make_node(graph, "transpose", q.outputs, tr.name, tr.source, outputs=node.outputs, attrs=tr.attrs)]
    graph.nodes = nodes


def absorb_transposes(graph):
    """A packed int8 conv reading an NCHW transpose of an NHWC int8 value (read by nothing else but
    dequantizes no one reads) reads that value in place (in_layout NHWC); dead code drops the rest."""
    producers, users = graph.producers(), graph.consumers()
    for node in graph.nodes:
        tr = producers.get(node.inputs[0]) if node.op == "qconv2d_packed" and not node.attrs.get("in_layout") else None
        if tr is None or tr.op != "transpose" or list(tr.attrs["perm"]) != [0, 3, 1, 2] or tr.outputs[0] in graph.outputs:
            continue
        if [r for r in users.get(tr.outputs[0], [])
                if not (r.op == "dequantize_linear" and not users.get(r.outputs[0]) and r.outputs[0] not in graph.outputs)] \
                == [node]:
            node.inputs = [tr.inputs[0]] + node.inputs[1:]
            node.attrs = dict(node.attrs, in_layout="NHWC")


def fold_concat(graph):
    """q = quantize(concat(dequantize(r_i, s_i, z_i)...), s, z), every r_i a requantize's output
    used only there -> the requantizes write s, z (multiplier * s_i / s; their clamp bounds, the
    dtype's range included, carried into the new scale) and the concat runs on int8. One rounding
    where the QDQ graph rounds twice: within one step."""
    producers, users = graph.producers(), graph.consumers()
    drop = set()
    for node in graph.nodes:
        if node.op != "concat":
            continue
        q = _qnode(graph, sole_consumer(graph, node.outputs[0], users), "quantize_linear")
        dqs = [_qnode(graph, producers.get(i), "dequantize_linear") for i in node.inputs]
        if q is None or not q.scalar or q.dtype not in INT8 or \
                any(d is None or not d.scalar or d.dtype != q.dtype for d in dqs):
            continue
        reqs = [producers.get(d.data) for d in dqs]
        if any(r is None or r.op != "requantize" or sole_consumer(graph, r.outputs[0], users) is not d.node
               or sole_consumer(graph, d.node.outputs[0], users) is not node for r, d in zip(reqs, dqs)):
            continue
        out_scale = float(q.scale.reshape(-1)[0])
        for r, d in zip(reqs, dqs):
            s_i, z_i = float(d.scale.reshape(-1)[0]), int(d.zp.reshape(-1)[0])
            m = (graph.constants[r.inputs[1]].astype(np.float64) * (s_i / out_scale)).astype(np.float32)
            bounds = {key: int(quantize_linear({"dtype": q.dtype}, np.float32((b - z_i) * s_i), q.scale, q.zp))
                      for key, b in zip(("min", "max"), clamp_bounds(r.attrs))}
            offset = [graph.add_const((graph.constants[o].astype(np.float64) * (s_i / out_scale)).astype(np.float32),
                                      graph.fresh(f"{r.name}_offset")) for o in r.inputs[3:]]
            r.inputs = [r.inputs[0], graph.add_const(m, graph.fresh(f"{r.name}_multiplier")),
                        graph.add_const(q.zp.reshape(()).copy(), graph.fresh("zero_point"))] + offset
            r.attrs = dict(r.attrs, **bounds)
            drop.add(id(d.node))
        node.inputs = [d.data for d in dqs]
        node.outputs = list(q.node.outputs)
        merge_source(node, q.node)
        drop.add(id(q.node))
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]


def dense_as_conv(graph):
    """qdense with a constant weight, or qmatmul (QLinearMatMul, MatMulInteger) of an activation
    by a constant 2-D B, with a scalar input zero point -> a 1x1 qconv2d on (rows, K, 1, 1) (an N-D
    activation's rows flattened), so it takes the packed int8 conv kernel."""
    nodes = []
    for node in graph.nodes:
        dense = node.op == "qdense"
        if node.op not in ("qdense", "qmatmul") or not all(i in graph.constants for i in node.inputs[1:]) or \
                graph.constants[node.inputs[2]].size != 1 or len(graph.values[node.inputs[1]].shape) != 2:
            nodes.append(node)
            continue
        w = graph.constants[node.inputs[1]]
        shape, out_shape = graph.values[node.inputs[0]].shape, graph.values[node.outputs[0]].shape
        k, n = shape[-1], out_shape[-1]
        x4 = make_node(graph, "reshape", [node.inputs[0]], graph.fresh(f"{node.name}_nchw"), node.source,
                       attrs={"shape": [int(np.prod(shape[:-1])), k, 1, 1]})
        w4 = graph.add_const((w if dense else w.T).reshape(n, k, 1, 1), graph.fresh(f"{node.name}_w"))
        conv = make_node(graph, "qconv2d", [x4.outputs[0], w4] + node.inputs[2:], graph.fresh(f"{node.name}_conv"),
                         node.source, attrs={"pads": [0, 0, 0, 0]})
        nodes += [x4, conv, make_node(graph, "reshape", conv.outputs, node.name, node.source, outputs=node.outputs,
                                      attrs={"shape": list(out_shape)})]
    graph.nodes = nodes


def pack_weights(graph, preset):
    """With a CPU preset, qconv2d nodes with constant weights (no groups, or depthwise: one input
    and one output channel per group) become qconv2d_packed with the weights packed for the int8
    schedule (targets/schedules/int8.py)."""
    if preset is None or preset.device != "cpu":
        return graph
    from ...targets.schedules.int8 import channel_groups, out_blocks, params, raw_dot, ubsw_exact, width_tile
    dot = raw_dot(preset)
    dense_as_conv(graph)
    for node in graph.nodes:
        if node.op != "qconv2d" or not all(i in graph.constants for i in node.inputs[1:]):
            continue
        w, zw = graph.constants[node.inputs[1]], graph.constants[node.inputs[3]]
        depthwise = node.attrs.get("groups", 1) == w.shape[0] > 1 and w.shape[1] == 1
        if node.attrs.get("groups", 1) != 1 and not depthwise:
            continue
        if depthwise:  # w - w_zp lane by lane, times the raw input padded with its zero point
            raw, shift, wp = True, 0, pack_qweight(w, zw, params(preset)[0], 1)
            w = w.astype(np.int64) - zp_vector(zw, w.shape[0]).reshape(-1, 1, 1, 1)
        else:
            # 8-bit dot products need symmetric int8 weights (the input zero point moves into the bias);
            # VNNI multiplies uint8 inputs, sdot int8 ones (a uint8 input is shifted by 128)
            xdtype = graph.values[node.inputs[0]].dtype
            raw = w.dtype == np.int8 and not zw.any() and (dot == "sdot" or xdtype == "uint8")
            shift = 128 if dot == "sdot" and xdtype == "uint8" else 0
            lanes, kgroup = params(preset, raw)
            wp = pack_qweight(w, zw, lanes, kgroup, True, out_blocks(w.shape[0], lanes, preset)) if raw else None
            # without VNNI/sdot, x86 takes u8 x s8 vpmaddubsw where it cannot saturate (7-bit weights)
            raw = raw and (dot is not None or (preset.arch == "x86_64" and ubsw_exact(wp)))
            lanes, kgroup = params(preset)
            wp = wp if raw else pack_qweight(w, zw, lanes, kgroup, blocks=out_blocks(w.shape[0], lanes, preset))
        packed = graph.add_const(wp, graph.fresh(node.inputs[1] + "_packed"))
        bias = node.inputs[4:]
        if raw:
            zx = int(graph.constants[node.inputs[2]].reshape(-1)[0])
            b = graph.constants[bias[0]].astype(np.int64) if bias else np.zeros(w.shape[0], np.int64)
            b = b - (zx - shift) * w.astype(np.int64).sum(axis=(1, 2, 3))
            bias = [graph.add_const(b.astype(np.int32), graph.fresh(f"{node.name}_bias"))]
        node.inputs = [node.inputs[0], packed, node.inputs[2]] + bias
        node.op = "qconv2d_packed"
        node.attrs = dict(node.attrs, out_channels=int(w.shape[0]), raw=bool(raw), shift=shift,
                          tile=width_tile(int(graph.values[node.outputs[0]].shape[3]), preset,
                                          channel_groups(wp.shape[0], preset, wp.shape[-1]), wp.shape[-1]))
    channels_last(graph)
    absorb_transposes(graph)
    for node in graph.nodes:  # a flat row of pixels (a 1x1 reading channels-last) tiles all its pixels
        if node.op == "qconv2d_packed" and not node.attrs.get("groups", 1) > 1 and \
                flat_pixels(node.attrs, *graph.constants[node.inputs[1]].shape[1:3]):
            wp = graph.constants[node.inputs[1]]
            _, _, oh, ow = nchw(node.attrs, "out_layout", graph.values[node.outputs[0]].shape)
            node.attrs = dict(node.attrs, tile=width_tile(oh * ow, preset, channel_groups(wp.shape[0], preset, wp.shape[-1]),
                                                          wp.shape[-1]))
    return graph


# element by element whatever the layout (per-tensor parameters: checked in _layout_free)
LAYOUT_FREE = ("requantize", "dequantize_linear", "quantize_linear", "qadd", "add", "sub", "mul", "relu", "clip")
NHWC_READERS = ("qconv2d_packed", "qglobal_avg_pool")  # read their first input channels-last (in_layout)


def channels_last(graph):
    """Keep int8 activations channels-last (NHWC) between packed int8 convs: values joined by
    element-wise ops (requantize, the residual add, ...), by a concat of channels or by an int8 max
    pool (its input and result) form groups; a
    group whose values are made only by qconv2d_packed or those ops, and read only by them or as the
    input of a qconv2d_packed or a qglobal_avg_pool, goes NHWC: its convs write their accumulator
    lanes (channels) in order and read a pixel's channels as they lie, where NCHW made every
    write-back scatter each lane to its plane and every reader gather the channels of a pixel.
    Per-channel constants turn to (1, 1, 1, C); a concat of channels concatenates the last axis."""
    producers, users = graph.producers(), graph.consumers()
    groups = activation_groups(graph, lambda n: n.op == "qconv2d_packed", lambda n: _layout_free(graph, n))
    outputs = set(graph.outputs)
    for group in groups:
        if not all(_nhwc_ok(graph, v, producers, users, outputs) for v in group) or \
                not any(producers[v].op == "qconv2d_packed" for v in group):
            continue
        for v in group:
            node = producers[v]
            if node.op == "qconv2d_packed":
                node.attrs = dict(node.attrs, out_layout="NHWC")
            elif node.op == "qmax_pool2d":
                node.attrs = dict(node.attrs, layout="NHWC")
            elif node.op == "concat":
                node.attrs = dict(node.attrs, axis=3)
            else:
                node.inputs = [nhwc_const(graph, i) if i in graph.constants else i for i in node.inputs]
            for r in users.get(v, []):
                if r.op in NHWC_READERS:
                    r.attrs = dict(r.attrs, in_layout="NHWC")
            old = graph.values[v]
            graph.values[v] = type(old)(v, tuple(old.shape[i] for i in (0, 2, 3, 1)), old.dtype)


def _layout_free(graph, node):
    """An element-wise NODE on 4-D activations whose constants are per-tensor or 4-D (requantize's
    per-channel multiplier): it computes the same in any layout; or a concat of 4-D activations'
    channels, the same along the last axis in NHWC."""
    if node.op == "qmax_pool2d":  # its input's layout and its result's go together (attrs["layout"])
        return True
    if node.op == "concat":
        return node.attrs.get("axis") in (1, -3) and all(
            v not in graph.constants and len(graph.values[v].shape) == 4 for v in node.inputs + node.outputs)
    if node.op not in LAYOUT_FREE or node.op == "clip" and len(node.inputs) > 1 or not activations(graph, node):
        return False
    consts = [graph.constants[i] for i in node.inputs if i in graph.constants]
    params_ok = all(c.size == 1 or (node.op in ("requantize", "add", "sub", "mul") and c.ndim == 4) for c in consts)
    return params_ok and all(len(graph.values[v].shape) == 4 for v in node.inputs + node.outputs
                             if v not in graph.constants)


def _nhwc_ok(graph, v, producers, users, outputs):
    node = producers.get(v)
    return node is not None and v not in outputs and (node.op == "qconv2d_packed" or _layout_free(graph, node)) and \
        all(_layout_free(graph, r) or (r.op in NHWC_READERS and r.inputs.index(v) == 0) for r in users.get(v, []))
