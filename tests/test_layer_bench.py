"""`edgec bench --layers`: edgec's kernels matched to onnxruntime's nodes inside the whole model."""
import subprocess
import sys
from pathlib import Path

from edgec.layer_bench import bench_layers, match

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits_cnn.onnx"


def _conv(name, cin, cout, k, hw, flops=None, pool=False):
    kernel = {"name": name, "kind": "conv2d", "sources": [name], "output_shapes": [[1, cout, hw, hw]],
              "ops": ["conv2d_packed", "relu"] + (["max_pool2d"] if pool else []),
              "flops": flops or 2 * cin * cout * k * k * hw * hw + cout * hw * hw}
    return kernel


def test_convs_match_by_arithmetic_and_channels_in_order():
    # two 1x1 convs with the same arithmetic but other output channels must not swap; a fused
    # pool takes the pool node after its conv; a reorder matches nothing on edgec's side
    kernels = [_conv("a", 64, 256, 1, 56), _conv("b", 256, 64, 1, 56), _conv("c", 3, 64, 3, 112, pool=True)]
    kernels[2]["output_shapes"] = [[1, 64, 56, 56]]
    kernels[2]["flops"] = 2 * 3 * 64 * 9 * 112 * 112 + 9 * 64 * 56 * 56
    nodes = [("r1", "Conv", [[1, 256, 56, 56], [64, 256, 1, 1], [64]], [1, 8, 56, 56, 8], 0.002, 0.0019),
             ("r2", "Conv", [[1, 64, 56, 56], [256, 64, 1, 1], [256]], [1, 32, 56, 56, 8], 0.001, 0.0009),
             ("r3", "Conv", [[1, 3, 224, 224], [64, 3, 3, 3], [64]], [1, 64, 112, 112], 0.003, 0.0029),
             ("r4", "MaxPool", [[1, 64, 112, 112]], [1, 64, 56, 56], 0.0005, 0.0004),
             ("ReorderOutput", "ReorderOutput", [[1, 8, 56, 56, 8]], [1, 64, 56, 56], 0.0001, 0.0001)]
    rows = match(kernels, {k: {"median_s": 0.01, "min_s": 0.009} for k in "abc"}, nodes)
    assert [r["ort_nodes"] for r in rows[:3]] == [["r2"], ["r1"], ["r3", "r4"]]
    assert rows[0]["label"] == "1x1 64->256 s1 @56x56" and rows[2]["label"] == "3x3 3->64 s2 @112x112"
    assert abs(rows[2]["ort_s"] - 0.0035) < 1e-12 and abs(rows[2]["ort_min_s"] - 0.0033) < 1e-12
    assert rows[3]["kind"] == "onnxruntime only" and rows[3]["ort_nodes"] == ["ReorderOutput"]


def test_digits_cnn_every_conv_has_its_onnxruntime_node(tmp_path):
    (r,) = bench_layers(str(DIGITS), thread_counts=[1], runs=3)
    convs = [row for row in r["rows"] if row["kind"] == "conv2d"]
    assert convs and all(row["ort_s"] and row["edgec_s"] > 0 for row in convs), r["rows"]
    assert all(row["label"].startswith("3x3") for row in convs)


def test_engines_alternate_in_blocks(monkeypatch):
    # each of the blocks of onnxruntime runs follows one of edgec's profiled blocks, and edgec's
    # rows pool the runs of all its blocks (a slow phase of the machine hits both engines alike)
    import edgec.layer_bench as lb
    from edgec.runtime import load
    seen = []
    real = lb.ort_node_times

    def spy(*a, between=None, blocks=1, **k):
        def turn(runs):
            seen.append("edgec")
            between(runs)
        nodes = real(*a, between=turn, blocks=blocks, **k)
        seen.append("ort")
        return nodes
    monkeypatch.setattr(lb, "ort_node_times", spy)
    import edgec.api as api
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        model = load(api.compile(str(DIGITS), "host", tmp + "/m.edgec", progress=False))
        rows = lb.layer_rows(model, str(DIGITS), 1, repeat=6, blocks=3)
        model.close()
    assert seen == ["edgec"] * 3 + ["ort"]
    assert [r for r in rows if r["kind"] == "conv2d"] and all(r["edgec_s"] > 0 for r in rows if r["kind"] == "conv2d")


def test_cli_layers_table():
    out = subprocess.run([sys.executable, "-m", "edgec", "bench", str(DIGITS), "--layers", "--threads", "1",
                          "--repeat", "1"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "in-model" in out.stdout and "3x3" in out.stdout


def test_int8_nodes_match_by_layer_name_and_label_from_onnx_weights(tmp_path):
    # onnxruntime keeps the ONNX name of a fused QDQ conv (`n7_token_8`) but drops its packed
    # weight from the profile: the row is matched by name, labelled from the ONNX weight (NHWC);
    # a renamed float node (`r2_nchwc`) is still matched by its arithmetic
    import onnx
    from onnx import TensorProto, helper

    from edgec.layer_bench import conv_weights
    w = helper.make_tensor("w", TensorProto.INT8, [64, 16, 3, 3], [0] * (64 * 16 * 9))
    s, z = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("z", TensorProto.INT8, [], [0])
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"], name="n6"),
         helper.make_node("Conv", ["x", "wf"], ["y"], name="n7", pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 55, 55])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 55, 55])], [w, s, z])
    path = tmp_path / "q.onnx"
    onnx.save(helper.make_model(graph), str(path))
    weights = conv_weights(str(path))
    assert weights == {"n7": [64, 16, 3, 3]}
    kernels = [{"name": "q", "kind": "conv2d", "sources": ["n7", "r8_QuantizeLinear"],
                "output_shapes": [[1, 55, 55, 64]], "ops": ["qconv2d_packed", "requantize"], "flops": 1},
               _conv("f", 64, 256, 1, 56)]
    nodes = [("r2_nchwc", "Conv", [[1, 64, 56, 56], [256, 64, 1, 1], [256]], [1, 32, 56, 56, 8], 0.001, 0.0009),
             ("n7_token_8", "QLinearConv", [[1, 55, 55, 16], [], [], [64], [64], [], [], [64]], [1, 55, 55, 64],
              0.002, 0.0018)]
    rows = match(kernels, {k: {"median_s": 0.01, "min_s": 0.009} for k in "qf"}, nodes, weights)
    assert [r["ort_nodes"] for r in rows] == [["n7_token_8"], ["r2_nchwc"]]
    assert rows[0]["label"] == "3x3 16->64 s1 @55x55" and rows[1]["label"] == "1x1 64->256 s1 @56x56"
