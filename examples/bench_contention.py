"""The runtime's contention policy (edgec/runtime/contention.py) A/B in one process, 2 busy processes:

    python examples/bench_contention.py squeezenet,shufflenet

Each zoo model (random weights) is compiled once and timed in alternating ~0.5 s blocks of 1 thread,
2 threads with the policy off and 2 threads with it on (8 rounds); prints the medians and the
2-thread/1-thread ratios."""
import os, sys, time, subprocess, tempfile
import numpy as np, onnx
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests")); sys.path.insert(0, HERE)
from zoo import load_light, randomize_weights
import edgec, edgec.runtime
from edgec.bench import set_threads
from bench_suite import Busy
names = sys.argv[1].split(",")
tmp = tempfile.mkdtemp()
arts = {}
for n in names:
    p = os.path.join(tmp, n + ".onnx"); onnx.save(randomize_weights(load_light(n)), p)
    arts[n] = edgec.runtime.load(edgec.compile(p, "host", os.path.join(tmp, n + ".edgec"), progress=False))
with Busy(2, 900):
    print("load", open("/proc/loadavg").read().strip())
    for n, m in arts.items():
        x = m.random_inputs(0); m.run(x)
        pol = m._thread().policy
        t = {k: [] for k in ["1T", "2T off", "2T on"]}
        for r in range(8):
            for k in t:
                set_threads(1 if k == "1T" else 2); pol.enabled = k != "2T off"
                m.run(x); end = time.perf_counter() + 0.5
                while time.perf_counter() < end:
                    s = time.perf_counter(); m.run(x); t[k].append(time.perf_counter() - s)
        med = {k: 1e3 * float(np.median(v)) for k, v in t.items()}
        print(n, {k: round(v, 2) for k, v in med.items()},
              "2T/1T off %.2f on %.2f" % (med["2T off"] / med["1T"], med["2T on"] / med["1T"]), flush=True)
