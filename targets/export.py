"""Linking a compiled executable into a shared library for a preset."""
from ..errors import TargetError


def export_library(ex, path, preset, **kwargs):
    """KWARGS go to TVM's export_library (e.g. fpack_imports, see targets/cuda.py)."""
    missing = preset.missing_tools()
    if missing:
        raise TargetError(f"target '{preset.name}' needs {', '.join(missing)} on this machine "
                          "(see `edgec targets`)")
    linker = getattr(preset, "linker", "") or preset.cross_cc
    if linker:
        from tvm.support import cc
        kwargs["fcompile"] = cc.cross_compiler(linker)
    try:
        ex.export_library(path, **kwargs)
    except Exception as e:  # noqa: BLE001 - TVM raises RuntimeError with the compiler's output
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise TargetError(f"target '{preset.name}': linking the library with {linker or 'the host C compiler'} "
                          f"failed: {' | '.join(lines[:3])[:300] or type(e).__name__}") from None
    if preset.device == "cpu":
        strip_debug(path, linker)


def strip_debug(path, linker=""):
    """Remove debug sections from library PATH in place (about half its size; symbols stay) with the
    `strip` that goes with LINKER (the cross compiler's, `llvm-strip` next to an NDK clang); without
    one, the library keeps them."""
    import os
    import shutil
    import subprocess
    folder, name = os.path.split(linker)
    prefix = name.rsplit("-", 1)[0] + "-" if "-" in name else ""
    tool = "llvm-strip" if "clang" in name else prefix + "strip"
    tool = shutil.which(tool, path=folder or None) or shutil.which(tool)
    if tool:
        res = subprocess.run([tool, "--strip-debug", str(path)], capture_output=True, text=True)
        if res.returncode:
            raise TargetError(f"{tool} --strip-debug failed on the library: {res.stderr.strip()[-300:]}")
