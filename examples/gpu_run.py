"""Run prebuilt CUDA artifacts on a GPU machine that has no TVM compiler, no nvcc and no network.

The GPU half of a GPU check whose compile half ran elsewhere (examples/gpu_prepare.py): it needs
numpy, the TVM runtime (TVM_USE_RUNTIME_LIB=1 works), the CUDA runtime library and the NVIDIA
driver; onnxruntime and PyTorch only for the references and the baseline.

    python examples/gpu_run.py DIR [--out gpu_run.md] [--rounds 5] [--profile NAME ...]

For every DIR/NAME.edgec:
- DIR/NAME.ref.npz (inputs `in:<name>`, outputs `out:<name>`, computed by onnxruntime on the CPU
  of the machine that compiled): the artifact's outputs on the GPU must match them elementwise
  (rtol 1e-4, atol 1e-5, the same bar as `edgec verify`);
- DIR/NAME.onnx: onnxruntime on this machine's CPU is the reference (seeded inputs), and the same
  graph run by PyTorch on the GPU (cuDNN, fp32: TF32 off) is the latency baseline, both called as
  users call them (numpy in, numpy out, so host<->device copies count on both sides), in
  `edgec bench`'s alternating blocks (ROUNDS of them per engine); median latency.
Writes a markdown table (and .json beside it); exits 1 if any artifact fails to load or to match.

The H200 run of examples/bench_results.md set up the runtime like this, offline: the apache-tvm-ffi
wheel for the machine's Python installed with `pip install --no-deps --target SITE`; the
apache-tvm wheel's `tvm/` folder copied into SITE without `lib/libtvm_compiler.so` (17 MB instead of
300); a folder PKG holding a link `edgec` -> this repository; then
`PYTHONPATH=SITE:PKG TVM_USE_RUNTIME_LIB=1 python examples/gpu_run.py DIR`. libcudart.so.13 came
from the machine's nvidia-cuda-runtime package (edgec's runtime finds it there, see runtime/cuda.py).
"""
import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import edgec  # noqa: E402
from edgec.bench import alternate  # noqa: E402
from edgec.runtime.compare import compare as compare_output  # noqa: E402
from onnx_torch import TorchGraph  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5


def compare(outs, refs):
    """(passed, max_abs, max_rel) of OUTS against REFS elementwise (`edgec verify`'s element rule)."""
    reports = [compare_output(str(i), a, e, RTOL, ATOL) for i, (a, e) in enumerate(zip(outs, refs))]
    return all(r.passed for r in reports), max(r.max_abs for r in reports), max(r.max_rel for r in reports)


def medians(engines, rounds):
    """{name: median seconds per call}: `edgec bench`'s alternating blocks, after a warm-up
    (cuDNN's autotuning, lazy module loading)."""
    for fn in engines.values():
        for _ in range(10):
            fn()
    return {name: float(np.median(t)) for name, t in alternate(engines, rounds).items()}


def check(art, rounds, profile):
    name = Path(art).name[:-len(".edgec")]
    row = {"model": name}
    t0 = time.perf_counter()
    m = edgec.load(art)
    row["load_s"] = round(time.perf_counter() - t0, 2)
    base = art[:-len(".edgec")]
    onnx_path = base + ".onnx"
    if os.path.exists(base + ".ref.npz"):
        ref = np.load(base + ".ref.npz")
        feeds = {k[3:]: ref[k] for k in ref.files if k.startswith("in:")}
        expected = [ref["out:" + o["name"]] for o in m.outputs]
        row["reference"] = "onnxruntime CPU (compile machine)"
    else:
        import onnxruntime as ort
        ort.set_default_logger_severity(3)  # old zoo files list their weights as inputs: one warning each
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        feeds = m.random_inputs(0)
        expected = sess.run([o["name"] for o in m.outputs], feeds)
        row["reference"] = f"onnxruntime {ort.__version__} CPU"
    outs = m.run(feeds)
    row["passed"], row["max_abs"], row["max_rel"] = compare(outs, expected)
    engines = {"edgec": lambda: m.run(feeds)}
    if os.path.exists(onnx_path):
        try:
            g = TorchGraph(onnx_path)
            t_out = g.run_numpy(feeds)
            row["torch_max_abs"] = compare(t_out, expected)[1]
            engines["torch"] = lambda: g.run_numpy(feeds)
        except Exception as e:  # noqa: BLE001 - no baseline for this model; edgec's numbers still count
            row["torch"] = f"no baseline: {type(e).__name__}: {e}"[:300]
    times = medians(engines, rounds)
    row["edgec_ms"] = times["edgec"] * 1e3
    if "torch" in times:
        row["torch_ms"] = times["torch"] * 1e3
        row["ratio"] = times["edgec"] / times["torch"]
    if profile:
        p = m.profile(feeds, repeat=20)
        row["kernel_sum_ms"] = p.kernel_sum * 1e3
        row["top"] = [(r["kernel"], r["kind"], round(r["median_s"] * 1e6, 1)) for r in p.rows[:12]]
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--out", default="gpu_run.md")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", nargs="*", default=[], help="models to profile per kernel")
    args = ap.parse_args(argv)
    from edgec.runtime import cuda
    gpu, sm = cuda.gpu_info(cuda._driver())
    head = f"# prebuilt CUDA artifacts on {gpu} (sm_{sm[0]}{sm[1]})"
    try:
        import torch
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        head += f"; baseline PyTorch {torch.__version__} (cuDNN {torch.backends.cudnn.version()}, fp32, TF32 off)"
    except ImportError:
        head += "; no PyTorch: no baseline"
    print(head, flush=True)
    rows, failed = [], []
    for art in sorted(glob.glob(os.path.join(args.dir, "*.edgec"))):
        name = Path(art).name[:-len(".edgec")]
        try:
            row = check(art, args.rounds, name in args.profile)
        except Exception as e:  # noqa: BLE001 - report every artifact, then fail
            row = {"model": name, "error": f"{type(e).__name__}: {e}"[:300]}
        if not row.get("passed"):
            failed.append(name)
        rows.append(row)
        print(json.dumps(row), flush=True)

    def f(r, k, fmt):
        return fmt.format(r[k]) if r.get(k) is not None else "-"
    lines = [head, "", "| model | verify | max abs err | edgec ms | torch ms | edgec/torch | torch max abs err |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        status = r.get("error") or ("PASS" if r.get("passed") else "FAIL")
        lines.append(f"| {r['model']} | {status} | {f(r, 'max_abs', '{:.2e}')} | {f(r, 'edgec_ms', '{:.3f}')} | "
                     f"{f(r, 'torch_ms', '{:.3f}')} | {f(r, 'ratio', '{:.2f}')} | {f(r, 'torch_max_abs', '{:.2e}')} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"gpu": gpu, "sm": sm, "rows": rows}, indent=1))
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
