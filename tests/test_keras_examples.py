"""The trained Keras examples (examples/train_*.py): the compiled edgec model classifies the
held-out split exactly as Keras does, and its probabilities match Keras predict."""
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.keras
EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("model, data, input_name", [("digits_cnn.keras", "digits_test.npz", "image"),
                                                      ("seq_lstm.keras", "seq_test.npz", "sequence")])
def test_compiled_example_accuracy_equals_keras(tmp_path, model, data, input_name):
    keras = pytest.importorskip("keras", reason="Keras/TensorFlow not installed (the keras extra)")
    from edgec import api
    from edgec.runtime import load
    z = np.load(EXAMPLES / data)
    x, y = z[input_name], z["label"]
    expected = keras.saving.load_model(EXAMPLES / model).predict(x, verbose=0)
    art = api.compile(EXAMPLES / model, output=tmp_path / "m.edgec", input_shapes={input_name: x.shape},
                      progress=False)
    actual = load(art).run({input_name: x})[0]
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    keras_acc, edgec_acc = (expected.argmax(1) == y).mean(), (actual.argmax(1) == y).mean()
    print(f"{model}: held-out accuracy Keras {keras_acc:.4f}, edgec {edgec_acc:.4f} on {len(y)}")
    assert keras_acc > 0.95
    assert edgec_acc == keras_acc
