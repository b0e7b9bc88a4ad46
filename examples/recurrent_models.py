"""The recurrent benchmark set as ONNX files with seeded random weights (batch 1):
LSTM and GRU with seq 32 / input 64 / hidden 128, LSTM with seq 100 / hidden 512, and a
bidirectional LSTM (seq 32 / input 64 / hidden 128).

    python examples/recurrent_models.py OUT_DIR      # then: examples/bench_suite.py --models none OUT_DIR/*.onnx
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SET = [  # name, op, seq, input, hidden, direction
    ("lstm_s32_h128", "LSTM", 32, 64, 128, "forward"),
    ("gru_s32_h128", "GRU", 32, 64, 128, "forward"),
    ("lstm_s100_h512", "LSTM", 100, 64, 512, "forward"),
    ("bilstm_s32_h128", "LSTM", 32, 64, 128, "bidirectional"),
]


def make(op, seq, inp, hidden, direction, seed=0):
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    gates = 4 if op == "LSTM" else 3
    s = 1 / np.sqrt(hidden)
    w = rng.uniform(-s, s, (dirs, gates * hidden, inp)).astype(np.float32)
    r = rng.uniform(-s, s, (dirs, gates * hidden, hidden)).astype(np.float32)
    b = rng.uniform(-s, s, (dirs, 2 * gates * hidden)).astype(np.float32)
    extra = {"linear_before_reset": 1} if op == "GRU" else {}
    node = helper.make_node(op, ["x", "w", "r", "b"], ["y", "h"], hidden_size=hidden, direction=direction, **extra)
    g = helper.make_graph([node], op.lower(),
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, 1, inp])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [seq, dirs, 1, hidden]),
                           helper.make_tensor_value_info("h", TensorProto.FLOAT, [dirs, 1, hidden])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(r, "r"),
                           numpy_helper.from_array(b, "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])


def main(argv=None):
    out = (argv or sys.argv[1:] or ["."])[0]
    os.makedirs(out, exist_ok=True)
    for name, op, seq, inp, hidden, direction in SET:
        onnx.save(make(op, seq, inp, hidden, direction), os.path.join(out, f"{name}.onnx"))
        print(os.path.join(out, f"{name}.onnx"))


if __name__ == "__main__":
    sys.exit(main())
