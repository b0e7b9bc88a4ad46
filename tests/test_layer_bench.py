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


def test_cli_layers_table():
    out = subprocess.run([sys.executable, "-m", "edgec", "bench", str(DIGITS), "--layers", "--threads", "1",
                          "--repeat", "1"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "in-model" in out.stdout and "3x3" in out.stdout
