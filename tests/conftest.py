import re
import sys
from pathlib import Path

# test helpers (onnx_cases.py, zoo.py) import as top-level modules under --import-mode=importlib
sys.path.insert(0, str(Path(__file__).parent))

# Heavy sets run only when `-m` names them (e.g. `pytest -m fuzz`); `make test` runs their samples.
HEAVY = ("corpus", "cuda_zoo", "fuzz", "quant_matrix", "scale", "soak", "zoo")


def pytest_collection_modifyitems(config, items):
    expr = config.getoption("markexpr", "") or ""
    wanted = {m for m in HEAVY if m in re.findall(r"\w+", expr)}
    keep, skipped = [], {}
    for item in items:
        heavy = [m for m in HEAVY if item.get_closest_marker(m) and m not in wanted]
        if heavy:
            skipped[heavy[0]] = skipped.get(heavy[0], 0) + 1
        else:
            keep.append(item)
    if skipped:
        kept = set(map(id, keep))
        config.hook.pytest_deselected(items=[i for i in items if id(i) not in kept])
        items[:] = keep
        config._edgec_heavy = skipped


def pytest_terminal_summary(terminalreporter, config):
    skipped = getattr(config, "_edgec_heavy", None)
    if skipped:
        sets = ", ".join(f"{n} {m}" for m, n in sorted(skipped.items()))
        terminalreporter.write_line(f"heavy sets not run (select with -m NAME): {sets}")
