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


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'tf2onnx'):
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, Block())
"""


def test_importer_works_without_tensorflow(saved, tmp_path):
    """Import a .keras and a .h5 file and run them in a process where TensorFlow/Keras can't load."""
    import subprocess
    import sys
    names = ["residual_cnn", "embedding_bilstm_gru"]
    expected = {}
    for n in names:
        k, h, inputs, pred = saved[n]
        np.savez(tmp_path / f"{n}.npz", **{f"in_{key}": v for key, v in inputs.items()},
                 **{f"out_{i}": p for i, p in enumerate(pred)})
        expected[n] = (str(k), str(h), str(tmp_path / f"{n}.npz"))
    script = BLOCKER + f"""
import numpy as np
try:
    import keras
    raise SystemExit('keras imported although blocked')
except ImportError:
    pass
from edgec.frontends.keras import from_keras
from edgec.compiler.interp import interpret
for keras_path, h5_path, npz in {list(expected.values())!r}:
    z = np.load(npz)
    inputs = {{k[3:]: z[k] for k in z.files if k.startswith('in_')}}
    for path in (keras_path, h5_path):
        g = from_keras(path, input_shapes={{k: v.shape for k, v in inputs.items()}})
        outs = interpret(g, inputs)
        for i, o in enumerate(g.outputs):
            np.testing.assert_allclose(outs[o], z[f'out_{{i}}'], rtol={RTOL}, atol={ATOL})
        print('ok', path)
assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules), 'TensorFlow was loaded'
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("ok ") == 4


def test_live_model_matches_file(keras, saved):
    from edgec.compiler.interp import interpret
    from edgec.frontends.keras import from_keras
    k_path, _, inputs, expected = saved["multi_io"]
    model = keras.saving.load_model(k_path)
    graph = from_keras(model, input_shapes=_shapes(inputs), name="live")
    outs = interpret(graph, inputs)
    _check([outs[o] for o in graph.outputs], expected)
