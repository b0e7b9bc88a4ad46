"""Seeded mutation fuzzing of the ONNX frontend: small valid models with one mutation each
(attributes, input shapes, element types, initializers, graph structure, raw bytes) are imported,
every 20th also compiled, in a memory-capped worker (tests/fuzz.py). Every case must end in
success or an EdgecError with one line: never another exception, a hang or a crash.

`make test` runs 200 cases; `pytest -m fuzz` runs 3,000 and prints the table per category.
"""
import random

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fuzz
from fuzz import run_cases

CATEGORIES = ["attribute", "shape", "dtype", "initializer", "structure", "bytes"]
OPS = ["Relu", "Conv", "MaxPool", "Gemm", "Add", "Reshape", "Concat", "Transpose", "Softmax", "LSTM", "Slice",
       "ConstantOfShape", "Gather", "Clip", "AveragePool", "BatchNormalization", "ReduceMean", "Identity", "Foo"]


def _init(rng, name, shape, scale=0.3):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits, name, opset=17):
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def seeds():
    """Small valid models covering the frontend's op families."""
    rng = np.random.default_rng(0)
    cnn = _model([helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1]),
                  helper.make_node("Relu", ["c"], ["r"]),
                  helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                  helper.make_node("Flatten", ["p"], ["f"]),
                  helper.make_node("Gemm", ["f", "w2", "b2"], ["g"], transB=1),
                  helper.make_node("Softmax", ["g"], ["y"], axis=1)],
                 [_vi("x", ["N", 3, 8, 8])], [_vi("y", None)],
                 [_init(rng, "w1", (4, 3, 3, 3)), _init(rng, "b1", (4,)), _init(rng, "w2", (5, 64)),
                  _init(rng, "b2", (5,))], "cnn")
    blocks = _model([helper.make_node("Conv", ["x", "dw"], ["d"], group=4, pads=[1, 1, 1, 1]),
                     helper.make_node("BatchNormalization", ["d", "s", "o", "m", "v"], ["bn"], epsilon=1e-3),
                     helper.make_node("Clip", ["bn", "lo", "hi"], ["cl"]),
                     helper.make_node("AveragePool", ["cl"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                      count_include_pad=0),
                     helper.make_node("GlobalAveragePool", ["ap"], ["y"])],
                    [_vi("x", [1, 4, 6, 6])], [_vi("y", None)],
                    [_init(rng, "dw", (4, 1, 3, 3)), _init(rng, "s", (4,)), _init(rng, "o", (4,)),
                     _init(rng, "m", (4,)), numpy_helper.from_array(np.full(4, 0.5, np.float32), "v"),
                     numpy_helper.from_array(np.float32(-1.0), "lo"), numpy_helper.from_array(np.float32(1.0), "hi")],
                    "blocks")
    shapes = _model([helper.make_node("Shape", ["x"], ["sh"]),
                     helper.make_node("Gather", ["sh", "idx"], ["g"], axis=0),
                     helper.make_node("Concat", ["g", "g"], ["cs"], axis=0),
                     helper.make_node("ConstantOfShape", ["cs"], ["k"], value=helper.make_tensor("v", 1, [1], [0.5])),
                     helper.make_node("Reshape", ["x", "rs"], ["xr"]),
                     helper.make_node("Transpose", ["xr"], ["xt"], perm=[1, 0]),
                     helper.make_node("Slice", ["xt", "st", "en"], ["sl"]),
                     helper.make_node("MatMul", ["sl", "k"], ["mm"]),
                     helper.make_node("ReduceMean", ["mm"], ["y"], axes=[1], keepdims=1)],
                    [_vi("x", [2, 3, 4])], [_vi("y", None)],
                    [numpy_helper.from_array(np.array([2], np.int64), "idx"),
                     numpy_helper.from_array(np.array([6, 4], np.int64), "rs"),
                     numpy_helper.from_array(np.array([0, 1], np.int64), "st"),
                     numpy_helper.from_array(np.array([4, 5], np.int64), "en")], "shapes", opset=13)
    lstm = _model([helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y", "Yh"], hidden_size=3),
                   helper.make_node("Squeeze", ["Yh", "ax"], ["h"]),
                   helper.make_node("Add", ["h", "h"], ["y"])],
                  [_vi("x", [5, 1, 2])], [_vi("y", None)],
                  [_init(rng, "W", (1, 12, 2)), _init(rng, "R", (1, 12, 3)), _init(rng, "B", (1, 24)),
                   numpy_helper.from_array(np.array([0], np.int64), "ax")], "lstm")
    elementwise = _model([helper.make_node("Mul", ["x", "c"], ["a"]),
                          helper.make_node("Sigmoid", ["a"], ["s"]),
                          helper.make_node("Concat", ["s", "x"], ["cc"], axis=1),
                          helper.make_node("Split", ["cc"], ["p", "q"], axis=1),
                          helper.make_node("Sub", ["p", "q"], ["y"])],
                         [_vi("x", [2, 3])], [_vi("y", None)], [_init(rng, "c", (1, 3))], "elementwise", opset=13)
    return [cnn, blocks, shapes, lstm, elementwise]


# ---- mutations ----------------------------------------------------------------------------------
INTS = [0, -1, -7, 1, 2, 3, 1000, 2**31, 2**40, -2**63]
FLOATS = [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e30, 1e-30]


def _new_attr(r, a):
    kind = r.random()
    if kind < 0.1:  # another type under the same name
        return helper.make_attribute(a.name, r.choice([1.5, "x", [1.0, 2.0], 3, [1, 2, 3]]))
    if a.type == onnx.AttributeProto.INT:
        return helper.make_attribute(a.name, r.choice(INTS))
    if a.type == onnx.AttributeProto.INTS:
        v = list(a.ints)
        choice = r.random()
        if choice < 0.2 or not v:
            v = [r.choice(INTS) for _ in range(r.randint(0, 6))]
        elif choice < 0.4:
            v = v + v
        else:
            v[r.randrange(len(v))] = r.choice(INTS)
        return helper.make_attribute(a.name, v)
    if a.type == onnx.AttributeProto.FLOAT:
        return helper.make_attribute(a.name, r.choice(FLOATS))
    if a.type == onnx.AttributeProto.STRING:
        return helper.make_attribute(a.name, r.choice([b"", b"SAME_UPPER", b"\xff\xfe", b"VALID", b"x" * 100]))
    if a.type == onnx.AttributeProto.TENSOR:
        return helper.make_attribute(a.name, helper.make_tensor(a.name, r.choice([1, 7, 8, 16, 0]),
                                                                [r.choice([0, 2, 3])], [1, 2, 3][:2]))
    return helper.make_attribute(a.name, r.choice(INTS))


def m_attribute(r, m):
    nodes = list(m.graph.node)
    node = r.choice(nodes)
    if node.attribute and r.random() < 0.8:
        i = r.randrange(len(node.attribute))
        if r.random() < 0.15:
            del node.attribute[i]
        else:
            new = _new_attr(r, node.attribute[i])
            node.attribute[i].CopyFrom(new)
    else:
        node.attribute.append(helper.make_attribute(r.choice(["axis", "group", "strides", "kernel_shape", "pads",
                                                              "perm", "alpha", "bogus"]), r.choice([0, -1, [0, 0], 5])))


def m_shape(r, m):
    vi = r.choice(list(m.graph.input) + list(m.graph.output))
    dims = vi.type.tensor_type.shape.dim
    choice = r.random()
    if choice < 0.5 and len(dims):
        d = dims[r.randrange(len(dims))]
        v = r.choice([0, -1, 1, 7, 100000, 2**31, 2**40])
        d.Clear()
        if r.random() < 0.2:
            d.dim_param = r.choice(["N", "", "batch"])
        else:
            d.dim_value = v
    elif choice < 0.7:
        vi.type.tensor_type.shape.dim.add().dim_value = r.choice([1, 3, 0])
    elif choice < 0.85 and len(dims):
        del dims[r.randrange(len(dims))]
    else:
        vi.type.tensor_type.ClearField("shape")


def m_dtype(r, m):
    if m.graph.initializer and r.random() < 0.4:
        t = r.choice(list(m.graph.initializer))
        t.data_type = r.choice([0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 14, 16, 17, 21, 40])
    else:
        vi = r.choice(list(m.graph.input) + list(m.graph.output))
        vi.type.tensor_type.elem_type = r.choice([0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 14, 16, 17, 21, 40])


def m_initializer(r, m):
    if not m.graph.initializer:
        return m_structure(r, m)
    t = r.choice(list(m.graph.initializer))
    choice = r.random()
    if choice < 0.25 and len(t.dims):
        t.dims[r.randrange(len(t.dims))] = r.choice([0, -1, 2, 100000, 2**31, 2**40])
    elif choice < 0.4:
        t.dims.append(r.choice([1, 2, 50000]))
    elif choice < 0.55 and t.raw_data:
        t.raw_data = t.raw_data[:r.randrange(len(t.raw_data))]
    elif choice < 0.7 and t.data_type == TensorProto.FLOAT:
        arr = numpy_helper.to_array(t).copy()
        if arr.size:
            arr.reshape(-1)[r.randrange(arr.size)] = r.choice(FLOATS)
        t.CopyFrom(numpy_helper.from_array(arr, t.name))
    elif choice < 0.8:
        m.graph.initializer.remove(t)
    elif choice < 0.9:
        m.graph.initializer.append(t)  # a duplicate name
    else:
        t.name = r.choice(["", "x", "y", "unused"])


def m_structure(r, m):
    g = m.graph
    nodes = list(g.node)
    choice = r.random()
    if choice < 0.15 and len(nodes) > 1:
        g.node.remove(r.choice(nodes))
    elif choice < 0.3 and len(nodes) > 1:
        i, j = r.sample(range(len(nodes)), 2)
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(nodes[i])
        b.CopyFrom(nodes[j])
        g.node[i].CopyFrom(b)
        g.node[j].CopyFrom(a)
    elif choice < 0.45:
        n = r.choice(nodes)
        if n.input:
            n.input[r.randrange(len(n.input))] = r.choice(["", "dangling", n.output[0], g.input[0].name])
    elif choice < 0.55:
        n = r.choice(nodes)
        n.op_type = r.choice(OPS)
    elif choice < 0.65:
        del g.output[:]
    elif choice < 0.75:
        n = r.choice(nodes)
        n.input.append(r.choice(["x", "", n.output[0]]))
    elif choice < 0.82:
        n = r.choice(nodes)
        n.output.append(n.output[0])
    elif choice < 0.9:
        m.opset_import[0].version = r.choice([0, 1, 6, 9, 30, 10**6])
    else:
        n = r.choice(nodes)
        n.domain = r.choice(["com.microsoft", "ai.onnx.ml", "x"])


MUTATORS = {"attribute": m_attribute, "shape": m_shape, "dtype": m_dtype, "initializer": m_initializer,
            "structure": m_structure}


def mutate(r, seed_model, category):
    m = onnx.ModelProto()
    m.CopyFrom(seed_model)
    if category == "bytes":
        data = bytearray(m.SerializeToString())
        if r.random() < 0.3:
            return bytes(data[:r.randrange(len(data))])
        for _ in range(r.randint(1, 8)):
            data[r.randrange(len(data))] = r.randrange(256)
        return bytes(data)
    for _ in range(r.choice([1, 1, 1, 2, 3])):
        try:
            MUTATORS[category](r, m)
        except (ValueError, TypeError, IndexError, KeyError):
            pass  # a second mutation that does not apply to what the first made
    return m.SerializeToString()


def check(tmp_path, n, seed, compile_every=20):
    models = seeds()
    return fuzz.check(tmp_path, "ONNX", CATEGORIES, lambda r, category: (".onnx", mutate(r, r.choice(models), category)),
                      n, seed, compile_every)


def test_seed_models_compile(tmp_path):
    """The seeds themselves are valid: without mutation they import and compile."""
    for i, m in enumerate(seeds()):
        (tmp_path / f"seed{i}.onnx").write_bytes(m.SerializeToString())
    results = run_cases(tmp_path, [(i, "seed", f"seed{i}.onnx", i < 2) for i in range(len(seeds()))])
    assert all(o == "ok" for _, o, _ in results.values()), results


def test_regressions_from_the_full_run(tmp_path):
    """Cases the 3,000-case run (seed 2) found: an attribute name that is not UTF-8 text, a node name
    with a line break in the message, an LSTM hidden_size of 2^40 and 2^31 (a 4 TiB allocation)."""
    found = {107, 113, 576, 1920}
    r, models, cases = random.Random(2), seeds(), []
    for i in range(max(found) + 1):
        data = mutate(r, r.choice(models), CATEGORIES[i % len(CATEGORIES)])
        if i in found:
            (tmp_path / f"case{i}.onnx").write_bytes(data)
            cases.append((i, "regression", f"case{i}.onnx", False))
    results = run_cases(tmp_path, cases)
    assert all(o == "error" for _, o, _ in results.values()), results


def test_fuzz_onnx_sample(tmp_path):
    check(tmp_path, 200, seed=1)


@pytest.mark.fuzz
def test_fuzz_onnx_full(tmp_path):
    check(tmp_path, 3000, seed=2, compile_every=10)


def _issue_cases():
    rng = np.random.default_rng(0)
    x = [_vi("x", [1, 3, 8, 8])]
    w = [_init(rng, "w", (4, 3, 3, 3))]
    cos = helper.make_node("ConstantOfShape", ["s"], ["y"], value=helper.make_tensor("v", 1, [1], [1.0]))
    return {
        "conv zero strides": _model([helper.make_node("Conv", ["x", "w"], ["y"], strides=[0, 0])], x, [_vi("y", None)],
                                    w, "m"),
        "maxpool zero strides": _model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[0, 1])],
                                       x, [_vi("y", None)], [], "m"),
        "conv group 0": _model([helper.make_node("Conv", ["x", "w"], ["y"], group=0)], x, [_vi("y", None)], w, "m"),
        "no outputs": _model([helper.make_node("Relu", ["x"], ["y"])], x, [], [], "m"),
        "huge input": _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [1, 3, 100000, 100000])],
                             [_vi("y", None)], [], "m"),
        "2^31 sequence": _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2**31, 1, 1])],
                                [_vi("y", None)], [], "m"),
        "ConstantOfShape 50000x50000": _model([cos, helper.make_node("Add", ["x", "y"], ["z"])],
                                              [_vi("x", [1])], [_vi("z", None)],
                                              [numpy_helper.from_array(np.array([50000, 50000], np.int64), "s")], "m"),
    }


@pytest.mark.parametrize("case", sorted(_issue_cases()))
def test_issue_cases_are_one_line_errors(case):
    """The ONNX models of issue 13 (ZeroDivisionError, numpy memory errors, a compiled no-output graph)."""
    from edgec.errors import EdgecError
    from edgec.frontends.onnx import from_onnx
    with pytest.raises(EdgecError) as e:
        from_onnx(_issue_cases()[case])
    assert "\n" not in str(e.value) and "model 'm'" in str(e.value)
