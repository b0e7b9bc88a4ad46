"""verify --tolerance auto (the default): keras.applications logits (random weights, batch-norm statistics
from data) pass although float32 engines differ by more than rtol 1e-4 / atol 1e-5 allows, and a 1e-3
relative error in one layer fails. MobileNetV2 (alpha 0.35, 64x64) runs by default; ResNet50 under -m slow.
"""
import numpy as np
import pytest

from edgec import api
from edgec.runtime.compare import compare

keras = pytest.importorskip("keras", reason="needs the keras extra (pip install 'edgec[keras]')")
pytestmark = pytest.mark.keras


def application(kind, size, path, **kw):
    """keras.applications KIND with random weights whose batch-norm statistics are those of a batch of
    random images (momentum 0, one training-mode call): activations keep a realistic scale. Saved to
    PATH; a copy with one convolution's kernel scaled by 1 + 1e-3 is saved next to it."""
    model = getattr(keras.applications, kind)(weights=None, input_shape=(size, size, 3),
                                               classifier_activation=None, **kw)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(np.random.default_rng(0).standard_normal((8, size, size, 3)).astype(np.float32), training=True)
    model.save(path)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    w = convs[len(convs) // 2].get_weights()
    convs[len(convs) // 2].set_weights([w[0] * np.float32(1 + 1e-3), *w[1:]])
    bad = str(path).replace(".keras", "_1e-3.keras")
    model.save(bad)
    return str(path), bad


def check_application(kind, size, tmp_path, **kw):
    good, bad = application(kind, size, tmp_path / f"{kind}.keras", **kw)
    art = api.compile(good, output=str(tmp_path / "m.edgec"), progress=False)
    res = api.verify(good, art)
    (r,) = res.reports
    assert res.passed and r.edgec_error is not None, r
    assert r.edgec_error <= 4 * r.reference_error and r.cosine > 0.99999
    assert api.verify(good, art, tolerance="element").reports[0].rule == "element"  # the rule is reported
    # the same artifact against the model with one layer off by 1e-3 (its float64 answer and Keras agree)
    off = api.verify(bad, art)
    assert not off.passed and off.reports[0].rule == "element, auto", off.reports[0]
    assert off.reports[0].edgec_error > 20 * off.reports[0].reference_error


def test_mobilenet_v2_logits_pass_by_default_and_1e3_error_fails(tmp_path):
    check_application("MobileNetV2", 64, tmp_path, alpha=0.35)


@pytest.mark.slow
def test_resnet50_logits_pass_by_default_and_1e3_error_fails(tmp_path):
    check_application("ResNet50", 96, tmp_path)


def test_auto_rule_and_statistics():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal(1000) * 4
    ref = (truth + rng.standard_normal(1000) * 3e-5).astype(np.float32)
    ours = (truth + rng.standard_normal(1000) * 3e-5).astype(np.float32)
    r = compare("y", ours, ref, truth=truth)
    assert r.mismatches > 0 and r.passed and r.rule == "auto"  # float32 noise: element rule fails, auto passes
    assert compare("y", ours, ref).passed is False  # without a float64 answer, element rule only
    worse = compare("y", ours * np.float32(1 + 1e-3), ref, truth=truth)
    assert not worse.passed and worse.rule == "element, auto"
    d = np.abs(ours.astype(np.float64) - ref)
    assert r.max_abs == pytest.approx(d.max()) and r.median_abs == pytest.approx(np.median(d))
    assert r.p99_abs == pytest.approx(np.percentile(d, 99)) and 0.99999 < r.cosine <= 1.0
