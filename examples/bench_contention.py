"""The runtime's contention policy (edgec/runtime/contention.py) A/B in one process, N busy processes:

    python examples/bench_contention.py squeezenet,shufflenet [--busy 2] [--rounds 8] [extra.onnx ...]

Each zoo model (random weights) and each extra .onnx file is compiled once and timed in
alternating ~0.5 s blocks (ROUNDS rounds) of: 1 thread; 2 threads with the policy off and TVM's
default pinned workers; 2 threads with the policy off and unpinned workers; 2 threads with the
policy on. Prints the medians (ms) and each one's ratio to the 1-thread median.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)
from bench_suite import Busy  # noqa: E402
from zoo import load_light, randomize_weights  # noqa: E402

import edgec.runtime  # noqa: E402
from edgec.bench import set_threads  # noqa: E402
from edgec.runtime.contention import configure  # noqa: E402

CASES = {"1T": (1, True, True), "2T pinned": (2, False, True),  # name: (threads, policy on, pinned)
         "2T unpinned": (2, False, False), "2T policy": (2, True, False)}


def timed(model, x, case, block_s=0.5):
    threads, policy_on, pinned = CASES[case]
    (set_threads if pinned else configure)(threads)  # bench's set_threads: TVM's default mode (pinned)
    model._thread().policy.enabled = policy_on
    model.run(x)
    times, end = [], time.perf_counter() + block_s
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        model.run(x)
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", help="comma-separated zoo models ('' for none)")
    p.add_argument("extra", nargs="*", help="more .onnx files")
    p.add_argument("--busy", type=int, default=2)
    p.add_argument("--rounds", type=int, default=8)
    a = p.parse_intermixed_args(argv)
    with tempfile.TemporaryDirectory() as tmp:  # the loaded models keep nothing open in it
        paths = a.extra[:]
        for n in filter(None, a.models.split(",")):
            paths.insert(0, os.path.join(tmp, n + ".onnx"))
            onnx.save(randomize_weights(load_light(n)), paths[0])
        arts = {os.path.basename(p)[:-5]: edgec.runtime.load(edgec.compile(p, "host", p[:-5] + ".edgec",
                                                                           progress=False)) for p in paths}
    with Busy(a.busy, 1800):
        print("busy", a.busy, "load", open("/proc/loadavg").read().strip())
        for name, m in arts.items():
            x = m.random_inputs(0)
            t = {k: [] for k in CASES}
            for _ in range(a.rounds):
                for k in CASES:
                    t[k] += timed(m, x, k)
            med = {k: 1e3 * float(np.median(v)) for k, v in t.items()}
            print(f"{name}: " + ", ".join(f"{k} {v:.2f} ms ({v / med['1T']:.2f})" for k, v in med.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
