"""The Python API the CLI mirrors: import_model, compile, verify."""
import os
import sys
import time
from pathlib import Path

import numpy as np

from .errors import EdgecError, InputError, ModelError, TargetError


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


def compile(model, target="host", output=None, input_shapes=None, disable_passes=(), progress=True, tune_db=None,
            sign=None, quantize=None, calibration=None, method="minmax", per_channel=False, reduce_range="auto"):
    """Compile MODEL for TARGET into an `.edgec` artifact; return its path. SIGN: an ed25519 private
    key file (`edgec keygen`) to sign the artifact with. QUANTIZE="int8": quantize MODEL first with
    CALIBRATION data (.npz) into `<output stem>.int8.onnx` (kept: verify against it)."""
    if quantize is not None:
        if quantize != "int8" or calibration is None:
            raise EdgecError(f"--quantize {quantize}: only int8 is supported, and it needs --calibration DATA.npz")
        stem = Path(output).with_suffix("") if output else Path(str(model)).with_suffix("")
        from .quantize import quantize as quantize_model
        report = quantize_model(model, calibration, f"{stem}.int8.onnx", method, per_channel, reduce_range, target)
        for line in report.lines():
            print(f"edgec: quantize: {line}", file=sys.stderr)
        output = output or f"{Path(str(model)).stem}.edgec"
        model = report.output
    from . import targets
    from .compiler.build import compile_graph
    preset = targets.get(target)
    missing = preset.missing_tools()
    if missing:  # before the compile, not after it
        raise TargetError(f"target '{preset.name}' needs {', '.join(missing)} on this machine (see `edgec targets`)")
    if sign is not None:  # a bad key fails before the compile, not after it
        from .runtime.signing import load_private_key
        load_private_key(sign)
    graph = import_model(model, input_shapes)
    if output is None:
        stem = Path(model).stem if isinstance(model, (str, os.PathLike)) else graph.name
        output = f"{stem}.edgec"
    if not Path(output).resolve().parent.is_dir():  # (before the compile, not after it)
        raise EdgecError(f"cannot write the artifact {output}: the folder {Path(output).parent} does not exist")
    info = {"source": os.path.basename(str(model)) if isinstance(model, (str, os.PathLike)) else "keras.Model"}
    if isinstance(model, (str, os.PathLike)):
        from .runtime.artifact import sha256_file
        info["sha256"] = sha256_file(model)
    compile_graph(graph, preset, output, disable_passes=disable_passes, model_info=info, progress=progress,
                  tune_db=tune_db, sign_key=sign)
    return str(output)


def tune(model, target="host", trials=64, db=None, input_shapes=None, cost_model="xgb", progress=True,
         build_timeout=30.0, farm=None):
    """MetaSchedule-tune MODEL's conv/dense kernels for TARGET into database DB (see targets.tune),
    measuring here or on FARM (runtime.remote.Farm: devices of one key behind a TVM RPC tracker)."""
    from . import targets
    from .compiler.build import lowered_kernels
    from .targets.tune import tune as tune_kernels
    preset = targets.get(target)
    graph = import_model(model, input_shapes)
    db = db or f"{Path(str(model)).stem}.tunedb"
    return tune_kernels(graph.name, lowered_kernels(graph, preset), preset, db, trials, cost_model, progress,
                        build_timeout=build_timeout, farm=farm)


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
            import onnx

            from .quantize import is_qdq, qdq_form
            proto = onnx.load(str(model))  # read once for both looks
            qdq, rewritten = is_qdq(proto), qdq_form(proto)
            if qdq or rewritten:  # the QDQ graph as written: onnxruntime's fused U8S8 kernels saturate on AVX2
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sess = ort.InferenceSession(rewritten.SerializeToString() if rewritten else str(model), opts,
                                        providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"onnxruntime cannot load '{model}': {str(e).splitlines()[0]}") from None
        feed = {i.name: inputs[i.name] for i in sess.get_inputs() if i.name in inputs}
        if reference is not None and len(feed) < len(inputs) == len(sess.get_inputs()):
            feed = {i.name: v for i, v in zip(sess.get_inputs(), inputs.values())}  # an export renames inputs
        missing = [i.name for i in sess.get_inputs() if i.name not in feed]
        if missing:
            raise InputError(f"'{model}' has input(s) {missing} that the inputs do not give (they give "
                             f"{sorted(inputs)}): is it the model this artifact was compiled from?")
        where = f" on {os.path.basename(str(reference))}" if reference is not None else ""
        try:
            how = (" (QLinear ops as QDQ / integer matmuls in int32 / dynamic LSTMs as float, as written)"
                   if rewritten else " (QDQ as written)" if qdq else "")
            return f"onnxruntime {ort.__version__}{where}{how}", sess.run(None, feed)
        except Exception as e:  # noqa: BLE001 - onnxruntime refuses the inputs or the model
            raise ModelError(f"onnxruntime cannot run '{model}' on these inputs: "
                             f"{' '.join(str(e).split())[:300]}") from None
    from .frontends.keras.reference import keras_predict
    return keras_predict(model, inputs)


def load_inputs(path, specs=None):
    """Inputs from an .npz (named arrays) or an .npy (one array). SPECS (the model's input specs, or
    an artifact path) names the input of an .npy; with it, arrays of an .npz that are not inputs
    (labels next to a test split) are left out, with a note, when every input is there."""
    try:
        z = np.load(path, allow_pickle=False)
        if isinstance(z, np.ndarray):
            return {_input_names(path, specs, single=True)[0]: z}
        with z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"cannot read inputs '{path}': {' '.join(str(e).split())[:200]}") from None
    names = _input_names(path, specs) if specs is not None else list(arrays)
    extra = sorted(set(arrays) - set(names))
    if extra and set(names) <= set(arrays):
        import warnings
        from .errors import EdgecWarning
        warnings.warn(f"'{path}': using {', '.join(names)}; {', '.join(extra)} "
                      f"{'is' if len(extra) == 1 else 'are'} not an input of the model", EdgecWarning, stacklevel=2)
        arrays = {k: arrays[k] for k in names}
    return arrays


def _input_names(path, specs, single=False):
    if isinstance(specs, (str, os.PathLike)):
        from .runtime.artifact import read_manifest
        specs = read_manifest(specs)["inputs"]
    names = [s["name"] for s in specs or []]
    if not single:
        return names
    if len(names) != 1:
        raise InputError(f"'{path}' holds one array; the model has {len(names)} inputs ({', '.join(names)}): "
                         "give an .npz with one array per input name")
    return names


def save_outputs(path, names, arrays):
    """Write ARRAYS to PATH: an existing folder (or a path ending in /) gets NAME.npy per output,
    else one .npz (the suffix added if missing). Returns the paths written."""
    if os.path.isdir(path) or path.endswith(os.sep):
        os.makedirs(path, exist_ok=True)
        written = []
        for name, a in zip(names, arrays):
            safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "output"
            written.append(os.path.join(path, f"{safe}.npy"))
            np.save(written[-1], a)
        return written
    path = path if path.endswith(".npz") else path + ".npz"
    np.savez(path, **dict(zip(names, arrays)))
    return [path]


def verify(model, artifact_path, inputs=None, rtol=1e-4, atol=1e-5, seed=0, reference=None, tolerance="auto"):
    """Run the reference and the artifact on the same inputs; return a VerifyResult. ARTIFACT_PATH may
    be a loaded model (e.g. runtime.remote's, on a device). TOLERANCE "auto": an output also passes when
    its error against the float64 evaluation is within a small factor of the reference's own
    (runtime/compare.py); "element": only |a - e| <= atol + rtol * |e|."""
    from .runtime import compare, load, random_inputs
    if tolerance not in ("auto", "element"):
        raise EdgecError(f"--tolerance must be auto or element, got '{tolerance}'")
    art = artifact_path if hasattr(artifact_path, "prepare") else load(artifact_path)
    artifact_path = getattr(art, "path", artifact_path)
    if inputs is None:
        inputs = random_inputs(art.inputs, seed)
    art.prepare(inputs)  # the inputs must fit the artifact before the reference runs on them
    t0 = time.perf_counter()
    ref_name, expected = reference_outputs(model, inputs, reference)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    actual = art.run(inputs)
    t_run = time.perf_counter() - t0
    if len(expected) != len(actual):
        raise ModelError(f"'{model}' has {len(expected)} outputs, artifact '{artifact_path}' has {len(actual)}: "
                         "is it the model the artifact was compiled from?")
    for spec, e in zip(art.outputs, expected):
        if tuple(np.shape(e)) != tuple(spec["shape"]):
            raise ModelError(f"output '{spec['name']}': artifact '{artifact_path}' gives shape {list(spec['shape'])}, "
                             f"the reference {list(np.shape(e))}: is '{model}' the model it was compiled from?")
    steps = _quantization_steps(reference or model)
    truth, truth_note = None, "tolerance element"
    if tolerance == "auto":
        from .parity import float64_outputs
        # the graph the reference ran: an auto pass must mean "as close as the reference is to its truth"
        truth, truth_note = float64_outputs(reference or model, art, inputs)
    reports = [compare.compare(spec["name"], a, e, rtol, atol, steps.get(spec["name"], 0.0),
                               truth=truth[i] if truth else None)
               for i, (spec, a, e) in enumerate(zip(art.outputs, actual, expected))]
    return VerifyResult(ref_name, reports, rtol, atol, t_ref, t_run, tolerance, truth_note)


def _quantization_steps(model):
    """{output: quantization step} of a quantized ONNX model's outputs (an int8 artifact then also
    passes within one step of the reference, and reports its error in steps)."""
    if not isinstance(model, (str, os.PathLike)) or model_kind(model) != "onnx":
        return {}
    from .quantize import output_steps
    return output_steps(model)


def quantize(model, calibration, output=None, method="minmax", per_channel=False, reduce_range="auto", target="host"):
    """Quantize MODEL to int8 QDQ ONNX with calibration data (.npz) for TARGET (see
    quantize.auto_reduce_range); return a quantize.Report."""
    from .quantize import quantize as quantize_model
    return quantize_model(model, calibration, output, method, per_channel, reduce_range, target)


class VerifyResult:
    def __init__(self, reference, reports, rtol, atol, ref_seconds, run_seconds, tolerance="element",
                 truth="tolerance element"):
        self.reference, self.reports, self.rtol, self.atol = reference, reports, rtol, atol
        self.ref_seconds, self.run_seconds = ref_seconds, run_seconds
        self.tolerance, self.truth = tolerance, truth  # the rule asked for; where the float64 answer came from

    def to_json(self):
        from .runtime.compare import AUTO_FACTOR
        return {"reference": self.reference, "passed": self.passed, "rtol": self.rtol, "atol": self.atol,
                "tolerance": self.tolerance, "auto_factor": AUTO_FACTOR, "float64": self.truth,
                "outputs": [r.to_json() for r in self.reports]}

    @property
    def passed(self):
        return all(r.passed for r in self.reports)

    def __bool__(self):
        return self.passed
