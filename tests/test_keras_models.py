"""Keras frontend: models built here, saved as .keras and .h5 with random weights, imported
by edgec and compared with Keras `predict` (rtol 1e-4, atol 1e-5): the numpy interpreter on both
files, and the compiled artifact on the .keras file."""
import numpy as np
import pytest

from keras_cases import CASES, randomize, random_inputs

pytestmark = pytest.mark.keras
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras", reason="Keras/TensorFlow not installed (the keras extra)")


@pytest.fixture(scope="module")
def saved(keras, tmp_path_factory):
    """name -> (.keras path, .h5 path, inputs, Keras predict outputs)."""
    d = tmp_path_factory.mktemp("keras_models")
    rng = np.random.default_rng(0)
    out = {}
    for name, build in CASES.items():
        model = randomize(build(keras), rng)
        inputs = random_inputs(model, rng)
        args = list(inputs.values())
        pred = model.predict(args[0] if len(args) == 1 else args, verbose=0)
        pred = list(pred) if isinstance(pred, (list, tuple)) else [pred]
        paths = d / f"{name}.keras", d / f"{name}.h5"
        for p in paths:
            model.save(p)
        out[name] = (*paths, inputs, pred)
    return out


def _shapes(inputs):
    return {k: v.shape for k, v in inputs.items()}


def _check(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpreter_matches_keras(saved, name):
    from edgec.compiler.interp import interpret
    from edgec.frontends.keras import from_keras
    keras_path, h5_path, inputs, expected = saved[name]
    for path in (keras_path, h5_path):
        graph = from_keras(path, input_shapes=_shapes(inputs))
        assert [v.name for v in graph.inputs] == list(inputs)
        outs = interpret(graph, inputs)
        _check([outs[o] for o in graph.outputs], expected)


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_keras(saved, name, tmp_path):
    from edgec import api
    from edgec.runtime import load
    keras_path, _, inputs, expected = saved[name]
    art = api.compile(keras_path, output=tmp_path / f"{name}.edgec", input_shapes=_shapes(inputs), progress=False)
    _check(load(art).run(inputs), expected)
