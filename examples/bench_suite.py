"""`edgec bench` over the random-weight ONNX zoo (and any extra .onnx files); writes a markdown table.

    python examples/bench_suite.py [--threads 1,2] [--repeat 5] [--busy N] [--no-spin] [--out bench.md]
                                   [--models a,b] [extra.onnx ...]

The zoo: the onnx package's light models with seeded random weights (tests/zoo.py). Each model is
compiled once and timed at every thread count (default 1 and all cores) against onnxruntime with its
default options, in alternating blocks (see edgec/bench.py). `--busy N` keeps N CPU-burning
processes running meanwhile (each exits on its own after --busy-limit seconds, and all are stopped
at the end). The geomean of the edgec/onnxruntime latency ratios per thread count closes the table.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from zoo import light_models, load_light, randomize_weights  # noqa: E402

from edgec.bench import bench_threads, cpu_name, isa  # noqa: E402

BURN = "import os, time\nend = time.time() + {limit}\nwhile time.time() < end and os.getppid() == {parent}:\n" \
       "    sum(range(100000))\n"


class Busy:
    """N background processes burning a core each, for at most LIMIT seconds (or until the
    parent exits); stopped when the block ends."""

    def __init__(self, n, limit):
        self.n, self.limit, self.procs = n, limit, []

    def __enter__(self):
        code = BURN.format(limit=self.limit, parent=os.getpid())
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("extra", nargs="*", help="more .onnx models (e.g. the recurrent set)")
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1 and all cores)")
    p.add_argument("--repeat", type=int, default=5, help="rounds of alternating ~0.4 s blocks")
    p.add_argument("--models", help="comma-separated zoo models (default: all; none: only the extra files)")
    p.add_argument("--busy", type=int, default=0, help="N background CPU-burning processes (max 64)")
    p.add_argument("--busy-limit", type=float, default=3600, help="seconds after which a burner stops itself")
    p.add_argument("--no-spin", action="store_true", help="also time onnxruntime with spin-waiting off")
    p.add_argument("--target", default="host")
    p.add_argument("--out", help="write the markdown table here")
    a = p.parse_args(argv)
    if not 0 <= a.busy <= 64:
        p.error("--busy must be between 0 and 64")
    names = [] if a.models == "none" else a.models.split(",") if a.models else light_models()
    threads = [int(t) for t in a.threads.split(",")] if a.threads else sorted({1, os.cpu_count() or 1})
    head = (f"ISA {isa()}, {cpu_name()}, {os.cpu_count()} cores, target {a.target}, {a.busy} busy background process(es), "
            f"load average at start {os.getloadavg()[0]:.1f}; medians of {a.repeat} rounds of alternating "
            "~0.4 s blocks, onnxruntime with default options")
    nospin = " ORT no-spin ms |" if a.no_spin else ""
    rows = [head, "", f"| model | threads | GFLOP | edgec ms | ORT ms |{nospin} edgec/ORT | edgec/ORT (min) | "
            "GFLOP/s | % peak | compile s |", "|---|---|---|---|---|---|---|---|---|---|" + "---|" * a.no_spin]
    print("\n".join(rows), flush=True)
    ratios = {t: [] for t in threads}
    with tempfile.TemporaryDirectory() as tmp, Busy(a.busy, a.busy_limit):
        for n in names:
            onnx.save(randomize_weights(load_light(n)), os.path.join(tmp, f"{n}.onnx"))
        for path in [os.path.join(tmp, f"{n}.onnx") for n in names] + a.extra:
            try:
                results = bench_threads(path, a.target, threads, a.repeat, nospin=a.no_spin)
            except Exception as e:  # noqa: BLE001 - one model failing must not hide the others
                results, err = [], str(e).splitlines()[0][:120]
                rows.append(f"| {Path(path).stem} | failed: {err} |")
                print(rows[-1], flush=True)
            for r in results:
                ratios[r["threads"]].append(r["ratio"])
                ns = f" {r['ort_nospin_ms']:.2f} |" if a.no_spin else ""
                rows.append(f"| {Path(path).stem} | {r['threads']} | {r['gflop']:.2f} | {r['edgec_ms']:.2f} | "
                            f"{r['ort_ms']:.2f} |{ns} {r['ratio']:.2f} | {r['edgec_min_ms'] / r['ort_min_ms']:.2f} | "
                            f"{r['gflops']:.0f} | {100 * r['peak_fraction']:.0f} | {r['compile_s']:.1f} |")
                print(rows[-1], flush=True)
    rows.append("")
    for t, rs in ratios.items():
        if rs:
            rows.append(f"geomean edgec/onnxruntime over {len(rs)} models, {t} thread(s): "
                        f"{float(np.exp(np.mean(np.log(rs)))):.3f}")
            print(rows[-1])
    if a.out:
        Path(a.out).write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    sys.exit(main())
