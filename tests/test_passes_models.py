"""The passes on ONNX models: `edgec inspect --passes` shows BN folded and fused kernels; a compiled
conv+BN+ReLU+pool model matches onnxruntime; light ResNet-50 folds every BN into <= 60 kernels."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import api, cli
from edgec.compiler import lower
from edgec.compiler.passes import run_passes

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def conv_bn_relu_pool(seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"w": rng.standard_normal((6, 3, 3, 3)) * 0.4, "b": rng.standard_normal(6),
              "g": rng.uniform(0.5, 1.5, 6), "beta": rng.standard_normal(6), "m": rng.standard_normal(6),
              "v": rng.uniform(0.5, 1.5, 6)}
    inits = [numpy_helper.from_array(a.astype(np.float32), k) for k, a in arrays.items()]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "beta", "m", "v"], ["n"], name="bn1"),
             helper.make_node("Relu", ["n"], ["r"], name="relu1"),
             helper.make_node("MaxPool", ["r"], ["y"], name="pool1", kernel_shape=[2, 2], strides=[2, 2])]
    graph = helper.make_graph(nodes, "cbrp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("passes") / "cbrp.onnx"
    onnx.save(conv_bn_relu_pool(), path)
    return path


def test_inspect_passes_shows_bn_folded_and_one_fused_kernel(model, capsys):
    assert cli.main(["inspect", str(model), "--passes", "--check-passes"]) == 0
    out = capsys.readouterr().out
    final = out.split("# ---- after layout")[1]
    assert "batch_norm(" not in final and "[conv2d_relu_maxpool_0]" in final
    assert "# conv1, bn1" in final  # the folded BN's layer name stays on the conv
    assert "batch_norm -1" in out


def test_compiled_conv_bn_relu_pool_matches_onnxruntime(model, tmp_path):
    art = api.compile(model, output=tmp_path / "cbrp.edgec", progress=False)
    from edgec.runtime.artifact import read_manifest
    (kernel,) = read_manifest(art)["kernels"]
    assert kernel["name"] == "conv2d_relu_maxpool_0" and kernel["sources"] == ["conv1", "bn1", "relu1", "pool1"]
    assert api.verify(model, art).passed


@pytest.mark.skipif(not os.path.exists(os.path.join(LIGHT, "light_resnet50.onnx")),
                    reason="onnx package ships no light_resnet50.onnx")
def test_light_resnet50_folds_all_bn_and_fuses_into_at_most_60_kernels():
    g = run_passes(api.import_model(os.path.join(LIGHT, "light_resnet50.onnx")))
    assert not any(n.op == "batch_norm" for n in g.nodes)
    names = [k.name for k in lower.partition(g)]
    assert len(names) <= 60
    assert sum(n.startswith("conv2d_relu_") for n in names) >= 16  # every bottleneck's first two convs
    assert sum(n.startswith("conv2d_add_relu_") for n in names) == 16  # residual add in the last conv
