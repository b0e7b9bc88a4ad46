"""Parity beyond one max error: the float64 answer `edgec verify` measures both engines against
(`--tolerance auto`), and per-layer comparison with bisection (`--per-layer`, `--bisect`).
"""
import numpy as np

from .errors import EdgecError


def float64_outputs(model, art, inputs):
    """(outputs of MODEL's graph evaluated in float64 by edgec's numpy interpreter, note): None and the
    reason when it cannot be computed (then only the element rule applies)."""
    from .api import import_model
    from .compiler.interp import interpret
    try:
        graph = import_model(model, {i["name"]: tuple(i["shape"]) for i in art.inputs})
        values = interpret(graph, inputs, float64=True)
        return [values[o] for o in graph.outputs], "float64 evaluation by edgec's interpreter"
    except (EdgecError, KeyError, ValueError, TypeError, NotImplementedError) as e:
        return None, f"no float64 evaluation ({str(e).splitlines()[0][:160]})"


# ---- per layer ---------------------------------------------------------------------------------
def reference_layers(model, inputs):
    """(reference name, {source layer: its first output}) with every intermediate tensor exposed:
    onnxruntime with each node's output added to the graph outputs; Keras with a multi-output model."""
    from .api import model_kind
    if model_kind(model) == "onnx":
        return _onnx_layers(model, inputs)
    return _keras_layers(model, inputs)


def _onnx_layers(path, inputs):
    import onnx
    import onnxruntime as ort
    m = onnx.load(str(path))
    first = {}
    for i, n in enumerate(m.graph.node):  # named as the importer names a node's source
        if n.output and n.output[0]:
            first[n.name or f"{n.op_type}_{i}"] = n.output[0]
    marked = {o.name for o in m.graph.output}
    for out in first.values():
        if out not in marked:
            m.graph.output.append(onnx.ValueInfoProto(name=out))
            marked.add(out)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    values = dict(zip([o.name for o in sess.get_outputs()],
                      sess.run(None, {i.name: inputs[i.name] for i in sess.get_inputs() if i.name in inputs})))
    return f"onnxruntime {ort.__version__}", {layer: values[o] for layer, o in first.items() if o in values}


def _keras_layers(path, inputs):
    import keras
    from .frontends.keras.files import read
    from .frontends.keras.reference import _input_names
    model = keras.saving.load_model(str(path), compile=False)
    names, outs = [], []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            out = layer.output  # a shared layer has several: it is skipped
        except (AttributeError, ValueError):
            continue
        names.append(layer.name)
        outs.append(out[0] if isinstance(out, (list, tuple)) else out)
    args = [inputs[n] for n in _input_names(read(path)[0])]
    got = keras.Model(model.inputs, outs).predict(args[0] if len(args) == 1 else args, verbose=0)
    return f"Keras {keras.__version__} predict", dict(zip(names, got if isinstance(got, (list, tuple)) else [got]))


def arranged_like(x, ref):
    """X laid out as REF (same values in another layout: NCHW vs NHWC, flattened), or None."""
    x = np.asarray(x)
    if x.shape == ref.shape:
        return x
    if x.size != ref.size:
        return None
    import itertools
    fits = [x.transpose(p) for p in itertools.permutations(range(x.ndim))
            if tuple(x.shape[i] for i in p) == ref.shape] if x.ndim <= 6 else []
    if not fits:
        return x.reshape(ref.shape)
    return min(fits, key=lambda y: float(np.abs(y.astype(np.float64) - ref).max()))  # equal dims: the closest


class LayerReport:
    """Per source layer: the comparison (runtime.compare.OutputReport), its kernel and fused IR nodes,
    the layers feeding it, and the error amplification from them."""

    def __init__(self, reference, rows, rtol, atol):
        self.reference, self.rows, self.rtol, self.atol = reference, rows, rtol, atol

    @property
    def passed(self):
        return all(r["report"].passed for r in self.rows)

    def first_divergence(self):
        """The first layer (reference order) that leaves the tolerance while the layers feeding it
        are within it, or None."""
        status = {r["layer"]: r["report"].passed for r in self.rows}
        for r in self.rows:
            if not r["report"].passed and all(status.get(i, True) for i in r["inputs"]):
                return r
        return None

    def to_json(self):
        return {"reference": self.reference, "passed": self.passed, "rtol": self.rtol, "atol": self.atol,
                "layers": [dict({k: v for k, v in r.items() if k != "report"}, **r["report"].to_json())
                           for r in self.rows],
                "first_divergence": (self.first_divergence() or {}).get("layer")}


def per_layer(model, artifact, inputs=None, rtol=1e-4, atol=1e-5, seed=0, tolerance="auto", load=None):
    """Compare every source layer of MODEL: a debug build of ARTIFACT's model (same target and input
    shapes) returns every kernel's output; the reference runs with every intermediate exposed; each
    layer's tensors are compared as `verify` compares outputs (auto: against the float64 evaluation of
    the imported graph). LOAD(path) loads the debug build (default: here). Returns a LayerReport."""
    import tempfile
    from . import targets
    from .api import import_model
    from .compiler.build import compile_graph
    from .compiler.interp import interpret
    from .runtime import compare, load as load_here, random_inputs
    from .runtime.artifact import read_manifest
    manifest = read_manifest(str(artifact))
    shapes = {i["name"]: tuple(i["shape"]) for i in manifest["inputs"]}
    graph = import_model(model, shapes)
    inputs = random_inputs(manifest["inputs"], seed) if inputs is None else inputs
    with tempfile.TemporaryDirectory(prefix="edgec-debug-") as tmp:
        debug = compile_graph(graph.copy(), targets.get(manifest["target"]["name"]), f"{tmp}/debug.edgec",
                              progress=False, debug=True)
        _with_params_of(str(artifact), f"{tmp}/debug.edgec", tmp)
        art = (load or load_here)(f"{tmp}/debug.edgec")
        ours = dict(zip([o["name"] for o in art.outputs], art.run(inputs)))
    ref_name, ref = reference_layers(model, inputs)
    truth = interpret(graph, inputs, keep=True, float64=True) if tolerance == "auto" else {}
    last_value, feeds = {}, {}
    producer = {o: n for n in graph.nodes for o in n.outputs}
    for n in graph.nodes:
        for s in n.source:
            last_value[s] = n.outputs[0]
            feeds.setdefault(s, [])
            for i in n.inputs:
                for p in (producer[i].source if i in producer else []):
                    if p != s and p not in feeds[s]:
                        feeds[s].append(p)
    by_layer = {}  # layer -> the kernels that end with it (e.g. a fused conv+pool, then a layout transpose)
    for k in debug["kernels"]:
        if k["sources"] and k["outputs"][0] in ours:
            by_layer.setdefault(k["sources"][-1], []).append(k)
    compared = {layer for layer in ref if layer in by_layer}

    def upstream(layer, seen=()):
        """The nearest compared layers feeding LAYER (through layers fused away)."""
        out = []
        for p in feeds.get(layer, []):
            for q in ([p] if p in compared else [] if p in seen else upstream(p, (*seen, layer))):
                if q not in out:
                    out.append(q)
        return out
    rows, err = [], {}
    for layer, expected in ref.items():
        ks = by_layer.get(layer)
        if ks is None or not np.issubdtype(np.asarray(expected).dtype, np.floating):
            continue  # fused into a later kernel (no tensor of its own), or not a float tensor
        expected = np.asarray(expected)
        actual = arranged_like(ours[ks[-1]["outputs"][0]], expected)
        if actual is None:
            continue
        t = arranged_like(truth[last_value[layer]], expected) if layer in last_value and truth else None
        report = compare.compare(layer, actual, expected, rtol, atol, truth=t)
        scale = float(np.abs(expected).max()) or 1.0
        err[layer] = report.max_abs / scale
        inputs = upstream(layer)
        before = [err[i] for i in inputs if i in err]
        rows.append({"layer": layer, "kernel": ", ".join(k["name"] for k in ks),
                     "nodes": [n for k in ks for n in k["nodes"]],
                     "layers": list(dict.fromkeys(s for k in ks for s in k["sources"])),
                     "inputs": inputs, "scaled_error": err[layer],
                     "amplification": err[layer] / max(before) if before and max(before) > 0 else None,
                     "report": report})
    return LayerReport(ref_name, rows, rtol, atol)


def _with_params_of(artifact, debug, tmp):
    """Give the debug build ARTIFACT's own weights (so it computes what the artifact computes)."""
    import os
    from .runtime import artifact as fmt
    os.makedirs(f"{tmp}/d"), os.makedirs(f"{tmp}/a")
    mine = fmt.extract(debug, f"{tmp}/d")
    theirs = fmt.extract(artifact, f"{tmp}/a")
    if mine["params"] != theirs["params"]:
        raise EdgecError(f"artifact '{artifact}' has other weights than a build of this model here "
                         "(another model, or other passes): its layers cannot be compared")
    fmt.write(debug, {fmt.LIBRARY: f"{tmp}/d/{fmt.LIBRARY}", fmt.PARAMS: f"{tmp}/a/{fmt.PARAMS}"},
              {k: v for k, v in mine.items() if k not in ("files", "format")})
