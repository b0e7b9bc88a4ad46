"""Run a graph in numpy with the ops' reference implementations (the compiler's oracle)."""
import numpy as np

from ..errors import InputError
from .ops import get_op


def interpret(graph, inputs, keep=False, float64=False):
    """Evaluate GRAPH on INPUTS (dict name -> array). Returns {output: array} (every value if keep).
    FLOAT64: float32 values (weights, inputs, results) are held in float64, the answer float32
    engines approximate (`edgec verify` measures both engines' error against it)."""
    def dtype(name):
        d = graph.values[name].dtype
        return "float64" if float64 and d == "float32" else d
    env = {k: (c.astype(np.float64) if float64 and c.dtype == np.float32 else c) for k, c in graph.constants.items()}
    for v in graph.inputs:
        if v.name not in inputs:
            raise InputError(f"model '{graph.name}': missing input '{v.name}'")
        env[v.name] = np.asarray(inputs[v.name]).astype(dtype(v.name)).reshape(v.shape)
    for node in graph.nodes:
        outs = get_op(node.op).run(node, [env[i] for i in node.inputs])
        for name, arr in zip(node.outputs, outs):
            env[name] = np.asarray(arr, dtype=dtype(name))
    return env if keep else {o: env[o] for o in graph.outputs}
