"""Run and profile an artifact on a remote device over TVM RPC (`edgec run|profile --remote HOST:PORT`),
or on any free device of a key behind a TVM RPC tracker (`--tracker HOST:PORT --key KEY`).

On the device: `python -m tvm.exec.rpc_server --host 0.0.0.0 --port 9090` (runtime-only TVM is enough),
or, for a tracker, `python -m tvm.exec.rpc_server --tracker TRACKER:9190 --key rpi4`.
The artifact's library is uploaded, loaded there and run by a VM on the device; params and inputs are
copied over, outputs copied back. Unreachable devices fail within `timeout` seconds.

Profiling over RPC: TVM cannot pass the host's instrument callback to the device, so
- end-to-end times come from the device's own clock (`time_evaluator` runs on the device);
- each kernel is called on its own, from the host, with random inputs of its shapes; its time is the
  host-measured call minus the median round trip of an empty remote call (measured the same way).
Imports only the standard library, numpy and the TVM runtime.
"""
import os
import socket
import threading
import time

import numpy as np

from ..errors import RemoteError
from . import Model, artifact
from .profile import Measurement, Profile, function_of


def parse_address(address, option="--remote"):
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RemoteError(f"{option} '{address}' is not HOST:PORT")
    return host.strip("[]"), int(port)


def _reachable(host, port, timeout, what, start):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        why = "timed out" if isinstance(e, socket.timeout) else (e.strerror or str(e))
        raise RemoteError(f"cannot reach {what} at {host}:{port} within {timeout:g} s ({why}); start one: "
                          f"{start}") from None


def connect(address, timeout=10.0, session_timeout=600):
    """Open an RPC session to ADDRESS (HOST:PORT) or raise RemoteError within TIMEOUT seconds."""
    host, port = parse_address(address)
    _reachable(host, port, timeout, "a TVM RPC server",
               f"on the device: python -m tvm.exec.rpc_server --host 0.0.0.0 --port {port}")
    from tvm import rpc
    try:
        return rpc.connect(host, port, session_timeout=session_timeout)
    except Exception as e:  # noqa: BLE001 - TVM raises RPCError/TVMError/OSError
        raise RemoteError(f"{host}:{port} accepted the connection but the RPC handshake failed: "
                          f"{_last_line(e)}") from None


class Farm:
    """Devices registered under KEY at the TVM RPC tracker TRACKER (HOST:PORT): `session()` gets any free
    one, waiting at most TIMEOUT seconds; DEVICES is how many to use at once (tuning)."""

    def __init__(self, tracker, key, devices=1, timeout=10.0):
        if not key:
            raise RemoteError("--tracker needs --key: the key the devices registered with (rpc_server --key)")
        if devices < 1:
            raise RemoteError(f"--devices must be >= 1, got {devices}")
        self.tracker, self.key, self.devices, self.timeout = tracker, key, devices, timeout
        self.tracker_address()

    def tracker_address(self):
        return parse_address(self.tracker, "--tracker")

    def describe(self):
        return f"key '{self.key}' at tracker {self.tracker}"

    def session(self, session_timeout=600):
        return request_session(self.tracker, self.key, self.timeout, session_timeout)


def request_session(tracker, key, timeout=10.0, session_timeout=600):
    """An RPC session to a free device of KEY at TRACKER, or RemoteError within about TIMEOUT seconds."""
    host, port = parse_address(tracker, "--tracker")
    _reachable(host, port, timeout, "a TVM RPC tracker",
               f"python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port {port}")
    from tvm import rpc
    try:
        client = rpc.connect_tracker(host, port)
        queues = client.summary().get("queue_info", {})
    except Exception as e:  # noqa: BLE001
        raise RemoteError(f"{host}:{port} is not a working TVM RPC tracker: {_last_line(e)}") from None
    if key not in queues:
        raise RemoteError(f"tracker {tracker} has no device with key '{key}' (keys: "
                          f"{', '.join(sorted(queues)) or 'none'}); on the device: "
                          f"python -m tvm.exec.rpc_server --tracker {tracker} --key {key}")
    got = {}

    def ask():
        try:
            got["session"] = client.request(key, priority=1, session_timeout=session_timeout, max_retry=1)
        except Exception as e:  # noqa: BLE001
            got["error"] = e
    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(timeout)
    client.close()
    if asking.is_alive():
        q = queues[key]
        raise RemoteError(f"no device of key '{key}' became free at tracker {tracker} within {timeout:g} s "
                          f"({q.get('free', 0)} free, {q.get('pending', 0)} requests waiting when asked); "
                          "raise --timeout or register more devices")
    if "error" in got:
        raise RemoteError(f"tracker {tracker} named a device of key '{key}' but the session failed: "
                          f"{_last_line(got['error'])}")
    return got["session"]


def _last_line(e):
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


class RemoteModel(Model):
    """An artifact loaded on a remote device: the same prepare/invoke/run API as Model."""

    def __init__(self, path, address=None, timeout=10.0, farm=None):
        import tempfile
        self.path, self.address = str(path), address or farm.describe()
        self._tmp = tempfile.TemporaryDirectory(prefix="edgec-remote-")
        self.manifest = artifact.extract(self.path, self._tmp.name)
        target = self.manifest.get("target", {})
        if target.get("device", "cpu") != "cpu":
            raise RemoteError(f"artifact '{self.path}' targets {target.get('device')}; --remote runs CPU "
                              "artifacts")
        self.session = farm.session() if farm is not None else connect(address, timeout)
        self.device_type, self.device = "cpu", self.session.cpu(0)
        lib = os.path.join(self._tmp.name, artifact.LIBRARY)
        params = artifact.read_params(os.path.join(self._tmp.name, artifact.PARAMS), self.manifest["params"],
                                      self.path)
        try:
            self.session.upload(lib, "edgec_model.so")
            self.lib = self.session.load_module("edgec_model.so")
        except Exception as e:  # noqa: BLE001
            raise RemoteError(f"the device at {self.address} cannot load artifact '{self.path}', which holds "
                              f"{target.get('arch')} code for target '{target.get('name')}' (is the device "
                              f"{target.get('arch')}? compile with --target for it): {_last_line(e)}") from None
        self._host_params = params
        self._init_io(params)
        self._host, self._lib, self._threads = False, self.lib, threading.local()

    def device_time(self, args, repeat=10):
        """Seconds per run of main on ARGS, timed by the device's own clock."""
        self.vm.set_input("main", *args, *self._params)
        res = self.vm.time_evaluator("invoke_stateful", self.device, number=1, repeat=repeat)("main")
        return list(res.results)

    def profile(self, inputs=None, repeat=20, warmup=3):
        return profile_remote(self, inputs, repeat, warmup)


def load_remote(path, address=None, timeout=10.0, farm=None):
    """Load artifact PATH on the device at ADDRESS (HOST:PORT), or on a free device of FARM (a Farm)."""
    return RemoteModel(path, address, timeout, farm)


def profile_remote(model, inputs=None, repeat=20, warmup=3):
    """A Profile of MODEL (RemoteModel): device-clock end-to-end runs, host-timed kernel calls."""
    import tvm
    args = model.prepare(model.random_inputs() if inputs is None else inputs)
    for _ in range(warmup):
        model.invoke(args)
    e2e = model.device_time(args, repeat)
    rtt = _round_trip(model, repeat)
    get = model.session.get_function("ffi.ModuleGetFunction")
    specs = _value_specs(model)
    rng = np.random.default_rng(0)
    runs = [(0.0, 0.0, []) for _ in range(repeat)]
    timed = []
    for k in model.kernels:
        try:
            fn = get(model.lib, function_of(k), True)
            kargs = [_tensor(tvm, specs[v], rng, model.device) for v in [*k["inputs"], *k["outputs"]]]
            for _ in range(max(warmup, 1)):
                fn(*kargs)
        except Exception:  # noqa: BLE001 - a kernel we cannot call alone (view-only, other dtypes)
            continue
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(*kargs)
            times.append(max(time.perf_counter() - t0 - rtt, 0.0))
        timed.append((function_of(k), times))
    for i in range(repeat):  # lay each run's kernel calls end to end (a synthetic timeline)
        t, events = float(sum(e2e[:i])), []
        for name, times in timed:
            events.append((name, t, t + times[i]))
            t += times[i]
        runs[i] = (events[0][1] if events else 0.0, t, events)
    return Profile(f"{model.name} @ {model.address}", model.kernels, Measurement(e2e, runs))


def _round_trip(model, repeat):
    """Median seconds of an empty remote call (the RPC cost included in each host-timed kernel call)."""
    fn = model.session.get_function("ffi.ModuleGetKind")
    times = []
    for _ in range(max(repeat, 5)):
        t0 = time.perf_counter()
        fn(model.lib)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _value_specs(model):
    specs = {i["name"]: (i["shape"], i["dtype"]) for i in model.inputs}
    specs.update({p: (list(a.shape), str(a.dtype)) for p, a in model._host_params.items()})
    out_dtypes = {o["name"]: o["dtype"] for o in model.outputs}
    for k in model.kernels:
        for name, shape in zip(k["outputs"], k["output_shapes"]):
            specs.setdefault(name, (shape, out_dtypes.get(name, "float32")))
    return specs


def _tensor(tvm, spec, rng, device):
    shape, dtype = spec
    x = rng.standard_normal(shape) if np.dtype(dtype).kind == "f" else np.zeros(shape)
    return tvm.runtime.tensor(np.asarray(x, dtype=dtype), device)
