"""The edgec runtime: load a `.edgec` artifact and run it with only numpy and the TVM runtime.

    model = edgec.runtime.load("model.edgec")
    outputs = model.run({"input": x})      # list of numpy arrays, in manifest output order

Works with `TVM_USE_RUNTIME_LIB=1` (runtime-only TVM) and without onnx or the compiler.
"""
import bisect
import os
import platform
import shutil
import tempfile
import threading

import numpy as np

from ..errors import ArtifactError, EdgecError, InputError
from . import artifact, contention, profile

# TVM's thread pool would otherwise start with one worker on some machines (seen on a 2-core VM:
# ResNet-50 84 ms instead of 52 ms). Users can still set TVM_NUM_THREADS themselves.
os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))


_MISSING = object()
ZERO_COPY_MIN_BYTES = 16384  # below this, copying into the thread's buffer costs less than a DLPack hand-over
_Tensor = _from_dlpack = None  # tvm_ffi's, bound by _tvm(): importing TVM waits for the first load


def _tvm():
    global _Tensor, _from_dlpack
    import tvm
    import tvm_ffi
    _Tensor, _from_dlpack = tvm_ffi.Tensor, tvm_ffi.from_dlpack
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
    if (device or target.get("device", "cpu")) == "cuda":
        from . import cuda
        cuda.start(manifest, path)  # driver, CUDA runtime, GPU architecture; raises saying which is missing


class _Thread:
    """What one calling thread needs: its own VM (a VM's registers are not shareable), the cached
    `main`, and (host CPU) aligned buffers that take inputs numpy cannot hand over as they are."""

    def __init__(self, model):
        from tvm.runtime.vm import VirtualMachine
        self.vm = VirtualMachine(model._lib, model.device)
        self.main = self.vm["main"]
        self.staging = [None] * len(model.inputs)
        self.checked = False
        self.policy = contention.for_this_thread() if model.device_type == "cpu" else None


class Model:
    """A loaded artifact: `run(inputs)` returns numpy outputs.

    Safe to call from several threads at once (each thread gets its own VM). `close()` (or a
    `with` block) frees it; the extraction folder is removed as soon as loading ends.
    """

    def __init__(self, path, device=None, trusted_keys=None):
        self.path = str(path)
        tmp = tempfile.mkdtemp(prefix="edgec-")
        try:
            self.manifest = artifact.extract(self.path, tmp, trusted_keys)
            check_compatible(self.manifest, self.path, device)
            self.device_type = device or self.manifest["target"]["device"]
            self.device = _tvm().cuda(0) if self.device_type == "cuda" else _tvm().cpu(0)
            self._load(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _load(self, folder):
        """Check and load the extracted params and library in FOLDER (the library last)."""
        self._init_io(artifact.read_params(os.path.join(folder, artifact.PARAMS), self.manifest["params"],
                                           self.path))
        lib_file = os.path.join(folder, artifact.LIBRARY)
        artifact.check_library(lib_file, self.manifest["target"]["arch"], self.path)
        self._host = self.device_type == "cpu"
        try:
            self._lib = _load_library(lib_file)
            self._threads = threading.local()
            vm = self._thread().vm
            arity = vm._get_function_arity("main")
            takes = [vm._get_function_param_name("main", i) for i in range(arity)]
        except Exception as e:  # noqa: BLE001 - TVM raises many types for a library it cannot load
            raise ArtifactError(f"artifact '{self.path}': TVM cannot load {artifact.LIBRARY} "
                                f"({_last_line(e)})") from None
        tvm_names = self.manifest.get("tvm_names", {})
        listed = [tvm_names.get(n, n) for n in [i["name"] for i in self.inputs] + self.manifest["params"]]
        if takes != listed:
            raise ArtifactError(f"artifact '{self.path}': {artifact.LIBRARY} takes arguments {_short(takes)}, "
                                f"the manifest lists inputs and params {_short(listed)}")

    def _init_io(self, params):
        """Input/output specs from the manifest; PARAMS ({name: array}) copied to the device."""
        tvm = _tvm()
        self.inputs, self.outputs = self.manifest["inputs"], self.manifest["outputs"]
        self.kernels = self.manifest["kernels"]
        self._specs = [(i["name"], tuple(i["shape"]), np.dtype(i["dtype"])) for i in self.inputs]
        self._out_specs = [(tuple(o["shape"]), np.dtype(o["dtype"])) for o in self.outputs]
        self._in_nbytes = [artifact.tensor_bytes(shape, dtype) for _, shape, dtype in self._specs]
        names = self.manifest["params"]
        self._params = [tvm.runtime.tensor(np.require(params[p], requirements='C'), self.device) for p in names]  # keeps 0-d
        ranges = sorted((t.data_ptr(), t.data_ptr() + params[p].nbytes) for t, p in zip(self._params, names))
        self._param_starts, self._param_ends = [s for s, _ in ranges], [e for _, e in ranges]

    @property
    def name(self):
        return self.manifest["model"]["name"]

    # ---- lifetime --------------------------------------------------------------------------------
    def close(self):
        """Free the VMs, library and params; later calls raise an EdgecError."""
        self._threads = self._lib = None
        self._params = []

    @property
    def closed(self):
        return getattr(self, "_threads", None) is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _thread(self):
        threads = self._threads
        if threads is None:
            raise EdgecError(f"model '{self.name}' is closed")
        th = getattr(threads, "state", None)
        if th is None:
            th = threads.state = _Thread(self)
        return th

    @property
    def vm(self):
        """This thread's VirtualMachine."""
        return self._thread().vm

    # ---- inputs ----------------------------------------------------------------------------------
    def _checked(self, inputs):
        """INPUTS (dict, list, or one array) as arrays in manifest order, after name/shape/dtype checks."""
        if type(inputs) is not dict:
            inputs = self._as_dict(inputs)
        if len(inputs) != len(self._specs):
            self._check_names(inputs)
        out = []
        for name, shape, dtype in self._specs:
            x = inputs.get(name, _MISSING)
            if type(x) is not np.ndarray:
                if x is _MISSING:
                    self._check_names(inputs)
                    raise InputError(f"model '{self.name}': input '{name}' is missing")
                x = np.asarray(x)
            if x.shape != shape:
                raise InputError(f"model '{self.name}': input '{name}' has shape {list(x.shape)}, "
                                 f"the model was compiled for {list(shape)}")
            if x.dtype != dtype:
                raise InputError(f"model '{self.name}': input '{name}' has dtype {x.dtype}, expected {dtype}")
            out.append(x)
        return out

    def _check_names(self, inputs):
        unknown = sorted(set(inputs) - {s[0] for s in self._specs}, key=str)
        if unknown:
            raise InputError(f"model '{self.name}' has no input(s) {unknown}; inputs are "
                             f"{[s[0] for s in self._specs]}")

    def _as_dict(self, inputs):
        if isinstance(inputs, np.ndarray) or np.isscalar(inputs):
            inputs = [inputs]
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != len(self._specs):
                raise InputError(f"model '{self.name}' takes {len(self._specs)} inputs "
                                 f"({', '.join(s[0] for s in self._specs)}), got {len(inputs)}")
            return {s[0]: x for s, x in zip(self._specs, inputs)}
        if isinstance(inputs, dict):
            return inputs
        raise InputError(f"model '{self.name}': inputs must be a dict of arrays by name, a list of arrays "
                         f"or one array, not {type(inputs).__name__}")

    def _hand_over(self, x, i, th):
        """A TVM tensor for host array X (input I): X's own memory when it is C-contiguous, writable
        and 64-byte aligned (TVM's kernels assume that alignment), else a copy in the thread's buffer.
        Small inputs are copied straight away (cheaper than trying the hand-over)."""
        if x.nbytes >= ZERO_COPY_MIN_BYTES and x.flags.c_contiguous:
            try:
                t = _from_dlpack(x)
                if t.data_ptr() % 64 == 0:
                    return t
            except (BufferError, TypeError, ValueError, RuntimeError):
                pass  # read-only arrays, dtypes DLPack cannot carry
        buf = th.staging[i]
        if buf is None:
            t = _tvm().runtime.empty(x.shape, str(x.dtype), self.device)
            buf = th.staging[i] = (t, np.from_dlpack(t))
        np.copyto(buf[1], x)
        return buf[0]

    def prepare(self, inputs):
        """Check INPUTS (dict, list, or one array) against the manifest; return TVM tensors in
        order (copies owned by the caller, for repeated `invoke`)."""
        tvm = _tvm()
        out = []
        for x in self._checked(inputs):
            if self._host:
                t = tvm.runtime.empty(x.shape, str(x.dtype), self.device)
                np.copyto(np.from_dlpack(t), x)
            else:
                t = tvm.runtime.tensor(np.ascontiguousarray(x), self.device)
            out.append(t)
        return out

    # ---- running ---------------------------------------------------------------------------------
    def invoke(self, args):
        """Run on prepared tensors; returns the raw VM result."""
        return self._call(self._thread(), args)

    def _call(self, th, args):
        if th.policy:
            th.policy.before_run()
        try:
            res = th.main(*args, *self._params)
        except Exception as e:  # noqa: BLE001 - TVM's errors for arguments the library does not take
            raise ArtifactError(f"artifact '{self.path}': the library failed on inputs that match its manifest "
                                f"(does the manifest describe this library?): {_last_line(e)}") from None
        items = (res,) if isinstance(res, _Tensor) else tuple(res)
        if not th.checked:
            got = [(tuple(t.shape), np.dtype(str(t.dtype))) for t in items]
            if got != self._out_specs:
                raise ArtifactError(f"artifact '{self.path}': the library returns {got}, the manifest says "
                                    f"{self._out_specs}")
            th.checked = True
        return items

    def outputs_to_numpy(self, result, args=(), out=None):
        """The VM's RESULT as numpy arrays: on the host CPU views of the VM's fresh output memory (no
        copy), copied only where an output is an input in ARGS, a param or another output;
        OUT: caller arrays to write into instead."""
        items = (result,) if isinstance(result, _Tensor) else tuple(result)
        if out is not None:
            if len(out) != len(items):
                raise InputError(f"model '{self.name}': out= needs {len(items)} arrays, got {len(out)}")
            for i, (t, buf) in enumerate(zip(items, out)):
                if not isinstance(buf, np.ndarray) or buf.shape != self._out_specs[i][0] \
                        or buf.dtype != self._out_specs[i][1] or not buf.flags.writeable:
                    raise InputError(f"model '{self.name}': out[{i}] must be a writable {self._out_specs[i][1]} "
                                     f"array of shape {list(self._out_specs[i][0])}")
                np.copyto(buf, np.from_dlpack(t) if self._host else t.numpy())
            return list(out)
        if not self._host:
            return [t.numpy() for t in items]
        outs, seen = [], []
        for t in items:
            a, p = np.from_dlpack(t), t.data_ptr()
            if p in seen or self._aliased(p, args):
                a = a.copy()
            seen.append(p)
            outs.append(a)
        return outs

    def _aliased(self, p, args):
        """Whether address P lies in a param or in one of the input tensors ARGS."""
        k = bisect.bisect_right(self._param_starts, p) - 1
        if k >= 0 and p < self._param_ends[k]:
            return True
        for t, n in zip(args, self._in_nbytes):
            s = t.data_ptr()
            if s <= p < s + n:
                return True
        return False

    def run(self, inputs, out=None):
        """Run once; return the outputs as a list of numpy arrays (manifest order). OUT: a list of
        arrays (one per output, its shape and dtype) to write the outputs into."""
        th = self._thread()
        xs = self._checked(inputs)
        if self._host:
            args = [self._hand_over(x, i, th) for i, x in enumerate(xs)]
        else:
            args = [_tvm().runtime.tensor(np.ascontiguousarray(x), self.device) for x in xs]
        return self.outputs_to_numpy(self._call(th, args), args, out)

    def run_dict(self, inputs):
        return dict(zip([o["name"] for o in self.outputs], self.run(inputs)))

    def random_inputs(self, seed=0):
        return random_inputs(self.inputs, seed)

    def profile(self, inputs=None, repeat=20, warmup=3):
        """Time every kernel over REPEAT runs; return a `profile.Profile` (rows by time, trace, plot)."""
        return profile.profile_model(self, inputs, repeat, warmup)


def _load_library(path):
    """The library at PATH as a TVM module that is unloaded (dlclose) once nothing uses it
    (`tvm.runtime.load_module` keeps every library loaded until the process exits)."""
    import tvm_ffi
    return tvm_ffi.load_module(path, keep_module_alive=False)


def _short(names, n=4):
    return str(names[:n])[:-1] + (f", ... ({len(names)} in all)]" if len(names) > n else "]")


def _last_line(e):
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


MAX_RANDOM_INPUT_BYTES = 1 << 31


def random_inputs(specs, seed=0):
    """Seeded random inputs for input specs [{name, shape, dtype, (range)}]."""
    total = sum(artifact.tensor_bytes(s["shape"], s["dtype"]) for s in specs)
    if total > MAX_RANDOM_INPUT_BYTES:
        raise InputError(f"random inputs would take {total / 2**30:.1f} GiB (more than "
                         f"{MAX_RANDOM_INPUT_BYTES >> 30} GiB); give the inputs yourself")
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


def load(path, device=None, trusted_keys=None):
    """Load artifact PATH; device 'cpu' or 'cuda' (default: the artifact's target device).
    TRUSTED_KEYS: ed25519 public key files (or PEM bytes); when given, the artifact must be signed
    by one of them (`edgec compile --sign KEY`)."""
    return Model(path, device, trusted_keys)
