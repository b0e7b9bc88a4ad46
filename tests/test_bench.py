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
    key = bench.peak_key(1)
    bench.PEAK_CACHE.write_text(json.dumps({key: 0.5}))
    assert bench.peak_gflops(1) == 0.5  # a cached peak serves while nothing beats it
    peak = bench.peak_gflops(1, seen=0.75)  # an engine beat it: the cache was taken under load
    assert peak > 0.75 and json.loads(bench.PEAK_CACHE.read_text())[key] == peak


def test_peak_uses_avx512_blas_kernels_where_the_cpu_has_them():
    import edgec.bench as bench
    avx512 = {"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"}
    assert bench.blas_cores(avx512) == ["SkylakeX"]
    assert bench.blas_cores({"avx2", "fma"}) == [] and bench.blas_cores({"avx512f", "avx2"}) == []
    assert bench.blas_cores(set()) == []  # ARM: /proc/cpuinfo has Features, not flags


def test_bench_rejects_non_onnx(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "m.keras"), "--repeat", "1"]) == 2
    assert "edgec: error:" in capsys.readouterr().err


def test_cpu_name_tells_microarchitectures_apart(monkeypatch):
    """Two VMs of the pool both say "AMD EPYC" (a Zen 1 and a Zen 3): the name that keys the peak
    cache and heads the tables carries the family and model numbers."""
    import edgec.bench as bench
    info = {"model name": "AMD EPYC", "cpu family": "23", "model": "1"}
    monkeypatch.setattr(bench, "_cpuinfo", lambda *keys: next((info[k] for k in keys if k in info), ""))
    zen1 = bench.cpu_name()
    info.update({"cpu family": "25", "model": "1"})
    assert zen1 == "AMD EPYC (family 23, model 1)" and bench.cpu_name() != zen1
    info.pop("cpu family")  # e.g. an ARM board: no family line
    assert bench.cpu_name() == "AMD EPYC"
