"""Per-call overhead of `Model.run` against onnxruntime's `InferenceSession.run` on a one-op model.

    python examples/bench_overhead.py [--shape 1,64] [--op Relu] [--rounds 15] [--block 2000]

Both engines run the same ONNX model (one Relu by default) in alternating blocks of BLOCK calls,
ROUNDS rounds; each block's mean per-call time is one sample and the table shows the median and
min over rounds (in microseconds). onnxruntime keeps its default session options. Rows:
  edgec run          model.run({name: x}): checks, hand-over, VM call, a fresh output array
  edgec run out=     model.run({name: x}, out=[buf]): outputs written into the caller's buffer
  onnxruntime run    sess.run(None, {name: x})
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper


def one_op_model(op, shape, path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "one_op", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def block_mean(fn, n):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def measure(engines, rounds, block):
    samples = {name: [] for name in engines}
    for fn in engines.values():  # warm-up
        block_mean(fn, block // 10 + 1)
    for _ in range(rounds):
        for name, fn in engines.items():
            samples[name].append(block_mean(fn, block))
    return samples


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="1,64", help="input shape (default 1,64)")
    p.add_argument("--op", default="Relu", help="unary ONNX op (default Relu)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--block", type=int, default=2000, help="calls per block")
    a = p.parse_args(argv)
    import onnxruntime as ort
    import edgec
    shape = [int(d) for d in a.shape.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, art = os.path.join(tmp, "one.onnx"), os.path.join(tmp, "one.edgec")
        one_op_model(a.op, shape, onnx_path)
        edgec.compile(onnx_path, "host", art, progress=False)
        model = edgec.load(art)
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        feed = {"x": x}
        buf = [np.empty(shape, np.float32)]
        np.testing.assert_allclose(model.run(feed)[0], sess.run(None, feed)[0], rtol=1e-6)
        engines = {"edgec run": lambda: model.run(feed), "onnxruntime run": lambda: sess.run(None, feed)}
        if "out" in model.run.__code__.co_varnames:
            engines["edgec run out="] = lambda: model.run(feed, out=buf)
        samples = measure(engines, a.rounds, a.block)
        model.close() if hasattr(model, "close") else None
    ort_median = statistics.median(samples["onnxruntime run"])
    print(f"{a.op} {shape} float32, {a.rounds} rounds of {a.block} calls, alternating blocks "
          f"(TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS', 'all')})")
    print(f"{'engine':<18} {'median us':>10} {'min us':>8} {'vs ort':>7}")
    for name, s in samples.items():
        med = statistics.median(s)
        print(f"{name:<18} {med * 1e6:>10.2f} {min(s) * 1e6:>8.2f} {med / ort_median:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
