"""`edgec bench`: edgec against onnxruntime on the same inputs and thread count.

onnxruntime runs with its default session options (only `intra_op_num_threads` set to the same
thread count as edgec), as users run it. The two engines run in alternating *blocks* (~0.4 s of
edgec, then ~0.4 s of onnxruntime, several rounds): a call-by-call alternation would let
onnxruntime's spin-waiting pool steal the cores of edgec's next run, and turning that spinning off
would weaken the baseline. The first call of each block is discarded (the other engine's pool may
still be spinning). `nospin=True` adds onnxruntime with spinning off as a third engine, never in
place of the default. The report gives each engine's median latency, the ratio edgec/onnxruntime,
the machine's vector ISA (avx512, avx2, neon), edgec's GFLOP/s (FLOPs from the manifest's kernels)
and that as a fraction of the machine's peak, measured once with a large numpy (BLAS) float32
matrix multiply on the same thread count and cached (measured again, keeping the better value,
when onnxruntime beats the cached one: it was taken on a busy machine). FLOPs are the direct
convolution's: edgec's Winograd convs do fewer multiplies, so its GFLOP/s can pass the peak.
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import EdgecError
from .targets import cpu_info

PEAK_CACHE = Path(os.environ.get("EDGEC_CACHE", Path.home() / ".cache" / "edgec")) / "peak.json"
PEAK_METHOD = "numpy float32 matmul 2048x2048 (OpenBLAS, its own kernels and AVX-512's), best of 10"
# OpenBLAS kernels for the peak besides the ones it picks itself, by the x86 flags they need:
# OpenBLAS 0.3.31 takes a CPU it does not know for the nearest one it does (a Zen 5 for Haswell,
# AVX2: 114 GFLOP/s on 1 thread against 220 with its SkylakeX kernels), so a machine's AVX-512
# peak is measured with them where the CPU has what they use
BLAS_CORES = {"SkylakeX": {"avx512f", "avx512bw", "avx512dq", "avx512vl"}}
_PEAK_CODE = """
import time, numpy as np
a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
a @ a
best = min((lambda t0: (a @ a, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(10))
print(2 * 2048 ** 3 / best / 1e9)
"""
BLOCK_S = 0.4  # seconds of one engine before switching to the other


def set_threads(n):
    """Use N threads in TVM's pool from now on (it can be resized between runs)."""
    import tvm
    tvm.get_global_func("runtime.config_threadpool")(1, int(n))


def peak_gflops(threads, seen=0.0):
    """The machine's float32 peak on THREADS threads (cached per CPU and thread count). A cached
    peak below SEEN (GFLOP/s an engine just reached) was measured on a busy machine: it is measured
    again and the cache keeps the better of the two."""
    key = peak_key(threads)
    try:
        cache = json.loads(PEAK_CACHE.read_text())
    except (OSError, ValueError):
        cache = {}
    if cache.get(key, 0.0) < max(seen, 1e-9):  # in a child process: BLAS fixes its thread count when numpy loads
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        for core in [None, *blas_cores(set(_cpuinfo("flags").split()))]:
            out = subprocess.run([sys.executable, "-c", _PEAK_CODE], capture_output=True, text=True,
                                 env=dict(env, OPENBLAS_CORETYPE=core) if core else env)
            if out.returncode:
                raise EdgecError(f"measuring the machine's peak failed: {out.stderr.strip().splitlines()[-1:]}")
            cache[key] = max(cache.get(key, 0.0), float(out.stdout.strip()))
        try:
            PEAK_CACHE.parent.mkdir(parents=True, exist_ok=True)
            PEAK_CACHE.write_text(json.dumps(cache, indent=1))
        except OSError:
            pass
    return cache[key]


def peak_key(threads):
    """The peak cache's key: the CPU, the thread count, and the method (a peak measured another way is measured again)."""
    return f"{cpu_name()}|{threads}|{PEAK_METHOD}"


def blas_cores(flags):
    """The OpenBLAS core types (BLAS_CORES) this machine's x86 FLAGS can run."""
    return [core for core, needs in BLAS_CORES.items() if needs <= flags]


def _cpuinfo(*keys):
    """The value of the first of KEYS this machine's /proc/cpuinfo has ("" if none)."""
    info = cpu_info(*keys)
    return next((info[k] for k in keys if k in info), "")


def cpu_name():
    """This CPU's name, with its family and model numbers where /proc/cpuinfo has them: virtual
    machines of one pool may all report "AMD EPYC" for a Zen 1 and a Zen 3 core (the peak cache
    is keyed by it, and tables from different machines must say which is which)."""
    name = _cpuinfo("model name") or platform.processor() or platform.machine()
    family, model = _cpuinfo("cpu family"), _cpuinfo("model")
    return f"{name} (family {family}, model {model})" if family and model else name


def isa():
    """The widest float32 vector ISA of this machine: avx512, avx2, neon, sse, or the architecture."""
    flags = set(_cpuinfo("flags", "Features").split())
    for name, flag in (("avx512", "avx512f"), ("avx2", "avx2"), ("neon", "asimd"), ("neon", "neon"),
                       ("sse", "sse2")):
        if flag in flags:
            return name
    return platform.machine()


def alternate(engines, rounds, block_s=BLOCK_S):
    """Run each of ENGINES ({name: fn}) for BLOCK_S seconds in turn, ROUNDS times; return
    {name: [seconds per call]}, without each block's first call."""
    times = {name: [] for name in engines}
    for _ in range(rounds):
        for name, fn in engines.items():
            fn()
            t_end = time.perf_counter() + block_s
            while True:
                t0 = time.perf_counter()
                fn()
                t1 = time.perf_counter()
                times[name].append(t1 - t0)
                if t1 >= t_end:
                    break
    return times


def _onnx_for(artifact_path, manifest):
    src = manifest.get("model", {}).get("source", "")
    for cand in (Path(artifact_path).parent / src, Path(src)):
        if src.endswith(".onnx") and cand.is_file():
            return str(cand)
    return None


def bench(model, target="host", threads=None, repeat=5, input_shapes=None, progress=False, nospin=False):
    """Benchmark MODEL (.onnx, compiled first, or an .edgec artifact) on THREADS threads (default:
    all cores) over REPEAT rounds of alternating blocks; return a result dict."""
    return bench_threads(model, target, [threads or os.cpu_count() or 1], repeat, input_shapes, progress,
                         nospin)[0]


def bench_threads(model, target="host", thread_counts=None, repeat=5, input_shapes=None, progress=False,
                  nospin=False, onnx_path=None):
    """`bench` for each of THREAD_COUNTS (default: 1 and all cores), compiling once; a list of dicts.
    ONNX_PATH names the reference model when MODEL is an artifact whose source is elsewhere."""
    thread_counts = thread_counts or sorted({1, os.cpu_count() or 1})
    from . import api
    from .runtime import load
    with tempfile.TemporaryDirectory(prefix="edgec-bench-") as tmp:
        if str(model).endswith(".edgec"):
            art_path = str(model)
        else:
            if api.model_kind(model) != "onnx":
                raise EdgecError(f"bench compares with onnxruntime: '{model}' is not an .onnx model")
            art_path, onnx_path = os.path.join(tmp, "model.edgec"), str(model)
            t0 = time.perf_counter()
            api.compile(model, target, art_path, input_shapes, progress=progress)
            compile_s = time.perf_counter() - t0
        art = load(art_path)
        if not str(model).endswith(".onnx"):
            onnx_path = onnx_path or _onnx_for(art_path, art.manifest)
            compile_s = art.manifest.get("compile_seconds")
        inputs = art.random_inputs(0)
        args = art.prepare(inputs)
        gpu, note = art.device_type == "cuda", None
        if gpu and onnx_path and not _ort_has_cuda():
            onnx_path, note = None, "onnxruntime-gpu is not installed: no CUDA execution provider to compare with"
        common = {"model": art.name, "target": art.manifest["target"]["name"], "isa": isa(), "cpu": cpu_name(),
                  "repeat": repeat, "block_s": BLOCK_S, "compile_s": compile_s,
                  "gflop": sum(k.get("flops", 0) for k in art.kernels) / 1e9,
                  "onnxruntime": _ort_version() if onnx_path else None, "peak_method": PEAK_METHOD,
                  "device": "cuda" if gpu else "cpu", "note": note}
        results = []
        for threads in thread_counts[-1:] if gpu else thread_counts:  # a GPU run uses the CPU little
            set_threads(threads)
            engines = {"edgec": lambda: art.outputs_to_numpy(art.invoke(args))}
            if gpu:  # inputs copied to the GPU and outputs back in every call, as onnxruntime's run does
                engines["edgec"] = lambda: art.run(inputs)
            max_err = None
            if onnx_path:
                sess = _ort_session(onnx_path, threads, cuda=gpu)
                want = sess.run(None, inputs)
                got = art.outputs_to_numpy(art.invoke(args))
                max_err = max(float(np.max(np.abs(g.astype(np.float64) - w))) for g, w in zip(got, want))
                engines["ort"] = lambda s=sess: s.run(None, inputs)
                if nospin:
                    engines["ort_nospin"] = lambda s=_ort_session(onnx_path, threads, False, gpu): s.run(None, inputs)
            times = alternate(engines, repeat)
            # (onnxruntime's rate only: edgec's Winograd convs skip work its direct-conv FLOP count includes)
            others = [float(np.median(v)) for k, v in times.items() if k != "edgec"]
            fastest = common["gflop"] / min(others) * 1e3 if others else 0.0
            results.append(dict(common, threads=threads, max_abs_diff=max_err,
                                **_summary(times, common["gflop"], None if gpu else peak_gflops(threads, fastest))))
    set_threads(os.cpu_count() or 1)
    return results


def _summary(times, gflop, peak):
    ms = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    r = {"edgec_ms": ms["edgec"], "edgec_min_ms": float(np.min(times["edgec"])) * 1e3,
         "runs": {k: len(v) for k, v in times.items()},
         "gflops": gflop / ms["edgec"] * 1e3, "peak_gflops": peak,
         "peak_fraction": gflop / ms["edgec"] * 1e3 / peak if peak else None,
         "ort_ms": None, "ort_min_ms": None, "ratio": None, "ort_gflops": None}
    if "ort" in ms:
        r.update(ort_ms=ms["ort"], ort_min_ms=float(np.min(times["ort"])) * 1e3, ratio=ms["edgec"] / ms["ort"],
                 ort_gflops=gflop / ms["ort"] * 1e3)
    if "ort_nospin" in ms:
        r.update(ort_nospin_ms=ms["ort_nospin"], ratio_nospin=ms["edgec"] / ms["ort_nospin"])
    return r


def _ort_has_cuda():
    import onnxruntime as ort
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _ort_session(path, threads, spin=True, cuda=False):
    """onnxruntime with its default options, THREADS intra-op threads (spin=False: spin-waiting off;
    cuda: its CUDA execution provider, from the onnxruntime-gpu package)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CUDAExecutionProvider"] if cuda else ["CPUExecutionProvider"])


def _ort_version():
    import onnxruntime as ort
    return ort.__version__


def format_result(r):
    lines = [f"{r['model']} on {r['target']} ({r['isa']}: {r['cpu']}), {r['threads']} thread(s), medians of "
             f"{r['repeat']} rounds of alternating {r['block_s']:.1f} s blocks"]
    if r["peak_fraction"] is None:  # a GPU: no CPU peak to compare with
        lines.append(f"  edgec        {r['edgec_ms']:9.3f} ms  {r['gflops']:7.1f} GFLOP/s  (CUDA GPU)")
    else:
        lines.append(f"  edgec        {r['edgec_ms']:9.3f} ms  {r['gflops']:7.1f} GFLOP/s  "
                     f"{100 * r['peak_fraction']:5.1f}% of peak ({r['peak_gflops']:.0f} GFLOP/s: {r['peak_method']})")
    if r["ort_ms"] is not None:
        lines.append(f"  onnxruntime  {r['ort_ms']:9.3f} ms  {r['ort_gflops']:7.1f} GFLOP/s  "
                     f"(onnxruntime {r['onnxruntime']}, default options)")
        if "ort_nospin_ms" in r:
            lines.append(f"  onnxruntime  {r['ort_nospin_ms']:9.3f} ms  spin-waiting off")
        lines.append(f"  ratio edgec/onnxruntime {r['ratio']:.3f}  (max |diff| {r['max_abs_diff']:.2e})")
    elif r.get("note"):
        lines.append(f"  onnxruntime: not run ({r['note']})")
    else:
        lines.append("  onnxruntime: not run (the artifact's .onnx source was not found; pass the .onnx model)")
    return "\n".join(lines)
