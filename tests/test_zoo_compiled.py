"""The 9 light ONNX zoo models compiled for the host and verified against onnxruntime, with seeded
random weights (tests/zoo.py; compared before the final Softmax, which would saturate and hide
errors) and as shipped. The shipped weights are one constant per tensor, which hides layout and
indexing bugs, so the random-weight run is the check and runs for all nine; as shipped runs for a
sample by default and for all nine under `-m zoo` (the heavy set, ~2.5 min more).
Tolerance: rtol 1e-4, atol 1e-5 (numpy allclose rule)."""
import onnx
import pytest

import edgec
from edgec.runtime.artifact import read_manifest
from zoo import drop_final_softmax, light_models, load_light, randomize_weights


def compile_and_verify(model_proto, tmp_path, name):
    src = tmp_path / f"{name}.onnx"
    onnx.save(model_proto, src)
    art = edgec.compile(str(src), target="host", output=str(tmp_path / f"{name}.edgec"), progress=False)
    res = edgec.verify(str(src), art, rtol=1e-4, atol=1e-5, seed=1)
    for r in res.reports:
        assert r.passed, (f"{name} {r.name}: max abs {r.max_abs:.3g} max rel {r.max_rel:.3g} "
                          f"mismatches {r.mismatches}/{r.size} worst {r.worst_index}")
    assert "onnxruntime" in res.reference
    return read_manifest(art)


SHIPPED_SAMPLE = ("shufflenet", "squeezenet")


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in SHIPPED_SAMPLE else pytest.mark.zoo)
                                  for n in light_models()])
def test_zoo_model_as_shipped(name, tmp_path):
    compile_and_verify(load_light(name), tmp_path, name)


@pytest.mark.parametrize("name", light_models())
def test_zoo_model_random_weights(name, tmp_path):
    model = drop_final_softmax(randomize_weights(load_light(name), seed=0))
    m = compile_and_verify(model, tmp_path, name + "_rand")
    layer_names = {n.name for n in model.graph.node}
    assert all(set(k["sources"]) & layer_names for k in m["kernels"]), "every kernel maps to ONNX nodes"
