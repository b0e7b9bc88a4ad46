"""ARM targets for real: rpi4 artifacts run as aarch64 code under qemu-aarch64-static (QEMU_CPU=cortex-a72),
through the packaged C++ runner, the Python runtime in an emulated aarch64 Python, and TVM RPC.
Every output is checked against onnxruntime on the host at rtol 1e-4 / atol 1e-5.

Needs `apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static` (tests skip
without, and say so); the emulated Python and the aarch64 wheels are set up once in ~/.cache/edgec.
"""
import os
import socket
import subprocess
import tarfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import arm_env
from edgec import api, cli, targets
from edgec.errors import RemoteError, TargetError

RTOL, ATOL = 1e-4, 1e-5
pytestmark = pytest.mark.arm
LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light/light_squeezenet.onnx")


def random_squeezenet(path, size=64, seed=0):
    """ONNX's light squeezenet (weights are ConstantOfShape 0.02) with He-random weights, SIZE x SIZE input."""
    rng = np.random.default_rng(seed)
    m = onnx.load(LIGHT)
    inits = {t.name: t for t in m.graph.initializer}
    keep = []
    for n in m.graph.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            shape = numpy_helper.to_array(inits.pop(n.input[0])).astype(int)
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            w = rng.standard_normal(shape) * (np.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.1)
            inits[n.output[0]] = numpy_helper.from_array(w.astype(np.float32), n.output[0])
        else:
            keep.append(n)
    for name, t in list(inits.items()):
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32 and name not in {n.output[0] for n in m.graph.node}:
            inits[name] = numpy_helper.from_array((rng.standard_normal(a.shape) * 0.1).astype(np.float32), name)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits.values())
    data = next(i for i in m.graph.input if i.name == "data_0")
    data.type.tensor_type.shape.dim[2].dim_value = size
    data.type.tensor_type.shape.dim[3].dim_value = size
    data = onnx.ValueInfoProto.FromString(data.SerializeToString())
    del m.graph.input[:]  # the light model also lists its initializers as inputs
    m.graph.input.append(data)
    onnx.save(m, path)
    return path


def small_lstm(path, seed=0, T=5, I=8, H=16):
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((1, 4 * H, I)) * 0.3).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((1, 4 * H, H)) * 0.3).astype(np.float32), "R"),
             numpy_helper.from_array((rng.standard_normal((1, 8 * H)) * 0.1).astype(np.float32), "B")]
    node = helper.make_node("LSTM", ["x", "W", "R", "B"], ["y", "y_h"], name="lstm1", hidden_size=H)
    g = helper.make_graph([node], "small_lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, 1, I])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("y_h", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), path)
    return path


def onnxruntime_outputs(model, inputs):
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, inputs)


def check(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL)
    assert any(np.ptp(e) > 1e-3 for e in expected), "reference outputs are constant: the check would be weak"


def _build(d, name, make):
    model = make(str(d / f"{name}.onnx"))
    art = api.compile(model, "rpi4", str(d / f"{name}.edgec"), progress=False)
    inp = onnx.load(model).graph.input[0]
    x = np.random.default_rng(1).standard_normal([x.dim_value for x in inp.type.tensor_type.shape.dim])
    x = x.astype(np.float32)
    return {"model": model, "artifact": art, "inputs": {inp.name: x},
            "expected": onnxruntime_outputs(model, {inp.name: x})}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """rpi4 artifacts (compiled on first use) of a random-weight squeezenet (64x64) and an LSTM."""
    arm_env.require_tools()
    d = tmp_path_factory.mktemp("arm")
    makers = {"cnn": random_squeezenet, "lstm": small_lstm}

    class Built(dict):
        def __missing__(self, name):
            self[name] = _build(d, name, makers[name])
            return self[name]
    return Built()


@pytest.fixture(scope="module")
def host_artifact(built, tmp_path_factory):
    return api.compile(built["cnn"]["model"], "host", str(tmp_path_factory.mktemp("host") / "cnn.edgec"),
                       progress=False)


def test_rpi4_library_is_aarch64_with_neon(built, tmp_path):
    with tarfile.open(built["cnn"]["artifact"]) as t:
        t.extract("model.so", tmp_path)
    lib = tmp_path / "model.so"
    head = lib.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[4] == 2  # 64-bit ELF
    assert int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
    asm = subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(lib)], capture_output=True, text=True).stdout
    fmla = [ln for ln in asm.splitlines() if "\tfmla\tv" in ln]
    assert len(fmla) > 10, "no NEON vector FMAs (fmla v..) in the rpi4 library"


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_bundle_runner_under_qemu_matches_onnxruntime(built, name, tmp_path):
    case = built[name]
    bundle = tmp_path / "bundle.tar.gz"
    assert cli.main(["package", case["artifact"], "-o", str(bundle)]) == 0
    with tarfile.open(bundle) as t:
        names = t.getnames()
        t.extractall(tmp_path, filter="data")
    root = tmp_path / names[0].split("/")[0]
    assert {"bin/edgec-run", "lib/libtvm_runtime.so", "lib/libtvm_ffi.so", "model/model.so",
            "model/params.bin", "model/manifest.json", "run.sh", "README.txt"} <= {n.split("/", 1)[1] for n in names
                                                                                  if "/" in n}
    assert b".debug_info" not in (root / "model/model.so").read_bytes()  # stripped with the cross strip
    outs = arm_env.run_bundle(root, case["inputs"].values(), tmp_path, len(case["expected"]), runs=2)
    check(outs, case["expected"])


def test_bundle_runner_rejects_wrong_input_shape(built, tmp_path):
    bundle = tmp_path / "b.tar.gz"
    cli.main(["package", built["cnn"]["artifact"], "-o", str(bundle)])
    with tarfile.open(bundle) as t:
        root = tmp_path / t.getnames()[0].split("/")[0]
        t.extractall(tmp_path, filter="data")
    np.save(tmp_path / "bad.npy", np.zeros((1, 3, 32, 32), np.float32))
    res = arm_env.qemu([str(root / "bin/edgec-run"), str(root / "model"), "-i", str(tmp_path / "bad.npy")], timeout=120)
    assert res.returncode == 1 and "input 'data_0' must be float32[1,3,64,64,]" in res.stderr


def test_python_runtime_under_emulated_aarch64(built, tmp_path):
    py = arm_env.emulated_python()
    case = built["cnn"]
    np.savez(tmp_path / "in.npz", **case["inputs"])
    script = ("import sys, platform, numpy as np, edgec.runtime as rt\n"
              "assert platform.machine() == 'aarch64'\n"
              "m = rt.load(sys.argv[1]); x = dict(np.load(sys.argv[2]))\n"
              "np.savez(sys.argv[3], *m.run(x))\n")
    res = subprocess.run([str(py), "-c", script, case["artifact"], str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    with np.load(tmp_path / "out.npz") as z:
        check([z[f"arr_{i}"] for i in range(len(z.files))], case["expected"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rpc_server(built):
    """A TVM RPC server in emulated aarch64 Python; workers re-enter qemu through the wrapper."""
    py = arm_env.emulated_python()
    port = _free_port()
    code = (f"import sys, runpy; sys.executable = {str(py)!r}\n"
            f"sys.argv = ['rpc_server', '--host', '127.0.0.1', '--port', '{port}', '--port-end', '{port + 1}']\n"
            "runpy.run_module('tvm.exec.rpc_server', run_name='__main__')\n")
    proc = subprocess.Popen([str(py), "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"RPC server died: {proc.stderr.read().decode()[-1000:]}")
            time.sleep(1)
    else:
        os.killpg(proc.pid, 9)
        pytest.fail("RPC server in emulated Python did not start within 120 s")
    yield f"127.0.0.1:{port}"
    os.killpg(proc.pid, 9)  # the server and its forked session workers (own process group)
    proc.wait()


def test_remote_run_matches_onnxruntime(built, rpc_server, tmp_path):
    case = built["cnn"]
    np.savez(tmp_path / "in.npz", **case["inputs"])
    assert cli.main(["run", case["artifact"], "--remote", rpc_server, "--inputs", str(tmp_path / "in.npz"),
                     "--outputs", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as z:
        check([z[k] for k in z.files], case["expected"])


def test_remote_profile_times_kernels_on_device(built, rpc_server):
    from edgec.runtime.remote import load_remote
    prof = load_remote(built["cnn"]["artifact"], rpc_server).profile(repeat=3, warmup=1)
    assert prof.e2e_median > 0 and prof.rows
    assert all(r["median_s"] >= 0 for r in prof.rows)
    assert any(r["median_s"] > 0 for r in prof.rows)


def test_remote_refuses_artifact_for_another_arch(host_artifact, rpc_server):
    from edgec.runtime.remote import load_remote
    with pytest.raises(RemoteError, match="holds x86_64 code for target 'host'"):
        load_remote(host_artifact, rpc_server)


def test_remote_unreachable_fails_within_timeout(tmp_path):
    from edgec.runtime.remote import connect
    t0 = time.time()
    with pytest.raises(RemoteError, match="cannot reach a TVM RPC server at 127.0.0.1"):
        connect(f"127.0.0.1:{_free_port()}", timeout=2)
    for addr in ["192.0.2.1:9090"]:  # TEST-NET-1: never routed (some sandboxes accept, then the handshake fails)
        t0 = time.time()
        with pytest.raises(RemoteError):
            connect(addr, timeout=2)
        assert time.time() - t0 < 5
    with pytest.raises(RemoteError, match="is not HOST:PORT"):
        connect("no-port")


def test_package_refuses_host_artifact(host_artifact, tmp_path):
    from edgec.targets.package import package
    with pytest.raises(TargetError, match="this artifact holds x86_64 code"):
        package(host_artifact, tmp_path / "x.tar.gz")


def test_arm_presets_and_android_without_ndk(monkeypatch, tmp_path):
    p = targets.get("rpi4")
    assert p.tvm["mtriple"] == "aarch64-linux-gnu" and p.tvm["mcpu"] == "cortex-a72" and p.arch == "aarch64"
    assert targets.get("rpi5").tvm["mcpu"] == "cortex-a76"
    assert targets.get("aarch64").cross_cc == "aarch64-linux-gnu-gcc"
    monkeypatch.delenv("TVM_NDK_CC", raising=False)
    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    android = targets.get("android-arm64")
    assert android.tvm["mtriple"] == "aarch64-linux-android"
    assert "Android NDK" in android.missing_tools()[0]
    monkeypatch.setenv("TVM_NDK_CC", "/opt/ndk/bin/aarch64-linux-android24-clang")
    assert android.linker == "/opt/ndk/bin/aarch64-linux-android24-clang"
    assert "NDK compiler /opt/ndk" in android.missing_tools()[0]
