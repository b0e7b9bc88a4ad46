"""Keras frontend errors: unsupported layers/options name the layer, its class and the option;
broken files raise edgec's ModelError."""
import pytest

from edgec.errors import ModelError, UnsupportedError

pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras", reason="Keras/TensorFlow not installed (the keras extra)")


def _save(model, tmp_path, suffix=".keras"):
    path = tmp_path / f"{model.name}{suffix}"
    model.save(path)
    return path


@pytest.mark.parametrize("build, words", [
    (lambda k: k.Sequential([k.Input((4, 4, 4, 1)), k.layers.Conv3D(2, 2, name="vol")], name="m1"),
     ["'vol'", "Conv3D", "not supported"]),
    (lambda k: k.Sequential([k.Input((5,), dtype="int32"), k.layers.Embedding(10, 3, mask_zero=True, name="emb")],
                            name="m2"), ["'emb'", "Embedding", "mask_zero=True"]),
    (lambda k: k.Sequential([k.Input((5, 5, 2)), k.layers.MaxPooling2D(2, data_format="channels_first", name="mp")],
                            name="m3"), ["'mp'", "MaxPooling2D", "data_format='channels_first'"]),
    (lambda k: k.Sequential([k.Input((4, 2)), k.layers.SimpleRNN(3, activation="selu", name="rnn")], name="m4"),
     ["'rnn'", "SimpleRNN", "activation='selu'"]),
    (lambda k: k.Sequential([k.Input((4, 4, 4, 1)), k.Sequential([k.layers.Conv3D(2, 2, name="vol")], name="blk")],
                            name="m5"), ["'blk/vol'", "Conv3D", "not supported"]),  # inside a sub-model
])
def test_unsupported_names_layer_class_option(keras, tmp_path, build, words):
    from edgec.frontends.keras import from_keras
    path = _save(build(keras), tmp_path)
    with pytest.raises(UnsupportedError) as err:
        from_keras(path)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_unknown_dims_need_input_shape(keras, tmp_path):
    from edgec.frontends.keras import from_keras
    path = _save(keras.Sequential([keras.Input((None, 3), name="seq"), keras.layers.LSTM(2)], name="m5"), tmp_path)
    with pytest.raises(ModelError, match="--input-shape seq="):
        from_keras(path)
    assert from_keras(path, input_shapes={"seq": (1, 4, 3)}).inputs[0].shape == (1, 4, 3)


def test_corrupt_files(tmp_path):
    from edgec.frontends.keras import from_keras
    for name in ("bad.keras", "bad.h5"):
        (tmp_path / name).write_bytes(b"not a model")
        with pytest.raises(ModelError, match="corrupt or not a Keras model"):
            from_keras(tmp_path / name)
    with pytest.raises(ModelError, match="does not exist"):
        from_keras(tmp_path / "missing.keras")
