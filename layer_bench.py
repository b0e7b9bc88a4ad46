"""`edgec bench --layers`: each kernel's time inside the whole model, next to onnxruntime's time for
the same layers inside the same model.

A one-layer model timed against onnxruntime flatters edgec: alone, onnxruntime converts the input
to its blocked NCHWc layout and the output back, which it does not do between the convs of a whole
model (measured on AVX2: a 64->64 3x3 conv at 56x56 ran at 69 GFLOP/s alone, 88 inside
ResNet-50). So both engines are profiled running the whole model on the same inputs and thread
count: edgec with its profiler (`Model.profile`, median per kernel), onnxruntime with its default
session options plus `enable_profiling` (median per node over the runs after warm-up), the two in
BLOCKS alternating blocks (a VM's speed drifts: on a 2-core Zen 5, MobileNetV2's edgec profile
read 6.1 ms one minute and 4.7 the next, and one engine's block after the other's skewed every row).

Nodes onnxruntime keeps the ONNX name of (a QDQ model's fused `QLinearConv` is `n7_token_8`, its
concat `n9`) go to the kernel whose layers name them. Nodes it renames after their output tensor
(float32 `r12_nchwc`) are matched by what they compute, in execution order: a conv kernel takes the
first unmatched Conv node with the same
arithmetic (2 x weight elements x output pixels, at most MATCH_TOL below the kernel's FLOPs, which
add its epilogue) and output channels (onnxruntime pads them to its block); a fused pool then takes
the pool node with the kernel's output shape; any other kernel takes the first unmatched node, not
a conv, with its output shape. What matches nothing stays in the table with an empty side.
"""
import glob
import json
import os
import re
import tempfile

import numpy as np

from .errors import EdgecError

BLOCKS = 4  # alternating blocks of each engine's profiled runs (a VM's speed drifts over seconds)
MATCH_TOL = 0.1  # a conv kernel's FLOPs (with its epilogue and pool) over onnxruntime's Conv node's, at most
POOLS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
CONVS = ("Conv", "FusedConv")
QCONVS = ("Conv", "ConvInteger", "QLinearConv")  # ONNX ops whose weight shape labels a conv row


def ort_node_times(onnx_path, inputs, threads, runs=20, warmup=5, between=None, blocks=1):
    """[(name, op, input shapes, output shape, median seconds, fastest seconds)] of onnxruntime's
    nodes, in order: BLOCKS blocks of WARMUP + RUNS / BLOCKS runs (the warm-up runs of each
    block discarded), BETWEEN(runs of a block) called before each block (the other engine's turn)."""
    import onnxruntime as ort
    per = -(-runs // blocks)
    with tempfile.TemporaryDirectory(prefix="edgec-ortprof-") as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "ort")
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        for _ in range(blocks):
            if between:
                between(per)
            for _ in range(warmup + per):
                sess.run(None, inputs)
        sess.end_profiling()
        events = json.load(open(glob.glob(os.path.join(tmp, "ort*.json"))[0]))
    durations, info = {}, {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"][:-len("_kernel_time")]
        shapes = [next(iter(s.values())) for s in e["args"].get("input_type_shape", [])]
        out = [next(iter(s.values())) for s in e["args"].get("output_type_shape", [])]
        info.setdefault(name, (e["args"].get("op_name", ""), shapes, out[0] if out else []))
        durations.setdefault(name, []).append(e["dur"] * 1e-6)

    def timed(d):  # without each block's warm-up runs (where the node ran once per run)
        kept = [t for i, t in enumerate(d) if i % (warmup + per) >= warmup] if len(d) == blocks * (warmup + per) \
            else d[warmup:]
        return kept or d
    return [(n, *info[n], float(np.median(t)), float(np.min(t))) for n, t in
            ((n, timed(d)) for n, d in durations.items())]


def _logical(shape):
    """NCHW of an onnxruntime shape (NCHWc [N, C/b, H, W, b] -> [N, C, H, W])."""
    return [shape[0], shape[1] * shape[4], shape[2], shape[3]] if len(shape) == 5 else list(shape)


def _conv_flops(shapes, out):
    o = _logical(out)
    return 2 * int(np.prod(shapes[1])) * int(np.prod(o[2:])) * o[0] if len(shapes) > 1 and len(o) == 4 else 0


def _base(name):
    """The ONNX node name an onnxruntime node name was derived from (`n7_token_8` -> `n7`)."""
    return re.sub(r"(_token_\d+|_nchwc)+$", "", name)


def conv_weights(onnx_path):
    """{node name: weight shape} of the ONNX model's convs (float, ConvInteger, QLinearConv; a QDQ
    conv's weight read through its DequantizeLinear); onnxruntime's profile lacks the shape of
    weights it packed."""
    import onnx
    graph = onnx.load(onnx_path, load_external_data=False).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in shapes:
            shapes[n.output[0]] = shapes[n.input[0]]
    index = {"QLinearConv": 3}
    return {n.name: shapes[n.input[index.get(n.op_type, 1)]] for n in graph.node
            if n.op_type in QCONVS and n.name and len(n.input) > index.get(n.op_type, 1)
            and n.input[index.get(n.op_type, 1)] in shapes}


def _label(node, w=None):
    """`3x3 64->64 s1 @56x56` (`g32` for a grouped conv) of an onnxruntime conv node; W: its
    weight shape where the profile lacks it (a channels-last int8 node is read as such)."""
    shapes, out = node[2], node[3]
    w = w or shapes[1]
    x, o = _logical(shapes[0]), _logical(out)
    if len(out) == 4 and o[1] != w[0] and o[3] == w[0]:  # NHWC
        x, o = [x[0], x[3], x[1], x[2]], [o[0], o[3], o[1], o[2]]
    stride = max(1, round(x[2] / o[2])) if o[2] else 1
    groups = x[1] // w[1] if w[1] and x[1] % w[1] == 0 and x[1] > w[1] else 1
    return f"{w[2]}x{w[3]} {x[1]}->{w[0]}{f' g{groups}' if groups > 1 else ''} s{stride} @{o[2]}x{o[3]}"


def match(kernels, rows, nodes, weights=None):
    """[{layers, kind, shape, edgec_s, ort_s, edgec_min_s, ort_min_s, ort_nodes, label}] in edgec's
    order (medians, and the fastest run of each); then a row for
    onnxruntime's unmatched nodes. KERNELS: manifest records; ROWS: {kernel name: profile row};
    WEIGHTS: `conv_weights` of the model, for the labels of nodes matched by name."""
    free = list(range(len(nodes)))
    weights = weights or {}
    named = {}
    for k in kernels:  # first the nodes that still carry a kernel's layer name
        if k["name"] in rows:
            layers = set(k.get("sources", []))
            named[k["name"]] = [i for i in free if _base(nodes[i][0]) in layers]
            free = [i for i in free if i not in named[k["name"]]]

    def take(pred):
        for i in free:
            if pred(nodes[i]):
                free.remove(i)
                return nodes[i]
        return None

    out = []
    for k in kernels:
        row = rows.get(k["name"])
        if row is None:
            continue
        shape = (k.get("output_shapes") or [[]])[0]
        got, label = [nodes[i] for i in named.get(k["name"], [])], ""
        if got:
            convs = [(n, weights.get(_base(n[0]))) for n in got if n[1] in CONVS or _base(n[0]) in weights]
            label = _label(*convs[0]) if convs else ""
        elif k.get("kind") == "conv2d":
            flops = k.get("flops", 0)
            conv = take(lambda n: n[1] in CONVS and _conv_flops(n[2], n[3]) and
                        0 <= flops - _conv_flops(n[2], n[3]) <= MATCH_TOL * flops and
                        -(-_logical(n[3])[1] // 8) == -(-_logical(shape)[1] // 8 if shape else 0))
            if conv:
                got, label = [conv], _label(conv)
                if any("pool" in op for op in k.get("ops", [])):
                    pool = take(lambda n: n[1] in POOLS and _logical(n[3])[2:] == list(shape[2:]))
                    got += [pool] if pool else []
        elif k.get("kind") == "pool":
            pool = take(lambda n: n[1] in POOLS and _logical(n[3])[2:] == list(shape[2:]))
            got = [pool] if pool else []
        else:
            other = take(lambda n: n[1] not in CONVS + POOLS and _logical(n[3]) == list(shape))
            got = [other] if other else []
        out.append({"kernel": k["name"], "layers": k.get("sources", []), "kind": k.get("kind", ""),
                    "shape": shape, "label": label, "edgec_s": row["median_s"],
                    "ort_s": sum(n[4] for n in got) if got else None, "edgec_min_s": row["min_s"],
                    "ort_min_s": sum(n[5] for n in got) if got else None, "ort_nodes": [n[0] for n in got]})
    rest = [nodes[i] for i in free]
    if rest:
        out.append({"kernel": "", "layers": [], "kind": "onnxruntime only", "shape": [], "label":
                    ", ".join(sorted({n[1] for n in rest})), "edgec_s": None, "edgec_min_s": None,
                    "ort_s": sum(n[4] for n in rest), "ort_min_s": sum(n[5] for n in rest),
                    "ort_nodes": [n[0] for n in rest]})
    return out


def bench_layers(model, target="host", thread_counts=None, runs=20, input_shapes=None):
    """`layer_rows` for each of THREAD_COUNTS (default: 1 and all cores) of MODEL (.onnx, compiled
    first, or an .edgec artifact next to its .onnx); a list of dicts with the rows."""
    from . import api
    from .bench import _onnx_for, cpu_name, isa, set_threads
    from .runtime import load
    thread_counts = thread_counts or sorted({1, os.cpu_count() or 1})
    with tempfile.TemporaryDirectory(prefix="edgec-layers-") as tmp:
        art_path, onnx_path = str(model), str(model)
        if not art_path.endswith(".edgec"):
            if api.model_kind(model) != "onnx":
                raise EdgecError(f"bench --layers compares with onnxruntime: '{model}' is not an .onnx model")
            art_path = api.compile(model, target, os.path.join(tmp, "model.edgec"), input_shapes, progress=False)
        art = load(art_path)
        if onnx_path.endswith(".edgec"):
            onnx_path = _onnx_for(art_path, art.manifest)
            if onnx_path is None:
                raise EdgecError(f"bench --layers: the .onnx source of '{model}' was not found; pass the .onnx model")
        results = []
        for threads in thread_counts:
            set_threads(threads)
            results.append({"model": art.name, "target": art.manifest["target"]["name"], "isa": isa(),
                            "cpu": cpu_name(), "threads": threads, "runs": runs,
                            "rows": layer_rows(art, onnx_path, threads, runs)})
        art.close()
    set_threads(os.cpu_count() or 1)
    return results


def layer_rows(model, onnx_path, threads, repeat=20, blocks=BLOCKS):
    """Profile the loaded edgec MODEL and onnxruntime on ONNX_PATH (same seeded inputs, THREADS), in
    BLOCKS alternating blocks of each engine, so that a machine's slow phase hits both alike."""
    from .runtime.profile import Measurement, Profile
    inputs = model.random_inputs(0)
    parts = []
    nodes = ort_node_times(onnx_path, inputs, threads, runs=repeat, blocks=blocks,
                           between=lambda runs: parts.append(model.profile(inputs, repeat=runs, warmup=5).measurement))
    m = Measurement(*([x for p in parts for x in getattr(p, f)] for f in ("e2e", "runs", "instrumented")))
    profile = Profile(model.name, model.kernels, m)
    return match(model.kernels, {r["kernel"]: r for r in profile.rows}, nodes, conv_weights(onnx_path))


def format_rows(rows, top=None):
    """A plain table, largest edgec - onnxruntime gap first (TOP rows), with totals: medians, and
    the ratio of the fastest runs (steadier on a shared machine)."""
    def ms(s):
        return f"{s * 1e3:8.3f}" if s is not None else "       -"

    def ratio(a, b):
        return f"{a / b:6.2f}" if a and b else "     -"
    tot = {k: sum(r[k] or 0 for r in rows) for k in ("edgec_s", "ort_s", "edgec_min_s", "ort_min_s")}
    order = sorted(rows, key=lambda r: -((r["edgec_s"] or 0) - (r["ort_s"] or 0)))
    lines = [f"{'edgec ms':>8s} {'ORT ms':>8s} {'ratio':>6s} {'(min)':>6s}  {'kind':10s} {'layer':24s} layers",
             f"{ms(tot['edgec_s'])} {ms(tot['ort_s'])} {ratio(tot['edgec_s'], tot['ort_s'])} "
             f"{ratio(tot['edgec_min_s'], tot['ort_min_s'])}  {'all':10s}"]
    for r in order[:top] if top else order:
        lines.append(f"{ms(r['edgec_s'])} {ms(r['ort_s'])} {ratio(r['edgec_s'], r['ort_s'])} "
                     f"{ratio(r['edgec_min_s'], r['ort_min_s'])}  {r['kind'][:10]:10s} {r['label'][:24]:24s} "
                     f"{','.join(r['layers'])[:60]}")
    return "\n".join(lines)
