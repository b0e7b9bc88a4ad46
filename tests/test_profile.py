"""`edgec profile` / Model.profile: per-kernel times, layer mapping, trace, CSV, plot, CLI."""
import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgec import cli, targets
from edgec.compiler.build import compile_graph
from edgec.compiler.ir import Graph
from edgec.runtime import load

# Kernel times are taken in instrumented runs (device sync + clock read around each kernel call),
# end-to-end times in alternating plain runs. The check compares the fastest run of each kind:
# medians are at the mercy of a shared 2-core machine (seen: median ratios from 0.19 to 5.4 under a
# load average of 4.5, when 4 ms scheduler slices hit ~1 ms runs), minima are not. Measured ratio of
# minima on these two models, 8 profiles each under that load: 0.985-1.014 (the VM's work between
# kernels is a few µs; the sync + Python callback adds a few µs per timed call). The bounds
# allow ~6x that spread and still fail if a kernel's time is lost or the instrument's own Python
# time (0.1 ms per run, ~17% of a 0.6 ms run) is counted as kernel time. The models are sized to
# run ~1 ms: as the schedules got faster, the small CNN ran in 79 us, and the instrument's few
# microseconds per timed call alone made its kernel sum 1.12 of the end-to-end time.
LOW, HIGH = 0.9, 1.1


def _cnn():
    rng = np.random.default_rng(0)
    g = Graph("small_cnn")
    x = g.add_input("image", (1, 3, 96, 96))
    w1 = g.add_const(rng.standard_normal((32, 3, 3, 3)).astype("float32"), "conv1.w")
    b1 = g.add_const(rng.standard_normal(32).astype("float32"), "conv1.b")
    w2 = g.add_const(rng.standard_normal((64, 32, 3, 3)).astype("float32") * 0.1, "conv2.w")
    wd = g.add_const(rng.standard_normal((10, 64)).astype("float32"), "fc.w")
    bd = g.add_const(rng.standard_normal(10).astype("float32"), "fc.b")
    (y,) = g.add_node("conv2d", [x, w1, b1], {"pads": [1, 1, 1, 1]}, source=["Conv_1"])
    (y,) = g.add_node("relu", [y], source=["Relu_2"])
    (y,) = g.add_node("max_pool2d", [y], {"kernel": [2, 2], "strides": [2, 2]}, source=["MaxPool_3"])
    (y,) = g.add_node("conv2d", [y, w2], {"pads": [1, 1, 1, 1]}, source=["Conv_4"])
    (y,) = g.add_node("relu", [y], source=["Relu_5"])
    (y,) = g.add_node("global_avg_pool", [y], source=["GlobalAveragePool_6"])
    (y,) = g.add_node("reshape", [y], {"shape": [1, 64]}, source=["Flatten_7"])
    (y,) = g.add_node("dense", [y, wd, bd], source=["Gemm_8"])
    (y,) = g.add_node("softmax", [y], {"axis": -1}, source=["Softmax_9"])
    g.outputs = [y]
    return g


def _mlp():
    rng = np.random.default_rng(1)
    g = Graph("mlp")
    x = g.add_input("x", (32, 1024))
    w1 = g.add_const(rng.standard_normal((1024, 1024)).astype("float32"), "fc1.w")
    w2 = g.add_const(rng.standard_normal((10, 1024)).astype("float32"), "fc2.w")
    (y,) = g.add_node("dense", [x, w1], source=["dense_1"])
    (y,) = g.add_node("relu", [y], source=["relu_1"])
    (y,) = g.add_node("dense", [y, w2], source=["dense_2"])
    g.outputs = [y]
    return g


def _twins():
    """Two conv+relu blocks of the same shapes: TVM shares one PrimFunc between their kernels.
    Large enough (~1 ms) that the instrument's few microseconds per timed call stay far inside the
    bounds (at 8x16x16, a 25 us run, they were 3-18% of it under load; at 32x32x32, once Winograd
    made it a 0.25 ms run, CI saw 1.102)."""
    rng = np.random.default_rng(2)
    g = Graph("twins")
    (y,) = [g.add_input("x", (1, 32, 64, 64))]
    for i in (1, 2):
        w = g.add_const(rng.standard_normal((32, 32, 3, 3)).astype("float32") * 0.1, f"conv{i}.w")
        (y,) = g.add_node("conv2d", [y, w], {"pads": [1, 1, 1, 1]}, source=[f"block{i}/conv"])
        (y,) = g.add_node("relu", [y], source=[f"block{i}/relu"])
    g.outputs = [y]
    return g


@pytest.fixture(scope="module", params=[_cnn, _mlp, _twins], ids=["cnn", "mlp", "twins"])
def built(request, tmp_path_factory):
    graph = request.param()
    layers = {s for n in graph.nodes for s in n.source}
    path = tmp_path_factory.mktemp("prof") / f"{graph.name}.edgec"
    compile_graph(graph.copy(), targets.get("host"), str(path), progress=False)
    model = load(path)
    # first runs after load are cold; 60 runs of each kind, since the minima of 15 had not settled on
    # a noisier VM (2-core Zen 1, ratios over 5 profiles: twins 0.88-1.18 with 15, 1.00-1.04 with 60)
    return path, model, layers, model.profile(repeat=60, warmup=10)


def test_kernel_sum_matches_end_to_end(built):
    _, model, _, prof = built
    ratio = prof.kernel_sum_min / prof.e2e_min
    assert LOW <= ratio <= HIGH, (f"fastest kernel sum {prof.kernel_sum_min * 1e3:.3f} ms is {ratio:.3f} of "
                                  f"fastest end-to-end {prof.e2e_min * 1e3:.3f} ms")
    assert prof.overhead == pytest.approx(prof.e2e_median - prof.kernel_sum)


def test_every_kernel_timed_once_and_mapped_to_source_layers(built):
    _, model, layers, prof = built
    assert sorted(r["kernel"] for r in prof.rows) == sorted(k["name"] for k in model.kernels)
    for r in prof.rows:  # TVM runs a lone reshape as a view, without calling its kernel
        assert r["calls"] == 1 or (r["calls"] == 0 and r["median_s"] == 0 and set(r["ops"]) == {"reshape"}), r
        assert r["layers"] and set(r["layers"]) <= layers, r
        assert r["q1_s"] <= r["median_s"] <= r["q3_s"] and r["min_s"] <= r["q1_s"] and r["q3_s"] <= r["max_s"]
    assert [r["median_s"] for r in prof.rows] == sorted((r["median_s"] for r in prof.rows), reverse=True)
    assert sum(r["share"] for r in prof.rows) == pytest.approx(1.0)


@pytest.mark.parametrize("built", [_twins], ids=["twins"], indirect=True)
def test_shared_primfunc_calls_go_to_their_own_kernels(built):
    _, model, _, prof = built
    assert len(model.kernels) == 2 and model.kernels[0]["function"] == model.kernels[1]["function"]
    assert [r["calls"] for r in prof.rows] == [1, 1]


def test_attribute_follows_kernel_order():
    from edgec.runtime.profile import attribute
    kernels = [{"name": "a", "function": "a"}, {"name": "view", "function": "view"},
               {"name": "b", "function": "a"}, {"name": "c"}]
    events = [("a", 0, 1), ("a", 1, 2), ("c", 2, 3), ("c", 3, 4)]
    assert [k for k, _, _ in attribute(events, kernels)] == ["a", "b", "c", "c"]


def test_gflops_only_for_compute_kernels(built):
    _, model, _, prof = built
    flops = {k["name"]: k["flops"] for k in model.kernels}
    for r in prof.rows:
        if r["kind"] in ("conv2d", "dense"):
            assert r["gflops"] == pytest.approx(flops[r["kernel"]] / r["median_s"] / 1e9)
        else:
            assert r["gflops"] is None


def test_profiling_leaves_outputs_unchanged(built):
    _, model, _, _ = built
    x = model.random_inputs(3)
    before = model.run(x)
    model.profile(x, repeat=1, warmup=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.run(x)))


def test_trace_csv_and_plot_files(built, tmp_path):
    _, model, _, prof = built
    prof.write_trace(tmp_path / "t.json")
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    runs = [e for e in events if e["name"] == "run"]
    calls = [e for e in events if e["ph"] == "X" and e["name"] != "run"]
    assert len(runs) == prof.repeat and len(calls) == prof.repeat * sum(r["calls"] for r in prof.rows)
    for e in runs + calls:
        assert {"name", "ph", "ts", "dur", "pid", "tid"} <= set(e) and e["ph"] == "X" and e["dur"] >= 0
    for c in calls:  # each kernel call lies inside one run event
        assert any(r["ts"] <= c["ts"] and c["ts"] + c["dur"] <= r["ts"] + r["dur"] + 1e-3 for r in runs)
        assert c["args"]["layers"]
    prof.write_csv(tmp_path / "c.csv")
    rows = list(csv.DictReader(open(tmp_path / "c.csv")))
    assert [r["kernel"] for r in rows] == [r["kernel"] for r in prof.rows]
    assert float(rows[0]["median_ms"]) == pytest.approx(prof.rows[0]["median_s"] * 1e3, rel=1e-5)
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    prof.plot(tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_cli_profile(built, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # whole kernel names on one line (80 columns: test_cli_contract)
    path = built[0]
    rc = cli.main(["profile", str(path), "--repeat", "3", "--warmup", "1", "--csv", str(tmp_path / "c.csv"),
                   "--trace", str(tmp_path / "t.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "end-to-end: median" in out and "overhead outside kernels" in out
    assert (tmp_path / "c.csv").stat().st_size > 0 and json.loads((tmp_path / "t.json").read_text())
    for k in built[1].kernels:
        assert k["name"] in out


def test_cli_profile_errors(tmp_path, capsys):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not an artifact")
    assert cli.main(["profile", str(bogus)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgec: error:") and "not an edgec artifact" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["profile", str(tmp_path / "missing.edgec")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_repeat_is_a_clear_error(built):
    from edgec.errors import EdgecError
    with pytest.raises(EdgecError, match="repeat must be >= 1"):
        built[1].profile(repeat=0)


@pytest.mark.parametrize("built", [_twins], ids=["twins"], indirect=True)
def test_profiles_with_runtime_only_tvm_and_without_matplotlib(built, tmp_path):
    """On a device: no compiler, no onnx, no rich, no matplotlib; --plot then fails with a clear error."""
    script = textwrap.dedent(f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split('.')[0] in ('onnx', 'onnxruntime', 'rich', 'matplotlib') or \\
                   name.startswith(('edgec.compiler', 'edgec.frontends', 'tvm.relax')):
                    raise ImportError('blocked on the device: ' + name)
        sys.meta_path.insert(0, Block())
        import edgec
        from edgec.errors import EdgecError
        prof = edgec.load({str(built[0])!r}).profile(repeat=2, warmup=1)
        prof.write_trace({str(tmp_path / 't.json')!r})
        prof.write_csv({str(tmp_path / 'c.csv')!r})
        try:
            prof.plot({str(tmp_path / 'p.png')!r})
        except EdgecError as e:
            print(e)
    """)
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1")
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "needs matplotlib" in r.stdout and not (tmp_path / "p.png").exists()
    assert len(json.loads((tmp_path / "t.json").read_text())["traceEvents"]) == 1 + 2 * 3


@pytest.mark.slow
def test_squeezenet_from_onnx_zoo(tmp_path):
    """ONNX model zoo SqueezeNet: layer names come from the ONNX file; kernel time matches runs.

    On a ~30 ms model, scheduler noise on a loaded machine moves whole runs, so the check pairs
    each instrumented run with the plain run next to it. Measured median paired ratio under a load
    average of 7 on 2 cores: 0.94-1.13 (0.99-1.00 when the machine was quieter); bounds allow that.
    """
    onnx = pytest.importorskip("onnx", reason="the ONNX model zoo test needs onnx")
    from edgec import api
    src = os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light/light_squeezenet.onnx")
    if not os.path.exists(src):
        pytest.skip(f"{src} is not shipped with this onnx version")
    names = {n.name for n in onnx.load(src).graph.node}
    model = load(api.compile(src, "host", str(tmp_path / "sq.edgec"), progress=False))
    prof = model.profile(repeat=15, warmup=2)
    sums = [sum(e - s for _, s, e in ev) for _, _, ev in prof.runs]
    paired = float(np.median(np.array(sums) / np.array(prof.measurement.e2e)))
    assert 0.85 <= paired <= 1.2, f"kernel sum / end-to-end, paired by iteration: {paired:.3f}"
    assert all(r["layers"] and set(r["layers"]) <= names for r in prof.rows)
    assert sum(r["calls"] for r in prof.rows) == len(prof.runs[0][2])
