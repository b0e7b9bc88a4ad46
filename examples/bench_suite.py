"""`edgec bench` over the random-weight ONNX zoo (and any extra .onnx files); writes a markdown table.

    python examples/bench_suite.py [--threads 2] [--repeat 20] [--out bench.md] [--models a,b] [extra.onnx ...]

The zoo: the onnx package's light models with seeded random weights (tests/zoo.py). The geomean
of the edgec/onnxruntime latency ratios closes the table.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from zoo import light_models, load_light, randomize_weights  # noqa: E402

from edgec.bench import bench  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("extra", nargs="*", help="more .onnx models (e.g. the recurrent set)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--models", help="comma-separated zoo models (default: all; none: only the extra files)")
    p.add_argument("--out", help="write the markdown table here")
    a = p.parse_args(argv)
    names = [] if a.models == "none" else a.models.split(",") if a.models else light_models()
    rows = ["| model | GFLOP | edgec ms | ORT ms | edgec/ORT | edgec/ORT (min) | GFLOP/s | % peak | compile s |",
            "|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(rows), flush=True)
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for n in names:
            path = os.path.join(tmp, f"{n}.onnx")
            onnx.save(randomize_weights(load_light(n)), path)
            paths.append(path)
        for path in paths + a.extra:
            try:
                r = bench(path, threads=a.threads, repeat=a.repeat)
            except Exception as e:  # noqa: BLE001 - one model failing must not hide the others
                row = f"| {Path(path).stem} | failed: {str(e).splitlines()[0][:120]} |"
            else:
                ratios.append(r["ratio"])
                row = (f"| {Path(path).stem} | {r['gflop']:.2f} | {r['edgec_ms']:.2f} | {r['ort_ms']:.2f} | "
                       f"{r['ratio']:.2f} | {r['edgec_min_ms'] / r['ort_min_ms']:.2f} | {r['gflops']:.0f} | "
                       f"{100 * r['peak_fraction']:.0f} | {r['compile_s']:.1f} |")
            rows.append(row)
            print(row, flush=True)
            os.remove(path) if path in paths else None
    if ratios:
        rows.append(f"\ngeomean edgec/onnxruntime over {len(ratios)} models: "
                    f"{float(np.exp(np.mean(np.log(ratios)))):.3f} ({a.threads} threads, median of {a.repeat})")
        print(rows[-1])
    if a.out:
        Path(a.out).write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    sys.exit(main())
