"""edgec tune: a tiny model, a few MetaSchedule trials (random cost model), a database that
compile --tune-db reuses, and the result still matching the numpy reference."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgec import targets
from edgec.cli import main
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.runtime import load
from edgec.compiler.build import lowered_kernels
from edgec.api import tune as tune_model
from edgec.errors import EdgecError
from edgec.targets.tune import Tuned, budget


def _tiny_onnx(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.2
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                           helper.make_node("Relu", ["c"], ["y"])], "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 10, 10])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 10, 10])],
                          [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_tune_measures_candidates_then_compile_with_db(tmp_path):
    model, db = str(tmp_path / "tiny.onnx"), str(tmp_path / "db")
    _tiny_onnx(model)
    # its own process: MetaSchedule's worker pools and log handlers outlive the call
    tmp = tmp_path / "tmp"  # its temporary files: each candidate's library folder is removed after use
    tmp.mkdir()
    r = subprocess.run([sys.executable, "-m", "edgec.cli", "tune", model, "--trials", "6", "--db", db,
                        "--cost-model", "random", "--json"], capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, TMPDIR=str(tmp)))
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list(tmp.glob("edgec-cand-*")), sorted(p.name for p in tmp.iterdir())
    (k,) = json.loads(r.stdout)["kernels"]
    # every candidate was built and measured (before: every build timed out), within the budget
    assert k["kind"] == "conv2d" and k["trials"] == 6 and k["measured"] == 6, k
    assert not k["failures"] and k["best_measured_ms"] > 0 and k["hand_ms"] > 0 and k["tuned_ms"] > 0
    choices = json.loads((tmp_path / "db" / "choices.json").read_text())
    (choice,) = choices.values()
    # force the tuned schedule so compile --tune-db really builds it, then check numerics
    choice["use"] = "tuned"
    (tmp_path / "db" / "choices.json").write_text(json.dumps(choices))
    from edgec.api import import_model
    graph = import_model(model)
    preset = targets.get("host")
    tuned = Tuned(db, preset.tvm_target())
    (kernel, func), = lowered_kernels(graph, preset)
    assert tuned.schedule(func.with_attr("global_symbol", "k")) is not None
    compile_graph(graph, preset, str(tmp_path / "m.edgec"), progress=False, tune_db=db)
    x = np.random.default_rng(1).standard_normal((1, 8, 10, 10)).astype(np.float32)
    got = load(str(tmp_path / "m.edgec")).run({"x": x})[0]
    np.testing.assert_allclose(got, interpret(graph, {"x": x})[graph.outputs[0]], rtol=1e-4, atol=1e-5)


def test_failed_candidate_export_leaves_no_folder(tmp_path, monkeypatch):
    from edgec.targets.tune import export_candidate

    class Unlinkable:
        def export_library(self, path, **kw):
            open(path, "w").close()
            raise RuntimeError("link failed")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with pytest.raises(RuntimeError, match="link failed"):
        export_candidate("", Unlinkable())
    assert not list(tmp_path.iterdir())


def test_budget_shares_trials_by_flops_and_never_exceeds_them():
    assert budget([100, 10, 1], 32) == [29, 3, 0]
    assert sum(budget([5, 4, 3, 2, 1], 7)) <= 7
    assert budget([1], 1) == [0] and budget([1, 1], 4) == [2, 2]


def test_tune_for_another_arch_needs_devices(tmp_path):
    model = str(tmp_path / "tiny.onnx")
    _tiny_onnx(model)
    with pytest.raises(EdgecError, match="--tracker"):
        tune_model(model, "rpi4", trials=2, db=str(tmp_path / "db"), progress=False)


def test_compile_with_missing_db_is_one_line_error(tmp_path, capsys):
    model = str(tmp_path / "tiny.onnx")
    _tiny_onnx(model)
    assert main(["compile", model, "-o", str(tmp_path / "m.edgec"), "--tune-db", str(tmp_path / "nope")]) == 2
    assert "no choices.json" in capsys.readouterr().err
