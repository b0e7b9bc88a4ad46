"""Per-layer speed: every distinct Conv of an ONNX model as a one-layer model (Conv + Relu,
random weights), timed with `edgec bench` against onnxruntime, alternating, same threads.
Alone, onnxruntime converts each layer's input to its NCHWc layout and the output back, which it
does not do inside a whole model: `edgec bench MODEL --layers` compares the layers in place.

    python examples/bench_layers.py model.onnx [--threads 2] [--kernel 3] [--out layers.md]
"""
import argparse
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgec.bench import bench, cpu_name, isa


def conv_layers(path):
    """[(name, ONNX Conv attrs, input shape, weight shape)] of the distinct convs of PATH
    (shapes from edgec's own import, which types every value)."""
    from edgec.api import import_model
    g = import_model(path)
    seen, out = set(), []
    for n in g.nodes:
        if n.op != "conv2d":
            continue
        xs, ws = list(g.values[n.inputs[0]].shape), list(g.values[n.inputs[1]].shape)
        p = n.attrs.get("pads", [0, 0, 0, 0])
        attrs = {"strides": n.attrs.get("strides", [1, 1]), "dilations": n.attrs.get("dilations", [1, 1]),
                 "group": n.attrs.get("groups", 1), "pads": [p[0], p[1], p[2], p[3]], "kernel_shape": ws[2:]}
        key = (tuple(xs), tuple(ws), repr(attrs))
        if key not in seen:
            seen.add(key)
            out.append(((n.source or [n.name])[0], attrs, xs, ws))
    return out


def one_conv_model(attrs, xshape, wshape, path, seed=0):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(wshape) * np.sqrt(2.0 / np.prod(wshape[1:]))).astype(np.float32)
    b = (rng.standard_normal(wshape[0]) * 0.05).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs)
    g = helper.make_graph([conv, helper.make_node("Relu", ["c"], ["y"])], "layer",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, xshape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=3, help="rounds of alternating ~0.4 s blocks")
    p.add_argument("--target", default="host")
    p.add_argument("--kernel", type=int, help="only convs with this kernel size (e.g. 3)")
    p.add_argument("--out", help="also write the markdown table here")
    a = p.parse_args(argv)
    rows = [f"ISA {isa()}, {cpu_name()}, target {a.target}, {a.threads} thread(s), load average at start {os.getloadavg()[0]:.1f}",
            "", "| layer | input | weight | stride | edgec GFLOP/s | ORT GFLOP/s | edgec/ORT speed |",
            "|---|---|---|---|---|---|---|"]
    print("\n".join(rows), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, attrs, xs, ws in conv_layers(a.model):
            if a.kernel and ws[2] != a.kernel:
                continue
            path = os.path.join(tmp, "layer.onnx")
            one_conv_model(attrs, xs, ws, path)
            r = bench(path, a.target, threads=a.threads, repeat=a.repeat)
            row = (f"| {name} | {xs} | {ws} | {attrs.get('strides', [1, 1])[0]} | {r['gflops']:.0f} | "
                   f"{r['ort_gflops']:.0f} | {r['gflops'] / r['ort_gflops']:.2f} |")
            rows.append(row)
            print(row, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    sys.exit(main())
