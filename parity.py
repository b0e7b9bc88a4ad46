"""Parity beyond one max error: the float64 answer `edgec verify` measures both engines against
(`--tolerance auto`), and per-layer comparison with bisection (`--per-layer`, `--bisect`).
"""
import numpy as np

from .errors import EdgecError


def float64_outputs(model, art, inputs):
    """(outputs of MODEL's graph evaluated in float64 by edgec's numpy interpreter, note): None and the
    reason when it cannot be computed (then only the element rule applies)."""
    from .api import import_model
    from .compiler.interp import interpret
    try:
        graph = import_model(model, {i["name"]: tuple(i["shape"]) for i in art.inputs})
        values = interpret(graph, inputs, float64=True)
        return [values[o] for o in graph.outputs], "float64 evaluation by edgec's interpreter"
    except (EdgecError, KeyError, ValueError, TypeError, NotImplementedError) as e:
        return None, f"no float64 evaluation ({str(e).splitlines()[0][:160]})"
