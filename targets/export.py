"""Linking a compiled executable into a shared library for a preset."""
from ..errors import TargetError


def export_library(ex, path, preset):
    missing = preset.missing_tools()
    if missing:
        raise TargetError(f"target '{preset.name}' needs {', '.join(missing)} on this machine "
                          "(see `edgec targets`)")
    kwargs = {}
    linker = getattr(preset, "linker", "") or preset.cross_cc
    if linker:
        from tvm.support import cc
        kwargs["fcompile"] = cc.cross_compiler(linker)
    ex.export_library(path, **kwargs)
