"""`edgec tune`: MetaSchedule search per kernel, kept only where it beats the hand schedule.

`tune(...)` takes the model's kernels lowered exactly as `compile` lowers them and tunes the
kernels that do arithmetic (conv2d, dense), heaviest first, sharing the trial budget by FLOPs
(never more than TRIALS in all), into a MetaSchedule JSON database in DIR (evolutionary search
for kernels given >= 128 trials, replaying random traces below that, where the evolutionary
warm-up alone takes minutes). Candidates are built in MetaSchedule's worker processes (each build
within `build_timeout` seconds) and measured here (LocalRunner) or on the devices of a TVM RPC
tracker (RPCRunner, `farm`). Then each tuned kernel is timed against the hand schedule
(targets/schedules) on the same machine and the winner recorded in DIR/choices.json, keyed by
the kernel's structural hash. `Tuned(DIR, target)` is what `compile --tune-db DIR` uses: it
returns the tuned schedule only for kernels where tuning won, so a tuned model is never slower
kernel by kernel.

Why builds were slow: MetaSchedule's default build function and TuneContext import
`tvm.s_tir.tensor_intrin`, which parses ~250 TVMScript functions; TVMScript's `prim_func` calls
`inspect.stack()`, whose source look-up scans all of `sys.modules` for every frame without a
file (`<frozen importlib...>`): minutes in a process that has imported onnx/TensorFlow, and
>30 s in every fresh builder worker (the LocalBuilder restarts its workers every batch), so
every candidate hit the build timeout. Here the main process imports it once with a cheap
stack (`_quick_stack`), and candidates are built by `build_candidate`, which does not import it
(the intrinsics matter only to schedule rules, which run in the main process).
"""
import contextlib
import functools
import inspect
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import EdgecError
from ..progress import progress as progress_bar

TUNED_KINDS = ("conv2d", "dense")
CHOICES = "choices.json"
MIN_TRIALS = 2  # a kernel given fewer trials is not tuned


def _key(func):
    from tvm_ffi import structural_hash
    return f"{structural_hash(func.without_attr('global_symbol')) & (2 ** 64 - 1):016x}"


def _workload(func):
    """FUNC as MetaSchedule stores its workload (tune_tir names it main and marks it noalias)."""
    import tvm
    return tvm.IRModule({"main": func.with_attr("global_symbol", "main").with_attr("tirx.noalias", True)})



def budget(flops, trials):
    """Trials per kernel (FLOPS heaviest first): shares of TRIALS by FLOPs, at least MIN_TRIALS each
    while the budget lasts, never more than TRIALS in all (kernels left at 0 are not tuned)."""
    left, rest, out = trials, float(sum(flops)), []
    for f in flops:
        n = min(left, max(MIN_TRIALS, round(left * f / rest))) if rest > 0 else 0
        n = n if n >= MIN_TRIALS else 0
        out.append(n)
        left, rest = left - n, rest - f
    return out


def tune(name, kernels, preset, db, trials=64, cost_model="xgb", progress=True, repeat=20,
         build_timeout=30.0, farm=None):
    """Tune the KERNELS ([(description, PrimFunc)], from compiler.build.lowered_kernels) of model NAME
    for PRESET with at most TRIALS MetaSchedule trials in all, into database folder DB; measure on
    this machine, or on FARM (a runtime.remote.Farm: tracker, key, devices); return a report."""
    from tvm.s_tir import meta_schedule as ms
    if trials < 1:
        raise EdgecError(f"tune: --trials must be >= 1, got {trials}")
    if preset.device != "cpu":
        raise EdgecError(f"tune: target '{preset.name}' is not a CPU target; edgec tunes CPU kernels only")
    from ..runtime import host_arch
    if farm is None and preset.arch != host_arch():
        raise EdgecError(f"tune: target '{preset.name}' is {preset.arch} code and this machine is {host_arch()}; "
                         "measure it on devices: --tracker HOST:PORT --key KEY")
    tvm_target = preset.tvm_target()
    todo = [(k, f) for k, f in kernels if k["kind"] in TUNED_KINDS and k["flops"]]
    todo.sort(key=lambda kf: -kf[0]["flops"])
    if not todo:
        raise EdgecError(f"tune: model '{name}' has no conv2d or dense kernel to tune")
    db = Path(db)
    db.mkdir(parents=True, exist_ok=True)
    choices = _load_choices(db)
    with _quick_stack():
        import tvm.s_tir.tensor_intrin  # noqa: F401 - TuneContext imports it; here once, cheaply
    cores = os.cpu_count() or 1
    builder = ms.builder.LocalBuilder(max_workers=cores, timeout_sec=build_timeout, f_build=build_candidate,
                                      f_export=functools.partial(export_candidate, _linker(preset)))
    runner = _runner(ms, farm, build_timeout)
    measure = Device(tvm_target, preset, farm, repeat, build_timeout)
    report = []
    with progress_bar(progress, f"tuning {name}", len(todo)) as step:
        for (kernel, func), n in zip(todo, budget([k["flops"] for k, _ in todo], trials)):
            entry = {"kernel": kernel["name"], "kind": kernel["kind"], "trials": n, "measured": 0,
                     "failures": {}, "best_measured_ms": None, "hand_ms": None, "tuned_ms": None, "use": "hand"}
            if n:
                outcomes = Outcomes()
                with contextlib.redirect_stdout(sys.stderr):  # MetaSchedule's log tables: stdout stays the report
                    database = ms.tir_integration.tune_tir(
                        _workload(func), tvm_target, work_dir=str(db), max_trials_global=n,
                        num_trials_per_iter=min(64, n), cost_model=cost_model, num_tuning_cores=cores,
                        strategy="evolutionary" if n >= 128 else "replay-trace", builder=builder, runner=runner,
                        measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), outcomes])
                entry.update(outcomes.summary())
                sch = database.query_schedule(_workload(func), tvm_target, workload_name="main")
                entry["hand_ms"] = measure.time(_hand(func, kernel, preset)) * 1e3
                if sch is not None:
                    entry["tuned_ms"] = measure.time(sch.mod["main"]) * 1e3
                    entry["use"] = "tuned" if entry["tuned_ms"] < entry["hand_ms"] else "hand"
                choices[_key(func)] = {k: entry[k] for k in ("kernel", "hand_ms", "tuned_ms", "trials", "use")}
                _save_choices(db, choices)
            report.append(entry)
            step()
    return {"model": name, "target": preset.name, "db": str(db), "trials": trials,
            "measured_on": measure.where, "kernels": report}


def _linker(preset):
    return getattr(preset, "linker", "") or preset.cross_cc


def _runner(ms, farm, timeout, repeat=1):
    config = ms.runner.EvaluatorConfig(number=3, repeat=repeat, min_repeat_ms=20, enable_cpu_cache_flush=False)
    if farm is None:
        return ms.runner.LocalRunner(timeout_sec=max(timeout, 10.0), evaluator_config=config)
    host, port = farm.tracker_address()
    rpc = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=farm.key,
                              session_timeout_sec=int(max(farm.timeout, 60)))
    return ms.runner.RPCRunner(rpc_config=rpc, evaluator_config=config, max_workers=farm.devices,
                               f_alloc_argument=alloc_on_device)


def alloc_on_device(session, device, args_info, alloc_repeat):
    """MetaSchedule's argument allocation with the random data made here: a runtime-only TVM on the
    device lacks `tvm.contrib.random.random_fill_for_measure` (runs in a runner worker)."""
    from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common
    rng = np.random.default_rng(0)

    def fill(tensor):
        shape, dtype = [int(d) for d in tensor.shape], str(tensor.dtype)
        data = rng.standard_normal(shape) if np.dtype(dtype).kind == "f" else np.zeros(shape)
        tensor.copyfrom(np.asarray(data, dtype=dtype))
    return alloc_argument_common(fill, device, args_info, alloc_repeat)


def build_candidate(mod, target, _params):
    """MetaSchedule's default build minus its `import tvm.s_tir.tensor_intrin` (runs in a builder worker)."""
    from tvm.driver import build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return build(mod, target=target)


def export_candidate(linker, mod):
    """Link a built candidate into a shared library (cross-linked with LINKER for a device), alone in
    a new folder: whoever measures it removes the folder (remove_candidate; in tune_tir, the default
    measure callbacks' RemoveBuildArtifact); a failed link removes it here."""
    folder = tempfile.mkdtemp(prefix="edgec-cand-")
    path = os.path.join(folder, "candidate.so")
    try:
        if linker:
            from tvm.support import cc
            mod.export_library(path, fcompile=cc.cross_compiler(linker))
        else:
            mod.export_library(path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return path


def remove_candidate(path):
    """Remove the folder export_candidate made for the library at PATH."""
    if path:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


@contextlib.contextmanager
def _quick_stack():
    """inspect.stack() without source look-ups for frames that have no source file (see the module doc)."""
    def stack(context=1):
        frames, f = [], sys._getframe(1)
        while f is not None:
            code = f.f_code
            if len(frames) < 3 and not code.co_filename.startswith("<"):  # TVMScript reads frames[2]
                frames.append(inspect.FrameInfo(f, *inspect.getframeinfo(f, context)))
            else:
                frames.append(inspect.FrameInfo(f, code.co_filename, f.f_lineno, code.co_name, None, None))
            f = f.f_back
        return frames
    saved, inspect.stack = inspect.stack, stack
    try:
        yield
    finally:
        inspect.stack = saved


def _outcomes_class():
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class _Outcomes(PyMeasureCallback):
        """Counts what happened to every candidate: measured, or failed (by cause)."""

        def __init__(self):
            super().__init__()
            self.seconds, self.failures = [], {}

        def apply(self, task_scheduler, task_id, candidates, builder_results, runner_results):
            for b, r in zip(builder_results, runner_results):
                error = b.error_msg or r.error_msg
                if error:
                    cause = _cause(error, "build" if b.error_msg else "run")
                    self.failures[cause] = self.failures.get(cause, 0) + 1
                else:
                    self.seconds.append(float(np.median([float(s) for s in r.run_secs])))

        def summary(self):
            return {"measured": len(self.seconds), "failures": dict(self.failures),
                    "best_measured_ms": min(self.seconds) * 1e3 if self.seconds else None}
    return _Outcomes


def Outcomes():  # noqa: N802 - a class made on first use (TVM's FFI classes import the compiler)
    return _outcomes_class()()


def _cause(error, stage):
    """One line naming why a candidate failed: 'build timeout', 'run error: ...'."""
    if "Timeout" in error or "timed out" in error.lower():
        return f"{stage} timeout"
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip() and not ln.startswith(" ")]
    return f"{stage} error: {(lines[-1] if lines else 'unknown')[:120]}"


class Device:
    """Times PrimFuncs where the candidates are measured (this CPU, or a device of the farm), through
    the same MetaSchedule builder and runner, with REPEAT timed runs each."""

    def __init__(self, target, preset, farm, repeat, build_timeout=30.0):
        from tvm.s_tir import meta_schedule as ms
        self.target, self.where = target, farm.describe() if farm is not None else "this machine"
        self.builder = ms.builder.LocalBuilder(max_workers=1, timeout_sec=build_timeout, f_build=build_candidate,
                                               f_export=functools.partial(export_candidate, _linker(preset)))
        self.runner = _runner(ms, farm, build_timeout, repeat)

    def time(self, func):
        """Median seconds of one call of FUNC on random inputs."""
        import tvm
        from tvm.s_tir.meta_schedule.arg_info import ArgInfo
        from tvm.s_tir.meta_schedule.builder import BuilderInput
        from tvm.s_tir.meta_schedule.runner import RunnerInput
        mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
        (built,) = self.builder.build([BuilderInput(mod, self.target)])
        if built.error_msg:
            raise EdgecError(f"tune: cannot build kernel {func.attrs.get('global_symbol', '')} to time it: "
                             f"{_cause(built.error_msg, 'build')}")
        try:
            (future,) = self.runner.run([RunnerInput(built.artifact_path, "cpu",
                                                     ArgInfo.from_prim_func(func))])
            result = future.result()
        finally:
            remove_candidate(built.artifact_path)
        if result.error_msg:
            raise EdgecError(f"tune: timing a kernel on {self.where} failed: {_cause(result.error_msg, 'run')}")
        return float(np.median([float(t) for t in result.run_secs]))


def _hand(func, kernel, preset):
    from .schedules import schedule
    with preset.tvm_target():
        return schedule(func, kernel, preset)


class Tuned:
    """The tuned schedules of a database DIR, for the kernels where tuning beat the hand schedule."""

    def __init__(self, db, target):
        from tvm.s_tir import meta_schedule as ms
        db = Path(db)
        if not (db / CHOICES).is_file():
            raise EdgecError(f"tune database '{db}' has no {CHOICES}; create it with `edgec tune`")
        self.choices = _load_choices(db)
        self.database = ms.database.JSONDatabase(work_dir=str(db), allow_missing=False)
        self.target = target

    def schedule(self, func):
        """The tuned PrimFunc for FUNC, or None where the hand schedule is kept."""
        choice = self.choices.get(_key(func))
        if not choice or choice["use"] != "tuned":
            return None
        sch = self.database.query_schedule(_workload(func), self.target, workload_name="main")
        return sch.mod["main"].with_attr("global_symbol", func.attrs["global_symbol"]) if sch else None


def _load_choices(db):
    try:
        return json.loads((Path(db) / CHOICES).read_text())
    except (OSError, ValueError):
        return {}


def _save_choices(db, choices):
    (Path(db) / CHOICES).write_text(json.dumps(choices, indent=1, sort_keys=True))
