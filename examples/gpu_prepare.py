"""The compile half of an offline GPU check: compile models for a CUDA preset on this machine (TVM's
compiler and nvcc), write what examples/gpu_run.py needs beside each artifact, and pack the folder
for a GPU machine that has only the TVM runtime (no compiler, no nvcc, no network).

    python examples/gpu_prepare.py OUT_DIR [--target cuda-sm90] [--zoo] [--recurrent] [MODEL.onnx ...]
                                   [--constant-weights] [--pack OUT.tar.xz]

- Random weights (the default; the zoo models get seeded random weights, tests/zoo.py):
  NAME.edgec and NAME.ref.npz (seeded inputs and onnxruntime's CPU outputs, computed here).
- --constant-weights: each weight tensor is replaced by its mean and saved as NAME_cw.onnx beside
  NAME_cw.edgec, so that the GPU side computes the reference with its own onnxruntime and runs the
  PyTorch baseline on the same graph. Such artifacts compress ~100x (VGG-19's 548 MB of weights
  travel in a few MB), but a constant-weight check compares far less than a random-weight one:
  use it for timing, and random weights for parity.
Then, on the GPU machine: `python examples/gpu_run.py OUT_DIR` (see its docstring).
"""
import argparse
import os
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "examples")]


def constant_weights(model):
    for t in model.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32 and a.size > 16:
            t.CopyFrom(numpy_helper.from_array(np.full(a.shape, a.mean(), np.float32), t.name))
    return model


def reference(onnx_path, artifact, out_npz):
    """OUT_NPZ: the artifact's seeded inputs (those `edgec verify` draws) and onnxruntime's outputs."""
    from edgec.api import reference_outputs
    from edgec.runtime import random_inputs
    from edgec.runtime.artifact import read_manifest
    manifest = read_manifest(artifact)
    feeds = random_inputs(manifest["inputs"], 0)
    _, outs = reference_outputs(onnx_path, feeds)
    np.savez(out_npz, **{f"in:{k}": v for k, v in feeds.items()},
             **{f"out:{o['name']}": v for o, v in zip(manifest["outputs"], outs)})


def sources(args, work):
    """{name: onnx path} of the models to compile (zoo and recurrent models written into WORK)."""
    found = {}
    if args.zoo:
        from zoo import drop_final_softmax, light_models, load_light, randomize_weights
        for name in light_models():
            found[name] = work / f"{name}.onnx"
            onnx.save(drop_final_softmax(randomize_weights(load_light(name), seed=0)), found[name])
    if args.recurrent:
        import recurrent_models
        for name, *spec in recurrent_models.SET:
            found[name] = work / f"{name}.onnx"
            onnx.save(recurrent_models.make(*spec), found[name])
    for path in args.models:
        found[Path(path).stem] = Path(path)
    return found


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("models", nargs="*", help="ONNX files")
    ap.add_argument("--target", default="cuda-sm90")
    ap.add_argument("--zoo", action="store_true", help="the 9 light ONNX zoo models (seeded random weights)")
    ap.add_argument("--recurrent", action="store_true", help="examples/recurrent_models.py's set")
    ap.add_argument("--constant-weights", action="store_true")
    ap.add_argument("--pack", help="also write OUT_DIR as a .tar.xz archive")
    args = ap.parse_intermixed_args(argv)  # model paths may follow the flags
    out = Path(args.out)
    work = out / "src"
    work.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name, path in sources(args, work).items():
        if args.constant_weights:
            name += "_cw"
            onnx.save(constant_weights(onnx.load(str(path))), out / f"{name}.onnx")
            path = out / f"{name}.onnx"
        jobs.append((name, path))

    def compile_one(job):
        name, path = job
        r = subprocess.run([sys.executable, "-m", "edgec", "compile", str(path), "--target", args.target,
                            "-o", str(out / f"{name}.edgec")], capture_output=True, text=True)
        if r.returncode == 0 and not args.constant_weights:
            reference(path, out / f"{name}.edgec", out / f"{name}.ref.npz")
        return name, r.returncode, (r.stdout + r.stderr).strip().splitlines()[-1:]

    failed = 0
    with ThreadPoolExecutor(max(1, min(4, (os.cpu_count() or 2) // 2))) as pool:
        for name, rc, msg in pool.map(compile_one, jobs):
            print(f"{name}: {'ok' if rc == 0 else 'FAILED'} {msg[0] if msg else ''}", flush=True)
            failed += rc != 0
    if args.pack:
        with tarfile.open(args.pack, "w:xz") as tar:
            for f in sorted(out.iterdir()):
                if f.is_file():
                    tar.add(f, arcname=f"{out.name}/{f.name}")
        print(f"packed {args.pack} ({os.path.getsize(args.pack) / 2**20:.1f} MiB)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
