"""Per-kernel profiling of a compiled model, mapped back to the user's layers.

TVM 0.27 has no VM profiler, so `measure` uses `VirtualMachine.set_instrument`: the VM calls the
instrument before and after every call instruction; for calls to the model's PrimFuncs
(manifest["kernels"][i]["function"]) it synchronizes the device and reads the clock. End-to-end
times come from plain runs alternating with the instrumented ones, without the instrument's cost.

`measure(vm, args, device, functions, ...)` is the timing core: it needs only an object with
`set_instrument` and `[func]`, so a VM over an RPC session can be passed the same way.
`attribute` maps calls back to kernels by their order in `main` (identical kernels share one
PrimFunc). `profile_model(model, ...)` wraps both for a loaded `edgec.runtime.Model` and returns a
`Profile` (rows, trace, CSV, plot). Imports only numpy and the standard library; matplotlib only
inside `Profile.plot`.
"""
import csv
import json
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import EdgecError

GFLOP_KINDS = ("conv2d", "dense", "recurrent")  # kinds whose FLOP counts mean arithmetic work


@dataclass
class Measurement:
    e2e: list  # seconds per uninstrumented run
    runs: list  # per instrumented run: (run start, run end, [(function, start, end), ...]), seconds
    instrumented: list = field(default_factory=list)  # seconds per instrumented run


def measure(vm, args, device, functions, repeat=20, warmup=3, func="main", clock=time.perf_counter):
    """Run VM[func](*args) WARMUP times, then REPEAT times plain and REPEAT times instrumented.

    Plain and instrumented runs alternate, so a change in machine load hits both alike.
    Returns a Measurement; kernel calls are calls of the PrimFuncs named in FUNCTIONS.
    """
    functions = set(functions)
    fn = vm[func]
    sync = device.sync
    events, pending = [], {}

    def instrument(f, symbol, before, ret, *rest):
        if symbol in functions:
            sync()
            if before:
                pending[symbol] = clock()
            else:
                events.append((symbol, pending.pop(symbol), clock()))
        return 0

    for _ in range(warmup):
        fn(*args)
    sync()
    m = Measurement([], [], [])
    try:
        for _ in range(repeat):
            t0 = clock()
            fn(*args)
            sync()
            m.e2e.append(clock() - t0)
            vm.set_instrument(instrument)
            events = []
            t0 = clock()
            fn(*args)
            sync()
            m.runs.append((t0, clock(), events))
            m.instrumented.append(m.runs[-1][1] - t0)
            vm.set_instrument(None)
    finally:
        vm.set_instrument(None)
    return m


def function_of(kernel):
    """The PrimFunc a kernel calls (identical kernels share one; older artifacts lack the field)."""
    return kernel.get("function", kernel["name"])


def attribute(events, kernels):
    """Map (function, start, end) call events to kernel names, using the kernels' order in `main`.

    The VM calls kernels in manifest order, skipping those TVM runs as views (a lone reshape).
    A shared PrimFunc's call goes to the next kernel in order that uses it.
    """
    out, i = [], 0
    for func, start, end in events:
        j = next((j for j in range(i, len(kernels)) if function_of(kernels[j]) == func), None)
        if j is None:  # called again after its last kernel: count it there
            j = max(j for j, k in enumerate(kernels) if function_of(k) == func)
        else:
            i = j + 1
        out.append((kernels[j]["name"], start, end))
    return out


class Profile:
    """Per-kernel statistics of a Measurement, joined with the manifest's kernel records."""

    def __init__(self, model_name, kernels, m):
        self.model_name, self.measurement = model_name, m
        self.repeat = len(m.runs)
        per_run = {k["name"]: [[] for _ in m.runs] for k in kernels}
        self.runs = [(start, end, attribute(events, kernels)) for start, end, events in m.runs]
        for i, (_, _, events) in enumerate(self.runs):
            for name, start, end in events:
                per_run[name][i].append(end - start)
        self.rows = []
        for k in kernels:
            # a kernel never called (TVM ran a reshape as a view) stays in the table with zero time
            totals = np.array([sum(calls) for calls in per_run[k["name"]]] or [0.0])
            calls = int(np.median([len(c) for c in per_run[k["name"]]])) if m.runs else 0
            q1, med, q3 = np.percentile(totals, [25, 50, 75])
            flops = k.get("flops", 0) * calls
            self.rows.append({
                "kernel": k["name"], "function": function_of(k), "nodes": k.get("nodes", []),
                "layers": k.get("sources", []), "kind": k.get("kind", ""), "ops": k.get("ops", []),
                "shape": k.get("output_shapes", [[]])[0] if k.get("output_shapes") else [],
                "calls": calls, "median_s": float(med), "q1_s": float(q1), "q3_s": float(q3),
                "min_s": float(totals.min()), "max_s": float(totals.max()),
                "gflops": flops / med / 1e9 if flops and med > 0 and k.get("kind") in GFLOP_KINDS else None,
            })
        self.rows.sort(key=lambda r: -r["median_s"])
        medians = sum(r["median_s"] for r in self.rows)
        for r in self.rows:
            r["share"] = r["median_s"] / medians if medians else 0.0
        # whole-run numbers are medians over runs (of plain run times, of each instrumented run's
        # kernel sum), so the two carry the same noise; a sum of per-kernel medians would not
        sums = [sum(e - s for _, s, e in ev) for _, _, ev in self.runs] or [0.0]
        e2e = m.e2e or [0.0]
        self.kernel_sum, self.e2e_median = float(np.median(sums)), float(np.median(e2e))
        self.e2e_q1, self.e2e_q3 = (float(x) for x in np.percentile(e2e, [25, 75]))
        self.instrumented_median = float(np.median(m.instrumented or [0.0]))
        # fastest run of each kind: robust to preemption on a loaded machine
        self.kernel_sum_min, self.e2e_min = float(min(sums)), float(min(e2e))

    @property
    def overhead(self):
        """Median end-to-end time minus median kernel time per run (VM dispatch, allocation, checks)."""
        return self.e2e_median - self.kernel_sum

    # ---- files ------------------------------------------------------------------------------
    def write_csv(self, path):
        cols = ["kernel", "layers", "nodes", "kind", "shape", "calls", "median_ms", "q1_ms", "q3_ms",
                "min_ms", "max_ms", "share", "gflops"]
        with _open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in self.rows:
                w.writerow([r["kernel"], ";".join(r["layers"]), ";".join(r["nodes"]), r["kind"],
                            "x".join(map(str, r["shape"])), r["calls"],
                            *(f"{r[k] * 1e3:.6f}" for k in ("median_s", "q1_s", "q3_s", "min_s", "max_s")),
                            f"{r['share']:.6f}", "" if r["gflops"] is None else f"{r['gflops']:.3f}"])

    def trace_events(self):
        """Chrome trace events: one 'run' per instrumented iteration, each kernel call inside it."""
        info = {r["kernel"]: r for r in self.rows}
        t_base = self.runs[0][0] if self.runs else 0.0
        us = lambda t: round((t - t_base) * 1e6, 3)  # noqa: E731
        out = [{"name": "process_name", "ph": "M", "pid": 1, "tid": 1,
                "args": {"name": f"edgec {self.model_name}"}}]
        for i, (start, end, events) in enumerate(self.runs):
            out.append({"name": "run", "cat": "run", "ph": "X", "pid": 1, "tid": 1, "ts": us(start),
                        "dur": round((end - start) * 1e6, 3), "args": {"iteration": i}})
            for name, s, e in events:
                r = info.get(name, {})
                out.append({"name": name, "cat": r.get("kind", "kernel"), "ph": "X", "pid": 1, "tid": 1,
                            "ts": us(s), "dur": round((e - s) * 1e6, 3),
                            "args": {"layers": r.get("layers", []), "nodes": r.get("nodes", []),
                                     "shape": r.get("shape", [])}})
        return out

    def write_trace(self, path):
        with _open(path, "w") as f:
            json.dump({"traceEvents": self.trace_events(), "displayTimeUnit": "ms"}, f)

    def plot(self, path, top=25):
        """Horizontal bar chart of median time per kernel, labelled with its source layers."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise EdgecError("--plot needs matplotlib: pip install 'edgec[plot]'") from None
        rows = self.rows[:top]
        rest = sum(r["median_s"] for r in self.rows[top:])
        labels = [_label(r) for r in rows] + ([f"{len(self.rows) - top} other kernels"] if rest else [])
        ms = [r["median_s"] * 1e3 for r in rows] + ([rest * 1e3] if rest else [])
        err = [[(r["median_s"] - r["q1_s"]) * 1e3 for r in rows] + ([0] if rest else []),
               [(r["q3_s"] - r["median_s"]) * 1e3 for r in rows] + ([0] if rest else [])]
        fig, ax = plt.subplots(figsize=(10, 0.32 * len(labels) + 1.6))
        y = np.arange(len(labels))
        ax.barh(y, ms, xerr=err, color="#4878a8", ecolor="#999999", capsize=2)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("median time per run (ms), bars: IQR")
        ax.set_title(f"{self.model_name}: end-to-end {self.e2e_median * 1e3:.2f} ms, kernels "
                     f"{self.kernel_sum * 1e3:.2f} ms, overhead {self.overhead * 1e3:.2f} ms", fontsize=9)
        for yi, v, hi, r in zip(y, ms, err[1], rows + [None]):
            share = r["share"] if r else rest / sum(r["median_s"] for r in self.rows)
            ax.text(v + hi, yi, f"  {share:.1%}", va="center", fontsize=7)
        ax.margins(x=0.1)
        fig.tight_layout()
        try:
            fig.savefig(path, format="png", dpi=110)
        except OSError as e:
            raise EdgecError(f"cannot write plot '{path}': {e}") from None
        finally:
            plt.close(fig)


def _label(row, width=40):
    text = ", ".join(row["layers"]) or row["kernel"]
    text = text if len(text) <= width else text[:width - 3] + "..."
    return f"{text} ({row['kind']})"


def _open(path, mode, **kw):
    try:
        return open(path, mode, **kw)
    except OSError as e:
        raise EdgecError(f"cannot write '{path}': {e}") from None


def profile_model(model, inputs=None, repeat=20, warmup=3):
    """Profile a loaded edgec.runtime.Model on INPUTS (default: seeded random); return a Profile."""
    if repeat < 1 or warmup < 0:
        raise EdgecError(f"profile of '{model.name}': repeat must be >= 1 and warmup >= 0 "
                         f"(got {repeat}, {warmup})")
    args = model.prepare(model.random_inputs() if inputs is None else inputs)
    kernels = model.kernels
    m = measure(model.vm, [*args, *model._params], model.device, {function_of(k) for k in kernels},
                repeat=repeat, warmup=warmup)
    return Profile(model.name, kernels, m)
