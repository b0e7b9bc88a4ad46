"""Property tests: random chains of conv/bn/activation/pool/add (random shapes, some values also
graph outputs or read twice) give the same results after the pass pipeline, in numpy and compiled."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgec import targets
from edgec.compiler import lower
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.compiler.passes import run_passes
from edgec.runtime import load

ACTS = [("relu", {}), ("leaky_relu", {"alpha": 0.2}), ("clip", {"min": -0.5, "max": 0.5}), ("sigmoid", {}),
        ("tanh", {})]
LAYERS = ["conv", "conv", "bn", "act", "act", "pool", "add", "output"]


@st.composite
def chains(draw, prefix=()):
    """A random chain; PREFIX layers come first (the compiled test, with few examples, always
    gets a conv + BN + activation + pool group)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    g = Graph("chain")
    c, h = draw(st.integers(1, 4)), draw(st.integers(4, 9))
    cur = g.add_input("x", (1, c, h, h))
    seen = [cur]  # values a residual add may read
    for layer in list(prefix) + draw(st.lists(st.sampled_from(LAYERS), min_size=2, max_size=7)):
        c, h = g.values[cur].shape[1], g.values[cur].shape[2]
        if layer == "conv":
            o, k = draw(st.integers(1, 5)), draw(st.sampled_from([1, 3]))
            groups = c if draw(st.booleans()) and o % c == 0 else 1
            ins = [cur, g.add_const(rng.standard_normal((o, c // groups, k, k)).astype("float32") * 0.5)]
            if draw(st.booleans()):
                ins.append(g.add_const(rng.standard_normal(o).astype("float32")))
            (cur,) = g.add_node("conv2d", ins, {"pads": [k // 2] * 4, "groups": groups,
                                                "strides": [draw(st.sampled_from([1, 2]))] * 2 if h > 4 else [1, 1]})
        elif layer == "bn":
            p = [rng.standard_normal(c) + 1, rng.standard_normal(c), rng.standard_normal(c),
                 rng.uniform(0.5, 2, c)]
            (cur,) = g.add_node("batch_norm", [cur] + [g.add_const(a.astype("float32")) for a in p],
                                {"epsilon": 1e-3})
        elif layer == "act":
            op, attrs = draw(st.sampled_from(ACTS))
            (cur,) = g.add_node(op, [cur], attrs)
        elif layer == "pool" and h >= 2:
            op = draw(st.sampled_from(["max_pool2d", "avg_pool2d", "global_avg_pool"]))
            attrs = {} if op == "global_avg_pool" else {"kernel": [2, 2], "strides": [draw(st.sampled_from([1, 2]))] * 2}
            (cur,) = g.add_node(op, [cur], attrs)
        elif layer == "add":
            same = [v for v in seen if g.values[v].shape == g.values[cur].shape]
            (cur,) = g.add_node("add", [cur, draw(st.sampled_from(same))])
        elif layer == "output" and cur not in g.outputs and cur != "x":
            g.outputs.append(cur)  # also read by the next layer: must not be swallowed
        seen.append(cur)
    if cur not in g.outputs:
        g.outputs.append(cur)
    return g


def feed(graph):
    rng = np.random.default_rng(1)
    return {v.name: rng.standard_normal(v.shape).astype("float32") for v in graph.inputs}


def check_kernels(after):
    for k in lower.partition(after):
        assert len(k.outputs) == 1, f"{k.name} has outputs {k.outputs}"


@settings(max_examples=25, deadline=None)
@given(chains())
def test_optimized_graph_equals_unoptimized_in_numpy(g):
    after = run_passes(g)
    assert not any(n.op == "batch_norm" for n in after.nodes)
    check_kernels(after)
    want, got = interpret(g, feed(g)), interpret(after, feed(g))
    for o in g.outputs:
        np.testing.assert_allclose(got[o], want[o], rtol=1e-4, atol=1e-5)


@settings(max_examples=4, deadline=None)
@given(chains(prefix=["conv", "bn", "act", "pool"]))
def test_optimized_graph_equals_unoptimized_compiled(tmp_path_factory, g):
    """Compiled twice: as the pipeline makes it (packed conv2d schedule where it applies) and
    without the layout pass, so every fused group goes through the generic schedule."""
    want = interpret(g, feed(g))
    for disable in ([], ["layout"]):
        path = tmp_path_factory.mktemp("chain") / "chain.edgec"
        manifest = compile_graph(g, targets.get("host"), path, disable_passes=disable, progress=False)
        assert len(manifest["kernels"]) == len(lower.partition(run_passes(g)))
        got = load(path).run_dict(feed(g))
        for o in g.outputs:
            np.testing.assert_allclose(got[o], want[o], rtol=1e-4, atol=1e-5, err_msg=f"disabled {disable}")
