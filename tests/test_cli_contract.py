"""The CLI's contract for CI and terminals: exit codes (0 pass, 1 mismatch, 2 user error, 3 bug with
a report file), one-line errors, strict `--json` on every command that prints results, tables that
fit 80 columns, `.npy` inputs, `--outputs` paths, `--version`, `python -m edgec`, a closed pipe,
early target checks, model names from the file, the dynamic-batch note."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import cli


def tiny(graph_name="tf2onnx", batch="N", seed=0, channels=4):
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((channels, 2, 3, 3)).astype(np.float32), "w")]
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["probs"], name="pool", kernel_shape=[2, 2], strides=[2, 2])]
    g = helper.make_graph(nodes, graph_name, [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 2, 6, 6])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def strict_json(text):
    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")
    return json.loads(text, parse_constant=refuse)


def edgec(capsys, *args, notes=False):
    """(exit code, stdout, stderr); stderr without its `edgec: note:` lines unless NOTES."""
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    err = out.err if notes else "".join(ln for ln in out.err.splitlines(True) if not ln.startswith("edgec: note:"))
    return code, out.out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_contract")
    onnx.save(tiny(), d / "digits.onnx")
    onnx.save(tiny(channels=3), d / "other.onnx")
    assert cli.main(["compile", str(d / "digits.onnx"), "-o", str(d / "digits.edgec")]) == 0
    return d


def test_compile_json_names_the_model_after_the_file_and_notes_the_batch(files, capsys):
    code, out, err = edgec(capsys, "compile", files / "digits.onnx", "-o", files / "again.edgec", "--json", notes=True)
    assert code == 0, err
    summary = strict_json(out)
    assert summary["name"] == "digits"  # the graph is called 'tf2onnx'
    assert summary["inputs"][0]["shape"] == [1, 2, 6, 6]
    assert "edgec: note:" in err and "dynamic batch dimension 'N'; compiling for batch 1" in err


def test_run_json_npy_inputs_and_outputs_paths(files, capsys, tmp_path):
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = edgec(capsys, "run", files / "digits.edgec", "--inputs", tmp_path / "x.npy",
                           "--outputs", tmp_path / "out", "--json")
    assert code == 0, err
    res = strict_json(out)
    assert res["written"] == [str(tmp_path / "out.npz")] and (tmp_path / "out.npz").exists()
    with np.load(tmp_path / "out.npz") as z:
        np.testing.assert_array_equal(z["probs"].reshape(-1)[:6], np.float32(res["outputs"][0]["first"]))
    (tmp_path / "outdir").mkdir()
    code, out, err = edgec(capsys, "run", files / "digits.edgec", "--outputs", tmp_path / "outdir")
    assert code == 0 and f"outputs written to {tmp_path / 'outdir' / 'probs.npy'}" in out
    assert np.load(tmp_path / "outdir" / "probs.npy").shape == (1, 4, 3, 3)


def test_verify_exit_codes(files, capsys, tmp_path):
    assert edgec(capsys, "verify", files / "digits.onnx", files / "digits.edgec")[0] == 0
    code, out, err = edgec(capsys, "verify", files / "other.onnx", files / "digits.edgec")  # the wrong model
    assert code == 2 and err.count("\n") == 1 and "is '" in err and "the model it was compiled from" in err, err
    np.savez(tmp_path / "bad.npz", nope=np.zeros((1, 2, 6, 6), np.float32))
    code, out, err = edgec(capsys, "verify", files / "digits.onnx", files / "digits.edgec", "--inputs", tmp_path / "bad.npz")
    assert code == 2 and err.startswith("edgec: error:") and "nope" in err and err.count("\n") == 1, err


def test_verify_json_is_strict_with_infinities(files, capsys, tmp_path):
    x = np.zeros((1, 2, 6, 6), np.float32)
    x[0, 0, 0, 0] = np.inf  # inf - inf: the error statistics are NaN
    np.savez(tmp_path / "inf.npz", image=x)
    code, out, err = edgec(capsys, "verify", files / "digits.onnx", files / "digits.edgec", "--inputs",
                           tmp_path / "inf.npz", "--json")
    report = strict_json(out)
    assert code == (0 if report["passed"] else 1)
    assert "NaN" in out or "Infinity" in out  # as strings
    assert cli._strict({"a": float("nan"), "b": [float("inf"), -float("inf")], "c": np.float32(1.5)}) == \
        {"a": "NaN", "b": ["Infinity", "-Infinity"], "c": 1.5}


def test_tables_fit_80_columns(files, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    for args in (["profile", files / "digits.edgec", "--repeat", "3", "--warmup", "1"],
                 ["verify", files / "digits.onnx", files / "digits.edgec"], ["targets"]):
        code, out, err = edgec(capsys, *args)
        assert code == 0, err
        table = [ln for ln in out.splitlines() if ln[:1] in "┏┃┡│└"]
        assert table and max(len(ln) for ln in table) <= 80, out
        assert "…" not in out, out  # no number or name cut short


def test_json_on_profile_inspect_targets(files, capsys):
    code, out, _ = edgec(capsys, "profile", files / "digits.edgec", "--repeat", "3", "--warmup", "1", "--json")
    prof = strict_json(out)
    assert code == 0 and prof["kernels"] and prof["e2e_median_s"] > 0
    code, out, _ = edgec(capsys, "inspect", files / "digits.onnx", "--passes", "--json")
    ir = strict_json(out)
    assert code == 0 and ir["passes"][0]["after"] == "import" and ir["final"]["format"] == "edgec-ir/1"
    assert strict_json(edgec(capsys, "inspect", files / "digits.edgec")[1])["model"]["name"] == "digits"
    targets = strict_json(edgec(capsys, "targets", "--json")[1])
    assert {"host", "rpi4", "android-arm64"} <= {t["name"] for t in targets}


def test_user_errors_exit_2_with_one_line(files, capsys):
    code, _, err = edgec(capsys, "compile", files / "digits.onnx", "--input-shape", "nope=1,2")
    assert code == 2 and "unknown input(s) nope; inputs are image" in err and err.count("\n") == 1, err


def test_target_tools_are_checked_before_compiling(files, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("TVM_NDK_CC", raising=False)
    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    code, _, err = edgec(capsys, "compile", files / "digits.onnx", "--target", "android-arm64", "-o", tmp_path / "a.edgec")
    assert code == 2 and "needs Android NDK" in err
    monkeypatch.setenv("TVM_NDK_CC", "/bin/false")  # an NDK compiler that fails
    code, _, err = edgec(capsys, "compile", files / "digits.onnx", "--target", "android-arm64", "-o", tmp_path / "a.edgec")
    assert code == 2 and "linking the library with /bin/false failed" in err and err.count("\n") == 1, err


def test_internal_error_exits_3_with_a_report(capsys, monkeypatch):
    def bug(a):
        raise RuntimeError("an edgec bug")
    monkeypatch.setitem(cli.COMMANDS, "targets", (cli.setup_targets, bug, "list"))
    code, out, err = edgec(capsys, "targets")
    assert code == 3 and err.count("\n") == 1 and "Traceback" not in err
    path = err.rsplit("details in ", 1)[1].strip()
    report = open(path).read()
    os.unlink(path)
    assert "Traceback" in report and "an edgec bug" in report and "command: edgec targets" in report


def test_version_module_entry_and_closed_pipe(files):
    r = subprocess.run([sys.executable, "-m", "edgec", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("edgec ") and "apache-tvm" in r.stdout
    r = subprocess.run(f"'{sys.executable}' -m edgec inspect '{files / 'digits.onnx'}' --passes | head -1",
                       shell=True, capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("graph digits(") and r.stderr.replace("edgec: note:", "").count("Error") == 0, r.stderr
