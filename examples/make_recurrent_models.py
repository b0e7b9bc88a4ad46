"""Build random-weight ONNX recurrent models with onnx.helper.

    python examples/make_recurrent_models.py OUT_DIR
writes lstm_bidir_2layer.onnx (bidirectional 2-layer LSTM, seq 50, hidden 256), gru_lbr.onnx (GRU,
linear_before_reset=1), lstm_s32_h128.onnx and lstm_s100_h512.onnx (the latency models).
"""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def recurrent_model(op="LSTM", seq=32, batch=1, inp=64, hidden=128, layers=1, direction="forward",
                    seed=0, scale=None, **attrs):
    """An ONNX model: LAYERS stacked OP nodes; outputs Y of the last layer and every layer's Y_h."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    scale = scale or 1 / np.sqrt(hidden)
    nodes, inits, outputs = [], [], []
    x, width = "X", inp
    for layer in range(layers):
        p = f"l{layer}_"
        for name, shape in (("W", (dirs, g * hidden, width)), ("R", (dirs, g * hidden, hidden)),
                            ("B", (dirs, 2 * g * hidden))):
            inits.append(numpy_helper.from_array(rng.uniform(-scale, scale, shape).astype(np.float32), p + name))
        nodes.append(helper.make_node(op, [x, p + "W", p + "R", p + "B"], [p + "Y", p + "Y_h"],
                                      name=f"{op.lower()}{layer}", hidden_size=hidden, direction=direction,
                                      **attrs))
        outputs.append(helper.make_tensor_value_info(p + "Y_h", TensorProto.FLOAT, [dirs, batch, hidden]))
        if layer + 1 < layers:  # [seq, dirs, batch, hidden] -> [seq, batch, dirs * hidden]
            nodes.append(helper.make_node("Transpose", [p + "Y"], [p + "Yt"], perm=[0, 2, 1, 3]))
            inits.append(numpy_helper.from_array(np.array([seq, batch, dirs * hidden], np.int64), p + "shape"))
            nodes.append(helper.make_node("Reshape", [p + "Yt", p + "shape"], [p + "X"]))
            x, width = p + "X", dirs * hidden
    outputs.insert(0, helper.make_tensor_value_info(p + "Y", TensorProto.FLOAT, [seq, dirs, batch, hidden]))
    graph = helper.make_graph(nodes, f"{op.lower()}_model", [
        helper.make_tensor_value_info("X", TensorProto.FLOAT, [seq, batch, inp])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


MODELS = {
    "lstm_bidir_2layer": dict(op="LSTM", seq=50, inp=64, hidden=256, layers=2, direction="bidirectional"),
    "gru_lbr": dict(op="GRU", seq=40, batch=4, inp=64, hidden=128, linear_before_reset=1),
    "lstm_s32_h128": dict(op="LSTM", seq=32, inp=64, hidden=128),
    "lstm_s100_h512": dict(op="LSTM", seq=100, inp=64, hidden=512),
}

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for name, kw in MODELS.items():
        onnx.save(recurrent_model(**kw), out / f"{name}.onnx")
        print(out / f"{name}.onnx")
