"""Linking a compiled executable into a shared library for a preset."""
from ..errors import TargetError


def export_library(ex, path, preset):
    missing = preset.missing_tools()
    if missing:
        raise TargetError(f"target '{preset.name}' needs {', '.join(missing)} on this machine "
                          "(see `edgec targets`)")
    kwargs = {}
    if preset.cross_cc:
        from tvm.support import cc
        kwargs["fcompile"] = cc.cross_compiler(preset.cross_cc)
    ex.export_library(path, **kwargs)
