"""Hand-made ONNX models: edgec's numpy interpreter vs onnxruntime, plus the frontend's errors."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.compiler.interp import interpret
from edgec.errors import ModelError, UnsupportedError
from edgec.frontends.onnx import from_onnx, supported_ops

RNG = np.random.default_rng(0)


def make_model(nodes, inputs, outputs, inits=(), opset=13):
    graph = helper.make_graph(nodes, "m", inputs, outputs, initializer=[numpy_helper.from_array(v, k)
                                                                          for k, v in dict(inits).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def tensor(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def check_vs_ort(model, feeds, rtol=1e-4, atol=1e-5):
    graph = from_onnx(model)
    got = interpret(graph, feeds)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    for out, w in zip(model.graph.output, want):
        np.testing.assert_allclose(got[out.name], w, rtol=rtol, atol=atol, err_msg=out.name)
    return graph


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_small_cnn_matches_onnxruntime():
    w1, b1 = f32(8, 3, 3, 3) * 0.3, f32(8)
    w2 = f32(4, 2, 3, 3) * 0.3  # grouped
    fc = f32(10, 4 * 4 * 4) * 0.1
    scale, bias, mean, var = f32(8), f32(8), f32(8), np.abs(f32(8)) + 0.5
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["bn"], name="bn1"),
        helper.make_node("LeakyRelu", ["bn"], ["r1"], name="act1", alpha=0.1),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[3, 3], strides=[2, 2],
                         ceil_mode=1),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2", group=4, auto_pad="SAME_UPPER",
                         strides=[2, 2]),
        helper.make_node("HardSwish", ["c2"], ["h"], name="hs"),
        helper.make_node("Flatten", ["h"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc"], ["g"], name="fc", transB=1, alpha=0.5),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax"),
    ]
    model = make_model(nodes, [tensor("x", [2, 3, 16, 16])], [tensor("y", [2, 10])],
                       {"w1": w1, "b1": b1, "w2": w2, "fc": fc, "s": scale, "bb": bias, "m": mean, "v": var}, opset=14)
    g = check_vs_ort(model, {"x": f32(2, 3, 16, 16)})
    assert [v.name for v in g.inputs] == ["x"] and g.outputs == ["y"]
    assert all(len(n.source) == 1 for n in g.nodes)
    assert {s for n in g.nodes for s in n.source} == {"conv1", "bn1", "act1", "pool1", "conv2", "hs",
                                                      "flat", "fc", "softmax"}


def test_conv1d_pool1d_and_shape_chain_fold():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[2, 1], dilations=[2], auto_pad="NOTSET"),
        helper.make_node("AveragePool", ["c"], ["p"], kernel_shape=[3], pads=[1, 1], count_include_pad=1),
        helper.make_node("Shape", ["p"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["p", "shape"], ["y"]),
    ]
    model = make_model(nodes, [tensor("x", [2, 3, 12])], [tensor("y", None)],
                       {"w": f32(5, 3, 3), "zero": np.array(0, np.int64), "ax": np.array([0], np.int64),
                        "minus1": np.array([-1], np.int64)})
    g = check_vs_ort(model, {"x": f32(2, 3, 12)})
    assert [n.op for n in g.nodes].count("conv2d") == 1
    assert not any(n.source[0].startswith(("Shape", "Gather", "Concat", "Unsqueeze")) for n in g.nodes)


@pytest.mark.parametrize("opset", [7, 11, 13, 18])
def test_opset_forms(opset):
    """Attributes that became inputs (Clip bounds, Pad pads, Squeeze axes, ReduceMean axes, Split)."""
    inits = {}
    if opset < 11:
        clip = helper.make_node("Clip", ["x"], ["c"], min=-0.5, max=0.5)
        pad = helper.make_node("Pad", ["c"], ["p"], pads=[0, 0, 1, 1, 0, 0, 0, 1], mode="reflect")
    else:
        clip = helper.make_node("Clip", ["x", "", "hi"], ["c"])
        pad = helper.make_node("Pad", ["c", "pads"], ["p"], mode="edge")
        inits.update(hi=np.array(0.5, np.float32), pads=np.array([0, 0, 1, 1, 0, 0, 0, 1], np.int64))
    if opset < 13:
        sq = helper.make_node("Unsqueeze", ["p"], ["u"], axes=[0])
        split = helper.make_node("Split", ["u"], ["s1", "s2"], axis=-1, split=[1, 3])
    else:
        sq = helper.make_node("Unsqueeze", ["p", "ax0"], ["u"])
        inits["ax0"] = np.array([0], np.int64)
        inits["sp"] = np.array([1, 3], np.int64)
        split = helper.make_node("Split", ["u", "sp"], ["s1", "s2"], axis=-1)
    if opset < 18:
        red = helper.make_node("ReduceMean", ["s2"], ["y"], axes=[2, -1], keepdims=0)
    else:
        red = helper.make_node("ReduceMean", ["s2", "rax"], ["y"], keepdims=0)
        inits["rax"] = np.array([2, -1], np.int64)
    model = make_model([clip, pad, sq, split, red], [tensor("x", [2, 3, 4, 2])],
                       [tensor("y", None), tensor("s1", None)], inits, opset=opset)
    check_vs_ort(model, {"x": f32(2, 3, 4, 2)})


def test_gemm_forms_and_matmul():
    nodes = [
        helper.make_node("Gemm", ["a", "b", "c"], ["g1"], transA=1, beta=2.0),  # constant B, row bias
        helper.make_node("Gemm", ["g1", "x2", "cm"], ["g2"], alpha=0.5),  # run-time B, (M,N) C
        helper.make_node("MatMul", ["g2", "w"], ["y"]),
    ]
    model = make_model(nodes, [tensor("a", [6, 4]), tensor("x2", [5, 3])], [tensor("y", None)],
                       {"b": f32(6, 5), "c": f32(5), "cm": f32(4, 3), "w": f32(3, 2)})
    check_vs_ort(model, {"a": f32(6, 4), "x2": f32(5, 3)})


def test_matmul_with_constant_weight_is_dense(tmp_path):
    """MatMul by a constant 2-D B becomes dense (packed weight panels, parallel output blocks), as
    Gemm does; a run-time B or a 3-D A stays matmul. Compiled, against onnxruntime."""
    from edgec.compiler.build import compile_graph
    from edgec.runtime import load
    from edgec.targets import get
    nodes = [helper.make_node("MatMul", ["a", "w"], ["y"]), helper.make_node("MatMul", ["a", "b"], ["z"]),
             helper.make_node("MatMul", ["a3", "w"], ["t"])]
    model = make_model(nodes, [tensor("a", [3, 37]), tensor("b", [37, 5]), tensor("a3", [2, 3, 37])],
                       [tensor("y", None), tensor("z", None), tensor("t", None)], {"w": f32(37, 70)})
    feeds = {"a": f32(3, 37), "b": f32(37, 5), "a3": f32(2, 3, 37)}
    graph = check_vs_ort(model, feeds)
    assert sorted(n.op for n in graph.nodes) == ["dense", "matmul", "matmul"]
    compile_graph(graph, get("host"), str(tmp_path / "m.edgec"), progress=False)
    got = load(str(tmp_path / "m.edgec")).run(feeds)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_elementwise_mix():
    nodes = [
        helper.make_node("Sum", ["x", "y", "x"], ["s"]),
        helper.make_node("Max", ["s", "y"], ["m"]),
        helper.make_node("Mean", ["m", "x"], ["me"]),
        helper.make_node("PRelu", ["me", "slope"], ["pr"]),
        helper.make_node("Sigmoid", ["pr"], ["sg"]),
        helper.make_node("Greater", ["sg", "half"], ["gt"]),
        helper.make_node("Where", ["gt", "pr", "x"], ["w"]),
        helper.make_node("Erf", ["w"], ["e"]),
        helper.make_node("Expand", ["e", "shp"], ["ex"]),
        helper.make_node("Tile", ["ex", "reps"], ["t"]),
        helper.make_node("Transpose", ["t"], ["z"], perm=[0, 2, 3, 1]),
        helper.make_node("Slice", ["z", "st", "en", "axs", "stp"], ["out"]),
    ]
    model = make_model(nodes, [tensor("x", [1, 3, 4, 5]), tensor("y", [1, 1, 4, 5])], [tensor("out", None)],
                       {"slope": np.abs(f32(3, 1, 1)), "half": np.array([0.5], np.float32),
                        "shp": np.array([2, 1, 1, 1], np.int64), "reps": np.array([1, 1, 2, 1], np.int64),
                        "st": np.array([-1, 1], np.int64), "en": np.array([-100, 100], np.int64),
                        "axs": np.array([2, 3], np.int64), "stp": np.array([-2, 1], np.int64)})
    check_vs_ort(model, {"x": f32(1, 3, 4, 5), "y": f32(1, 1, 4, 5)})


def test_output_is_input_or_identity_keeps_names():
    nodes = [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["z"])]
    model = make_model(nodes, [tensor("x", [2, 3])], [tensor("y", [2, 3]), tensor("z", [2, 3])])
    g = check_vs_ort(model, {"x": f32(2, 3)})
    assert g.outputs == ["y", "z"]


def test_symbolic_dims_need_input_shapes():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", [3, "N"])], [tensor("y", None)])
    with pytest.raises(ModelError, match=r"input 'x' has symbolic shape \[3,N\].*input_shapes"):
        from_onnx(model)
    g = from_onnx(model, input_shapes={"x": (3, 4)})
    assert g.inputs[0].shape == (3, 4)


def test_dynamic_batch_defaults_to_one_with_a_note():
    from edgec.errors import EdgecWarning
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", ["N", 3])], [tensor("y", None)])
    with pytest.warns(EdgecWarning, match=r"dynamic batch dimension 'N'; compiling for batch 1.*--input-shape x=N,3"):
        assert from_onnx(model).inputs[0].shape == (1, 3)
    assert from_onnx(model, input_shapes={"x": (4, 3)}).inputs[0].shape == (4, 3)


def test_unsupported_op_names_op_node_and_opset():
    model = make_model([helper.make_node("Relu", ["x"], ["r"], name="ok"),
                        helper.make_node("NonMaxSuppression", ["r"], ["y"], name="nms_1")],
                       [tensor("x", [2, 3])], [tensor("y", None)], opset=17)
    with pytest.raises(UnsupportedError) as e:
        from_onnx(model, name="detector")
    msg = str(e.value)
    assert "NonMaxSuppression" in msg and "nms_1" in msg and "opset 17" in msg and "detector" in msg
    assert "\n" not in msg


def test_unsupported_attribute_value():
    model = make_model([helper.make_node("Pad", ["x", "p"], ["y"], name="pad0", mode="wrap")],
                       [tensor("x", [2, 3])], [tensor("y", None)], {"p": np.array([1, 1, 1, 1], np.int64)},
                       opset=19)
    with pytest.raises(UnsupportedError, match="Pad node 'pad0'.*wrap"):
        from_onnx(model)
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="r", frobnicate=3)],
                       [tensor("x", [2, 3])], [tensor("y", None)])
    with pytest.raises(UnsupportedError, match="attribute frobnicate is not supported"):
        from_onnx(model)


def test_runtime_parameter_is_refused_clearly():
    model = make_model([helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")],
                       [tensor("x", [2, 3]), tensor("s", [2], TensorProto.INT64)], [tensor("y", None)])
    with pytest.raises(UnsupportedError, match="Reshape node 'reshape'.*shape must be a compile-time constant"):
        from_onnx(model)


def test_maxpool_indices_refused():
    model = make_model([helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])],
                       [tensor("x", [1, 1, 4, 4])], [tensor("y", None), tensor("i", None)])
    with pytest.raises(UnsupportedError, match="Indices"):
        from_onnx(model)


def test_corrupt_truncated_and_missing_files(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", [2, 3])], [tensor("y", None)],
                       {"w": f32(64, 64)})
    data = model.SerializeToString()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xfe not a protobuf \x00\x01" * 10)
    for path in (truncated, garbage):
        with pytest.raises(ModelError, match=path.name):
            from_onnx(path)
    with pytest.raises(ModelError, match="does not exist"):
        from_onnx(tmp_path / "missing.onnx")
    good = tmp_path / "good.onnx"
    good.write_bytes(data)
    assert from_onnx(str(good)).outputs == ["y"]


def test_unnamed_nodes_get_unique_sources():
    model = make_model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
                        helper.make_node("Neg", ["b"], ["y"], name="n"), ],
                       [tensor("x", [2])], [tensor("y", None)])
    g = from_onnx(model)
    assert [n.source for n in g.nodes] == [["Relu_0"], ["Relu_1"], ["n"]]


def test_supported_ops_listing():
    ops = supported_ops()
    assert ops == sorted(ops)
    for op in ("Conv", "MaxPool", "Gemm", "Reshape", "Softmax", "Pad", "ConstantOfShape", "Where"):
        assert op in ops
