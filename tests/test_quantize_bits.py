"""`edgec quantize --reduce-range auto` (the default): 7-bit weights for x86 targets without VNNI,
where edgec's exact kernels for 8-bit weights take twice the instructions; 8-bit elsewhere."""
import numpy as np
import onnx

from edgec import cli
from edgec.quantize import auto_reduce_range
from test_int8 import float_cnn


def test_auto_picks_7_bits_only_for_x86_without_vnni():
    assert auto_reduce_range("x86-avx2")[0] is True
    assert auto_reduce_range("rpi4") == (False, "") and auto_reduce_range("rpi5") == (False, "")


def _max_weight(path):
    """The largest |int8| of the model's quantized weights."""
    return max(int(np.abs(onnx.numpy_helper.to_array(t).astype(int)).max()) for t in onnx.load(path).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2)


def test_cli_weights_bits_follow_the_target(tmp_path, capsys):
    onnx.save(float_cnn(), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", input=np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32))
    base = ["quantize", str(tmp_path / "m.onnx"), "--calibration", str(tmp_path / "c.npz")]
    for target, flag, bits in (("x86-avx2", [], 7), ("rpi5", [], 8), ("x86-avx2", ["--reduce-range", "no"], 8),
                               ("rpi5", ["--reduce-range"], 7)):
        out = tmp_path / f"{target}{len(flag)}.onnx"
        assert cli.main(base + ["--target", target, "-o", str(out)] + flag) in (0, None)
        said = capsys.readouterr().out
        assert (f"per-tensor {'7-bit' if bits == 7 else 'int8'} weights" in said), said
        assert ("auto for x86-avx2" in said) == (target == "x86-avx2" and not flag)
        assert (_max_weight(out) <= 64) if bits == 7 else (_max_weight(out) == 127), (target, flag)
