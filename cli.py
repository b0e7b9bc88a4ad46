"""The `edgec` command line: compile, run, verify, inspect, targets (and more, one table).

Exit codes: 0 success; 1 numerical mismatch (verify); 2 user error (edgec's own errors: one line
`edgec: error: ...`); 3 internal error (a bug in edgec: one line naming a report file that holds
the traceback). `--json` prints strict JSON (NaN and infinities as strings).
"""
import argparse
import json
import math
import os
import sys
import time
import warnings

import numpy as np

from .errors import EdgecError, EdgecWarning


def _shapes(items):
    out = {}
    for item in items or []:
        name, _, dims = item.rpartition("=")
        try:
            out[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise EdgecError(f"--input-shape '{item}' is not NAME=D1,D2,...") from None
    return out


def _console():
    """A rich console as wide as the terminal; COLUMNS overrides it; piped output gets COLUMNS or 80."""
    from rich.console import Console
    return Console(highlight=False)


def _print_json(obj):
    print(json.dumps(_strict(obj), indent=1, allow_nan=False))


def _strict(obj):
    """OBJ with numpy scalars as Python numbers and NaN/inf as "NaN"/"Infinity"/"-Infinity" (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _strict(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    return obj


# ---- compile ----------------------------------------------------------------------------------
def setup_compile(p):
    p.add_argument("model", help=".onnx, .keras or .h5 file")
    p.add_argument("--target", default="host", help="target preset (see `edgec targets`)")
    p.add_argument("-o", "--output", help="artifact path (default: MODEL stem + .edgec)")
    p.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,..", help="fix symbolic dims")
    p.add_argument("--disable-pass", action="append", default=[], metavar="NAME", help="skip a pass (debugging)")
    p.add_argument("--tune-db", metavar="DIR", help="MetaSchedule database from `edgec tune`")
    p.add_argument("--sign", metavar="KEY", help="sign the artifact with this ed25519 private key (`edgec keygen`)")
    p.add_argument("--quantize", choices=["int8"], help="quantize first (needs --calibration; see `edgec quantize`)")
    _calibration_args(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _calibration_args(p, required=False):
    p.add_argument("--calibration", required=required, metavar="DATA.npz",
                   help="calibration inputs: arrays named after the model's inputs, samples on axis 0")
    p.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="minmax",
                   help="calibration method (default minmax)")
    p.add_argument("--per-channel", action="store_true", help="one weight scale per output channel")
    p.add_argument("--reduce-range", nargs="?", choices=["auto", "yes", "no"], const="yes", default="auto",
                   help="7-bit weights (yes), 8-bit (no), or auto (default): 7-bit for an x86 target without VNNI, "
                        "where they take the exact vpmaddubsw kernels (faster, a little less precise)")


def run_compile(a):
    from . import api
    from .runtime.artifact import read_manifest
    t0 = time.perf_counter()
    out = api.compile(a.model, a.target, a.output, _shapes(a.input_shape), a.disable_pass,
                      progress=sys.stderr.isatty(), tune_db=a.tune_db, sign=a.sign, quantize=a.quantize,
                      calibration=a.calibration, method=a.method, per_channel=a.per_channel,
                      reduce_range=_reduce_range(a))
    m = read_manifest(out)
    seconds = time.perf_counter() - t0
    if a.json:
        _print_json({"model": a.model, "name": m["model"].get("name"), "target": m["target"]["name"],
                     "artifact": out, "kernels": len(m["kernels"]), "inputs": m["inputs"],
                     "outputs": m["outputs"], "seconds": round(seconds, 3)})
        return
    print(f"compiled {a.model} for {m['target']['name']} -> {out} "
          f"({len(m['kernels'])} kernels, {seconds:.1f} s)")


# ---- quantize ---------------------------------------------------------------------------------
def _reduce_range(a):
    return {"auto": "auto", "yes": True, "no": False}[a.reduce_range]


def setup_quantize(p):
    p.add_argument("model", help=".onnx, .keras or .h5 file")
    _calibration_args(p, required=True)
    p.add_argument("-o", "--output", help="QDQ ONNX path (default: MODEL stem + .int8.onnx)")
    p.add_argument("--target", default="host", help="the target the model will be compiled for: picks the weights' "
                                                    "bits under --reduce-range auto (default host)")


def run_quantize(a):
    from . import api
    for line in api.quantize(a.model, a.calibration, a.output, a.method, a.per_channel, _reduce_range(a),
                             a.target).lines():
        print(line)


# ---- run --------------------------------------------------------------------------------------
def setup_run(p):
    p.add_argument("artifact")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--inputs", help=".npz of named inputs, or .npy for a single-input model")
    g.add_argument("--random", action="store_true", help="seeded random inputs (default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--outputs", help="write outputs to this .npz (or, if a folder, one NAME.npy each)")
    p.add_argument("--repeat", type=int, default=1, help="time this many runs")
    p.add_argument("--json", action="store_true", help="print outputs and latency as JSON")
    _remote_args(p)


def _remote_args(p):
    p.add_argument("--remote", metavar="HOST:PORT", help="run on a device's TVM RPC server (tvm.exec.rpc_server)")
    _tracker_args(p)
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for --remote, or for a free --tracker device (default 10)")
    p.add_argument("--trusted-key", action="append", metavar="KEY.pub",
                   help="refuse the artifact unless one of these ed25519 public keys signed it (repeatable)")


def _auto_factor():
    from .runtime.compare import AUTO_FACTOR
    return AUTO_FACTOR


def _tracker_args(p):
    p.add_argument("--tracker", metavar="HOST:PORT", help="use any free device of --key at this TVM RPC tracker")
    p.add_argument("--key", help="device key at the --tracker (the rpc_server's --key, e.g. rpi4)")


def _farm(a, devices=1):
    from .runtime.remote import Farm
    return Farm(a.tracker, a.key, devices, a.timeout) if a.tracker else None


def _load(a):
    a.trusted_key = getattr(a, "trusted_key", None)
    if a.remote or a.tracker:
        from .runtime.artifact import read_manifest
        from .runtime.remote import load_remote
        if a.trusted_key:
            read_manifest(a.artifact, a.trusted_key)
        return load_remote(a.artifact, a.remote, a.timeout, _farm(a))
    from .runtime import load
    return load(a.artifact, trusted_keys=a.trusted_key)


def run_run(a):
    from . import api
    if a.repeat < 1:
        raise EdgecError("--repeat must be >= 1")
    model = _load(a)
    inputs = api.load_inputs(a.inputs, model.inputs) if a.inputs else model.random_inputs(a.seed)
    args = model.prepare(inputs)
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        res = model.invoke(args)
        outs = model.outputs_to_numpy(res)
        times.append(time.perf_counter() - t0)
    if hasattr(model, "device_time"):  # on a remote device: its own clock, without the RPC round trips
        times = model.device_time(args, a.repeat)
    written = api.save_outputs(a.outputs, [s["name"] for s in model.outputs], outs) if a.outputs else []
    if a.json:
        _print_json({"model": model.name, "latency_ms": {"median": float(np.median(times)) * 1e3, "runs": len(times)},
                     "outputs": [{"name": s["name"], "dtype": str(o.dtype), "shape": list(o.shape),
                                  "first": o.reshape(-1)[:6].tolist()} for s, o in zip(model.outputs, outs)],
                     "written": written})
        return
    for spec, o in zip(model.outputs, outs):
        flat = o.reshape(-1)
        print(f"{spec['name']}: {o.dtype}{list(o.shape)}  first values {np.array2string(flat[:6], precision=5)}")
    print(f"latency: median {np.median(times) * 1e3:.3f} ms over {len(times)} run(s)")
    if written:
        print(f"outputs written to {', '.join(written)}")


# ---- verify -----------------------------------------------------------------------------------
def setup_verify(p):
    p.add_argument("model", help="the source model (.onnx, .keras, .h5)")
    p.add_argument("artifact")
    p.add_argument("--inputs", help=".npz of named inputs, or .npy for a single-input model (default: seeded random)")
    p.add_argument("--reference", metavar="MODEL.onnx", help="compare with onnxruntime on this ONNX export "
                   "(default: onnxruntime for .onnx, Keras predict for .keras/.h5)")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--tolerance", choices=["auto", "element"], default="auto",
                   help="auto (default): an output also passes when its error against a float64 evaluation is "
                        "within a small factor of the reference's own; element: only |a-e| <= atol + rtol*|e|")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--per-layer", action="store_true", help="compare every source layer (a debug build returns "
                   "every kernel's output; the reference exposes every intermediate tensor)")
    p.add_argument("--bisect", action="store_true", help="name the first layer that leaves the tolerance while "
                   "its inputs are within it (implies --per-layer)")
    p.add_argument("--junit", metavar="FILE.xml", help="write a JUnit report (one case per output, or per layer)")
    p.add_argument("--remote", metavar="HOST:PORT", help="run the artifact on a device's TVM RPC server")
    _tracker_args(p)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the device (default 10)")


def run_verify(a):
    from rich.table import Table
    from . import api
    inputs = api.load_inputs(a.inputs, a.artifact) if a.inputs else None
    if a.per_layer or a.bisect:
        return _verify_layers(a, inputs)
    art = _load(a) if a.remote or a.tracker else a.artifact
    res = api.verify(a.model, art, inputs, a.rtol, a.atol, a.seed, reference=a.reference, tolerance=a.tolerance)
    if a.junit:
        from . import junit
        junit.write(a.junit, f"edgec verify {a.model}", junit.verify_cases(res.reports))
    if a.json:
        _print_json(res.to_json())
        return 0 if res.passed else 1
    console = _console()
    wide = console.width >= 110  # narrower: the worst element moves below the table
    t = Table(title=f"edgec vs {res.reference}  (pass: |a-e| <= {a.atol:g} + {a.rtol:g}*|e|)")
    for col, numeric in [("output", False), ("shape", False), ("max abs", True), ("max rel", True),
                         ("mean abs", True), ("worst: edgec / ref", False), ("bad", True), ("result", False)]:
        if wide or not col.startswith("worst"):
            t.add_column(col, justify="right" if numeric else "left", no_wrap=numeric, overflow="fold")
    worst = {r.name: f"{list(r.worst_index)}: {r.worst_actual:.6g} / {r.worst_expected:.6g}" for r in res.reports}
    for r in res.reports:
        cells = [r.name, "x".join(map(str, r.shape)), f"{r.max_abs:.3g}", f"{r.max_rel:.3g}", f"{r.mean_abs:.3g}",
                 worst[r.name], f"{r.mismatches}/{r.size}",
                 f"[green]PASS ({r.rule})" if r.passed else f"[red]FAIL {r.note}"]
        t.add_row(*(cells if wide else cells[:5] + cells[6:]))
    console.print(t)
    if not wide:
        for r in res.reports:
            print(f"{r.name}: worst element {worst[r.name]} (edgec / reference)")
    for r in res.reports:
        print(f"{r.name}: abs err max {r.max_abs:.3g} mean {r.mean_abs:.3g} median {r.median_abs:.3g} "
              f"p99 {r.p99_abs:.3g}; rel err mean {r.mean_rel:.3g} median {r.median_rel:.3g} p99 {r.p99_rel:.3g}; "
              f"cosine {r.cosine:.8f}")
        if r.edgec_error is not None:
            print(f"{r.name}: vs float64: edgec max err {r.edgec_error:.3g}, reference max err "
                  f"{r.reference_error:.3g} (auto passes within {_auto_factor():g}x)")
    if a.tolerance == "auto" and not any(r.edgec_error is not None for r in res.reports):
        print(f"auto tolerance unavailable: {res.truth}; element rule only")
    for r in res.reports:
        if r.step:
            print(f"{r.name}: max {r.max_steps:.3g} quantization step(s) of {r.step:.3g} (within 1 step passes)")
    print(f"{'PASS' if res.passed else 'FAIL'}: {len(res.reports)} output(s) vs {res.reference} "
          f"(reference {res.ref_seconds * 1e3:.1f} ms, edgec {res.run_seconds * 1e3:.1f} ms, first run)")
    return 0 if res.passed else 1


def _verify_layers(a, inputs):
    from rich.table import Table
    from .parity import per_layer
    remote = None
    if a.remote or a.tracker:
        from .runtime.remote import load_remote
        remote = lambda path: load_remote(path, a.remote, a.timeout, _farm(a))  # noqa: E731
    rep = per_layer(a.model, a.artifact, inputs, a.rtol, a.atol, a.seed, a.tolerance, load=remote)
    first = rep.first_divergence()
    if a.junit:
        from . import junit
        junit.write(a.junit, f"edgec verify --per-layer {a.model}", junit.verify_cases([r["report"] for r in rep.rows]))
    if a.json:
        _print_json(rep.to_json())
        return 0 if rep.passed else 1
    t = Table(title=f"edgec vs {rep.reference} per source layer (pass: |a-e| <= {a.atol:g} + {a.rtol:g}*|e|"
                    f"{', or auto' if a.tolerance == 'auto' else ''})")
    for col in ["layer", "kernel", "max abs", "max rel", "err/max|ref|", "amplification", "vs float64 (edgec/ref)",
                "result"]:
        t.add_column(col, overflow="fold")
    for row in rep.rows:
        r = row["report"]
        amp = "-" if row["amplification"] is None else f"{row['amplification']:.3g}x"
        f64 = "-" if r.edgec_error is None else f"{r.edgec_error:.3g} / {r.reference_error:.3g}"
        t.add_row(row["layer"], row["kernel"], f"{r.max_abs:.3g}", f"{r.max_rel:.3g}", f"{row['scaled_error']:.3g}",
                  amp, f64, "[green]PASS" if r.passed else "[red]FAIL")
    if not a.bisect:
        _console().print(t)
    n_bad = sum(not r["report"].passed for r in rep.rows)
    print(f"{'PASS' if rep.passed else 'FAIL'}: {len(rep.rows)} layer(s) compared, {n_bad} outside the tolerance")
    if a.bisect:
        if first is None:
            print("bisect: every compared layer is within the tolerance")
        else:
            r = first["report"]
            print(f"bisect: first divergence at layer '{first['layer']}' (max abs error {r.max_abs:.3g}, "
                  f"{first['scaled_error']:.3g} of its largest value) while its inputs "
                  f"({', '.join(first['inputs']) or 'model inputs'}) are within the tolerance; kernel "
                  f"{first['kernel']} computes source layers {', '.join(first['layers'])} "
                  f"(fused IR nodes {', '.join(first['nodes'])})")
    return 0 if rep.passed else 1


# ---- inspect ----------------------------------------------------------------------------------
def setup_inspect(p):
    p.add_argument("path", help="a model (.onnx/.keras/.h5) or an artifact (.edgec)")
    p.add_argument("--passes", action="store_true", help="print the IR after each pass")
    p.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,..")
    p.add_argument("--disable-pass", action="append", default=[], metavar="NAME")
    p.add_argument("--check-passes", action="store_true",
                   help="run the numpy interpreter before and after each pass and fail on a difference")
    p.add_argument("--json", action="store_true", help="print the IR (or the manifest) and the pass summary as JSON")


def run_inspect(a):
    if a.path.endswith(".edgec"):
        from .runtime.artifact import read_manifest
        _print_json(read_manifest(a.path))
        return 0
    from . import api
    from .compiler import lower
    from .compiler.passes import run_passes
    graph = api.import_model(a.path, _shapes(a.input_shape))
    if not a.json:
        print(graph)
    if not a.passes:
        if a.json:
            _print_json(graph.to_json())
        return 0
    rows = [("import", len(graph.nodes), len(lower.partition(graph)), "")]

    def on_pass(p, before, after):
        if not a.json:
            print(f"\n# ---- after {p.name}: {p.doc}")
            print(after)
        rows.append((p.name, len(after.nodes), len(lower.partition(after)), _op_changes(before, after)))
    final = run_passes(graph, disable=a.disable_pass, on_pass=on_pass, check=a.check_passes)
    if a.json:
        _print_json({"imported": graph.to_json(), "final": final.to_json(),
                     "passes": [dict(zip(["after", "nodes", "kernels", "changes"], r)) for r in rows]})
        return 0
    from rich.table import Table
    t = Table(title="pass summary")
    for c in ["after", "nodes", "kernels", "ops removed / added"]:
        t.add_column(c)
    for r in rows:
        t.add_row(*map(str, r))
    _console().print(t)


def _op_changes(before, after):
    from collections import Counter
    b, a = Counter(n.op for n in before.nodes), Counter(n.op for n in after.nodes)
    return ", ".join(f"{op} {a[op] - b[op]:+d}" for op in sorted(set(a) | set(b)) if a[op] != b[op])


# ---- bench ------------------------------------------------------------------------------------
def setup_bench(p):
    p.add_argument("model", help=".onnx model (compiled first) or .edgec artifact (next to its .onnx)")
    p.add_argument("--target", default="host", help="target preset to compile for (default host)")
    p.add_argument("--threads", type=int, help="threads for edgec and onnxruntime (default: 1, then all cores)")
    p.add_argument("--repeat", type=int, default=5, help="rounds of alternating ~0.4 s blocks (default 5)")
    p.add_argument("--no-spin", action="store_true",
                   help="also time onnxruntime with spin-waiting off (the default-options one stays)")
    p.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,..", help="fix symbolic dims")
    p.add_argument("--layers", action="store_true",
                   help="per layer instead: each kernel's time inside the whole model next to onnxruntime's "
                        "for the same layers (both profiled)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _remote_args(p)


def run_bench(a):
    from .bench import bench_threads, format_result
    if a.repeat < 1 or (a.threads is not None and a.threads < 1):
        raise EdgecError("--repeat and --threads must be >= 1")
    if a.remote or a.tracker:
        return _bench_on_device(a)
    if a.layers:
        from .layer_bench import bench_layers, format_rows
        rs = bench_layers(a.model, a.target, [a.threads] if a.threads else None, 4 * a.repeat, _shapes(a.input_shape))
        if a.json:
            print(json.dumps(rs, indent=1))
        else:
            print("\n\n".join(f"{r['model']} on {r['target']} ({r['isa']}), {r['threads']} thread(s), in-model "
                               f"medians of {r['runs']} runs (and the ratio of the fastest)\n"
                               + format_rows(r["rows"]) for r in rs))
        return
    rs = bench_threads(a.model, a.target, [a.threads] if a.threads else None, a.repeat,
                       input_shapes=_shapes(a.input_shape), progress=sys.stderr.isatty(), nospin=a.no_spin)
    if a.json:  # one object with --threads, else a list (1 thread, all cores)
        print(json.dumps(rs[0] if a.threads else rs, indent=1))
    else:
        print("\n".join(format_result(r) for r in rs))


def _bench_on_device(a):
    """edgec alone on a device (onnxruntime does not run there), timed by the device's clock."""
    import tempfile
    from . import api
    with tempfile.TemporaryDirectory(prefix="edgec-bench-") as tmp:
        if not a.model.endswith(".edgec"):
            a.model = api.compile(a.model, a.target, f"{tmp}/model.edgec", _shapes(a.input_shape), progress=False)
        a.artifact = a.model
        model = _load(a)
        args = model.prepare(model.random_inputs())
        model.invoke(args)
        times = model.device_time(args, max(a.repeat, 3) * 4)
    r = {"model": model.name, "device": model.address, "clock": "device", "runs": len(times),
         "edgec_ms": {"median": float(np.median(times)) * 1e3, "min": float(np.min(times)) * 1e3}}
    if a.json:
        _print_json(r)
    else:
        print(f"{r['model']} on {r['device']}: edgec median {r['edgec_ms']['median']:.3f} ms, min "
              f"{r['edgec_ms']['min']:.3f} ms over {r['runs']} runs (device clock; onnxruntime is not run there)")


# ---- tune -------------------------------------------------------------------------------------
def setup_tune(p):
    p.add_argument("model", help=".onnx, .keras or .h5 file")
    p.add_argument("--target", default="host", help="CPU target preset (default host)")
    p.add_argument("--trials", type=int, default=256, help="MetaSchedule trials in all, shared by FLOPs")
    p.add_argument("--db", help="database directory (default: MODEL stem + .tunedb)")
    p.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,..", help="fix symbolic dims")
    p.add_argument("--cost-model", default="xgb", choices=["xgb", "random"], help="MetaSchedule cost model")
    p.add_argument("--build-timeout", type=float, default=30.0, help="seconds per candidate build (default 30)")
    _tracker_args(p)
    p.add_argument("--devices", type=int, default=1, help="--tracker devices measuring in parallel (default 1)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a free --tracker device")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run_tune(a):
    from .api import tune
    r = tune(a.model, a.target, a.trials, a.db, _shapes(a.input_shape), a.cost_model, progress=sys.stderr.isatty(),
             build_timeout=a.build_timeout, farm=_farm(a, a.devices))
    if a.json:
        _print_json(r)
        return
    ms = lambda v: "-" if v is None else f"{v:.4f} ms"  # noqa: E731
    print(f"tuned {r['model']} for {r['target']}, candidates measured on {r['measured_on']}")
    for k in r["kernels"]:
        if not k["trials"]:
            print(f"{k['kernel']:<32} not tuned (the --trials budget went to heavier kernels)")
            continue
        failed = ", ".join(f"{n} {cause}" for cause, n in k["failures"].items()) or "none"
        print(f"{k['kernel']:<32} {k['measured']}/{k['trials']} trials measured (failed: {failed}); "
              f"hand {ms(k['hand_ms'])}, tuned {ms(k['tuned_ms'])} -> {k['use']}")
    print(f"database {r['db']}: use it with `edgec compile {a.model} --target {r['target']} --tune-db {r['db']}`")


# ---- profile ----------------------------------------------------------------------------------
def setup_profile(p):
    p.add_argument("artifact")
    p.add_argument("--repeat", type=int, default=20, help="timed runs (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--inputs", help=".npz of named inputs (default: seeded random)")
    p.add_argument("--trace", metavar="OUT.json", help="write a Chrome trace / Perfetto JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write a bar chart of per-layer time (needs matplotlib)")
    p.add_argument("--csv", metavar="OUT.csv", help="write the table as CSV")
    p.add_argument("--top", type=int, default=0, help="print only the N slowest kernels (default all)")
    p.add_argument("--json", action="store_true", help="print every kernel's statistics and the totals as JSON")
    _remote_args(p)


def run_profile(a):
    from rich.table import Table
    from . import api
    if a.repeat < 1 or a.warmup < 0:
        raise EdgecError("--repeat must be >= 1 and --warmup >= 0")
    model = _load(a)
    prof = model.profile(api.load_inputs(a.inputs, model.inputs) if a.inputs else None, a.repeat, a.warmup)
    rows = prof.rows[:a.top] if a.top > 0 else prof.rows
    if a.json:
        _print_json({"model": model.name, "target": model.manifest["target"].get("name"),
                     "device": model.device_type, "repeat": prof.repeat, "kernels": rows,
                     "e2e_median_s": prof.e2e_median, "e2e_q1_s": prof.e2e_q1, "e2e_q3_s": prof.e2e_q3,
                     "e2e_min_s": prof.e2e_min, "kernel_sum_s": prof.kernel_sum,
                     "kernel_sum_min_s": prof.kernel_sum_min, "overhead_s": prof.overhead,
                     "instrumented_median_s": prof.instrumented_median})
        _write_profile_files(a, prof)
        return
    console = _console()
    wide = console.width >= 120  # narrower: drop the IR nodes, kind and IQR columns, keep every number
    t = Table(title=f"{model.name}: time per kernel, median of {prof.repeat} runs "
                    f"({model.manifest['target'].get('name')}, {model.device_type})")
    int8 = [r for r in rows if r["gflops"] is not None and any(o.startswith("q") for o in r["ops"])]
    cols = [("kernel", False), ("IR nodes", False), ("source layers", False), ("kind", False), ("shape", False),
            ("ms", True), ("IQR ms", True), ("share", True), ("GOP/s" if int8 else "GFLOP/s", True), ("calls", True)]
    keep = [wide or c not in ("IR nodes", "kind", "IQR ms") for c, _ in cols]
    for (col, numeric), k in zip(cols, keep):
        if k:
            t.add_column(col, justify="right" if numeric else "left", no_wrap=numeric, overflow="fold")
    prefix = _common_prefix([name for r in rows for name in r["layers"]])
    for r in rows:
        shared = f" (runs {r['function']})" if r["function"] != r["kernel"] else ""
        layers = ", ".join(name[len(prefix):] if name.startswith(prefix) else name for name in r["layers"]) or "-"
        cells = [r["kernel"] + shared, ", ".join(r["nodes"]), layers, r["kind"],
                 "x".join(map(str, r["shape"])), f"{r['median_s'] * 1e3:.3f}", f"{(r['q3_s'] - r['q1_s']) * 1e3:.3f}",
                 f"{r['share']:.1%}", "-" if r["gflops"] is None else f"{r['gflops']:.1f}", str(r["calls"])]
        t.add_row(*[c for c, k in zip(cells, keep) if k])
    notes = [f"source layers without their common prefix '{prefix}'"] if prefix else []
    if int8:
        notes.append(f"GOP/s: integer multiply-adds (x2) of the {len(int8)} int8 kernels, floating-point of the others")
    if len(rows) < len(prof.rows):
        notes.append(f"{len(prof.rows) - len(rows)} faster kernels not shown")
    t.caption = "; ".join(notes) or None
    console.print(t)
    e2e = prof.e2e_median
    print(f"end-to-end: median {e2e * 1e3:.3f} ms (IQR {prof.e2e_q1 * 1e3:.3f}-{prof.e2e_q3 * 1e3:.3f}) "
          f"over {prof.repeat} uninstrumented runs")
    print(f"kernel sum: median {prof.kernel_sum * 1e3:.3f} ms per run ({len(prof.rows)} kernels, "
          f"{prof.kernel_sum / max(e2e, 1e-12):.1%} of end-to-end)")
    print(f"overhead outside kernels: {prof.overhead * 1e3:.3f} ms (end-to-end minus kernel sum; "
          f"instrumented runs took {prof.instrumented_median * 1e3:.3f} ms)")
    print(f"fastest runs: end-to-end {prof.e2e_min * 1e3:.3f} ms, kernel sum {prof.kernel_sum_min * 1e3:.3f} ms")
    idle = [r["kernel"] for r in prof.rows if r["calls"] == 0]
    if idle:
        print(f"not called (TVM runs them as views, no kernel): {', '.join(idle)}")
    _write_profile_files(a, prof)


def _common_prefix(names):
    """The '/'-ended path prefix all path-like NAMES share (tf2onnx: 'StatefulPartitionedCall/model/'), or ''."""
    parts = [n.split("/")[:-1] for n in names if "/" in n]
    if len(parts) < 2:
        return ""
    common = []
    for level in zip(*parts):
        if len(set(level)) > 1:
            break
        common.append(level[0])
    return "/".join(common) + "/" if common else ""


def _write_profile_files(a, prof):
    for flag, write in [(a.csv, prof.write_csv), (a.trace, prof.write_trace), (a.plot, prof.plot)]:
        if flag:
            write(flag)
            print(f"wrote {flag}", file=sys.stderr if a.json else sys.stdout)


# ---- targets ----------------------------------------------------------------------------------
def setup_targets(p):
    p.add_argument("--json", action="store_true", help="print the presets as JSON")


def run_targets(a):
    from rich.table import Table
    from . import targets
    if a.json:
        _print_json([dict(targets.get(n).to_json(), description=targets.get(n).description,
                          needs=targets.get(n).tools, missing=targets.get(n).missing_tools())
                     for n in targets.names()])
        return
    console = _console()
    wide = console.width >= 140  # narrower: the TVM target dict is left to --json
    t = Table(title="edgec target presets" + ("" if wide else " (TVM target dicts: edgec targets --json)"))
    for c in ["name", "arch", "description", "TVM target", "needs", "ready"]:
        if wide or c != "TVM target":
            t.add_column(c, overflow="fold", no_wrap=c == "name")
    for name in targets.names():
        p = targets.get(name)
        missing = p.missing_tools()
        cells = [name, p.arch, p.description, json.dumps(p.tvm), ", ".join(p.tools) or "-",
                 "[green]yes" if not missing else f"[red]missing {', '.join(missing)}"]
        t.add_row(*(cells if wide else cells[:3] + cells[4:]))
    console.print(t)


# ---- package ----------------------------------------------------------------------------------
def setup_package(p):
    p.add_argument("artifact", help=".edgec artifact compiled for a device target (rpi4, rpi5, aarch64, ...)")
    p.add_argument("-o", "--output", required=True, help="bundle path (.tar.gz)")
    p.add_argument("--trusted-key", action="append", metavar="KEY.pub",
                   help="refuse the artifact unless one of these ed25519 public keys signed it (repeatable)")


def run_package(a):
    from .targets.package import package
    info = package(a.artifact, a.output, a.trusted_key)
    mib = lambda n: f"{n / 2**20:.2f} MiB"  # noqa: E731
    print(f"packaged {a.artifact} -> {info['output']} ({mib(info['bytes'])} compressed; runtime+runner "
          f"{mib(info['runtime_bytes'])}, weights {mib(info['weights_bytes'])}, model code "
          f"{mib(info['library_bytes'])}); on the device: tar xzf {a.output} && "
          f"{info['root']}/run.sh INPUT.npy ...")


# ---- keygen -----------------------------------------------------------------------------------
def setup_keygen(p):
    p.add_argument("key", help="private key file to create (the public key goes to KEY.pub)")


def run_keygen(a):
    from .runtime.signing import keygen
    pub = keygen(a.key)
    print(f"wrote private key {a.key} (keep it secret) and public key {pub}: sign with "
          f"`edgec compile ... --sign {a.key}`, check with `edgec run ... --trusted-key {pub}`")


COMMANDS = {
    "compile": (setup_compile, run_compile, "compile a model into an .edgec artifact"),
    "quantize": (setup_quantize, run_quantize, "int8-quantize a model with calibration data (QDQ ONNX)"),
    "run": (setup_run, run_run, "run an artifact on inputs"),
    "verify": (setup_verify, run_verify, "compare an artifact with the reference (onnxruntime / Keras)"),
    "inspect": (setup_inspect, run_inspect, "print a model's IR (and passes) or an artifact's manifest"),
    "targets": (setup_targets, run_targets, "list target presets and whether their tools are present"),
    "profile": (setup_profile, run_profile, "time every kernel of an artifact, mapped to the model's layers"),
    "bench": (setup_bench, run_bench, "time edgec against onnxruntime (same inputs, threads), GFLOP/s"),
    "tune": (setup_tune, run_tune, "tune kernels with MetaSchedule into a database for compile --tune-db"),
    "package": (setup_package, run_package, "bundle an ARM artifact with the TVM runtime and a C++ runner"),
    "keygen": (setup_keygen, run_keygen, "make an ed25519 key pair for signing artifacts (the sign extra)"),
}


def parser():
    p = argparse.ArgumentParser(prog="edgec", description="Compile Keras/ONNX models for edge devices via TVM.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)
    for name, (setup, _, help_) in COMMANDS.items():
        setup(sub.add_parser(name, help=help_, description=help_))
    return p


def _version():
    import importlib.metadata as md
    from . import __version__
    try:
        tvm = md.version("apache-tvm")
    except md.PackageNotFoundError:
        tvm = "not installed"
    return f"edgec {__version__} (apache-tvm {tvm}, Python {sys.version.split()[0]})"


def _show_warning(message, category, filename, lineno, file=None, line=None):
    kind = "note" if issubclass(category, EdgecWarning) else "warning"
    print(f"edgec: {kind}: {message}", file=sys.stderr)


def _one_line(e):
    return "; ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


def _crash_report(argv):
    """Write the current exception's traceback and context to a temp file; return its path."""
    import platform
    import tempfile
    import traceback
    fd, path = tempfile.mkstemp(prefix="edgec-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(f"{_version()} on {platform.platform()}\n")
        f.write(f"command: edgec {' '.join(sys.argv[1:] if argv is None else argv)}\n\n")
        f.write(traceback.format_exc())
    return path


def main(argv=None):
    args = parser().parse_args(argv)
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        code = COMMANDS[args.command][1](args) or 0
        sys.stdout.flush()  # a closed pipe (`edgec inspect X | head`) shows here, not at exit
        return code
    except EdgecError as e:
        print(f"edgec: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - a bug in edgec: a report file, not a traceback on screen
        path = _crash_report(argv)
        print(f"edgec: internal error ({type(e).__name__}: {_one_line(e)[:200]}); this is a bug in edgec, "
              f"details in {path}", file=sys.stderr)
        return 3
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
