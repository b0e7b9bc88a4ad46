"""The 9 light ONNX zoo models: import, numpy interpreter vs onnxruntime.

As shipped (constant ConstantOfShape weights) every model runs; with seeded random weights
(tests/zoo.py) resnet50 and squeezenet run by default and the rest under -m slow. Randomized
models are compared on the logits before the final Softmax, which would saturate and hide errors.
"""
import numpy as np
import onnxruntime as ort
import pytest

from edgec.compiler.interp import interpret
from edgec.frontends.onnx import from_onnx
from zoo import drop_final_softmax, light_models, load_light, randomize_weights

MODELS = light_models()
RANDOMIZED_DEFAULT = ("resnet50", "squeezenet")


def compare(model, seed=1):
    graph = from_onnx(model)
    assert len(graph.inputs) == 1
    inp = graph.inputs[0]
    x = np.random.default_rng(seed).standard_normal(inp.shape).astype(np.float32)
    got = interpret(graph, {inp.name: x})
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    want = sess.run(None, {inp.name: x})
    assert graph.outputs == [o.name for o in model.graph.output]
    for name, w in zip(graph.outputs, want):
        assert np.isfinite(w).all()
        np.testing.assert_allclose(got[name], w, rtol=1e-4, atol=1e-5, err_msg=name)
    return graph


def test_all_nine_light_models_present():
    assert len(MODELS) == 9


@pytest.mark.parametrize("name", MODELS)
def test_light_model_as_shipped(name):
    graph = compare(load_light(name))
    assert all(n.source for n in graph.nodes)
    assert not any(n.op == "ConstantOfShape" for n in graph.nodes)


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in RANDOMIZED_DEFAULT else pytest.mark.slow)
                                  for n in MODELS])
def test_light_model_randomized(name):
    model = drop_final_softmax(randomize_weights(load_light(name), seed=0))
    compare(model)


def test_randomize_weights_is_seeded_and_keeps_shapes():
    from onnx import numpy_helper
    m = load_light("squeezenet")
    a, b, c = (randomize_weights(m, s) for s in (0, 0, 1))
    arr = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
    assert all(np.array_equal(arr[t.name], numpy_helper.to_array(t)) for t in b.graph.initializer)
    assert any(not np.array_equal(arr[t.name], numpy_helper.to_array(t)) for t in c.graph.initializer)
    assert not any(n.op_type == "ConstantOfShape" for n in a.graph.node)
    assert arr["conv1_w_0"].shape == (64, 3, 3, 3)
