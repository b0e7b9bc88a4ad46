"""edgec verify --per-layer / --bisect: a model whose compiled copy has one corrupted weight in one layer;
bisect names that layer (ONNX against onnxruntime with every node output exposed, Keras against a
multi-output Keras model); JUnit reports carry one case per output or per layer."""
import json
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import api
from edgec.cli import main


def conv_chain(path, corrupt=None, layers=4):
    """Conv+Relu x LAYERS; CORRUPT=i adds 0.5 to one weight of conv i."""
    rng = np.random.default_rng(0)
    nodes, inits, x, c = [], [], "x", 3
    for i in range(layers):
        w = (rng.standard_normal((8, c, 3, 3)) * 0.3).astype(np.float32)
        if i == corrupt:
            w[2, 1, 1, 1] += 0.5
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x, c = f"r{i}", 8
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["y"], name="pool"))
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 1, 1])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return str(path)


@pytest.fixture(scope="module")
def onnx_case(tmp_path_factory):
    d = tmp_path_factory.mktemp("layers")
    good, bad = conv_chain(d / "good.onnx"), conv_chain(d / "bad.onnx", corrupt=2)
    return good, api.compile(bad, output=str(d / "bad.edgec"), progress=False), api.compile(
        good, output=str(d / "good.edgec"), progress=False)


def test_bisect_names_the_corrupted_onnx_layer(onnx_case, capsys):
    good, bad_art, _ = onnx_case
    assert main(["verify", good, bad_art, "--bisect"]) == 1
    out = capsys.readouterr().out
    assert "first divergence at layer 'relu2'" in out and "source layers conv2, relu2" in out, out
    assert main(["verify", good, bad_art, "--per-layer", "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["first_divergence"] == "relu2"
    rows = {r["layer"]: r for r in rep["layers"]}
    assert rows["relu0"]["passed"] and rows["relu1"]["passed"] and not rows["relu2"]["passed"]
    assert rows["relu2"]["inputs"] == ["relu1"] and rows["relu2"]["amplification"] > 1e3
    assert rows["relu2"]["nodes"] and "conv2" in rows["relu2"]["layers"]


def test_per_layer_of_a_correct_artifact_passes_and_writes_junit(onnx_case, tmp_path, capsys):
    good, _, good_art = onnx_case
    junit = tmp_path / "layers.xml"
    assert main(["verify", good, good_art, "--per-layer", "--junit", str(junit)]) == 0
    assert "PASS: 4 layer(s) compared, 0 outside the tolerance" in capsys.readouterr().out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and {c.get("name") for c in suite} >= {"relu0", "relu1", "relu2", "pool"}
    outputs = tmp_path / "outputs.xml"
    assert main(["verify", good, good_art, "--junit", str(outputs)]) == 0
    (case,) = ET.parse(outputs).getroot().iter("testcase")
    assert case.get("name") == "y" and case.find("failure") is None


def test_junit_failure_carries_the_errors(onnx_case, tmp_path):
    good, bad_art, _ = onnx_case
    junit = tmp_path / "v.xml"
    assert main(["verify", good, bad_art, "--junit", str(junit)]) == 1
    (case,) = ET.parse(junit).getroot().iter("testcase")
    failure = case.find("failure")
    assert failure is not None and "max abs error" in failure.get("message") and "cosine" in failure.text


@pytest.mark.keras
def test_bisect_names_the_corrupted_keras_layer(tmp_path, capsys):
    keras = pytest.importorskip("keras", reason="needs the keras extra")
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inp, out)
    model.save(tmp_path / "good.keras")
    w = model.get_layer("c2").get_weights()
    w[0][1, 1, 2, 3] += 0.5
    model.get_layer("c2").set_weights(w)
    model.save(tmp_path / "bad.keras")
    art = api.compile(str(tmp_path / "bad.keras"), output=str(tmp_path / "bad.edgec"), progress=False)
    assert main(["verify", str(tmp_path / "good.keras"), art, "--per-layer", "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    first = next(r for r in rep["layers"] if r["layer"] == rep["first_divergence"])
    assert "c2" in first["layers"], first
    assert all(r["passed"] for r in rep["layers"] if r["layer"] in ("c1", "bn1", "r1"))
