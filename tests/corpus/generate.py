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
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RTOL, ATOL = 1e-4, 1e-5
# tf2onnx's address space, so that a model too big for it (VGG16) fails its row instead of
# drawing the kernel's OOM killer onto the corpus run (and the machine's other processes)
TF2ONNX_MEMORY_GB = float(os.environ.get("EDGEC_CORPUS_TF2ONNX_GB", "12"))
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
    """{format: path}; a failed tf2onnx export is its exception under "onnx" (the .keras and .h5
    rows still run)."""
    paths = {fmt: folder / f"{name}.{fmt}" for fmt in ("keras", "h5")}
    for p in paths.values():
        model.save(p)
    saved = folder / f"{name}_saved_model"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    onnx_path = folder / f"{name}.onnx"
    limit = int(TF2ONNX_MEMORY_GB * 2**30)
    run = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved), "--opset", "17",
                          "--output", str(onnx_path)], capture_output=True, text=True,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    paths["onnx"] = RuntimeError(f"tf2onnx failed ({_failure(run, TF2ONNX_MEMORY_GB)})") if run.returncode else onnx_path
    return paths


def _failure(run, memory_gb=None):
    """The reason a subprocess failed: its exception line (not the last log line), or its signal."""
    if run.returncode < 0:
        return f"killed by signal {-run.returncode}"
    lines = [ln.strip() for ln in run.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.split(":")[0].endswith(("Error", "Exception", "Exit"))]
    reason = (errors or lines or ["no message"])[-1]
    if memory_gb and ("MemoryError" in reason or "bad_alloc" in reason):
        reason += f"; address space limited to {memory_gb:g} GiB (EDGEC_CORPUS_TF2ONNX_GB)"
    return reason


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
        raise RuntimeError(f"torch export failed ({_failure(run)})")
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
    keras_loads = True
    try:
        result = api.verify(str(path), str(art_path), inputs=inputs)
    except EdgecError as e:
        if fmt == "onnx" or onnx_path is None:
            raise
        # Keras cannot load the file it wrote (MobileNetV3's .h5): the other independent reference,
        # onnxruntime on the tf2onnx export of the same model
        keras_error = " ".join(str(e).split())[:300]
        try:
            result = api.verify(str(path), str(art_path), inputs=inputs, reference=str(onnx_path))
        except EdgecError as e2:
            raise EdgecError(f"{keras_error}; nor is the ONNX export a reference: {str(e2)[:200]}") from None
        row["reason"] = f"verified against onnxruntime on the tf2onnx export: {keras_error}"
        keras_loads = False
    row["max_abs"] = max(r.max_abs for r in result.reports)
    row["max_rel"] = max(r.max_rel for r in result.reports)
    row["status"] = "pass" if result.passed else "mismatch"
    try:
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]) if onnx_path else None
    except Exception:  # noqa: BLE001 - an export onnxruntime refuses (ConvNeXt's): no comparison with it
        sess = None
    if sess is not None:
        feed = dict(zip([i.name for i in sess.get_inputs()], inputs.values()))
        # random-weight deep nets can have vanishing logits: the errors only mean something next to this
        row["ref_max"] = max(float(np.max(np.abs(o))) for o in sess.run(None, feed))
        if fmt != "onnx" and keras_loads:  # the noise floor: the two references on the same input
            ref = api.reference_outputs(str(path), inputs)[1]
            got = sess.run(None, feed)
            row["ref_vs_ort"] = max(float(np.max(np.abs(np.asarray(a, np.float64) - b))) for a, b in zip(ref, got))
    t_edge = _median_time(lambda: art.run(inputs))
    row["ms"] = round(t_edge * 1e3, 2)
    if sess is not None:
        row["ratio"] = round(t_edge / _median_time(lambda: sess.run(None, feed)), 2)
    return row


def run_one(name, fmt, folder, cache):
    try:
        if name not in cache:  # built once, also when it fails
            try:
                cache[name] = build(name, folder)
            except Exception as e:  # noqa: BLE001
                cache[name] = e
        paths = cache[name]
        if isinstance(paths, Exception):
            raise paths
        if isinstance(paths[fmt], Exception):
            raise paths[fmt]
        onnx_path = paths.get("onnx")
        return check(name, fmt, paths[fmt], None if isinstance(onnx_path, Exception) else onnx_path, folder)
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


NOTES = """
## The models that do not compile or verify, and why

- **ConvNeXtTiny, ONNX**: no clean tf2onnx export exists with Keras 3.15 (TensorFlow backend) and
  tf2onnx 1.17. Keras computes a grouped convolution (ConvNeXt's depthwise convs are
  `Conv2D(groups=C)`) inside a `tf.function(jit_compile=True)` (`_conv_xla` in
  `keras/src/backend/tensorflow/nn.py`: "grouped convolutions are broken on CPU without XLA");
  TensorFlow's graph optimizer does not inline an XLA-compiled function, so each of the 18 stays a
  `StatefulPartitionedCall`, and the exact GELU becomes TensorFlow's `Erfc`, for which tf2onnx has
  no converter (18 more). Tried: the SavedModel route (`tf2onnx.convert --saved-model`, opset 17,
  the row) and `tf2onnx.convert.from_function` on a concrete function of the model (the call
  Keras' own `model.export(format="onnx")` makes): both leave the same 18 + 18 ops, and
  onnxruntime refuses the file (INVALID_GRAPH). The architecture is covered by torchvision's
  convnext_tiny rows.
- **VGG16, ONNX**: tf2onnx runs out of memory on VGG16's 138M parameters. Unlimited, it grew to
  23 GB resident in its optimizer stage (`optimize_graph` deep-copies the graph, weights included,
  before each optimizer) and the kernel's OOM killer ended it on the 24 GiB development VM (in an
  earlier run it took the corpus process with it, so the rows after VGG16 were never reached);
  capped at 12 GiB of address space (the generator's default), it fails while freezing the
  SavedModel (`std::bad_alloc` in one run, a segmentation fault in the table's). VGG16's .keras
  and .h5 rows compile and verify against Keras.
- **MobileNetV3Small/Large, .h5**: Keras 3.15 cannot load the legacy .h5 it wrote itself: its
  loader stops at the hard sigmoid's `x + 3.0`, a Keras 3 op called with a number (the exact
  error is in the reason column). edgec compiles the file; it is verified against onnxruntime on
  the tf2onnx export of the same model instead.
- **ConvNeXtTiny, .h5**: edgec compiles it (the nested stem Sequential is inlined), but no
  reference can check it: Keras 3.15 cannot load the legacy .h5 it wrote (without ConvNeXt's
  `LayerScale` class: "Unknown layer"; given it, as edgec's Keras reference now does: "too many
  positional arguments"), and onnxruntime refuses the tf2onnx export (above). The same model as
  .keras compiles and verifies against Keras.
- **RegNetX002, RegNetY002**: not in `keras.applications` of Keras 3.15.1 (the RegNet family was
  not ported to Keras 3); torchvision's regnet_x_400mf rows cover the architecture.
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
        Path(args.table).write_text(HEADER + table(rows) + "\n" + NOTES)
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
            Path(args.table).write_text(HEADER + table(rows) + "\n" + NOTES)
    return rows


if __name__ == "__main__":
    main()
