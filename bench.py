"""`edgec bench`: edgec against onnxruntime on the same inputs and thread count.

Runs alternate (edgec, onnxruntime, edgec, ...) so a change in machine load hits both alike
(onnxruntime with its thread pool's spin-waiting off, see `_ort_session`); the
report gives each one's median latency, the ratio edgec/onnxruntime, edgec's GFLOP/s (FLOPs from
the manifest's kernels) and that as a fraction of the machine's peak, measured once with a large
numpy (BLAS) float32 matrix multiply on the same thread count and cached.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import EdgecError

PEAK_CACHE = Path(os.environ.get("EDGEC_CACHE", Path.home() / ".cache" / "edgec")) / "peak.json"
PEAK_METHOD = "numpy float32 matmul 2048x2048 (BLAS), best of 10"
_PEAK_CODE = """
import time, numpy as np
a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
a @ a
best = min((lambda t0: (a @ a, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(10))
print(2 * 2048 ** 3 / best / 1e9)
"""


def set_threads(n):
    """Use N threads in TVM's pool (and BLAS); must run before the first TVM parallel call."""
    for var in ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)


def peak_gflops(threads):
    """The machine's float32 peak on THREADS threads (cached per CPU and thread count)."""
    key = f"{_cpu_name()}|{threads}"
    try:
        cache = json.loads(PEAK_CACHE.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:  # in a child process: BLAS fixes its thread count when numpy loads
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        out = subprocess.run([sys.executable, "-c", _PEAK_CODE], env=env, capture_output=True, text=True)
        if out.returncode:
            raise EdgecError(f"measuring the machine's peak failed: {out.stderr.strip().splitlines()[-1:]}")
        cache[key] = float(out.stdout.strip())
        try:
            PEAK_CACHE.parent.mkdir(parents=True, exist_ok=True)
            PEAK_CACHE.write_text(json.dumps(cache, indent=1))
        except OSError:
            pass
    return cache[key]


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def _onnx_for(artifact_path, manifest):
    src = manifest.get("model", {}).get("source", "")
    for cand in (Path(artifact_path).parent / src, Path(src)):
        if src.endswith(".onnx") and cand.is_file():
            return str(cand)
    return None


def bench(model, target="host", threads=None, repeat=20, warmup=3, input_shapes=None, progress=False):
    """Benchmark MODEL (.onnx, compiled first, or an .edgec artifact); return a result dict."""
    threads = threads or os.cpu_count() or 1
    set_threads(threads)
    from . import api
    from .runtime import load
    with tempfile.TemporaryDirectory(prefix="edgec-bench-") as tmp:
        if str(model).endswith(".edgec"):
            art_path, onnx_path = str(model), None
        else:
            if api.model_kind(model) != "onnx":
                raise EdgecError(f"bench compares with onnxruntime: '{model}' is not an .onnx model")
            art_path, onnx_path = os.path.join(tmp, "model.edgec"), str(model)
            t0 = time.perf_counter()
            api.compile(model, target, art_path, input_shapes, progress=progress)
            compile_s = time.perf_counter() - t0
        art = load(art_path)
        if onnx_path is None:
            onnx_path = _onnx_for(art_path, art.manifest)
            compile_s = art.manifest.get("compile_seconds")
        inputs = art.random_inputs(0)
        args = art.prepare(inputs)
        sess = _ort_session(onnx_path, threads) if onnx_path else None
        feed = {k: v for k, v in inputs.items()} if sess else None
        max_err = None
        if sess:
            want = sess.run(None, feed)
            got = art.outputs_to_numpy(art.invoke(args))
            max_err = max(float(np.max(np.abs(g.astype(np.float64) - w))) for g, w in zip(got, want))
        for _ in range(warmup):
            art.invoke(args)
            if sess:
                sess.run(None, feed)
        t_e, t_o = [], []
        for _ in range(repeat):
            t_e.append(_timed(lambda: art.outputs_to_numpy(art.invoke(args))))
            if sess:
                t_o.append(_timed(lambda: sess.run(None, feed)))
    flops = sum(k.get("flops", 0) for k in art.kernels)
    peak = peak_gflops(threads)
    e_ms = float(np.median(t_e)) * 1e3
    o_ms = float(np.median(t_o)) * 1e3 if t_o else None
    gflops = flops / (e_ms / 1e3) / 1e9
    return {"model": art.name, "target": art.manifest["target"]["name"], "threads": threads, "repeat": repeat,
            "edgec_ms": e_ms, "ort_ms": o_ms, "ratio": e_ms / o_ms if o_ms else None,
            "edgec_min_ms": float(np.min(t_e)) * 1e3, "ort_min_ms": float(np.min(t_o)) * 1e3 if t_o else None,
            "gflop": flops / 1e9, "gflops": gflops, "ort_gflops": flops / (o_ms / 1e3) / 1e9 if o_ms else None,
            "peak_gflops": peak, "peak_fraction": gflops / peak, "peak_method": PEAK_METHOD,
            "max_abs_diff": max_err, "compile_s": compile_s,
            "onnxruntime": _ort_version() if sess else None}


def _ort_session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # onnxruntime's pool otherwise spin-waits between runs and takes the cores that edgec's next
    # (alternating) run needs: measured here, edgec on 2 threads ran at 1-thread speed with spinning
    # on; turning it off cost onnxruntime ~5% on a 3x3 conv
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _ort_version():
    import onnxruntime as ort
    return ort.__version__


def format_result(r):
    lines = [f"{r['model']} on {r['target']}, {r['threads']} thread(s), median of {r['repeat']} alternating runs"]
    lines.append(f"  edgec        {r['edgec_ms']:9.3f} ms  {r['gflops']:7.1f} GFLOP/s  "
                 f"{100 * r['peak_fraction']:5.1f}% of peak ({r['peak_gflops']:.0f} GFLOP/s: {r['peak_method']})")
    if r["ort_ms"] is not None:
        lines.append(f"  onnxruntime  {r['ort_ms']:9.3f} ms  {r['ort_gflops']:7.1f} GFLOP/s  "
                     f"(onnxruntime {r['onnxruntime']})")
        lines.append(f"  ratio edgec/onnxruntime {r['ratio']:.3f}  (max |diff| {r['max_abs_diff']:.2e})")
    else:
        lines.append("  onnxruntime: not run (the artifact's .onnx source was not found; pass the .onnx model)")
    return "\n".join(lines)
