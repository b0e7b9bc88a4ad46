"""Run a graph in numpy with the ops' reference implementations (the compiler's oracle)."""
import numpy as np

from ..errors import InputError
from .ops import get_op


def interpret(graph, inputs, keep=False):
    """Evaluate GRAPH on INPUTS (dict name -> array). Returns {output: array} (every value if keep)."""
    env = dict(graph.constants)
    for v in graph.inputs:
        if v.name not in inputs:
            raise InputError(f"model '{graph.name}': missing input '{v.name}'")
        env[v.name] = np.asarray(inputs[v.name]).astype(v.dtype).reshape(v.shape)
    for node in graph.nodes:
        outs = get_op(node.op).run(node, [env[i] for i in node.inputs])
        for name, arr in zip(node.outputs, outs):
            env[name] = np.asarray(arr, dtype=graph.values[name].dtype)
    return env if keep else {o: env[o] for o in graph.outputs}
