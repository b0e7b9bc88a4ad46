"""ONNX backend node test cases (generated offline from the installed onnx package) and the
one place that runs a case on a backend: `run_case(case, backend)`.

Backends: "interp" (edgec's numpy interpreter). A compiled backend ("tvm") plugs in here once
compiler/build.py lands: add a branch to `execute`.
"""
import functools
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgec.errors import UnsupportedError
from edgec.frontends.onnx import from_onnx, supported_ops


@functools.lru_cache(maxsize=1)
def all_cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {c.name: c for c in collect_testcases(None) if c.kind == "node"}


def claimed_cases():
    """Names of cases whose every op (default domain) edgec claims to support."""
    ops = set(supported_ops())
    out = []
    for name, case in sorted(all_cases().items()):
        m = case.model
        if all(n.domain in ("", "ai.onnx") and n.op_type in ops for n in m.graph.node) and m.graph.node:
            out.append(name)
    return out


def execute(graph, feeds, backend):
    if backend == "interp":
        from edgec.compiler.interp import interpret
        return interpret(graph, feeds)
    if backend == "tvm":  # the whole path: passes, kernels, TVM, artifact, runtime
        import tempfile

        from edgec import targets
        from edgec.compiler.build import compile_graph
        from edgec.runtime import load
        with tempfile.TemporaryDirectory() as tmp:
            compile_graph(graph, targets.get("host"), f"{tmp}/case.edgec", progress=False)
            model = load(f"{tmp}/case.edgec")
            return model.run_dict({k: np.asarray(v, dtype=model_dtype(model, k)) for k, v in feeds.items()})
    raise NotImplementedError(f"backend {backend!r}")


def model_dtype(model, name):
    return next(i["dtype"] for i in model.inputs if i["name"] == name)


# Inputs edgec needs at compile time (shapes, axes, pads, repeats...): the ONNX cases often feed
# them as graph inputs. `parameter_inputs` finds them; `run_case` checks that importing the model
# as-is fails cleanly (UnsupportedError) and then runs it with those inputs frozen to the case's
# values (initializers), which is how such models reach edgec in practice.
PARAMETER_POSITIONS = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,), "Squeeze": (1,),
    "Unsqueeze": (1,), "Split": (1,), "Slice": (1, 2, 3, 4), "Pad": (1, 2, 3), "Clip": (1, 2),
    "Dropout": (2,), "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,), "ReduceMin": (1,),
    "ReduceProd": (1,), "ReduceL1": (1,), "ReduceL2": (1,), "ReduceSumSquare": (1,),
    "ReduceLogSum": (1,), "ReduceLogSumExp": (1,), "Resize": (1, 2, 3), "Upsample": (1,),
    "If": (0,), "Loop": (0, 1), "ReverseSequence": (1,),
}


def parameter_inputs(model):
    graph_inputs = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
    found = []
    for n in model.graph.node:
        for pos in PARAMETER_POSITIONS.get(n.op_type, ()):
            if pos < len(n.input) and n.input[pos] in graph_inputs and n.input[pos] not in found:
                found.append(n.input[pos])
    return found


def _array(x):
    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)


def freeze(model, values):
    """A copy of MODEL whose graph inputs in VALUES ({name: array}) are initializers."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [i for i in m.graph.input if i.name not in values]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    for name, v in values.items():
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(v), name))
    return m


def run_case(case, backend="interp"):
    """Import CASE's model, run every data set on BACKEND, compare with the expected outputs.

    Cases that feed compile-time parameters as inputs must fail to import with UnsupportedError
    as they are, and are then run once per data set with those inputs frozen."""
    model = case.model
    in_names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    out_names = [o.name for o in model.graph.output]
    params = parameter_inputs(model)
    if params:
        with pytest.raises(UnsupportedError):
            from_onnx(model, name=case.name)
    else:
        graph = from_onnx(model, name=case.name)
    for inputs, expected in case.data_sets:
        feeds = {k: _array(v) for k, v in zip(in_names, inputs)}
        if params:
            graph = from_onnx(freeze(model, {k: feeds.pop(k) for k in params}), name=case.name)
        got = execute(graph, feeds, backend)
        for name, exp in zip(out_names, expected):
            res = np.asarray(got[name])
            exp = _array(exp)
            assert res.shape == exp.shape, f"{case.name} {name}: shape {res.shape} != {exp.shape}"
            if exp.dtype.kind in "fc":
                np.testing.assert_allclose(res, exp, rtol=case.rtol, atol=case.atol,
                                           err_msg=f"{case.name} output {name}")
            else:
                np.testing.assert_array_equal(res.astype(exp.dtype), exp, err_msg=f"{case.name} output {name}")
            assert res.dtype == exp.dtype, f"{case.name} {name}: dtype {res.dtype} != {exp.dtype}"
