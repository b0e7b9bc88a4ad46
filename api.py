"""The Python API the CLI mirrors: import_model, compile, verify."""
import os
import time
from pathlib import Path

import numpy as np

from .errors import EdgecError, ModelError


def model_kind(model):
    if not isinstance(model, (str, os.PathLike)):
        return "keras-live"
    suffix = Path(model).suffix.lower()
    kinds = {".onnx": "onnx", ".keras": "keras", ".h5": "keras", ".hdf5": "keras"}
    if suffix not in kinds:
        raise ModelError(f"'{model}': unknown model format '{suffix}' (edgec reads .onnx, .keras, .h5)")
    if not os.path.isfile(model):
        raise ModelError(f"model file '{model}' does not exist")
    return kinds[suffix]


def import_model(model, input_shapes=None, name=None):
    """Import an ONNX file, a Keras file or a live keras.Model into an edgec Graph."""
    kind = model_kind(model)
    if kind == "onnx":
        from .frontends.onnx import from_onnx
        return from_onnx(model, input_shapes=input_shapes, name=name)
    from .frontends.keras import from_keras
    return from_keras(model, input_shapes=input_shapes, name=name)


def compile(model, target="host", output=None, input_shapes=None, disable_passes=(), progress=True, tune_db=None):
    """Compile MODEL for TARGET into an `.edgec` artifact; return its path."""
    from . import targets
    from .compiler.build import compile_graph
    preset = targets.get(target)
    graph = import_model(model, input_shapes)
    if output is None:
        stem = Path(model).stem if isinstance(model, (str, os.PathLike)) else graph.name
        output = f"{stem}.edgec"
    info = {"source": os.path.basename(str(model)) if isinstance(model, (str, os.PathLike)) else "keras.Model"}
    if isinstance(model, (str, os.PathLike)):
        from .runtime.artifact import sha256_file
        info["sha256"] = sha256_file(model)
    compile_graph(graph, preset, output, disable_passes=disable_passes, model_info=info, progress=progress,
                  tune_db=tune_db)
    return str(output)


def tune(model, target="host", trials=64, db=None, input_shapes=None, cost_model="xgb", progress=True):
    """MetaSchedule-tune MODEL's conv/dense kernels for TARGET into database DB (see targets.tune)."""
    from . import targets
    from .compiler.build import lowered_kernels
    from .targets.tune import tune as tune_kernels
    preset = targets.get(target)
    graph = import_model(model, input_shapes)
    db = db or f"{Path(str(model)).stem}.tunedb"
    return tune_kernels(graph.name, lowered_kernels(graph, preset), preset, db, trials, cost_model, progress)


def reference_outputs(model, inputs, reference=None):
    """Run the independent reference for MODEL (or its ONNX export REFERENCE): (reference name, outputs)."""
    if reference is not None:
        if model_kind(reference) != "onnx":
            raise EdgecError(f"reference '{reference}' must be an ONNX export (.onnx)")
        model = reference
    kind = model_kind(model)
    if kind == "onnx":
        import onnxruntime as ort
        try:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"onnxruntime cannot load '{model}': {str(e).splitlines()[0]}") from None
        feed = {i.name: inputs[i.name] for i in sess.get_inputs() if i.name in inputs}
        if reference is not None and len(feed) < len(inputs) == len(sess.get_inputs()):
            feed = {i.name: v for i, v in zip(sess.get_inputs(), inputs.values())}  # an export renames inputs
        where = f" on {os.path.basename(str(reference))}" if reference is not None else ""
        return f"onnxruntime {ort.__version__}{where}", sess.run(None, feed)
    from .frontends.keras.reference import keras_predict
    return keras_predict(model, inputs)


def load_inputs(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise EdgecError(f"cannot read inputs '{path}': {e}") from None


def verify(model, artifact_path, inputs=None, rtol=1e-4, atol=1e-5, seed=0, reference=None):
    """Run the reference and the artifact on the same inputs; return a VerifyResult."""
    from .runtime import compare, load, random_inputs
    art = load(artifact_path)
    if inputs is None:
        inputs = random_inputs(art.inputs, seed)
    t0 = time.perf_counter()
    ref_name, expected = reference_outputs(model, inputs, reference)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    actual = art.run(inputs)
    t_run = time.perf_counter() - t0
    if len(expected) != len(actual):
        raise EdgecError(f"'{model}' has {len(expected)} outputs, artifact '{artifact_path}' has {len(actual)}")
    reports = [compare.compare(spec["name"], a, e, rtol, atol)
               for spec, a, e in zip(art.outputs, actual, expected)]
    return VerifyResult(ref_name, reports, rtol, atol, t_ref, t_run)


class VerifyResult:
    def __init__(self, reference, reports, rtol, atol, ref_seconds, run_seconds):
        self.reference, self.reports, self.rtol, self.atol = reference, reports, rtol, atol
        self.ref_seconds, self.run_seconds = ref_seconds, run_seconds

    @property
    def passed(self):
        return all(r.passed for r in self.reports)

    def __bool__(self):
        return self.passed
