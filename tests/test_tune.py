"""edgec tune: a tiny model, a few MetaSchedule trials (random cost model), a database that
compile --tune-db reuses, and the result still matching the numpy reference."""
import json
import subprocess
import sys

import numpy as np

from edgec import targets
from edgec.cli import main
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.runtime import load
from edgec.compiler.build import lowered_kernels
from edgec.targets.tune import Tuned


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


def test_tune_then_compile_with_db(tmp_path):
    model, db = str(tmp_path / "tiny.onnx"), str(tmp_path / "db")
    _tiny_onnx(model)
    # its own process: MetaSchedule's worker pools and log handlers outlive the call
    r = subprocess.run([sys.executable, "-m", "edgec.cli", "tune", model, "--trials", "4", "--db", db,
                        "--cost-model", "random"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "conv2d" in r.stdout and "--tune-db" in r.stdout
    choices = json.loads((tmp_path / "db" / "choices.json").read_text())
    (choice,) = choices.values()
    assert choice["use"] in ("tuned", "hand") and choice["hand_ms"] > 0
    # force the tuned schedule so compile --tune-db really builds it, then check numerics
    choice["use"] = "tuned" if choice["tuned_ms"] is not None else "hand"
    (tmp_path / "db" / "choices.json").write_text(json.dumps(choices))
    from edgec.api import import_model
    graph = import_model(model)
    preset = targets.get("host")
    tuned = Tuned(db, preset.tvm_target())
    (kernel, func), = lowered_kernels(graph, preset)
    if choice["use"] == "tuned":
        assert tuned.schedule(func.with_attr("global_symbol", "k")) is not None
    compile_graph(graph, preset, str(tmp_path / "m.edgec"), progress=False, tune_db=db)
    x = np.random.default_rng(1).standard_normal((1, 8, 10, 10)).astype(np.float32)
    got = load(str(tmp_path / "m.edgec")).run({"x": x})[0]
    np.testing.assert_allclose(got, interpret(graph, {"x": x})[graph.outputs[0]], rtol=1e-4, atol=1e-5)


def test_compile_with_missing_db_is_one_line_error(tmp_path, capsys):
    model = str(tmp_path / "tiny.onnx")
    _tiny_onnx(model)
    assert main(["compile", model, "-o", str(tmp_path / "m.edgec"), "--tune-db", str(tmp_path / "nope")]) == 2
    assert "no choices.json" in capsys.readouterr().err
