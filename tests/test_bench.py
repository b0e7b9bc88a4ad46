"""edgec bench: compiles an ONNX model, runs it and onnxruntime alternating, reports JSON."""
import json

from edgec.cli import main
from test_tune import _tiny_onnx


def test_bench_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGEC_CACHE", str(tmp_path / "cache"))
    import edgec.bench as bench
    monkeypatch.setattr(bench, "PEAK_CACHE", tmp_path / "cache" / "peak.json")
    model = str(tmp_path / "tiny.onnx")
    _tiny_onnx(model)
    assert main(["bench", model, "--threads", "1", "--repeat", "3", "--json", "--no-spin"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["threads"] == 1 and r["repeat"] == 3 and r["isa"] in ("avx512", "avx2", "neon", "sse")
    assert min(r["runs"].values()) >= 3 and set(r["runs"]) == {"edgec", "ort", "ort_nospin"}
    assert r["ort_nospin_ms"] > 0
    assert r["edgec_ms"] > 0 and r["ort_ms"] > 0 and abs(r["ratio"] - r["edgec_ms"] / r["ort_ms"]) < 1e-9
    assert r["max_abs_diff"] < 1e-4  # the two ran the same model on the same inputs
    assert r["gflop"] > 0 and r["peak_gflops"] > 0
    assert (tmp_path / "cache" / "peak.json").is_file()


def test_bench_rejects_non_onnx(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "m.keras"), "--repeat", "1"]) == 2
    assert "edgec: error:" in capsys.readouterr().err
