"""CUDA artifacts without a GPU: valid kernels, device code compiled by nvcc at compile time into the
library (fatbin: cubin + PTX), registers and spills from ptxas, and the runtime's diagnosis of why a
GPU path cannot start (checked against a stand-in driver library). Execution against onnxruntime
needs a GPU: test_cuda_artifact_runs_on_a_gpu here, and examples/gpu_check.sh for the zoo."""
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec import targets
from edgec.compiler.build import identifiers
from edgec.runtime.artifact import read_manifest

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
import recurrent_models  # noqa: E402
from test_cli import small_cnn  # noqa: E402
from zoo import light_models, load_light  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"
FATBIN_MAGIC = 0xBA55ED50
STUB = Path(__file__).parent / "libcuda_stub.c"


def nasty_names_cnn(seed=0):
    """A small CNN whose tensor names are not C identifiers (tf2onnx style `a/b:0`, dots, leading
    digits), a C keyword, two names that sanitize alike, and TVM's own buffer names (lv, T_add, conv2d)."""
    rng = np.random.default_rng(seed)
    w, b, w2 = "model/conv_1/Conv2D/ReadVariableOp:0", "1.bias", "float"
    inits = [numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.3, w),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), b),
             numpy_helper.from_array(rng.standard_normal((8, 8, 1, 1)).astype(np.float32) * 0.3, w2),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "model/conv_1:0"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "model_conv_1_0")]
    nodes = [helper.make_node("Conv", ["lv", w, b], ["conv2d"], name="model/conv_1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv2d"], ["relu:0"], name="re/lu"),
             helper.make_node("Conv", ["relu:0", w2, "model/conv_1:0"], ["T_add"], name="2conv"),
             helper.make_node("Add", ["T_add", "relu:0"], ["a.b"], name="add.0"),
             helper.make_node("Mul", ["a.b", "lv"], ["c"], name="mul"),
             helper.make_node("Add", ["c", "model_conv_1_0"], ["out/y:0"], name="bias.2")]
    graph = helper.make_graph(nodes, "nasty/names", [helper.make_tensor_value_info("lv", TensorProto.FLOAT, [1, 8, 8, 8])],
                              [helper.make_tensor_value_info("out/y:0", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def fatbin_entries(data):
    """[(kind, sm)] of the fatbin inside DATA (kind 'ptx' or 'cubin'); [] when there is none."""
    pos = data.find(struct.pack("<I", FATBIN_MAGIC))
    if pos < 0:
        return []
    _, _, header, size = struct.unpack_from("<IHHQ", data, pos)
    out, p = [], pos + header
    while p < pos + header + size:
        kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, p)
        out.append(({1: "ptx", 2: "cubin"}.get(kind, str(kind)), struct.unpack_from("<I", data, p + 28)[0]))
        p += entry_header + payload
    return out


def members(art):
    with tarfile.open(art) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def compile_model(model, target, out, shapes=None):
    return edgec.compile(str(model), target=target, output=str(out), input_shapes=shapes, progress=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("cuda_models")
    onnx.save(small_cnn(0), d / "cnn.onnx")
    onnx.save(nasty_names_cnn(), d / "nasty.onnx")
    onnx.save(recurrent_models.make("LSTM", 16, 32, 64, "forward"), d / "lstm.onnx")
    return d


_compiled = {}


def compiled(models, name, target):
    """Artifact of model NAME for TARGET, compiled once per session."""
    key = (name, target)
    if key not in _compiled:
        src = EXAMPLES / "digits_cnn.onnx" if name == "digits" else models / f"{name}.onnx"
        shapes = {"image": (1, 8, 8, 1)} if name == "digits" else {"input": (2, 3, 8, 8)} if name == "cnn" else None
        _compiled[key] = compile_model(src, target, models / f"{name}-{target}.edgec", shapes)
    return _compiled[key]


def check_device_code(art, gpu_arch, host_machine=62):
    """The artifact's library holds nvcc's fatbin (cubin for GPU_ARCH + its PTX), no CUDA source;
    ptxas reported every kernel; returns the manifest."""
    m = read_manifest(art)
    files = members(art)
    lib = files["model.so"]
    sm = int(gpu_arch.replace("sm_", ""))
    assert sorted(fatbin_entries(lib)) == [("cubin", sm), ("ptx", sm)]
    assert b'extern "C" __global__' not in lib and b"__launch_bounds__" not in lib  # no source to JIT at load
    assert struct.unpack_from("<H", lib, 18)[0] == host_machine  # ELF e_machine: 62 x86-64, 183 aarch64
    code = m["device_code"]
    assert code["format"] == "fatbin" and code["cubin"] == gpu_arch and code["compiler"].startswith("nvcc release")
    source = files["kernels.cu"].decode()
    kernels = code["kernels"]
    defined = re.findall(r'^extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(.*\{$', source, re.M)
    assert kernels and set(kernels) == set(defined)
    for k in m["kernels"]:  # every kernel became GPU kernels (dlight bound it to threads)
        assert any(name.startswith(f"{k['function']}_kernel") for name in kernels), k["name"]
    for name, r in kernels.items():
        assert r["registers"] > 0 and {"spill_stores", "spill_loads", "stack", "shared"} <= set(r), name
    return m


def report(m):
    """ptxas' numbers per kernel, printed with -s / on failure."""
    rows = [f"{n:44s} regs {r['registers']:3d} spills {r['spill_stores']}/{r['spill_loads']} B smem {r['shared']}"
            for n, r in sorted(m["device_code"]["kernels"].items())]
    print(f"\n{m['model']['name']} for {m['target']['name']}:\n  " + "\n  ".join(rows))


def conv_spills(m):
    """{conv kernel: (spill stores, spill loads, stack bytes)} of the conv kernels that use local memory."""
    convs = [k["function"] for k in m["kernels"] if k["kind"] == "conv2d"]
    return {n: (r["spill_stores"], r["spill_loads"], r["stack"]) for n, r in m["device_code"]["kernels"].items()
            if any(n.startswith(f"{c}_kernel") for c in convs) and (r["spill_stores"] or r["spill_loads"] or r["stack"])}


def grouped_conv(groups=4, channels=272, size=14):
    """ShuffleNet's shape of layer: a grouped 1x1 conv with a residual add and relu."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((channels, channels // groups, 1, 1)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], group=groups),
             helper.make_node("Add", ["c", "x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    graph = helper.make_graph(nodes, "grouped", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_grouped_conv_keeps_its_accumulators_in_registers(tmp_path):
    """dlight's GeneralReduction gave this kernel 1020 floats of local arrays per thread (4 KB of stack,
    spills on sm_90); the guard in targets/schedules/gpu.py replaces such schedules."""
    onnx.save(grouped_conv(), tmp_path / "g.onnx")
    m = check_device_code(compile_model(tmp_path / "g.onnx", "cuda-sm90", tmp_path / "g.edgec"), "sm_90")
    report(m)
    assert not conv_spills(m) and max(r["registers"] for r in m["device_code"]["kernels"].values()) <= 64


def test_identifiers_are_distinct_c_names():
    names = ["a/b:0", "a_b_0", "a.b:0", "1x", "float", "", "__x", "ok"]
    ids = identifiers(names)
    assert ids["ok"] == "ok" and ids["a/b:0"] == "a_b_0" and ids["1x"] == "v_1x" and ids["float"] == "v_float"
    assert len(set(ids.values())) == len(names)
    assert all(c.isidentifier() and not c.startswith("__") for c in ids.values())


def test_tensor_names_that_are_not_c_identifiers_compile_for_cuda(models):
    art = compiled(models, "nasty", "cuda")
    m = check_device_code(art, "sm_80")
    assert m["tvm_names"]["model/conv_1/Conv2D/ReadVariableOp:0"] == "model_conv_1_Conv2D_ReadVariableOp_0"
    assert m["tvm_names"]["1.bias"] == "v_1_bias" and m["tvm_names"]["float"] == "v_float"
    assert "out/y:0" in [o["name"] for o in m["outputs"]] and "model/conv_1:0" in m["params"]  # source names kept
    assert "model/conv_1" in {s for k in m["kernels"] for s in k["sources"]}


def test_sanitized_names_keep_cpu_results(models, tmp_path):
    import onnxruntime as ort
    art = compile_model(models / "nasty.onnx", "host", tmp_path / "nasty.edgec")
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 8)).astype(np.float32)
    (out,) = edgec.load(art).run({"lv": x})
    ref = ort.InferenceSession(str(models / "nasty.onnx")).run(None, {"lv": x})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("target,arch,machine", [("cuda", "sm_80", 62), ("cuda-sm90", "sm_90", 62),
                                                 ("jetson-orin", "sm_87", 183)])
@pytest.mark.parametrize("model", ["digits", "lstm"])
def test_device_code_is_nvcc_fatbin_without_conv_spills(models, model, target, arch, machine):
    if target == "jetson-orin" and targets.get(target).missing_tools():
        pytest.skip(f"jetson-orin needs {targets.get(target).missing_tools()} (apt-get install gcc-aarch64-linux-gnu)")
    m = check_device_code(compiled(models, model, target), arch, machine)
    report(m)
    assert not conv_spills(m)
    if model == "lstm":  # the recurrent loop: an input projection kernel and a step-loop kernel
        assert [k["kind"] for k in m["kernels"]] == ["recurrent"] and len(m["device_code"]["kernels"]) == 2


def summary(m, label=None):
    k = m["device_code"]["kernels"].values()
    return (f"{label or m['model']['name']:>16} {m['target']['name']:>11}: {len(m['kernels'])} kernels -> {len(k)} GPU "
            f"kernels, registers max {max(r['registers'] for r in k)}, spill bytes {sum(r['spill_stores'] for r in k)}, "
            f"fatbin {m['device_code']['bytes'] / 1024:.0f} KiB, compile {m['compile_seconds']:.0f} s")


def test_zoo_model_for_cuda(tmp_path):
    """A representative zoo CNN (AlexNet: large strided convs, max pools, dense layers) for the default preset."""
    onnx.save(load_light("bvlc_alexnet"), tmp_path / "alexnet.onnx")
    m = check_device_code(compile_model(tmp_path / "alexnet.onnx", "cuda", tmp_path / "alexnet.edgec"), "sm_80")
    print("\n" + summary(m))
    assert not conv_spills(m)


ZOO_TARGETS = [("cuda", "sm_80", 62), ("cuda-sm90", "sm_90", 62), ("jetson-orin", "sm_87", 183)]


@pytest.mark.cuda_zoo
@pytest.mark.parametrize("target,arch,machine", ZOO_TARGETS)
@pytest.mark.parametrize("name", light_models() + [s[0] for s in recurrent_models.SET])
def test_cuda_zoo(name, target, arch, machine, tmp_path):
    """Every zoo model and the recurrent set for every CUDA preset: nvcc-built fatbin, ptxas report,
    no spills in conv kernels (tens of minutes: `pytest -m cuda_zoo -s` prints one line per model)."""
    if targets.get(target).missing_tools():
        pytest.skip(f"{target} needs {targets.get(target).missing_tools()}")
    spec = {s[0]: s for s in recurrent_models.SET}.get(name)
    onnx.save(recurrent_models.make(*spec[1:]) if spec else load_light(name), tmp_path / "m.onnx")
    m = check_device_code(compile_model(tmp_path / "m.onnx", target, tmp_path / "m.edgec"), arch, machine)
    print("\n" + summary(m, name))
    assert not conv_spills(m)


def test_tf2onnx_model_kernels_use_sanitized_names(models):
    m = read_manifest(compiled(models, "digits", "cuda"))
    source = members(compiled(models, "digits", "cuda"))["kernels.cu"].decode()
    assert "StatefulPartitionedCall/" in json.dumps(m["params"]) and "StatefulPartitionedCall/" not in source
    assert "StatefulPartitionedCall_" in source


def test_missing_nvcc_names_what_to_install(monkeypatch):
    from edgec.targets import cuda
    monkeypatch.setattr(cuda, "nvcc_path", lambda: "")
    with pytest.raises(edgec.EdgecError, match="pip install nvidia-cuda-nvcc"):
        cuda.compile_device_code("", targets.get("cuda"))
    assert any("nvidia-cuda-nvcc" in t for t in targets.get("cuda").missing_tools())


def test_jetson_xavier_is_refused_with_the_reason():
    with pytest.raises(edgec.EdgecError, match="dropped"):
        from edgec.targets import cuda
        cuda.compile_device_code("", targets.get("jetson-xavier"))


# ---- loading: what the runtime says when the GPU path cannot start -------------------------------
@pytest.fixture(scope="module")
def stub_driver(tmp_path_factory):
    """A stand-in libcuda.so.1 (tests/libcuda_stub.c) answering the driver queries from STUB_CUDA_* variables."""
    d = tmp_path_factory.mktemp("stub")
    res = subprocess.run(["cc", "-shared", "-fPIC", "-o", str(d / "libcuda.so.1"), str(STUB)], capture_output=True,
                         text=True)
    if res.returncode:
        pytest.skip(f"no C compiler to build the stand-in driver: {res.stderr.strip()[-200:]}")
    return d


SCENARIOS = """
import json, os, tarfile, tvm
import edgec.runtime.cuda as cuda
from edgec.runtime.artifact import read_manifest
art = {art!r}
manifest, out = read_manifest(art), {{}}
# TVM's CUDA runtime loads here (the stand-in satisfies libcuda.so.1), as on a GPU machine: compiling
# must still make the fatbin with nvcc (TVM would JIT the source with NVRTC at build time instead)
import edgec, tvm_ffi
out["tvm cuda runtime"] = tvm_ffi.get_global_func("ffi.Module.create.cuda", allow_missing=True) is not None
again = edgec.compile({onnx!r}, target="cuda", output={again!r}, input_shapes={{"input": (2, 3, 8, 8)}}, progress=False)
out["compiled with tvm cuda runtime"] = read_manifest(again)["device_code"]["format"]

def attempt(name, **env):
    os.environ.update({{f"STUB_CUDA_{{k.upper()}}": str(v) for k, v in env.items()}})
    cuda._started.clear()
    try:
        cuda.start(manifest, art)
        out[name] = "started"
    except cuda.CudaUnavailable as e:
        out[name] = str(e)

attempt("no device", devices=0)
attempt("old driver", devices=1, driver=12040)
real = cuda.cudart_candidates
cuda.cudart_candidates = lambda: ["/nonexistent/libcudart.so.13"]
attempt("no libcudart", driver=13000, sm=80)
cuda.cudart_candidates = real
attempt("older GPU", sm=75)
attempt("newer GPU", sm=90)
d = {scratch!r}  # (inside the test's own folder, removed with it)
os.makedirs(d, exist_ok=True)
tarfile.open(art).extractall(d, filter="data")
pending, found = [tvm.runtime.load_module(d + "/model.so")], []
while pending:
    m = pending.pop()
    pending += list(m.imports)
    if m.kind == "cuda":
        try:
            data = m.inspect_source("fatbin").encode("latin-1")
        except UnicodeDecodeError as e:
            data = e.object
        found.append([m.inspect_source("cuda"), data[:4].hex()])
out["cuda modules"] = found
print("RESULT", json.dumps(out))
"""


@pytest.fixture(scope="module")
def stub_results(models, stub_driver):
    """What the runtime says under the stand-in driver, scenario by scenario, in one fresh process."""
    env = dict(os.environ, LD_LIBRARY_PATH=f"{stub_driver}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    script = SCENARIOS.format(art=compiled(models, "cnn", "cuda"), onnx=str(models / "cnn.onnx"),
                              again=str(models / "cnn-gpu-machine.edgec"),
                              scratch=str(models / "cnn-cuda-extracted"))
    res = subprocess.run([sys.executable, "-c", script],
                         capture_output=True, text=True, env=env, timeout=300)
    line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, res.stdout[-2000:] + res.stderr[-2000:]
    return json.loads(line[0][7:])


def test_no_driver_names_libcuda(models):
    if os.path.exists("/dev/nvidiactl"):
        pytest.skip("this machine has the NVIDIA driver")
    with pytest.raises(edgec.EdgecError, match="NVIDIA driver library libcuda.so.1 is not found"):
        edgec.load(compiled(models, "cnn", "cuda"))


@pytest.mark.parametrize("scenario,says", [("no device", "finds no GPU"),
                                           ("old driver", "supports CUDA 12.4"),
                                           ("no libcudart", "libcudart.so.13 is not found"),
                                           ("no libcudart", "edgec[cuda]"),
                                           ("older GPU", "holds GPU code for sm_80 and newer"),
                                           ("older GPU", "--target cuda-sm75"),
                                           ("newer GPU", "started")])
def test_driver_present_but_gpu_path_cannot_start(stub_results, scenario, says):
    said = stub_results[scenario]
    assert says in said and "no GPU" not in said.replace("finds no GPU", ""), said


def test_compile_where_tvm_cuda_runtime_loads_still_makes_the_fatbin(stub_results, models):
    assert stub_results["tvm cuda runtime"] and stub_results["compiled with tvm cuda runtime"] == "fatbin"
    assert sorted(fatbin_entries(members(models / "cnn-gpu-machine.edgec")["model.so"])) == [("cubin", 80), ("ptx", 80)]


def test_library_loads_its_fatbin_without_a_compiler(stub_results):
    """Under a driver reporting an sm_90 GPU, TVM's CUDA backend deserializes the sm_80 library: its
    CUDA module holds the fatbin (whose PTX covers sm_90) and no source to compile."""
    assert stub_results["cuda modules"] == [["", "50ed55ba"]]


def test_jetson_bundle_finds_its_cuda_libraries_under_qemu(models, tmp_path):
    """`edgec package` of a jetson-orin artifact: the aarch64 runner, TVM's CUDA backend and libcudart.so.13
    from the aarch64 wheels. Under qemu, without a driver the runner names libcuda.so.1; with an aarch64
    stand-in driver it loads the backend and the bundle's libcudart, deserializes the model's fatbin and
    stops only at the first GPU allocation (the stand-in has no GPU)."""
    from arm_env import qemu, require_tools
    from edgec.targets.package import package
    require_tools()
    bundle = package(compiled(models, "digits", "jetson-orin"), tmp_path / "b.tar.gz")
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / bundle["root"]
    for lib in ("libtvm_runtime_cuda.so", "libcudart.so.13", "libtvm_runtime.so", "libtvm_ffi.so"):
        assert struct.unpack_from("<H", (root / "lib" / lib).read_bytes(), 18)[0] == 183, lib  # aarch64 ELF
    assert "CUDA 13" in (root / "README.txt").read_text()
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8, 1), np.float32))
    cmd = [str(root / "bin/edgec-run"), str(root / "model"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path)]
    no_driver = qemu(cmd, timeout=120)
    assert no_driver.returncode == 1 and "libcuda.so.1" in no_driver.stderr, no_driver.stderr
    res = subprocess.run(["aarch64-linux-gnu-gcc", "-shared", "-fPIC", "-o", str(tmp_path / "libcuda.so.1"), str(STUB)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    stub = qemu(["-E", f"LD_LIBRARY_PATH={tmp_path}", *cmd], timeout=120)
    assert stub.returncode == 1 and "CUDA Runtime Error" in stub.stderr and "backend" not in stub.stderr, stub.stderr


def test_cuda_artifact_runs_on_a_gpu(models):
    import tvm
    if not tvm.cuda(0).exist:
        pytest.skip("no CUDA GPU on this machine: CUDA execution is checked on a GPU machine (examples/gpu_check.sh)")
    import onnxruntime as ort
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    (out,) = edgec.load(compiled(models, "cnn", "cuda")).run({"input": x})
    ref = ort.InferenceSession(str(models / "cnn.onnx")).run(None, {"input": x})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
