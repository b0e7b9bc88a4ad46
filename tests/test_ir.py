"""IR: building, verifier, printer, JSON round trip, numpy interpreter."""
import numpy as np
import pytest

from edgec.compiler import ir
from edgec.compiler.interp import interpret
from edgec.errors import ModelError, UnsupportedError


def small_graph():
    g = ir.Graph("small")
    x = g.add_input("x", (1, 2, 6, 6))
    w = g.add_const(np.arange(36, dtype=np.float32).reshape(4, 1, 3, 3) / 10, "w")
    (y,) = g.add_node("conv2d", [x, w], {"groups": 2, "pads": [1, 1, 1, 1]}, source=["conv"])
    (z,) = g.add_node("relu", [y], source=["act"])
    g.outputs = [z]
    return g


def test_shapes_are_inferred_and_printed():
    g = small_graph().verify()
    assert g.values[g.outputs[0]].shape == (1, 4, 6, 6)
    text = str(g)
    assert "conv2d(%x, %w; groups=2" in text and "# conv" in text


def test_json_round_trip(tmp_path):
    g = small_graph()
    ir.save(g, tmp_path / "g.json")
    g2 = ir.load(tmp_path / "g.json")
    assert str(g2) == str(g)
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(interpret(g, {"x": x})[g.outputs[0]], interpret(g2, {"x": x})[g2.outputs[0]])


def test_verifier_catches_dangling_value():
    g = small_graph()
    g.nodes[1].inputs = ["nowhere"]
    with pytest.raises(ModelError, match="reads 'nowhere' before it is defined"):
        g.verify()


def test_verifier_catches_out_of_order_nodes():
    g = small_graph()
    g.nodes.reverse()
    with pytest.raises(ModelError, match="before it is defined"):
        g.verify()


def test_verifier_catches_wrong_recorded_type():
    g = small_graph()
    v = g.values[g.outputs[0]]
    g.values[v.name] = ir.Value(v.name, (1, 4, 5, 5), v.dtype)
    with pytest.raises(ModelError, match="recorded as"):
        g.verify()


def test_verifier_catches_duplicate_definition():
    g = small_graph()
    g.nodes[1].outputs = [g.nodes[0].outputs[0]]
    with pytest.raises(ModelError, match="defined twice"):
        g.verify()


def test_bad_shape_names_node_and_layer():
    g = ir.Graph("bad")
    x = g.add_input("x", (1, 3, 8, 8))
    w = g.add_const(np.zeros((4, 2, 3, 3), np.float32))
    with pytest.raises(ModelError, match=r"conv2d node 'c1' \(layer_c1\): input has 3 channels"):
        g.add_node("conv2d", [x, w], name="c1", source=["layer_c1"])


def test_unknown_op():
    g = ir.Graph("bad")
    x = g.add_input("x", (2,))
    with pytest.raises(UnsupportedError, match="no op 'frobnicate'"):
        g.add_node("frobnicate", [x])


def test_interpreter_conv_matches_direct_loops():
    g = small_graph()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    w = g.constants["w"]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros((1, 4, 6, 6))
    for o in range(4):
        c = o // 2
        for i in range(6):
            for j in range(6):
                ref[0, o, i, j] = (xp[0, c, i:i + 3, j:j + 3] * w[o, 0]).sum()
    got = interpret(g, {"x": x})[g.outputs[0]]
    np.testing.assert_allclose(got, np.maximum(ref, 0), rtol=1e-5, atol=1e-6)
