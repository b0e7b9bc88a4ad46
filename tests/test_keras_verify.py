"""`edgec verify` on a Keras model: Keras predict by default, onnxruntime with --reference."""
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory):
    keras = pytest.importorskip("keras", reason="Keras/TensorFlow not installed (the keras extra)")
    from edgec import api
    d = tmp_path_factory.mktemp("verify")
    model = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(3, activation="tanh")], name="tiny")
    rng = np.random.default_rng(0)
    model.set_weights([rng.standard_normal((4, 3)).astype("float32"), rng.standard_normal(3).astype("float32")])
    path = d / "tiny.keras"
    model.save(path)
    art = api.compile(path, output=d / "tiny.edgec", progress=False)
    return d, path, art, model.get_weights()


def _onnx_export(path, kernel, bias):
    """The same model written as ONNX by hand, with a renamed input (as exporters do)."""
    g = helper.make_graph(
        [helper.make_node("MatMul", ["serving_x", "k"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["pre"]),
         helper.make_node("Tanh", ["pre"], ["y"])], "tiny",
        [helper.make_tensor_value_info("serving_x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(kernel, "k"), numpy_helper.from_array(bias, "b")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_verify_uses_keras_predict(dense_model):
    from edgec import api
    _, path, art, _ = dense_model
    res = api.verify(path, art)
    assert res.passed and res.reference.startswith("Keras ") and "predict" in res.reference


def test_verify_against_onnx_export(dense_model):
    from edgec import api
    d, path, art, (kernel, bias) = dense_model
    _onnx_export(d / "good.onnx", kernel, bias)
    res = api.verify(path, art, reference=d / "good.onnx")
    assert res.passed and res.reference.startswith("onnxruntime") and "good.onnx" in res.reference
    _onnx_export(d / "bad.onnx", kernel, bias + 0.5)  # another model: verify must fail
    assert not api.verify(path, art, reference=d / "bad.onnx").passed


def test_reference_must_be_onnx(dense_model):
    from edgec import api
    from edgec.errors import EdgecError
    _, path, art, _ = dense_model
    with pytest.raises(EdgecError, match="must be an ONNX export"):
        api.verify(path, art, reference=path)


@pytest.mark.parametrize("dtype", ["int32", "float32"])
def test_verify_draws_token_ids_within_the_embedding_vocabulary(dtype, tmp_path):
    """A vocabulary of 3: random inputs must be ids in [0, 3) (the manifest records the range)."""
    keras = pytest.importorskip("keras", reason="Keras/TensorFlow not installed (the keras extra)")
    from edgec import api
    from edgec.runtime.artifact import read_manifest
    inp = keras.Input((6,), dtype=dtype, name="tokens")
    model = keras.Model(inp, keras.layers.LSTM(5)(keras.layers.Embedding(3, 4)(inp)))
    model.save(tmp_path / "emb.keras")
    art = api.compile(tmp_path / "emb.keras", output=tmp_path / "emb.edgec", progress=False)
    assert read_manifest(art)["inputs"][0]["range"] == [0, 3]
    res = api.verify(tmp_path / "emb.keras", art, seed=3)
    assert res.passed, [r.max_abs for r in res.reports]


def test_keras_reference_loads_application_layers_from_h5(tmp_path):
    """A legacy .h5 names keras.applications' own layers (ConvNeXt's LayerScale) without their
    module: the Keras reference loads it with those classes and matches the model's predict."""
    keras = pytest.importorskip("keras", reason="Keras/TensorFlow not installed (the keras extra)")
    convnext = pytest.importorskip("keras.src.applications.convnext", reason="not Keras 3's layout")
    from edgec.frontends.keras.reference import keras_predict
    model = keras.Sequential([keras.Input((3, 4), name="x"), keras.layers.Dense(4),
                              convnext.LayerScale(0.5, 4, name="scale")], name="scaled")
    model.layers[-1].set_weights([np.array([0.5, -1.0, 2.0, 3.0], "float32")])
    x = np.random.default_rng(0).standard_normal((1, 3, 4)).astype("float32")
    model.save(tmp_path / "scaled.h5")
    _, outs = keras_predict(tmp_path / "scaled.h5", {"x": x})
    np.testing.assert_allclose(outs[0], model.predict(x, verbose=0), rtol=1e-6, atol=1e-7)
