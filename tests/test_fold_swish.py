"""fold_swish: swish and hard-swish compositions become one op that fuses into the conv before it:
each form folds (numerics checked by the pass manager's interpreter before/after, and the compiled
kernel against the interpreter), the folded op keeps the layers' names; forms that are not exactly
a swish stay."""
import numpy as np
import pytest

from edgec import targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.runtime import load
from test_passes import apply, conv_graph, ops

from edgec.compiler.passes import fold_swish


def _scalar(g, v):
    return g.add_const(np.array(v, np.float32))


def swish(g, y, swap=False):
    s, = g.add_node("sigmoid", [y], source=["act/Sigmoid"])
    return g.add_node("mul", [s, y] if swap else [y, s], source=["act/mul"])[0]


def keras_hard_swish(g, y):
    h, = g.add_node("hard_sigmoid", [y], {"alpha": 1 / 6, "beta": 0.5})
    return g.add_node("mul", [y, h])[0]


def tf2onnx_hard_swish(g, y, three=3.0, div=False, swap=False):
    a, = g.add_node("add", [_scalar(g, three), y] if swap else [y, _scalar(g, three)])
    r, = g.add_node("clip", [a], {"min": 0.0, "max": 6.0})
    h, = g.add_node("div", [r, _scalar(g, 6.0)]) if div else g.add_node("mul", [_scalar(g, 1 / 6), r])
    return g.add_node("mul", [h, y] if swap else [y, h])[0]


FORMS = {
    "swish": (lambda g, y: swish(g, y), "swish"),
    "swish-swapped": (lambda g, y: swish(g, y, swap=True), "swish"),
    "keras-hard-swish": (keras_hard_swish, "hard_swish"),
    "tf2onnx-hard-swish": (tf2onnx_hard_swish, "hard_swish"),
    "tf2onnx-hard-swish-div": (lambda g, y: tf2onnx_hard_swish(g, y, div=True, swap=True), "hard_swish"),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_swish_forms_fold_and_fuse_into_the_conv(tmp_path, form):
    build, op = FORMS[form]
    g, y = conv_graph(c=5, o=12, hw=13)
    g.outputs = [build(g, y)]
    after = apply(g, fold_swish)
    assert ops(after) == ["conv2d", op], ops(after)
    compile_graph(g, targets.get("host"), str(tmp_path / "m.edgec"), progress=False)
    m = load(str(tmp_path / "m.edgec"))
    assert [k["ops"][1:] for k in m.kernels] == [[op]], [k["ops"] for k in m.kernels]  # one kernel: conv + op
    feed = {"x": np.random.default_rng(2).standard_normal((1, 5, 13, 13)).astype(np.float32) * 4}
    np.testing.assert_allclose(m.run(feed)[0], interpret(g, feed)[g.outputs[0]], rtol=1e-4, atol=1e-5)


def test_folded_swish_keeps_the_layer_names():
    g, y = conv_graph()
    g.outputs = [swish(g, y)]
    node = apply(g, fold_swish).nodes[-1]
    assert node.op == "swish" and {"act/Sigmoid", "act/mul"} <= set(node.source)


def test_forms_that_are_not_a_swish_stay():
    g, y = conv_graph(c=4, o=4, hw=6)
    s, = g.add_node("sigmoid", [y])
    sw, = g.add_node("mul", [y, s])
    g.outputs = [sw, s]  # the sigmoid is needed on its own: nothing folds
    other, = g.add_node("sigmoid", [g.inputs[0].name])
    g.outputs.append(g.add_node("mul", [y, other])[0])  # the sigmoid of another value
    g.outputs.append(tf2onnx_hard_swish(g, y, three=2.0))  # not x + 3
    h, = g.add_node("hard_sigmoid", [y], {"alpha": 0.2, "beta": 0.5})  # ONNX's default slope
    g.outputs.append(g.add_node("mul", [y, h])[0])
    before = ops(g)
    assert ops(apply(g, fold_swish)) == before
