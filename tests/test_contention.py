"""The runtime's contention policy: the TVM pool shrinks to the cores other processes leave free,
grows back when they go, never above the count asked for, and the outputs stay onnxruntime's."""
import os
import threading

import numpy as np
import onnxruntime as ort
import pytest

import edgec
from edgec.runtime import contention

HERE = os.path.dirname(__file__)
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture
def fake_load(monkeypatch):
    """Set the (machine-wide runnable, own runnable) counts the policy sees; looks every run."""
    load = {"now": (1, 1)}
    monkeypatch.setattr(contention, "INTERVAL", 0.0)
    monkeypatch.setattr(contention, "runnable_tasks", lambda: load["now"])
    return load


def _pool(n=None):
    import tvm
    if n is not None:
        tvm.get_global_func("runtime.config_threadpool")(1, n)
    return tvm.get_global_func("runtime.NumThreads")()


def test_runnable_tasks_counts_this_thread():
    load = contention.runnable_tasks()
    if load is None:
        pytest.skip("no /proc/loadavg on this system: the policy is off here")
    total, own = load
    assert own >= 1 and total >= own  # the thread reading is running


def test_pool_follows_free_cores_within_the_wish(fake_load):
    if _pool(2) < 2:
        pytest.skip("TVM's pool holds one worker here (TVM_NUM_THREADS=1?)")
    pol = contention.Policy(cores=2)
    fake_load["now"] = (3, 1)  # two other runnable tasks on 2 cores
    pol.before_run()
    assert _pool() == 1
    fake_load["now"] = (1, 1)  # they went
    pol.before_run()
    assert _pool() == 2
    _pool(1)  # the user asks for 1 thread: an idle machine does not raise it
    pol.before_run()
    assert _pool() == 1
    _pool(2)
    fake_load["now"] = (9, 1)  # more others than cores: still one thread, never zero
    pol.before_run()
    assert _pool() == 1
    _pool(2)


def test_pool_keeps_its_threads_where_workers_sleep(fake_load, monkeypatch):
    """With TVM_THREAD_POOL_SPIN_COUNT=0 idle workers sleep instead of yielding their core's time
    slices away: the pool keeps the count asked for under contention (and shrinks without it)."""
    if _pool(2) < 2:
        pytest.skip("TVM's pool holds one worker here (TVM_NUM_THREADS=1?)")
    fake_load["now"] = (3, 1)
    monkeypatch.setenv("TVM_THREAD_POOL_SPIN_COUNT", "0")
    contention.Policy(cores=2).before_run()
    assert _pool() == 2
    monkeypatch.setenv("TVM_THREAD_POOL_SPIN_COUNT", "300000")
    contention.Policy(cores=2).before_run()
    assert _pool() == 1
    _pool(2)


def test_outputs_under_contention_match_onnxruntime(fake_load, tmp_path):
    src = os.path.join(HERE, "..", "examples", "digits_cnn.onnx")
    model = edgec.runtime.load(edgec.compile(src, "host", str(tmp_path / "cnn.edgec"), progress=False))
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    full = min(_pool(2), os.cpu_count() or 1)
    for load in [(1, 1), (5, 1), (1, 1)]:
        fake_load["now"] = load
        x = model.random_inputs(sum(load))
        got = model.run(x)
        want = sess.run(None, x)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
        assert _pool() == (1 if load[0] > 1 else full)
    model.close()


def test_a_second_model_gets_the_pool_back_when_the_machine_frees(fake_load, tmp_path):
    """One policy per calling thread: a model loaded while another model's policy had shrunk the
    pool takes the count asked for as its wish, not the shrunk one (it stayed on one thread)."""
    src = os.path.join(HERE, "..", "examples", "digits_cnn.onnx")
    path = edgec.compile(src, "host", str(tmp_path / "cnn.edgec"), progress=False)
    first = edgec.runtime.load(path)
    full = min(_pool(2), os.cpu_count() or 1)
    if full < 2:
        pytest.skip("TVM's pool holds one worker here (TVM_NUM_THREADS=1?)")
    fake_load["now"] = (5, 1)
    first.run(first.random_inputs(0))
    assert _pool() == 1
    second = edgec.runtime.load(path)
    fake_load["now"] = (1, 1)
    x = second.random_inputs(1)
    got = second.run(x)
    assert _pool() == full
    want = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, x)
    np.testing.assert_allclose(got[0], want[0], rtol=RTOL, atol=ATOL)
    first.close()
    second.close()


def _affinities():
    """{thread id: allowed cores} of this process's threads."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/status") as f:
            line = next(ln for ln in f if ln.startswith("Cpus_allowed_list"))
        out[tid] = line.split()[1]
    return out


def test_pool_workers_are_not_pinned_to_cores(tmp_path):
    """TVM pins worker i to core i by default; the policy frees them, so a worker whose core another
    process holds can move (with EDGEC_ADAPT_THREADS=0 the pinned workers show here). Run from a
    fresh thread: TVM's pool and the policy are per calling thread, and this one's first look is
    the policy's first look (this thread's pool may have been resized, pinned, by other tests)."""
    if not os.path.isdir("/proc/self/task") or (os.cpu_count() or 1) < 2:
        pytest.skip("needs Linux /proc and 2 cores to see a worker's affinity")
    src = os.path.join(HERE, "..", "examples", "digits_cnn.onnx")
    model = edgec.runtime.load(edgec.compile(src, "host", str(tmp_path / "cnn.edgec"), progress=False))
    if _pool() < 2:
        pytest.skip("TVM's pool holds one worker here (TVM_NUM_THREADS=1?)")
    before, seen = set(_affinities()), {}

    def first_run():
        _pool()  # this thread's pool: TVM starts its workers, pinned
        model.run(model.random_inputs(0))  # the policy's first look
        seen.update({t: a for t, a in _affinities().items() if t not in before})

    worker = threading.Thread(target=first_run)
    worker.start()
    worker.join()
    full = _affinities()[str(os.getpid())]
    assert len(seen) >= 2 and all(a == full for a in seen.values()), seen  # the thread and its workers
    model.close()
