"""Seeded random conv stacks as ONNX models, for differential fuzzing of the CPU schedules.

`model(seed)` draws 1-3 layers, each a Conv of random channels (odd ones, ones that do not divide
the register blocks, up to 512), kernel (1x1 to 7x7, some 1xk / kx1), stride (1-3), dilation,
symmetric or asymmetric pads and groups (dense, depthwise with multiplier 1-2, or a divisor),
then maybe a batch norm, a residual Add with an input of its own, an activation (Relu, Clip,
LeakyRelu, Sigmoid, HardSigmoid, swish), a pool (2x2 / 3x3 max, 3x3 average) or a second conv
branch of the same input concatenated over channels; the model may end in a global average or max
pool and a dense head. Images from 1x1 to 47x47 (smaller with many channels), batch 1 or 2. These
are the shapes that choose between the schedules' paths (GEMM tiles, tails, flat rows, Winograd,
strided and one-column depthwise, ragged groups, fused epilogues and pools) and their edges.
Seeds from LARGE on draw the layers of real networks instead: 1-2 layers, mostly 1x1 and 3x3, of
up to 2304 channels over images of up to 112x112, batch 1-3 (images of 0.2-6 MB, past the L2: the pointwise
GEMM's pixel chunks, per-chunk copies, reduction chunks, rows read in place with prefetches,
merged and folded tails, Winograd over many tiles), each conv at most ~1 GFLOP.

Run as a script, this is the worker of tests/fuzz.py `run_cases`: per case it compiles the seed's
model for the case's target, runs it on seeded inputs with 2 threads, and compares it with
onnxruntime: `ok`, or `fail` with the error relative to the output's size, the exception, or the
kernel whose specialised schedule failed (the generic fallback computes right, slowly).
"""
import json
import os
import sys
import warnings

import numpy as np
from onnx import TensorProto, helper, numpy_helper

CHANNELS = [1, 2, 3, 4, 5, 7, 8, 12, 16, 20, 24, 32, 40, 48, 64, 72, 96, 100, 128, 144, 160, 256, 320, 512]
LARGE_CHANNELS = [24, 48, 64, 96, 128, 144, 192, 256, 384, 512, 576, 1024, 2048, 2304]
LARGE = 1_000_000  # seeds from here on draw the large family
LARGE_FLOPS = 1e9  # per conv of the large family (its output channels cut to fit)
TOLERANCE = 1e-4  # max |edgec - onnxruntime| / (1 + max |onnxruntime|)


def model(seed):
    """(onnx.ModelProto, [one line per layer]) of SEED."""
    rng = np.random.default_rng(seed)
    large = seed >= LARGE
    inits, nodes, inputs, desc = [], [], [], []

    def const(arr):
        name = f"k{len(inits)}"
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    def node(op, ins, **attrs):
        out = f"{op.lower()}{len(nodes)}"
        nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    def conv(x, shape):
        n, c, h, w = shape
        k = int(rng.choice([1, 1, 1, 1, 1, 3, 3, 3, 5] if large else [1, 1, 1, 3, 3, 3, 3, 5, 7]))
        kh, kw = (k, k) if rng.random() < 0.9 else (k, int(rng.choice([1, 3])))
        stride = int(rng.choice([1, 1, 1, 2, 2, 3]))
        dil = 2 if rng.random() < 0.1 else 1
        r = rng.random()
        divisors = [d for d in range(2, c) if c % d == 0]
        g = 1 if r < 0.55 else c if r < 0.85 or not divisors else int(rng.choice(divisors))
        if g == c and c > 1:
            o = c * int(rng.choice([1, 1, 1, 2]))
        else:
            o = max(g, int(rng.choice(LARGE_CHANNELS if large else CHANNELS)) // g * g)
        if rng.random() < 0.3:
            pads = [int(rng.integers(0, kh)), int(rng.integers(0, kw)), int(rng.integers(0, kh)), int(rng.integers(0, kw))]
        else:
            pads = [(kh - 1) * dil // 2, (kw - 1) * dil // 2] * 2
        oh = (h + pads[0] + pads[2] - dil * (kh - 1) - 1) // stride + 1
        ow = (w + pads[1] + pads[3] - dil * (kw - 1) - 1) // stride + 1
        if oh < 1 or ow < 1:
            return None
        if large:  # (at most LARGE_FLOPS: fewer output channels, whole groups)
            o = max(g, min(o, int(LARGE_FLOPS / (2 * c // g * kh * kw * oh * ow)) // g * g))
        weights = rng.standard_normal((o, c // g, kh, kw)) / np.sqrt(c // g * kh * kw)
        ins = [x, const(weights)] + ([const(rng.standard_normal(o) * 0.1)] if rng.random() < 0.8 else [])
        y = node("Conv", ins, kernel_shape=[kh, kw], strides=[stride] * 2, dilations=[dil] * 2, pads=pads, group=g)
        desc.append(f"conv {c}->{o} {kh}x{kw} s{stride} d{dil} g{g} pads {pads} -> {oh}x{ow}")
        return y, [n, o, oh, ow]

    n = 1 if rng.random() < 0.85 else 2
    if large:
        n = 3 if n == 2 and rng.random() < 0.5 else n
        c = int(rng.choice(LARGE_CHANNELS))
        side = int(min(113, np.sqrt(6e6 / 4 / c)))  # (an input of at most ~6 MB)
        h = int(rng.integers(max(2, int(np.sqrt(2e5 / 4 / c))), side + 1))
        w = int(rng.integers(max(1, h // 2), side + 1)) if rng.random() < 0.3 else h
    else:
        c = int(rng.choice(CHANNELS))
        side = 20 if c * 9 > 2000 else 48
        h = int(rng.integers(1, side))
        w = int(rng.integers(1, side)) if rng.random() < 0.7 else h
    inputs.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, h, w]))
    desc.append(f"input {[n, c, h, w]}")
    x, shape = "x", [n, c, h, w]
    for _ in range(int(rng.integers(1, 3 if large else 4))):
        made = conv(x, shape)
        if made is None:
            continue
        y, out = made
        if rng.random() < 0.1 and out[2:] == shape[2:] or rng.random() < 0.05:  # a second branch, concatenated
            other = conv(x, shape)
            if other is not None and other[1][2:] == out[2:]:
                y = node("Concat", [y, other[0]], axis=1)
                out = [n, out[1] + other[1][1], *out[2:]]
                desc.append("concat")
        x, shape = y, out
        o = shape[1]
        if rng.random() < 0.3:
            x = node("BatchNormalization", [x, const(rng.uniform(0.5, 1.5, o)), const(rng.standard_normal(o) * 0.1),
                                            const(rng.standard_normal(o) * 0.1), const(rng.uniform(0.5, 1.5, o))])
            desc.append("batch norm")
        if rng.random() < 0.25:
            skip = f"skip{len(inputs)}"
            inputs.append(helper.make_tensor_value_info(skip, TensorProto.FLOAT, shape))
            x = node("Add", [x, skip])
            desc.append("add")
        act = str(rng.choice(["none", "Relu", "Relu", "Clip", "LeakyRelu", "Sigmoid", "swish", "HardSigmoid"]))
        if act == "Clip":
            x = node("Clip", [x, const(0.0), const(6.0)])
        elif act == "swish":
            x = node("Mul", [x, node("Sigmoid", [x])])
        elif act != "none":
            x = node(act, [x])
        desc.append(act)
        p = rng.random()
        if p < 0.12 and min(shape[2:]) >= 2:
            x = node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
            shape = [n, o, shape[2] // 2, shape[3] // 2]
            desc.append("max pool 2x2")
        elif p < 0.2 and min(shape[2:]) >= 2:
            x = node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
            shape = [n, o, (shape[2] - 1) // 2 + 1, (shape[3] - 1) // 2 + 1]
            desc.append("max pool 3x3 s2")
        elif p < 0.26:
            x = node("AveragePool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=int(rng.integers(0, 2)))
            desc.append("average pool 3x3")
    r = rng.random()
    if r < 0.2:
        x = node("GlobalAveragePool" if r < 0.14 else "GlobalMaxPool", [x])
        desc.append("global pool")
        if rng.random() < 0.5:
            units = int(rng.choice([1, 10, 37, 100]))
            x = node("Gemm", [node("Flatten", [x]), const(rng.standard_normal((units, shape[1])) / np.sqrt(shape[1])),
                              const(rng.standard_normal(units) * 0.1)], transB=1)
            desc.append(f"dense {shape[1]}->{units}")
    graph = helper.make_graph(nodes, f"fuzz{seed}", inputs, [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
                              inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m, desc


def inputs(m, seed):
    rng = np.random.default_rng(seed + 1)
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in m.graph.input}


def check(seed, target, folder):
    """(outcome, detail) of SEED's model compiled for TARGET against onnxruntime."""
    import onnx
    import onnxruntime as ort
    from edgec import api, runtime
    m, desc = model(seed)
    path = os.path.join(folder, f"s{seed}.onnx")
    onnx.save(m, path)
    feed = inputs(m, seed)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        art = api.compile(path, target=target, output=os.path.join(folder, f"s{seed}.edgec"), progress=False)
    fallbacks = [str(w.message) for w in caught if "falling back" in str(w.message)]
    if fallbacks:  # right results, but a specialised schedule failed: the generic one is slow
        return "fail", f"{fallbacks[0][:300]}: {' | '.join(desc)}"
    got = runtime.load(art).run(feed)[0]
    err = float(np.abs(got - want).max() / (1 + np.abs(want).max())) if got.shape == want.shape else float("inf")
    if not err <= TOLERANCE:
        return "fail", f"error {err:.2e} (shape {got.shape} vs {want.shape}): {' | '.join(desc)}"
    return "ok", f"{err:.1e}"


def _worker(folder):
    import tempfile
    warnings.simplefilter("ignore")
    out = tempfile.mkdtemp(prefix="edgec-conv-fuzz-", dir=folder)
    for line in sys.stdin:
        cid, seed, target = json.loads(line)
        try:
            outcome, detail = check(int(seed), target, out)
        except BaseException as e:  # noqa: BLE001 - every exception is a finding
            outcome, detail = "fail", f"{type(e).__name__}: {' '.join(str(e).split())[:300]} | {' | '.join(model(int(seed))[1])}"
        print(json.dumps([cid, outcome, detail[:600]]), flush=True)


if __name__ == "__main__":
    os.environ["TVM_NUM_THREADS"] = "2"  # (parallel regions with 2 threads: races show)
    _worker(sys.argv[1])
