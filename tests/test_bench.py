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


def test_peak_measured_on_a_busy_machine_is_measured_again(tmp_path, monkeypatch):
    import edgec.bench as bench
    monkeypatch.setattr(bench, "PEAK_CACHE", tmp_path / "peak.json")
    key = f"{bench._cpu_name()}|1"
    bench.PEAK_CACHE.write_text(json.dumps({key: 0.5}))
    assert bench.peak_gflops(1) == 0.5  # a cached peak serves while nothing beats it
    peak = bench.peak_gflops(1, seen=0.75)  # an engine beat it: the cache was taken under load
    assert peak > 0.75 and json.loads(bench.PEAK_CACHE.read_text())[key] == peak


def test_bench_rejects_non_onnx(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "m.keras"), "--repeat", "1"]) == 2
    assert "edgec: error:" in capsys.readouterr().err
