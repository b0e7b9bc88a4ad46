"""split_k (CUDA targets): a conv too small to fill the GPU becomes a grouped conv over input-channel
chunks plus a sum; the numpy interpreter gives the same result before and after, other convs and
other targets are left alone, and the split model compiles with nvcc. Execution on a GPU is checked
by examples/gpu_run.py (see examples/bench_results.md)."""
import numpy as np
import pytest

from edgec import targets
from edgec.compiler.interp import interpret
from edgec.compiler.ir import Graph
from edgec.compiler.passes import check_numerics, split_k

RNG = np.random.default_rng(0)
H200 = targets.get("cuda-sm90")


def conv_graph(c, o, hw, k=3, n=1, bias=True, attrs=None, const_w=True):
    g = Graph("t")
    x = g.add_input("x", (n, c, hw, hw))
    w = RNG.standard_normal((o, c // (attrs or {}).get("groups", 1), k, k)).astype("float32") / np.sqrt(c * k * k)
    inputs = [x, g.add_const(w) if const_w else g.add_input("w", w.shape)]
    if bias:
        inputs.append(g.add_const(RNG.standard_normal(o).astype("float32")))
    (y,) = g.add_node("conv2d", inputs, dict({"pads": [k // 2] * 4}, **(attrs or {})), name="conv", source=["Conv_0"])
    (r,) = g.add_node("relu", [y], name="relu")
    g.outputs = [r]
    return g


def split(graph, preset=H200):
    after = split_k.run(graph.copy(), preset)
    after.prune_values()
    after.verify()
    check_numerics(split_k.NAME, graph, after)
    return after


def groups(graph):
    return [n.attrs.get("groups", 1) for n in graph.nodes if n.op == "conv2d"]


@pytest.mark.parametrize("c, o, hw, k, n, bias, attrs, s", [
    (512, 512, 7, 3, 1, True, {}, 8),                                     # ResNet-50's 3x3 @7x7: 16 blocks
    (2048, 512, 7, 1, 1, True, {"pads": [0] * 4}, 32),                  # 1x1, chunks of 64 channels
    (192, 100, 9, 3, 2, False, {"strides": [2, 2], "pads": [0, 1, 1, 0]}, 2),  # batch 2, no bias, 100 channels
    (384, 96, 11, 3, 1, True, {"dilations": [2, 2], "pads": [2] * 4}, 4),  # dilated; 384 = 3 x 128
])
def test_small_conv_sums_chunks_and_matches_the_interpreter(c, o, hw, k, n, bias, attrs, s):
    after = split(conv_graph(c, o, hw, k, n, bias, attrs))
    assert groups(after) == [s]
    assert [x.op for x in after.nodes] == ["conv2d", "reshape", "reduce_sum"] + ["add"] * bias + ["relu"]
    assert all(x.source == ["Conv_0"] for x in after.nodes[:-1])  # profiles still name the user's layer


def test_split_conv_equals_the_whole_conv_in_the_interpreter():
    """The chunked weights are the original's channels in chunk-major order: the split graph's output
    is the whole conv's (both run by the numpy interpreter), checked here on a 5x5 image (S = 4)."""
    g = conv_graph(256, 64, 5)
    x = RNG.standard_normal((1, 256, 5, 5)).astype("float32")
    want = interpret(g, {"x": x})[g.outputs[0]]
    got = interpret(split(g), {"x": x})[g.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("graph, preset", [
    (lambda: conv_graph(512, 512, 7), targets.get("x86-avx2")),   # CPU targets have their own schedules
    (lambda: conv_graph(64, 64, 56), H200),                         # 98 blocks but only 64 channels to cut
    (lambda: conv_graph(256, 256, 56), H200),                       # 392 blocks: the GPU is full
    (lambda: conv_graph(512, 512, 7, attrs={"groups": 2}), H200),   # already grouped
    (lambda: conv_graph(512, 512, 7, const_w=False), H200),         # weights computed at run time
])
def test_convs_that_fill_the_gpu_or_cannot_split_stay(graph, preset):
    g = graph()
    assert [n.op for n in split(g, preset).nodes] == [n.op for n in g.nodes]


def test_smaller_gpus_split_less():
    """Two waves of blocks on the preset's SMs: a 16-SM Jetson Orin needs fewer chunks than an H200."""
    g = conv_graph(1024, 256, 14, k=1, attrs={"pads": [0] * 4})
    assert groups(split(g, targets.get("jetson-orin"))) == [2]
    assert groups(split(g, H200)) == [16]


def test_split_model_compiles_for_cuda(tmp_path):
    """The whole pipeline for cuda-sm90, nvcc compiling the device code at compile time: the split
    conv is a grouped conv kernel, then the sum, then bias + relu in one kernel."""
    missing = H200.missing_tools()
    if missing:
        pytest.skip(f"cuda-sm90 needs {missing} (CI has nvcc)")
    from edgec.compiler.build import compile_graph
    from edgec.runtime.artifact import read_manifest
    compile_graph(conv_graph(512, 512, 7), H200, tmp_path / "m.edgec", progress=False)
    manifest = read_manifest(tmp_path / "m.edgec")
    assert [k["ops"] for k in manifest["kernels"] if k["kind"] != "layout"] == \
        [["conv2d"], ["reduce_sum"], ["add", "relu"]], manifest["kernels"]
    assert manifest["device_code"]["format"] == "fatbin"
