"""int8 against float32 and against onnxruntime's int8, on the same QDQ models; a markdown table.

    python examples/bench_int8.py [--models resnet50,squeezenet] [--threads 1,2] [--repeat 3]
                                  [--samples 8] [--out int8.md] [extra.onnx ...]

Each float model (zoo models with seeded random weights, tests/zoo.py, plus any extra .onnx such as
a Keras MobileNetV2 export) is quantized by `edgec quantize` on seeded random calibration inputs,
twice: with the default weights' bits for this machine (`--reduce-range auto`: 7 bits on x86
without VNNI) and with 8 bits. The float model and both QDQ models are compiled; then edgec float,
edgec int8 and onnxruntime (default session options) on each QDQ model are timed in alternating
blocks (edgec/bench.py `alternate`) at every thread count. Columns: medians (ms), the speed-up of
edgec int8 over edgec float, and edgec int8 over onnxruntime int8 on the same QDQ model (median, and
from the fastest runs).
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from zoo import load_light, randomize_weights  # noqa: E402

from edgec import api  # noqa: E402
from edgec.bench import _ort_session, alternate, isa, set_threads  # noqa: E402
from edgec.runtime import load  # noqa: E402


def quantized(path, tmp, samples, bits):
    """`edgec quantize` PATH on SAMPLES seeded random inputs; BITS "auto" or 8. Returns the QDQ path."""
    m = onnx.load(path)
    inits = {t.name for t in m.graph.initializer}
    inp = next(i for i in m.graph.input if i.name not in inits)
    shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    calib = os.path.join(tmp, f"{Path(path).stem}.calib.npz")
    np.savez(calib, **{inp.name: rng.standard_normal([samples] + shape[1:]).astype(np.float32)})
    out = os.path.join(tmp, f"{Path(path).stem}.{bits}.onnx")
    api.quantize(path, calib, out, reduce_range="auto" if bits == "auto" else False)
    return out


def bench_model(path, tmp, threads, repeat, samples):
    qdq = {bits: quantized(path, tmp, samples, bits) for bits in ("auto", 8)}
    arts = {"float": load(api.compile(path, "host", os.path.join(tmp, "f.edgec"), progress=False))}
    for bits, q in qdq.items():
        arts[bits] = load(api.compile(q, "host", os.path.join(tmp, f"{bits}.edgec"), progress=False))
    inputs = arts["float"].random_inputs(0)
    rows = []
    for t in threads:
        set_threads(t)
        engines = {}
        for name, art in arts.items():
            args = art.prepare(inputs)
            engines[f"edgec {name}"] = lambda a=art, x=args: a.outputs_to_numpy(a.invoke(x))
        for bits, q in qdq.items():
            sess = _ort_session(q, t)
            engines[f"ort {bits}"] = lambda s=sess: s.run(None, inputs)
        times = alternate(engines, repeat)
        med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        low = {k: float(np.min(v)) * 1e3 for k, v in times.items()}
        rows.append((t, med, low))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("extra", nargs="*", help="more float .onnx models (e.g. a MobileNetV2 export)")
    p.add_argument("--models", default="resnet50,squeezenet", help="comma-separated zoo models ('none': only extra)")
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1 and all cores)")
    p.add_argument("--repeat", type=int, default=3, help="rounds of alternating ~0.4 s blocks")
    p.add_argument("--samples", type=int, default=8, help="random calibration samples")
    p.add_argument("--out", help="write the markdown table here")
    a = p.parse_args(argv)
    threads = [int(t) for t in a.threads.split(",")] if a.threads else sorted({1, os.cpu_count() or 1})
    names = [] if a.models == "none" else a.models.split(",")
    out = [f"ISA {isa()}, {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}; medians of "
           f"{a.repeat} rounds of alternating ~0.4 s blocks; onnxruntime with default options on the same QDQ "
           "model; 'auto' = `edgec quantize` default bits for this machine, '8' = 8-bit weights", "",
           "| model | threads | edgec float ms | edgec int8 auto ms | ORT int8 auto ms | edgec int8 8-bit ms | "
           "ORT int8 8-bit ms | float/int8 (auto) | edgec/ORT auto (min) | edgec/ORT 8-bit (min) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(out), flush=True)
    with tempfile.TemporaryDirectory(prefix="edgec-int8-") as tmp:
        paths = []
        for n in names:
            paths.append(os.path.join(tmp, f"{n}.onnx"))
            onnx.save(randomize_weights(load_light(n)), paths[-1])
        for path in paths + a.extra:
            with tempfile.TemporaryDirectory(dir=tmp) as work:
                for t, med, low in bench_model(path, work, threads, a.repeat, a.samples):
                    out.append(f"| {Path(path).stem} | {t} | {med['edgec float']:.2f} | {med['edgec auto']:.2f} | "
                               f"{med['ort auto']:.2f} | {med['edgec 8']:.2f} | {med['ort 8']:.2f} | "
                               f"{med['edgec float'] / med['edgec auto']:.2f} | "
                               f"{med['edgec auto'] / med['ort auto']:.2f} ({low['edgec auto'] / low['ort auto']:.2f}) | "
                               f"{med['edgec 8'] / med['ort 8']:.2f} ({low['edgec 8'] / low['ort 8']:.2f}) |")
                    print(out[-1], flush=True)
    set_threads(os.cpu_count() or 1)
    if a.out:
        Path(a.out).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    sys.exit(main())
