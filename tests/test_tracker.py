"""A device farm on 127.0.0.1: a TVM RPC tracker, two native RPC servers (key x86) and one in an emulated
aarch64 Python under qemu (key rpi4, as tests/arm_env.py builds it). `edgec verify --tracker` on both keys
matches the reference; `edgec tune --tracker` measures candidates on the devices (2 in parallel for x86,
the emulated Pi for rpi4); a busy or unknown key is a one-line error within --timeout."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

import arm_env
from edgec import api
from edgec.cli import main
from edgec.errors import RemoteError
from edgec.runtime.remote import Farm, request_session

from test_tune import _tiny_onnx


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd, **kw):
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, **kw)


def _stop(procs):
    for p in procs:
        try:
            os.killpg(p.pid, 9)  # the server and its forked session workers (own process group)
        except ProcessLookupError:
            pass
        p.wait()


def _registered(tracker, key, n, deadline):
    from tvm import rpc
    host, port = tracker.split(":")
    while time.time() < deadline:
        try:
            q = rpc.connect_tracker(host, int(port)).summary()["queue_info"].get(key, {})
            if q.get("free", 0) >= n:
                return
        except Exception:  # noqa: BLE001 - the tracker is still starting
            pass
        time.sleep(1)
    pytest.fail(f"{n} RPC server(s) of key {key} did not register with the tracker in time")


@pytest.fixture(scope="module")
def tracker():
    pytest.importorskip("tornado", reason="TVM's RPC tracker needs tornado (the tune extra)")
    port = _free_port()
    proc = _start([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                   "--port-end", str(port + 1)])
    yield f"127.0.0.1:{port}"
    _stop([proc])


def _server(python, tracker, key, code_prefix=""):
    port = _free_port()
    code = (f"{code_prefix}import sys, runpy\nsys.argv = ['rpc_server', '--host', '127.0.0.1', '--port', '{port}', "
            f"'--port-end', '{port + 20}', '--tracker', '{tracker}', '--key', '{key}']\n"
            "runpy.run_module('tvm.exec.rpc_server', run_name='__main__')\n")
    return _start([str(python), "-c", code])


@pytest.fixture(scope="module")
def farm(tracker):
    """Two native servers (x86) and one emulated aarch64 server (rpi4), all registered."""
    py = arm_env.emulated_python()
    procs = [_server(sys.executable, tracker, "x86"), _server(sys.executable, tracker, "x86"),
             _server(py, tracker, "rpi4", f"import sys; sys.executable = {str(py)!r}\n")]
    deadline = time.time() + 180
    _registered(tracker, "x86", 2, deadline)
    _registered(tracker, "rpi4", 1, deadline)
    yield tracker
    _stop(procs)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    arm_env.require_tools()
    d = tmp_path_factory.mktemp("farm")
    model = str(d / "tiny.onnx")
    _tiny_onnx(model)
    return model, {t: api.compile(model, t, str(d / f"{t}.edgec"), progress=False) for t in ("host", "rpi4")}


@pytest.mark.arm
@pytest.mark.parametrize("target,key", [("host", "x86"), ("rpi4", "rpi4")])
def test_verify_on_a_tracker_device(farm, artifacts, target, key, capsys):
    model, arts = artifacts
    assert main(["verify", model, arts[target], "--tracker", farm, "--key", key, "--timeout", "60", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["passed"] and rep["outputs"][0]["max_abs"] < 1e-4
    assert main(["run", arts[target], "--tracker", farm, "--key", key, "--timeout", "60", "--repeat", "2"]) == 0
    assert "latency: median" in capsys.readouterr().out


@pytest.mark.arm
@pytest.mark.slow
@pytest.mark.parametrize("target,key,devices", [("host", "x86", 2), ("rpi4", "rpi4", 1)])
def test_tune_measures_candidates_on_tracker_devices(farm, artifacts, tmp_path, target, key, devices):
    model, _ = artifacts
    r = subprocess.run([sys.executable, "-m", "edgec.cli", "tune", model, "--target", target, "--trials", "4",
                        "--cost-model", "random", "--db", str(tmp_path / "db"), "--tracker", farm, "--key", key,
                        "--devices", str(devices), "--timeout", "120", "--json"],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    (k,) = rep["kernels"]
    assert key in rep["measured_on"] and k["measured"] == 4 and not k["failures"], k
    assert k["hand_ms"] > 0 and k["tuned_ms"] > 0


def test_unknown_key_and_busy_device_are_one_line_errors(tracker):
    with pytest.raises(RemoteError, match="has no device with key 'pi9'"):
        request_session(tracker, "pi9", timeout=5)
    with pytest.raises(RemoteError, match="--tracker needs --key"):
        Farm(tracker, None)
    port = _free_port()
    t0 = time.time()
    with pytest.raises(RemoteError, match="cannot reach a TVM RPC tracker"):
        request_session(f"127.0.0.1:{port}", "x86", timeout=2)
    assert time.time() - t0 < 10


@pytest.mark.arm
def test_no_free_device_in_time(farm, artifacts):
    held = [request_session(farm, "rpi4", timeout=30)]  # the only rpi4 device is now busy
    t0 = time.time()
    with pytest.raises(RemoteError, match="no device of key 'rpi4' became free .* within 3 s"):
        request_session(farm, "rpi4", timeout=3)
    assert time.time() - t0 < 15
    del held
