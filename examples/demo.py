"""`make demo`: compile, run, verify and profile the example models shipped in examples/.

For each example: compile for the host, verify against the independent reference (onnxruntime
for .onnx, Keras `predict` for .keras when Keras is installed), measure run latency, check the
held-out accuracy of the digits classifier, and print the per-layer profile.
"""
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # Keras is only the verify reference here: keep it quiet
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import edgec  # noqa: E402
from edgec import cli  # noqa: E402
from edgec.errors import EdgecError  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "out")


def banner(text):
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)))


def demo(model_file, test_split=None, input_shapes=None):
    path = os.path.join(HERE, model_file)
    if not os.path.exists(path):
        print(f"(skipping {model_file}: not in examples/)")
        return True
    banner(f"{model_file}")
    os.makedirs(OUT, exist_ok=True)
    art_path = os.path.join(OUT, os.path.splitext(model_file)[0] + ".edgec")
    t0 = time.perf_counter()
    edgec.compile(path, target="host", output=art_path, input_shapes=input_shapes, progress=False)
    print(f"compile: {time.perf_counter() - t0:.2f} s -> {os.path.relpath(art_path)}")

    try:
        res = edgec.verify(path, art_path)
    except EdgecError as e:
        print(f"verify: skipped ({e})")
        res = None
    if res is not None:
        for r in res.reports:
            print(f"verify vs {res.reference}: {r.name} max abs err {r.max_abs:.2e}, max rel err {r.max_rel:.2e} "
                  f"-> {'PASS' if r.passed else 'FAIL'}")

    model = edgec.load(art_path)
    args = model.prepare(model.random_inputs(0))
    for _ in range(3):
        model.invoke(args)
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        model.outputs_to_numpy(model.invoke(args))
        times.append(time.perf_counter() - t0)
    print(f"run latency: median {np.median(times) * 1e3:.3f} ms (50 runs, batch 1)")

    if test_split:
        split = np.load(os.path.join(HERE, test_split))
        spec = model.inputs[0]
        x, y = split[spec["name"]], split["label"]
        batch = spec["shape"][0]
        correct = 0
        for i in range(0, len(x) - len(x) % batch, batch):
            (probs,) = model.run(x[i:i + batch].astype(spec["dtype"]))
            correct += int((probs.argmax(-1) == y[i:i + batch]).sum())
        print(f"held-out accuracy of the compiled model: {correct / (len(x) - len(x) % batch):.4f}")

    print("per-layer profile (edgec profile):")
    cli.main(["profile", art_path, "--repeat", "20", "--top", "8"])
    return res is None or res.passed


def main():
    ok = True
    ok &= demo("digits_cnn.onnx", "digits_test.npz", {"image": (1, 8, 8, 1)})
    ok &= demo("digits_cnn.keras", "digits_test.npz")
    print("\ndemo finished: " + ("all verifications passed" if ok else "VERIFICATION FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
