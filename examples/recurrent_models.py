"""The recurrent benchmark set as ONNX files with seeded random weights: LSTM and GRU with seq 32 /
input 64 / hidden 128, LSTM with seq 100 / hidden 512, a bidirectional LSTM, and the small or
batched shapes: batch 3 LSTMs with peepholes and initial states (hidden 64 and 256), a GRU with
linear_before_reset, batch 3, hidden 192 and an initial state, an RNN with hidden 96 and an
initial state, a bidirectional LSTM with hidden 64 (seq 40).

    python examples/recurrent_models.py OUT_DIR      # then: examples/bench_suite.py --models none OUT_DIR/*.onnx
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SET = [  # name, op, seq, input, hidden, direction, batch, peepholes + initial states
    ("lstm_s32_h128", "LSTM", 32, 64, 128, "forward", 1, False),
    ("gru_s32_h128", "GRU", 32, 64, 128, "forward", 1, False),
    ("lstm_s100_h512", "LSTM", 100, 64, 512, "forward", 1, False),
    ("bilstm_s32_h128", "LSTM", 32, 64, 128, "bidirectional", 1, False),
    ("bilstm_s40_h64", "LSTM", 40, 32, 64, "bidirectional", 1, False),
    ("lstm_b3_peep_h64", "LSTM", 40, 32, 64, "forward", 3, True),
    ("lstm_b3_peep_h256", "LSTM", 24, 128, 256, "forward", 3, True),
    ("gru_b3_h192_init", "GRU", 32, 64, 192, "forward", 3, True),
    ("rnn_h96_init", "RNN", 50, 32, 96, "forward", 1, True),
]


def make(op, seq, inp, hidden, direction, batch=1, extras=False, seed=0):
    """One ONNX recurrent node; EXTRAS: initial states (initial_h, and initial_c and peepholes for LSTM)."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    s = 1 / np.sqrt(hidden)
    inits = {"w": (dirs, gates * hidden, inp), "r": (dirs, gates * hidden, hidden), "b": (dirs, 2 * gates * hidden)}
    ins = ["x", "w", "r", "b"]
    if extras:
        inits["h0"] = (dirs, batch, hidden)
        ins += ["", "h0"]
        if op == "LSTM":
            inits.update(c0=(dirs, batch, hidden), p=(dirs, 3 * hidden))
            ins += ["c0", "p"]
    tensors = [numpy_helper.from_array(rng.uniform(-s, s, shape).astype(np.float32), name)
               for name, shape in inits.items()]
    extra = {"linear_before_reset": 1} if op == "GRU" else {}
    node = helper.make_node(op, ins, ["y", "h"], hidden_size=hidden, direction=direction, **extra)
    g = helper.make_graph([node], op.lower(),
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, batch, inp])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [seq, dirs, batch, hidden]),
                           helper.make_tensor_value_info("h", TensorProto.FLOAT, [dirs, batch, hidden])],
                          tensors)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])


def main(argv=None):
    out = (argv or sys.argv[1:] or ["."])[0]
    os.makedirs(out, exist_ok=True)
    for name, *spec in SET:
        onnx.save(make(*spec), os.path.join(out, f"{name}.onnx"))
        print(os.path.join(out, f"{name}.onnx"))


if __name__ == "__main__":
    sys.exit(main())
