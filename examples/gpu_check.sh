#!/usr/bin/env bash
# GPU check for a fresh machine with an NVIDIA GPU and driver (CUDA 13 capable, r580+), Python 3.10+
# and a C compiler (nvcc preprocesses with it):
#
#     examples/gpu_check.sh [OUT_DIR]        # default OUT_DIR: ./gpu_check
#
# 1. makes a venv in OUT_DIR and installs this repository with its CUDA runtime extra, nvcc from
#    PyPI (nvidia-cuda-nvcc) and onnxruntime-gpu with its CUDA/cuDNN wheels (WHEELS=DIR: install
#    offline from a folder of wheels instead);
# 2. compiles the 9 ONNX light zoo models (seeded random weights) and the recurrent set for this
#    GPU's preset (cuda-smXY, see `edgec targets`; TARGET=... overrides), in parallel;
# 3. verifies each on the GPU against onnxruntime on the CPU (rtol 1e-4, atol 1e-5);
# 4. times each against onnxruntime's CUDA execution provider (alternating blocks, as `edgec bench`).
#
# MODELS="squeezenet gru_s32_h128" checks only those.
# Writes OUT_DIR/gpu_check.md (the table) and OUT_DIR/gpu_check.json; exits 1 if a model fails.
# Sized to finish within 8 minutes on a 16-core machine: about 2 for the installs, 3 to 4 for the
# compiles (nvcc's front end dominates: densenet121 has 242 kernels), 1 to 2 for verify and timing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-gpu_check}" && cd "${1:-gpu_check}" && pwd)
start=$(date +%s)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader || true
command -v cc >/dev/null || command -v gcc >/dev/null || { echo "gpu_check: nvcc needs a host C compiler (apt-get install gcc)"; exit 2; }

py="$out/venv/bin/python"
[ -x "$py" ] || python3 -m venv "$out/venv"
pip=("$py" -m pip install -q --disable-pip-version-check)
[ -n "${WHEELS:-}" ] && pip+=(--no-index --find-links "$WHEELS")
# nvcc, its NVVM and headers of the same CUDA release (13.0 is what the project is tested with)
"${pip[@]}" "$repo[cuda]" "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*"
# onnxruntime-gpu ships the same `onnxruntime` module as the CPU package edgec depends on: replace it.
"$py" -m pip uninstall -q -y onnxruntime
"${pip[@]}" "onnxruntime-gpu[cuda,cudnn]>=1.23" "nvidia-cublas>=13,<14"
echo "gpu_check: installed in $(( $(date +%s) - start )) s"

cd "$out"
EDGEC_REPO="$repo" "$py" - <<'EOF'
import json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx

repo = os.environ["EDGEC_REPO"]
sys.path[:0] = [os.path.join(repo, "tests"), os.path.join(repo, "examples")]
import onnxruntime as ort
if hasattr(ort, "preload_dlls"):  # the CUDA/cuDNN libraries of the nvidia-* wheels
    ort.preload_dlls()
import edgec
from edgec import targets
from edgec.bench import bench_threads
from edgec.runtime import cuda
import recurrent_models
from zoo import drop_final_softmax, light_models, load_light, randomize_weights

gpu, sm = cuda.gpu_info(cuda._driver())
presets = sorted((int(p.gpu_arch[3:]), n) for n, p in ((n, targets.get(n)) for n in targets.names())
                 if p.device == "cuda" and p.arch == targets.host_arch() and not p.unsupported)
target = os.environ.get("TARGET") or max(p for p in presets if p[0] <= sm[0] * 10 + sm[1])[1]
print(f"gpu_check: {gpu} (sm_{sm[0]}{sm[1]}), target {target}, onnxruntime {ort.__version__} "
      f"{ort.get_available_providers()}", flush=True)
if "CUDAExecutionProvider" not in ort.get_available_providers():
    sys.exit("gpu_check: onnxruntime-gpu has no CUDAExecutionProvider here")

os.makedirs("models", exist_ok=True)
models = {}
only = set(os.environ.get("MODELS", "").split())  # MODELS="squeezenet lstm_s32_h128": a subset
for name in light_models():
    if not only or name in only:
        models[name] = f"models/{name}.onnx"
        onnx.save(drop_final_softmax(randomize_weights(load_light(name), seed=0)), models[name])
for name, *spec in recurrent_models.SET:
    if not only or name in only:
        models[name] = f"models/{name}.onnx"
        onnx.save(recurrent_models.make(*spec), models[name])


def compile_one(name):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "edgec", "compile", models[name], "--target", target,
                        "-o", f"models/{name}.edgec"], capture_output=True, text=True)
    return name, r.returncode, (r.stdout + r.stderr).strip().splitlines()[-1:], time.perf_counter() - t0


workers = max(1, min(len(models), (os.cpu_count() or 2) // 2))  # TVM's passes use a few threads each
by_size = sorted(models, key=lambda n: -os.path.getsize(models[n]))  # big ones first
t_compile = time.perf_counter()
with ThreadPoolExecutor(workers) as pool:
    built = {n: (rc, msg, s) for n, rc, msg, s in pool.map(compile_one, by_size)}
print(f"gpu_check: compiled {sum(rc == 0 for rc, _, _ in built.values())}/{len(models)} models with {workers} "
      f"workers in {time.perf_counter() - t_compile:.0f} s", flush=True)

rows, failed = [], []
for name in models:
    rc, msg, compile_s = built[name]
    row = {"model": name, "compile_s": round(compile_s, 1)}
    rows.append(row)
    if rc:
        row["error"] = msg[0] if msg else f"exit {rc}"
        failed.append(name)
        continue
    art = f"models/{name}.edgec"
    try:
        v = edgec.verify(models[name], art)
        row.update(passed=bool(v.passed), max_abs=max(r.max_abs for r in v.reports),
                   max_rel=max(r.max_rel for r in v.reports))
        if not v.passed:
            failed.append(name)
        b = bench_threads(art, repeat=2, onnx_path=models[name])[0]  # 2 rounds of 0.4 s blocks per engine
        row.update(edgec_ms=b["edgec_ms"], ort_cuda_ms=b["ort_ms"], ratio=b["ratio"], gflops=b["gflops"])
    except Exception as e:  # noqa: BLE001 - report every model, then fail
        row["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:200]
        failed.append(name)
    print(f"  {name}: {row}", flush=True)


def cell(r, k, fmt):
    return fmt.format(r[k]) if r.get(k) is not None else "-"


lines = [f"# edgec on {gpu} (sm_{sm[0]}{sm[1]}, target {target}) vs onnxruntime {ort.__version__}", "",
         "| model | compile s | verify (vs CPU onnxruntime) | max abs err | edgec ms | ort CUDA EP ms | edgec/ort |",
         "|---|---|---|---|---|---|---|"]
for r in rows:
    status = r.get("error") or ("PASS" if r.get("passed") else "FAIL")
    lines.append(f"| {r['model']} | {r['compile_s']} | {status} | {cell(r, 'max_abs', '{:.2e}')} | "
                 f"{cell(r, 'edgec_ms', '{:.3f}')} | {cell(r, 'ort_cuda_ms', '{:.3f}')} | {cell(r, 'ratio', '{:.2f}')} |")
open("gpu_check.md", "w").write("\n".join(lines) + "\n")
json.dump({"gpu": gpu, "sm": sm, "target": target, "rows": rows}, open("gpu_check.json", "w"), indent=1)
print("\n".join(lines))
sys.exit(1 if failed else 0)
EOF
echo "gpu_check: done in $(( $(date +%s) - start )) s ($out/gpu_check.md)"
