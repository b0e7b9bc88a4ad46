"""Export a Keras example to ONNX (tf2onnx, saved-model route; see the TVM notes: tf2onnx's
from_keras fails on Sequential models). Usage: python examples/export_onnx.py digits_cnn"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def export(name, opset=17):
    import keras
    model = keras.models.load_model(os.path.join(HERE, f"{name}.keras"))
    with tempfile.TemporaryDirectory() as tmp:
        model.export(os.path.join(tmp, "sm"), format="tf_saved_model")
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", os.path.join(tmp, "sm"),
                        "--opset", str(opset), "--output", os.path.join(HERE, f"{name}.onnx")], check=True)


if __name__ == "__main__":
    for n in sys.argv[1:] or ["digits_cnn"]:
        export(n)
