"""The edgec runtime: load a `.edgec` artifact and run it with only numpy and the TVM runtime.

    model = edgec.runtime.load("model.edgec")
    outputs = model.run({"input": x})      # list of numpy arrays, in manifest output order

Works with `TVM_USE_RUNTIME_LIB=1` (runtime-only TVM) and without onnx or the compiler.
"""
import atexit
import os
import platform
import shutil
import tempfile

import numpy as np

from ..errors import ArtifactError, InputError
from . import artifact, profile

# TVM's thread pool would otherwise start with one worker on some machines (seen on a 2-core VM:
# ResNet-50 84 ms instead of 52 ms). Users can still set TVM_NUM_THREADS themselves.
os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))


def _tvm():
    import tvm
    return tvm


def host_arch():
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def check_compatible(manifest, path, device=None):
    """Raise ArtifactError if this runtime cannot run the artifact here."""
    tvm = _tvm()
    want = manifest.get("versions", {}).get("tvm")
    if want and want != tvm.__version__:
        raise ArtifactError(f"artifact '{path}' was built with TVM {want}, this runtime has TVM "
                            f"{tvm.__version__}; recompile it")
    target = manifest.get("target", {})
    if target.get("arch") not in (None, host_arch()):
        raise ArtifactError(f"artifact '{path}' holds {target.get('arch')} code for target "
                            f"'{target.get('name')}'; this machine is {host_arch()}")
    if (device or target.get("device", "cpu")) == "cuda" and not tvm.cuda(0).exist:
        raise ArtifactError(f"artifact '{path}' was compiled for a CUDA GPU (target '{target.get('name')}'), "
                            "and this machine has none")


class Model:
    """A loaded artifact: `run(inputs)` returns numpy outputs."""

    def __init__(self, path, device=None):
        self.path = str(path)
        self._dir = tempfile.mkdtemp(prefix="edgec-")
        atexit.register(shutil.rmtree, self._dir, True)
        self.manifest = artifact.extract(self.path, self._dir)
        check_compatible(self.manifest, self.path, device)
        tvm = _tvm()
        from tvm.runtime.vm import VirtualMachine
        self.device_type = device or self.manifest["target"].get("device", "cpu")
        self.device = tvm.cuda(0) if self.device_type == "cuda" else tvm.cpu(0)
        lib = tvm.runtime.load_module(os.path.join(self._dir, self.manifest["library"]))
        self.vm = VirtualMachine(lib, self.device)
        params = tvm.runtime.load_param_dict_from_file(os.path.join(self._dir, self.manifest["params_file"]))
        missing = [p for p in self.manifest["params"] if p not in params]
        if missing:
            raise ArtifactError(f"artifact '{self.path}': params file lacks {missing[:3]}")
        self._params = [tvm.runtime.tensor(params[p].numpy(), self.device) for p in self.manifest["params"]]
        self.inputs = self.manifest["inputs"]
        self.outputs = self.manifest["outputs"]
        self.kernels = self.manifest.get("kernels", [])

    @property
    def name(self):
        return self.manifest.get("model", {}).get("name", os.path.basename(self.path))

    def prepare(self, inputs):
        """Check INPUTS (dict, list, or one array) against the manifest; return TVM tensors in order."""
        if isinstance(inputs, np.ndarray) or np.isscalar(inputs):
            inputs = [inputs]
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != len(self.inputs):
                raise InputError(f"model '{self.name}' takes {len(self.inputs)} inputs "
                                 f"({', '.join(i['name'] for i in self.inputs)}), got {len(inputs)}")
            inputs = {spec["name"]: x for spec, x in zip(self.inputs, inputs)}
        unknown = set(inputs) - {i["name"] for i in self.inputs}
        if unknown:
            raise InputError(f"model '{self.name}' has no input(s) {sorted(unknown)}; inputs are "
                             f"{[i['name'] for i in self.inputs]}")
        tvm = _tvm()
        out = []
        for spec in self.inputs:
            if spec["name"] not in inputs:
                raise InputError(f"model '{self.name}': input '{spec['name']}' is missing")
            x = np.asarray(inputs[spec["name"]])
            if tuple(x.shape) != tuple(spec["shape"]):
                raise InputError(f"model '{self.name}': input '{spec['name']}' has shape {list(x.shape)}, "
                                 f"the model was compiled for {spec['shape']}")
            if x.dtype != np.dtype(spec["dtype"]):
                raise InputError(f"model '{self.name}': input '{spec['name']}' has dtype {x.dtype}, "
                                 f"expected {spec['dtype']}")
            out.append(tvm.runtime.tensor(np.require(x, requirements="C"), self.device))
        return out

    def invoke(self, args):
        """Run on prepared tensors; returns the raw VM result."""
        return self.vm["main"](*args, *self._params)

    def outputs_to_numpy(self, result):
        items = [result] if hasattr(result, "numpy") else list(result)
        return [self._to_numpy(r) for r in items]

    def _to_numpy(self, t):
        if self.device_type == "cpu":  # a DLPack view copied once: about half the cost of .numpy()
            try:
                return np.from_dlpack(t).copy()
            except (TypeError, ValueError, BufferError, RuntimeError):
                pass  # dtypes numpy's DLPack import lacks (e.g. bool on older numpy)
        return t.numpy()

    def run(self, inputs):
        """Run once; return the outputs as a list of numpy arrays (manifest order)."""
        return self.outputs_to_numpy(self.invoke(self.prepare(inputs)))

    def run_dict(self, inputs):
        return dict(zip([o["name"] for o in self.outputs], self.run(inputs)))

    def random_inputs(self, seed=0):
        return random_inputs(self.inputs, seed)

    def profile(self, inputs=None, repeat=20, warmup=3):
        """Time every kernel over REPEAT runs; return a `profile.Profile` (rows by time, trace, plot)."""
        return profile.profile_model(self, inputs, repeat, warmup)


def random_inputs(specs, seed=0):
    """Seeded random inputs for input specs [{name, shape, dtype, (range)}]."""
    rng = np.random.default_rng(seed)
    out = {}
    for spec in specs:
        dt = np.dtype(spec["dtype"])
        if dt.kind in "iu" or "range" in spec:  # ids: within the model's declared range
            lo, hi = spec.get("range", [0, 10])
            out[spec["name"]] = rng.integers(lo, hi, size=spec["shape"]).astype(dt)
        elif dt.kind == "b":
            out[spec["name"]] = rng.random(spec["shape"]) > 0.5
        else:
            out[spec["name"]] = rng.standard_normal(spec["shape"]).astype(dt)
    return out


def load(path, device=None):
    """Load artifact PATH; device 'cpu' or 'cuda' (default: the artifact's target device)."""
    return Model(path, device)
