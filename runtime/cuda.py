"""Starting the runtime's CUDA path, or saying exactly why it cannot start.

An artifact's device code is a fatbin (cubin for one GPU architecture + PTX) made at compile
time, so loading needs no compiler: only the NVIDIA driver (libcuda.so.1), the CUDA 13 runtime
library that TVM's CUDA backend links (libcudart.so.13: the system's, or PyPI's
`nvidia-cuda-runtime` installed by `pip install 'edgec[cuda]'`), and that backend,
libtvm_runtime_cuda.so from the TVM wheel. TVM loads the backend inside a silent try/except
(and not at all in runtime-only mode), so `start` loads each piece itself and turns the first
failure into one line: no driver, driver too old, no GPU, GPU older than the cubin, missing
libcudart.
"""
import ctypes
import glob
import importlib.util
import os

from ..errors import ArtifactError

DRIVER_LIB = "libcuda.so.1"
CUDART_LIB = "libcudart.so.13"
CUDART_PACKAGE = "nvidia-cuda-runtime"  # PyPI, CUDA 13: nvidia/cu13/lib/libcudart.so.13
MIN_DRIVER = 13000  # libcudart 13 and CUDA 13 PTX need a driver for CUDA 13.0 (r580 or newer)
_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR
_ERRORS = {35: "the driver is older than the CUDA runtime", 100: "no CUDA-capable device is detected",
           34: "libcuda.so.1 is a stub, not the driver", 999: "unknown error", 3: "not initialized",
           304: "an OS call failed (device nodes /dev/nvidia* not accessible?)"}

_started = {}  # cached result of start(): {"gpu": name, "sm": (major, minor)}


class CudaUnavailable(ArtifactError):
    pass


def _driver():
    try:
        return ctypes.CDLL(DRIVER_LIB, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        raise CudaUnavailable(f"the NVIDIA driver library {DRIVER_LIB} is not found: install the NVIDIA driver "
                              "(in a container: run it with the NVIDIA container toolkit, e.g. --gpus all)") from None


def _check(driver, call, *args):
    rc = getattr(driver, call)(*args)
    if rc:
        name = ctypes.c_char_p()
        try:
            driver.cuGetErrorName(rc, ctypes.byref(name))
        except AttributeError:
            pass
        what = (name.value or b"").decode() or f"error {rc}"
        raise CudaUnavailable(f"the NVIDIA driver cannot start CUDA: {call} returned {what} "
                              f"({_ERRORS.get(rc, 'see the CUDA driver API documentation')})")


def gpu_info(driver):
    """(name, (major, minor)) of GPU 0 through the driver API; raises CudaUnavailable."""
    _check(driver, "cuInit", 0)
    version = ctypes.c_int()
    _check(driver, "cuDriverGetVersion", ctypes.byref(version))
    if version.value < MIN_DRIVER:
        raise CudaUnavailable(f"the NVIDIA driver supports CUDA {version.value // 1000}.{version.value % 1000 // 10}; "
                              f"edgec's CUDA runtime (TVM {CUDART_LIB}) needs a driver for CUDA "
                              f"{MIN_DRIVER // 1000}.0 or newer (r580+): update the driver")
    count = ctypes.c_int()
    _check(driver, "cuDeviceGetCount", ctypes.byref(count))
    if count.value == 0:
        raise CudaUnavailable("the NVIDIA driver is installed but finds no GPU (cuDeviceGetCount = 0; "
                              "check CUDA_VISIBLE_DEVICES and nvidia-smi)")
    dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    _check(driver, "cuDeviceGet", ctypes.byref(dev), 0)
    _check(driver, "cuDeviceGetAttribute", ctypes.byref(major), _CC_MAJOR, dev)
    _check(driver, "cuDeviceGetAttribute", ctypes.byref(minor), _CC_MINOR, dev)
    name = ctypes.create_string_buffer(256)
    _check(driver, "cuDeviceGetName", name, 256, dev)
    return name.value.decode(errors="replace"), (major.value, minor.value)


def check_arch(device_code, gpu, sm):
    """Raise if GPU (compute capability SM) cannot run DEVICE_CODE (the manifest's `device_code`):
    a cubin for sm_XY runs on sm_XZ with Z >= Y, its PTX on any newer GPU (JIT by the driver)."""
    if not device_code:
        return
    want = device_code.get("cubin", "sm_0").replace("sm_", "")
    need = (int(want[:-1] or 0), int(want[-1]))
    if tuple(sm) < need:
        raise CudaUnavailable(f"the artifact holds GPU code for sm_{want} and newer (cubin sm_{want}, PTX "
                              f"compute_{want}); this GPU ({gpu}) is sm_{sm[0]}{sm[1]}: recompile with a "
                              f"target for it (e.g. --target cuda-sm{sm[0]}{sm[1]}, see `edgec targets`)")


def cudart_candidates():
    """Where libcudart.so.13 may be: the loader's own search, the PyPI package, CUDA toolkits."""
    out = [CUDART_LIB]
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        out += glob.glob(os.path.join(root, "cu13", "lib", CUDART_LIB))
    for home in filter(None, [os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"]):
        out += [os.path.join(home, d, CUDART_LIB) for d in ("lib64", "lib")]
    return out


def _cudart():
    for path in cudart_candidates():
        try:
            return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)  # TVM's CUDA backend then finds it by soname
        except OSError:
            continue
    raise CudaUnavailable(f"the CUDA runtime library {CUDART_LIB} is not found (the NVIDIA driver and GPU are "
                          f"fine): pip install 'edgec[cuda]' (PyPI {CUDART_PACKAGE} 13.x), or put a CUDA 13 "
                          "toolkit's lib64 on LD_LIBRARY_PATH")


def _tvm_backend(tvm):
    import tvm_ffi
    if tvm_ffi.get_global_func("ffi.Module.load_from_bytes.cuda", allow_missing=True) is not None:
        return
    lib = os.path.join(os.path.dirname(tvm.__file__), "lib", "libtvm_runtime_cuda.so")
    if not os.path.isfile(lib):
        raise CudaUnavailable(f"this TVM ({tvm.__version__}) has no CUDA backend ({lib} is missing): "
                              "install the apache-tvm wheel edgec pins")
    try:
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise CudaUnavailable(f"TVM's CUDA backend {os.path.basename(lib)} does not load: {e}") from None


def start(manifest, path):
    """Make the CUDA path ready for artifact PATH (MANIFEST); raise ArtifactError saying why it cannot."""
    import tvm
    try:
        if not _started:
            gpu, sm = gpu_info(_driver())
            _cudart()
            _tvm_backend(tvm)
            _started.update(gpu=gpu, sm=sm)
        check_arch(manifest.get("device_code"), _started["gpu"], _started["sm"])
    except CudaUnavailable as e:
        target = manifest.get("target", {}).get("name")
        raise CudaUnavailable(f"artifact '{path}' was compiled for a CUDA GPU (target '{target}'), and it cannot "
                              f"run here: {e}") from None
    return _started
