"""The real-world corpus: build models the way users get them, compile each for the host, verify it
and write a table.

    python tests/corpus/generate.py --out /tmp/corpus [--only NAME ...] [--table tests/corpus/README.md]

Models: keras.applications (weights=None, seeded) as .keras, .h5 and a tf2onnx export (opset 17),
torchvision classifiers, a small U-Net / FCN head and recurrent nets exported by torch.onnx
(opset 17 and 18), Keras recurrent models through tf2onnx (the Loop form). Each compiled model is
checked against its independent reference (Keras predict, onnxruntime) at rtol 1e-4 / atol 1e-5;
the table records pass/fail, the largest errors, the reference-vs-reference difference (Keras
against onnxruntime on the same export: the float32 noise floor), compile time, kernels and the
latency ratio edgec / onnxruntime (1 thread each is not forced: both use the machine).

Torch is exported in a subprocess by `$EDGEC_TORCH_PYTHON` (default: this Python) so it can live
in its own environment. A failure is recorded with its one-line reason, never a traceback.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RTOL, ATOL = 1e-4, 1e-5
HERE = Path(__file__).resolve().parent

KERAS_APPS = ["MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0",
              "EfficientNetV2B0", "ResNet50", "ResNet50V2", "DenseNet121", "InceptionV3", "Xception",
              "NASNetMobile", "ConvNeXtTiny", "RegNetX002", "RegNetY002", "VGG16"]
TORCHVISION = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
               "shufflenet_v2_x1_0", "squeezenet1_1", "regnet_x_400mf", "convnext_tiny", "mnasnet1_0"]
TORCH_EXTRA = ["unet", "fcn_head", "lstm", "gru"]
KERAS_RNN = ["keras_gru", "keras_bigru", "keras_simplernn", "keras_lstm"]
# the sample the default test suite runs (cheap and covering new ops)
SAMPLE = ["fcn_head@17", "keras_simplernn"]


# run first (a partial run still covers every family)
FIRST = [("MobileNetV3Large", "keras"), ("keras_gru", "onnx"), ("fcn_head@17", "onnx"), ("unet@17", "onnx"),
         ("resnet18@17", "onnx"), ("EfficientNetB0", "keras"), ("lstm@17", "onnx"), ("gru@18", "onnx"),
         ("keras_bigru", "onnx"), ("keras_simplernn", "onnx"), ("mobilenet_v3_small@18", "onnx"),
         ("ConvNeXtTiny", "keras"), ("convnext_tiny@17", "onnx"), ("MobileNetV3Large", "onnx")]


def entries():
    out = list(FIRST)
    for n in KERAS_APPS:
        out += [(n, fmt) for fmt in ("keras", "h5", "onnx")]
    for opset in (17, 18):
        out += [(f"{n}@{opset}", "onnx") for n in TORCHVISION + TORCH_EXTRA]
    out += [(n, fmt) for n in KERAS_RNN for fmt in ("keras", "onnx")]
    return list(dict.fromkeys(out))


# ---- building ------------------------------------------------------------------------------
def keras_app(name, folder):
    import keras
    keras.utils.set_random_seed(0)
    if not hasattr(keras.applications, name):
        raise RuntimeError(f"keras.applications of Keras {keras.__version__} has no {name}")
    model = getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3), classifier_activation=None)
    return _save_keras(model, name, folder)


def keras_rnn(name, folder):
    import keras
    keras.utils.set_random_seed(0)
    L = keras.layers
    layer = {"keras_gru": lambda: L.GRU(16, return_sequences=True),
             "keras_bigru": lambda: L.Bidirectional(L.GRU(12, return_sequences=True)),
             "keras_simplernn": lambda: L.SimpleRNN(16, return_sequences=True),
             "keras_lstm": lambda: L.LSTM(16, return_sequences=True)}[name]
    model = keras.Sequential([keras.Input((20, 8)), layer(), L.GRU(8) if name == "keras_gru" else L.Flatten(),
                              L.Dense(4)], name=name)
    return _save_keras(model, name, folder)


def _save_keras(model, name, folder):
    paths = {fmt: folder / f"{name}.{fmt}" for fmt in ("keras", "h5")}
    for p in paths.values():
        model.save(p)
    saved = folder / f"{name}_saved_model"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    onnx_path = folder / f"{name}.onnx"
    run = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved), "--opset", "17",
                          "--output", str(onnx_path)], capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError("tf2onnx failed: " + (run.stderr.strip().splitlines() or ["?"])[-1])
    paths["onnx"] = onnx_path
    return paths


TORCH_SCRIPT = r'''
import sys, torch, torchvision
from torch import nn
name, opset, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)

class UNet(nn.Module):  # two levels: conv blocks, max pool, transposed conv up, skip concat
    def __init__(s):
        super().__init__()
        blk = lambda i, o: nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())
        s.d1, s.d2, s.mid = blk(3, 8), blk(8, 16), blk(16, 32)
        s.u2, s.c2 = nn.ConvTranspose2d(32, 16, 2, stride=2), blk(32, 16)
        s.u1, s.c1 = nn.ConvTranspose2d(16, 8, 2, stride=2), blk(16, 8)
        s.out = nn.Conv2d(8, 2, 1)
    def forward(s, x):
        a = s.d1(x); b = s.d2(nn.functional.max_pool2d(a, 2)); m = s.mid(nn.functional.max_pool2d(b, 2))
        b = s.c2(torch.cat([s.u2(m), b], 1)); a = s.c1(torch.cat([s.u1(b), a], 1))
        return s.out(a)

class FCNHead(nn.Module):  # backbone features -> classifier -> bilinear upsample to the input size
    def __init__(s):
        super().__init__()
        s.body = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                               nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                               nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=4), nn.Hardswish())
        s.head = nn.Sequential(nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 5, 1))
        s.up = nn.ConvTranspose2d(5, 5, 4, stride=2, padding=1, output_padding=0, groups=5)
    def forward(s, x):
        y = s.up(s.head(s.body(x)))
        a = nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        b = nn.functional.interpolate(y, scale_factor=2, mode="nearest")
        return a, nn.functional.interpolate(y, size=(50, 70), mode="bilinear", align_corners=True), b

if name == "unet":
    model, x = UNet(), torch.randn(1, 3, 64, 64)
elif name == "fcn_head":
    model, x = FCNHead(), torch.randn(1, 3, 64, 96)
elif name in ("lstm", "gru"):
    cls = nn.LSTM if name == "lstm" else nn.GRU
    model, x = cls(10, 16, num_layers=2, batch_first=True, bidirectional=True), torch.randn(1, 12, 10)
else:
    model, x = getattr(torchvision.models, name)(weights=None), torch.randn(1, 3, 224, 224)
torch.onnx.export(model.eval(), x, path, opset_version=opset, dynamo=False, input_names=["input"])
'''


def torch_model(name, folder):
    base, opset = name.split("@")
    path = folder / f"{base}_opset{opset}.onnx"
    py = os.environ.get("EDGEC_TORCH_PYTHON", sys.executable)
    run = subprocess.run([py, "-c", TORCH_SCRIPT, base, opset, str(path)], capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError("torch export failed: " + (run.stderr.strip().splitlines() or ["?"])[-1])
    return {"onnx": path}


def build(name, folder):
    if name in KERAS_APPS:
        return keras_app(name, folder)
    if name in KERAS_RNN:
        return keras_rnn(name, folder)
    return torch_model(name, folder)


# ---- checking ------------------------------------------------------------------------------
def _median_time(fn, repeat=5):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def check(name, fmt, path, onnx_path, folder):
    """Compile PATH, verify it, time it: a result row (dict)."""
    import onnxruntime as ort

    from edgec import api
    from edgec.errors import EdgecError
    from edgec.runtime import load, random_inputs
    row = {"model": name, "format": fmt}
    t0 = time.perf_counter()
    art_path = folder / f"{Path(path).stem}_{fmt}.edgec"
    try:
        api.compile(str(path), output=str(art_path), progress=False)
    except EdgecError as e:
        return dict(row, status="unsupported", reason=str(e).splitlines()[0])
    row["compile_s"] = round(time.perf_counter() - t0, 1)
    art = load(str(art_path))
    row["kernels"] = len(art.manifest.get("kernels", []))
    inputs = random_inputs(art.inputs, 0)
    result = api.verify(str(path), str(art_path), inputs=inputs)
    row["max_abs"] = max(r.max_abs for r in result.reports)
    row["max_rel"] = max(r.max_rel for r in result.reports)
    row["status"] = "pass" if result.passed else "mismatch"
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]) if onnx_path else None
    if sess is not None:
        feed = dict(zip([i.name for i in sess.get_inputs()], inputs.values()))
        # random-weight deep nets can have vanishing logits: the errors only mean something next to this
        row["ref_max"] = max(float(np.max(np.abs(o))) for o in sess.run(None, feed))
        if fmt != "onnx":  # the noise floor: the two references on the same input
            ref = api.reference_outputs(str(path), inputs)[1]
            got = sess.run(None, feed)
            row["ref_vs_ort"] = max(float(np.max(np.abs(np.asarray(a, np.float64) - b))) for a, b in zip(ref, got))
        t_edge = _median_time(lambda: art.run(inputs))
        t_ort = _median_time(lambda: sess.run(None, feed))
        row["ms"], row["ratio"] = round(t_edge * 1e3, 2), round(t_edge / t_ort, 2)
    return row


def run_one(name, fmt, folder, cache):
    try:
        if name not in cache:
            cache[name] = build(name, folder)
        paths = cache[name]
        return check(name, fmt, paths[fmt], paths.get("onnx"), folder)
    except Exception as e:  # noqa: BLE001 - recorded, the corpus goes on
        return {"model": name, "format": fmt, "status": "error",
                "reason": f"{type(e).__name__}: {' '.join(str(e).split())[:240]}"}


HEADER = """# The real-world corpus

Generated by `tests/corpus/generate.py` (`--merge` of its result files). Every model is compiled
for the host and verified at rtol 1e-4 / atol 1e-5 against its reference: Keras `predict` for
.keras and .h5, onnxruntime for ONNX. Weights are random (keras.applications `weights=None`,
torchvision `weights=None`, seeded), inputs standard normal, batch 1 (the exports' dynamic batch).

Columns: max abs/rel err of edgec against the reference; max abs output, the largest reference
output (random-weight nets often have vanishing logits: an error only means something next to
it); Keras vs ORT, the difference between Keras and onnxruntime on the tf2onnx export of the same
model and input (the float32 noise floor between two references); compile s, kernels; ms and
ratio, edgec's median latency and edgec / onnxruntime on the same input. Measured on the 2-core
development VM while six other engineers compiled and tested on it: latencies and ratios are
noisy (the recurrent rows' parallel kernels suffer most from busy cores), compile times are
inflated. `not run` rows were not reached in the session's time.

"""


def table(rows):
    lines = ["| model | format | status | max abs err | max rel err | max abs output | Keras vs ORT | compile s | kernels "
             "| ms | ratio | reason |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(k, spec="{:.2g}"):
            return spec.format(r[k]) if k in r else ""
        lines.append(f"| {r['model']} | {r['format']} | {r['status']} | {f('max_abs')} | {f('max_rel')} | {f('ref_max')} | "
                     f"{f('ref_vs_ort')} | {f('compile_s', '{}')} | {f('kernels', '{}')} | {f('ms', '{}')} | "
                     f"{f('ratio', '{}')} | {r.get('reason', '').replace('|', '/')} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for models and artifacts (default: a temp folder)")
    ap.add_argument("--only", nargs="*", help="model names (as in the table) to run")
    ap.add_argument("--results", default=None, help="JSON lines file the rows are appended to")
    ap.add_argument("--table", default=None, help="write the markdown table here")
    ap.add_argument("--merge", nargs="*", help="only write the table from these JSON lines files (later rows win); "
                    "entries without a row are listed as not run")
    args = ap.parse_args(argv)
    if args.merge is not None:
        done = {}
        for path in args.merge:
            for line in Path(path).read_text().splitlines():
                row = json.loads(line)
                done[(row["model"], row["format"])] = row
        rows = [done.get(e, {"model": e[0], "format": e[1], "status": "not run"}) for e in entries()]
        Path(args.table).write_text(HEADER + table(rows) + "\n")
        return rows
    folder = Path(args.out or tempfile.mkdtemp(prefix="edgec-corpus-"))
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(n, f) for n, f in entries() if not args.only or n in args.only]
    rows, cache = [], {}
    for name, fmt in todo:
        row = run_one(name, fmt, folder, cache)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.results:
            with open(args.results, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        if args.table:
            Path(args.table).write_text(HEADER + table(rows) + "\n")
    return rows


if __name__ == "__main__":
    main()
