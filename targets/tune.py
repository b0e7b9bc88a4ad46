"""`edgec tune`: MetaSchedule search per kernel, kept only where it beats the hand schedule.

`tune(...)` takes the model's kernels lowered exactly as `compile` lowers them, tunes the
kernels that do arithmetic (conv2d, dense), heaviest first, with the trial budget shared by FLOPs,
into a MetaSchedule JSON database in DIR (evolutionary search for kernels given >= 128 trials,
replaying random traces below that, where the evolutionary warm-up alone takes minutes). Then it times each tuned kernel against the hand
schedule (targets/schedules) and records the winner in DIR/choices.json, keyed by the kernel's
structural hash. `Tuned(DIR, target)` is what `compile --tune-db DIR` uses: it returns the tuned
schedule only for kernels where tuning won, so a tuned model is never slower kernel by kernel.
"""
import json
import os
from pathlib import Path

import numpy as np

from ..errors import EdgecError
from ..progress import progress as progress_bar

TUNED_KINDS = ("conv2d", "dense")
CHOICES = "choices.json"


def _key(func):
    from tvm_ffi import structural_hash
    return f"{structural_hash(func.without_attr('global_symbol')) & (2 ** 64 - 1):016x}"


def _workload(func):
    import tvm
    return tvm.IRModule({"main": func.without_attr("global_symbol")})


def tune(name, kernels, preset, db, trials=64, cost_model="xgb", progress=True, repeat=20):
    """Tune the KERNELS ([(description, PrimFunc)], from compiler.build.lowered_kernels) of model NAME
    for PRESET with about TRIALS MetaSchedule trials in all, into database folder DB; return a report."""
    from tvm.s_tir import meta_schedule as ms
    if trials < 1:
        raise EdgecError(f"tune: --trials must be >= 1, got {trials}")
    if preset.device != "cpu":
        raise EdgecError(f"tune: target '{preset.name}' is not a CPU target; edgec tunes CPU kernels only")
    tvm_target = preset.tvm_target()
    todo = [(k, f) for k, f in kernels if k["kind"] in TUNED_KINDS and k["flops"]]
    todo.sort(key=lambda kf: -kf[0]["flops"])
    if not todo:
        raise EdgecError(f"tune: model '{name}' has no conv2d or dense kernel to tune")
    total = sum(k["flops"] for k, _ in todo)
    db = Path(db)
    db.mkdir(parents=True, exist_ok=True)
    choices = _load_choices(db)
    report = []
    with progress_bar(progress, f"tuning {name}", len(todo)) as step:
        for kernel, func in todo:
            n = max(2, round(trials * kernel["flops"] / total))
            database = ms.tir_integration.tune_tir(
                _workload(func), tvm_target, work_dir=str(db), max_trials_global=n,
                num_trials_per_iter=min(64, n), cost_model=cost_model, num_tuning_cores=os.cpu_count() or 1,
                strategy="evolutionary" if n >= 128 else "replay-trace")
            sch = database.query_schedule(_workload(func), tvm_target, workload_name="main")
            hand = _hand(func, kernel, preset)
            t_hand = time_func(hand, tvm_target, repeat)
            t_tuned = time_func(sch.mod["main"], tvm_target, repeat) if sch is not None else None
            use = "tuned" if t_tuned is not None and t_tuned < t_hand else "hand"
            choices[_key(func)] = {"kernel": kernel["name"], "hand_ms": t_hand * 1e3,
                                   "tuned_ms": t_tuned * 1e3 if t_tuned is not None else None,
                                   "trials": n, "use": use}
            report.append(choices[_key(func)])
            _save_choices(db, choices)
            step()
    return {"model": name, "target": preset.name, "db": str(db), "kernels": report}


def _hand(func, kernel, preset):
    from .schedules import schedule
    return schedule(func, kernel, preset)


def time_func(func, target, repeat=20):
    """Median seconds of one call of the PrimFunc FUNC on random inputs."""
    import tvm
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    args = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in a.shape]).astype(a.dtype), dev)
            for a in ArgInfo.from_prim_func(func)]
    timer = lib.mod.time_evaluator("main", dev, number=1, repeat=repeat, min_repeat_ms=0)
    return float(np.median(timer(*args).results))


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


