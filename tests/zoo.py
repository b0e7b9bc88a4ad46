"""The light ONNX zoo models shipped with the onnx package, and a seeded weight randomizer.

The light models carry their weights as ConstantOfShape nodes (one constant value per tensor), which
hides layout and indexing bugs. `randomize_weights` turns every float initializer and every
ConstantOfShape-made weight into seeded random values of the same shape, scaled so activations stay
sane: fan-in std (1/sqrt(fan_in); He-style 2/fan_in blew up through max pools) for Conv/Gemm weights,
positive variance and near-1 scales for BatchNormalization and for the Mul of an unfolded batch norm
(small scales where the norm ends a residual branch feeding a Sum, so residual sums do not grow),
small biases and shifts.
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def light_models():
    return sorted(p.stem.replace("light_", "") for p in LIGHT_DIR.glob("light_*.onnx"))


def load_light(name):
    return onnx.load(str(LIGHT_DIR / f"light_{name}.onnx"))


def _consumers(graph):
    users = {}
    for n in graph.node:
        for i, name in enumerate(n.input):
            users.setdefault(name, []).append((n, i))
    return users


def _feeds_sum(node, users):
    """Does NODE's output go straight into a Sum/Add (a residual branch ending in a norm)?"""
    return node is not None and any(u.op_type in ("Sum", "Add") for u, _ in users.get(node.output[0], []))


def _role(name, users, depth=0):
    """(op, input index) of the first consumer that says what the tensor is, through Unsqueeze/Reshape."""
    for node, idx in users.get(name, []):
        if node.op_type in ("Unsqueeze", "Reshape", "Identity", "Squeeze") and idx == 0 and depth < 4:
            return _role(node.output[0], users, depth + 1)
        return node, idx
    return None, None


def _sample(rng, shape, node, idx, residual=False):
    shape = tuple(int(d) for d in shape)
    op = node.op_type if node is not None else None
    if op in ("Conv", "ConvTranspose") and idx == 1:
        fan_in = int(np.prod(shape[1:])) or 1
        return rng.normal(0, np.sqrt(1.0 / fan_in), shape)
    if op in ("Gemm", "MatMul") and idx == 1:
        trans_b = any(a.name == "transB" and a.i for a in node.attribute) if op == "Gemm" else False
        fan_in = shape[1] if trans_b else shape[0]
        return rng.normal(0, np.sqrt(1.0 / max(fan_in, 1)), shape)
    if op == "BatchNormalization":
        if idx == 1 and residual:  # last norm of a residual branch: small scale, so sums don't grow
            return rng.uniform(0.1, 0.3, shape)
        if idx in (1, 4):  # scale, variance: positive, near 1
            return rng.uniform(0.5, 1.5, shape)
        return rng.normal(0, 0.1, shape)  # bias, mean
    if op == "Mul":
        return rng.uniform(0.5, 1.5, shape)
    if op == "PRelu":
        return rng.uniform(0.0, 0.3, shape)
    return rng.normal(0, 0.05, shape)  # biases, Add shifts, anything else


def randomize_weights(model, seed=0):
    """A new ModelProto with seeded random float weights of the same shapes (see module doc)."""
    rng = np.random.default_rng(seed)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    users = _consumers(g)
    inits = {t.name: t for t in g.initializer}
    new_inits = []
    for t in g.initializer:
        arr = numpy_helper.to_array(t)
        if arr.dtype.kind == "f":
            node, idx = _role(t.name, users)
            arr = _sample(rng, arr.shape, node, idx, _feeds_sum(node, users)).astype(arr.dtype)
        new_inits.append(numpy_helper.from_array(arr, t.name))
    kept = []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            value = next((numpy_helper.to_array(a.t) for a in n.attribute if a.name == "value"),
                         np.zeros(1, np.float32))
            if value.dtype.kind == "f":
                shape = numpy_helper.to_array(inits[n.input[0]])
                node, idx = _role(n.output[0], users)
                arr = _sample(rng, shape, node, idx, _feeds_sum(node, users)).astype(value.dtype)
                new_inits.append(numpy_helper.from_array(arr, n.output[0]))
                continue
        kept.append(n)
    del g.node[:]
    g.node.extend(kept)
    used = {i for n in kept for i in n.input} | {o.name for o in g.output}
    del g.initializer[:]
    g.initializer.extend(t for t in new_inits if t.name in used)
    graph_inputs = [i for i in g.input if i.name in used or i.name not in inits]
    del g.input[:]
    g.input.extend(graph_inputs)
    return m


def drop_final_softmax(model):
    """A copy whose outputs are the logits feeding a final Softmax (a saturated softmax hides errors)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    last = g.node[-1]
    if last.op_type != "Softmax" or last.output[0] != g.output[0].name:
        return m
    logits = last.input[0]
    del g.node[-1]
    out = onnx.helper.make_tensor_value_info(logits, g.output[0].type.tensor_type.elem_type, None)
    del g.output[:]
    g.output.append(out)
    return m
