"""Model.run from several threads at once (CNN and LSTM, vs single-thread outputs and onnxruntime),
outputs that later runs never overwrite, out=, close()/with, no extraction folder left behind,
and flat memory over many runs and load/unload cycles (a sample here, the full soak under `-m soak`)."""
import gc
import glob
import importlib.util
import os
import tempfile
import threading

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import edgec
from edgec.errors import EdgecError, InputError

HERE = os.path.dirname(__file__)
RTOL, ATOL = 1e-4, 1e-5
_spec = importlib.util.spec_from_file_location("make_recurrent_models",
                                               os.path.join(HERE, "..", "examples", "make_recurrent_models.py"))
mk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mk)


def _lstm(path):
    model = mk.recurrent_model(op="LSTM", seq=12, batch=2, inp=16, hidden=32, direction="bidirectional")
    onnx.save(model, path)
    return path, {"X": (12, 2, 16)}


def _cnn(path):
    return os.path.join(HERE, "..", "examples", "digits_cnn.onnx"), {"image": (1, 8, 8, 1)}


def _reshape_model(path):
    """Outputs that TVM may return as views: the input itself and a reshape of it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])
    ys = [helper.make_tensor_value_info("same", TensorProto.FLOAT, [2, 6]),
          helper.make_tensor_value_info("flat", TensorProto.FLOAT, [12])]
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [12])
    nodes = [helper.make_node("Identity", ["x"], ["same"]), helper.make_node("Reshape", ["x", "shape"], ["flat"])]
    g = helper.make_graph(nodes, "views", [x], ys, initializer=[shape])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, {}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("threads")
    out = {}
    for name, make in [("cnn", _cnn), ("lstm", _lstm), ("views", _reshape_model)]:
        src, shapes = make(str(d / f"{name}.onnx"))
        out[name] = (src, edgec.compile(src, "host", str(d / f"{name}.edgec"), shapes, progress=False))
    return out


def _feeds(model, n):
    return [model.random_inputs(seed) for seed in range(n)]


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_concurrent_runs_match_single_thread_and_onnxruntime(compiled, name):
    src, art = compiled[name]
    model = edgec.load(art)
    feeds = _feeds(model, 8)
    single = [model.run(f) for f in feeds]
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    for f, outs in zip(feeds, single):
        for got, ref in zip(outs, sess.run(None, f)):
            np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    errors, results = [], {}
    barrier = threading.Barrier(4)

    def worker(t):
        try:
            barrier.wait()
            for rep in range(25):
                i = (t + rep) % len(feeds)
                results.setdefault(t, []).append((i, model.run(feeds[i])))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    assert sum(len(r) for r in results.values()) == 100
    for runs in results.values():
        for i, outs in runs:
            for got, want in zip(outs, single[i]):
                np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_outputs_survive_later_runs_and_never_alias(compiled):
    _, art = compiled["cnn"]
    with edgec.load(art) as model:
        a, b = _feeds(model, 2)
        first = model.run(a)
        keep = [o.copy() for o in first]
        second = model.run(b)
        for o, k in zip(first, keep):
            np.testing.assert_array_equal(o, k)
        assert not any(np.shares_memory(o, s) for o in first for s in second)
        first[0][...] = 123.0  # callers own their outputs: writing to them changes nothing later
        for o, k in zip(model.run(a), keep):
            np.testing.assert_array_equal(o, k)


def test_outputs_that_are_inputs_or_views_are_copies(compiled):
    _, art = compiled["views"]
    with edgec.load(art) as model:
        x = np.arange(12, dtype=np.float32).reshape(2, 6)
        same, flat = model.run({"x": x})
        np.testing.assert_array_equal(same, x)
        np.testing.assert_array_equal(flat, x.reshape(-1))
        assert not np.shares_memory(same, x) and not np.shares_memory(flat, x)
        assert not np.shares_memory(same, flat)
        y = x + 1
        model.run({"x": y})
        np.testing.assert_array_equal(same, x)


def _at_offset(x, offset):
    """A copy of X whose data starts OFFSET bytes after a 64-byte boundary."""
    raw = np.empty(x.nbytes + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    y = raw[start:start + x.nbytes].view(x.dtype).reshape(x.shape)
    y[...] = x
    return y


def test_inputs_any_layout_and_out_buffers(compiled):
    src, art = compiled["cnn"]
    with edgec.load(art) as model:
        x = model.random_inputs(4)["image"]
        want = model.run({"image": x})[0].copy()
        readonly = x.copy()
        readonly.flags.writeable = False
        variants = [np.asfortranarray(x), readonly, _at_offset(x, 0), _at_offset(x, 4), x.tolist()]
        assert _at_offset(x, 0).ctypes.data % 64 == 0 and _at_offset(x, 4).ctypes.data % 64 == 4
        for variant in variants:
            np.testing.assert_array_equal(model.run({"image": np.asarray(variant, np.float32)})[0], want)
        buf = [np.full_like(want, np.nan)]
        res = model.run({"image": x}, out=buf)
        assert res[0] is buf[0]
        np.testing.assert_array_equal(buf[0], want)
        with pytest.raises(InputError, match=r"out\[0\] must be a writable float32 array of shape"):
            model.run({"image": x}, out=[np.empty((3,), np.float32)])
        with pytest.raises(InputError, match="out= needs 1 arrays"):
            model.run({"image": x}, out=[])
        with pytest.raises(InputError, match="inputs must be a dict"):
            model.run(None)


def test_close_and_with_free_the_model_and_leave_no_folder(compiled):
    _, art = compiled["cnn"]
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "edgec-*")))
    model = edgec.load(art)
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "edgec-*"))) == before  # removed after loading
    feed = model.random_inputs()
    model.run(feed)
    model.close()
    assert model.closed
    with pytest.raises(EdgecError, match="is closed"):
        model.run(feed)
    with edgec.load(art) as m2:
        m2.run(feed)
    assert m2.closed


def _rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def soak(art, runs, cycles):
    """RSS (KiB) after warm-up, after RUNS runs of one model, after CYCLES load/run/close cycles."""
    model = edgec.load(art)
    feed = model.random_inputs()
    for _ in range(200):
        model.run(feed)
    for _ in range(20):
        with edgec.load(art) as m:
            m.run(feed)
    gc.collect()
    start = _rss_kib()
    for _ in range(runs):
        model.run(feed)
    after_runs = _rss_kib()
    model.close()
    for _ in range(cycles):
        with edgec.load(art) as m:
            m.run(feed)
    gc.collect()
    return start, after_runs, _rss_kib()


def test_soak_sample_rss_flat(compiled):
    start, after_runs, after_cycles = soak(compiled["cnn"][1], runs=2000, cycles=40)
    print(f"soak sample: RSS {start} KiB, after 2000 runs {after_runs} KiB, after 40 load/close {after_cycles} KiB")
    assert after_runs - start < 8 * 1024 and after_cycles - start < 16 * 1024


@pytest.mark.soak
@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_soak_10000_runs_300_cycles_rss_flat(compiled, name):
    start, after_runs, after_cycles = soak(compiled[name][1], runs=10000, cycles=300)
    print(f"soak {name}: RSS {start} KiB, after 10000 runs {after_runs} KiB, after 300 load/close "
          f"{after_cycles} KiB")
    assert after_runs - start < 8 * 1024 and after_cycles - start < 16 * 1024


def _mapped_libraries():
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "/edgec-" in line and "model.so" in line)


def test_library_unloaded_when_closed_or_collected(compiled):
    _, art = compiled["cnn"]
    before = _mapped_libraries()
    model = edgec.load(art)
    model.run(model.random_inputs())
    assert _mapped_libraries() > before
    del model
    gc.collect()
    assert _mapped_libraries() == before
    with edgec.load(art) as model:
        model.run(model.random_inputs())
    assert _mapped_libraries() == before
