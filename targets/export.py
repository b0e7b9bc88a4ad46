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
    ex.export_library(path, **kwargs)
