"""Mutation-fuzzing harness shared by test_fuzz_onnx.py and test_fuzz_keras.py.

The test writes each mutated model to a folder; a worker process (this file run as a script)
imports edgec once, then imports (and, for cases marked so, compiles) one model after another and
prints one JSON line per case: `ok`, `error` (an EdgecError: the clean outcome for bad input) or
`fail` (any other exception: a bug). The worker's address space is capped with RLIMIT_AS, so a
runaway allocation is a MemoryError (a `fail`); a case that prints nothing within its time limit
is a `hang` and one that kills the worker (signal) a `crash`: the harness restarts the worker
after the case and goes on.
"""
import json
import os
import queue
import random
import subprocess
import sys
import threading
from collections import Counter, defaultdict

MEMORY_HEADROOM = 3 << 30  # bytes the worker may allocate beyond what it holds after importing edgec


def run_cases(folder, cases, timeout=30.0, compile_timeout=120.0, worker=__file__):
    """CASES: [(case id, category, file name, compile?)] in FOLDER. Returns {id: (category, outcome, detail)}.
    A case is a hang after TIMEOUT seconds (COMPILE_TIMEOUT for one that compiles: a busy machine).
    WORKER: the script that runs the cases (reads [id, name, compile?] JSON lines, prints
    [id, outcome, detail] ones; tests/conv_fuzz.py passes its own: name a seed, compile? a target)."""
    results, todo = {}, list(cases)
    while todo:
        env = dict(os.environ, MALLOC_ARENA_MAX="2", TVM_NUM_THREADS="1")  # few address-space reservations
        proc = subprocess.Popen([sys.executable, worker, str(folder)], stdin=subprocess.PIPE, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put(None)], daemon=True).start()
        proc.stdin.write("".join(json.dumps([c[0], c[2], c[3]]) + "\n" for c in todo))
        proc.stdin.close()
        by_id = {c[0]: c for c in todo}
        done = 0
        for case in todo:
            limit = (compile_timeout if case[3] else timeout) + (60 if done == 0 else 0)  # the first waits for imports
            try:
                line = lines.get(timeout=limit)
            except queue.Empty:
                proc.kill()
                results[case[0]] = (case[1], "hang", f"no answer in {limit:.0f} s")
                done += 1
                break
            if line is None:  # the worker died on this case
                proc.wait()
                results[case[0]] = (case[1], "crash", f"worker exited with {proc.returncode}")
                done += 1
                break
            cid, outcome, detail = json.loads(line)
            results[cid] = (by_id[cid][1], outcome, detail)
            done += 1
        proc.kill()
        proc.wait()
        todo = todo[done:]
    return results


def summary(results):
    """{category: Counter(outcome)} and the text of a table of it."""
    table = defaultdict(Counter)
    for category, outcome, _ in results.values():
        table[category][outcome] += 1
    outcomes = ["ok", "error", "fail", "hang", "crash"]
    lines = [f"{'category':<14}" + "".join(f"{o:>7}" for o in outcomes)]
    for category in sorted(table):
        lines.append(f"{category:<14}" + "".join(f"{table[category][o]:>7}" for o in outcomes))
    total = Counter()
    for c in table.values():
        total.update(c)
    lines.append(f"{'total':<14}" + "".join(f"{total[o]:>7}" for o in outcomes))
    return table, "\n".join(lines)


def failures(results):
    return {cid: r for cid, r in results.items() if r[1] not in ("ok", "error")}


def check(folder, frontend, categories, make, n, seed, compile_every):
    """Write N mutated models to FOLDER and run them; every COMPILE_EVERY-th also compiles. Case i
    is of category CATEGORIES[i % len]; MAKE(r, category) -> (file suffix, bytes), or None where the
    mutation cannot be written. Prints the table and asserts every case is `ok` or a clean `error`."""
    r, cases = random.Random(seed), []
    for i in range(n):
        category = categories[i % len(categories)]
        made = make(r, category)
        if made is None:
            continue
        name = f"case{i}{made[0]}"
        (folder / name).write_bytes(made[1])
        cases.append((i, category, name, bool(compile_every) and i % compile_every == 0))
    results = run_cases(folder, cases)
    table, text = summary(results)
    print(f"\n{frontend} frontend fuzzing, {len(results)} cases (seed {seed}):\n{text}")
    bad = failures(results)
    assert not bad, "\n".join(f"case{cid} ({c}): {o}: {d}" for cid, (c, o, d) in sorted(bad.items())[:20])
    return table


# ---- the worker ---------------------------------------------------------------------------------
def _worker(folder):
    import resource
    import tempfile
    import warnings
    warnings.simplefilter("ignore")
    import edgec.compiler.build  # noqa: F401 - TVM's libraries mapped before the limit is measured
    import edgec.frontends.keras  # noqa: F401
    import edgec.frontends.onnx  # noqa: F401
    from edgec import api
    from edgec.errors import EdgecError
    with open("/proc/self/statm") as f:
        vsz = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (vsz + MEMORY_HEADROOM, vsz + MEMORY_HEADROOM))
    out = tempfile.mkdtemp(prefix="edgec-fuzz-", dir=folder)  # the parent removes FOLDER, even after a killed worker
    for line in sys.stdin:
        cid, name, compile_it = json.loads(line)
        path = os.path.join(folder, name)
        try:
            if compile_it:
                api.compile(path, output=os.path.join(out, "m.edgec"), progress=False)
            else:
                api.import_model(path)
            outcome, detail = "ok", ""
        except EdgecError as e:
            text = str(e)
            outcome, detail = ("error" if text and "\n" not in text else "fail"), f"{type(e).__name__}: {text}"
        except BaseException as e:  # noqa: BLE001 - everything else is what the fuzzer looks for
            outcome, detail = "fail", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        print(json.dumps([cid, outcome, detail[:400]]), flush=True)


if __name__ == "__main__":
    _worker(sys.argv[1])
