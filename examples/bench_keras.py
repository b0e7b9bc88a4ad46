"""Latency of the trained Keras examples: edgec vs Keras (predict and a direct call) vs
onnxruntime on a tf2onnx export (SavedModel route, opset 17). Batch 1, median of N runs.

    .venv/bin/python examples/bench_keras.py [--repeat 200] [--threads 2]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
EXAMPLES = [("digits_cnn.keras", "digits_test.npz", "image"), ("seq_lstm.keras", "seq_test.npz", "sequence")]


def median_ms(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def export_onnx(model, path, tmp):
    saved = os.path.join(tmp, "saved")
    model.export(saved, format="tf_saved_model", verbose=False)
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved, "--opset", "17",
                    "--output", str(path)], check=True, capture_output=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args(argv)
    import keras
    import onnxruntime as ort
    from edgec import api
    from edgec.runtime import load
    print("| model | edgec ms | Keras predict ms | Keras call ms | ORT (tf2onnx) ms "
          "| max abs diff vs Keras (edgec / ORT) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model_file, data, name in EXAMPLES:
            x = np.load(HERE / data)[name][:1]
            model = keras.saving.load_model(HERE / model_file)
            ref = model.predict(x, verbose=0)
            onnx_path = Path(tmp) / (Path(model_file).stem + ".onnx")
            export_onnx(model, onnx_path, tmp)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = a.threads
            sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
            feed = {sess.get_inputs()[0].name: x}
            art = load(api.compile(HERE / model_file, output=Path(tmp) / "m.edgec", progress=False))
            args = art.prepare({name: x})
            ours = art.run({name: x})[0]
            theirs = sess.run(None, feed)[0]
            row = [median_ms(lambda: art.invoke(args), a.repeat),
                   median_ms(lambda: model.predict(x, verbose=0), max(a.repeat // 10, 5)),
                   median_ms(lambda: model(x, training=False), a.repeat),
                   median_ms(lambda: sess.run(None, feed), a.repeat)]
            diffs = f"{np.abs(ours - ref).max():.1e} / {np.abs(theirs - ref).max():.1e}"
            print(f"| {model_file} | " + " | ".join(f"{v:.3f}" for v in row) + f" | {diffs} |", flush=True)


if __name__ == "__main__":
    main()
