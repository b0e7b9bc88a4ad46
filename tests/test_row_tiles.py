"""A stem's row conv in register tiles of one output row (compiler/lower/packed.py `_tiled_rows`,
conv2d._schedule_row_tiles): rows padded to whole pixel vectors, the last tile of a row cut short
by a `likely` predicate, the bias and epilogue applied to the tile's accumulators and stored
straight to NCHW. Numerics against the numpy interpreter on rows that are not whole tiles nor
whole vectors, on the host and x86-avx2 presets; the row conv is x86 only (pack.conv_rows_tile), so rpi4 never takes it."""
import pytest

from edgec import targets
from edgec.compiler.build import lowered_kernels
from edgec.targets import schedules
from test_schedules import _check, _conv_graph, rng, threading  # noqa: F401 (fixtures)

CASES = [  # c, o, (h, w), (kh, kw), stride, pads (top, left, bottom, right), post
    (3, 32, (33, 32), (3, 3), 2, (0, 0, 1, 1), ("clip",)),  # a Keras "same" stem: rows of 16, a short tile
    (3, 20, (21, 97), (3, 3), 2, (0, 0, 0, 0), ("relu",)),  # rows of 48 and a partial channel block
    (3, 24, (45, 63), (7, 7), 2, (3, 3, 3, 3), ("relu",)),  # a 7x7 stem: kernel rows a loop, rows of 32
    (4, 12, (37, 33), (5, 5), 2, (2, 1, 2, 1), ()),  # 5x5, 4 channels, asymmetric pads, rows of 16
    (3, 64, (45, 49), (3, 3), 2, (0, 0, 0, 0), ("relu", "max_pool2d")),  # a pool fused per channel block
    (3, 16, (37, 29), (3, 3), 2, (1, 1, 1, 1), ("relu",)),  # rows of 15: a partial vector
    (3, 64, (45, 47), (3, 3), 2, (0, 0, 0, 0), ("relu", "max_pool2d"))]  # rows of 23 (SqueezeNet's 111), a pool


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}k{c[3][0]}w{c[2][1]}" + "".join(c[6]))
def test_stem_row_tiles_match_numpy(tmp_path, rng, preset, case):  # noqa: F811
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86 code")
    c, o, hw, k, stride, pads, post = case
    g = _conv_graph(rng, c, o, hw, k, stride=stride, pads=pads, post=post)
    (kernel, func), = lowered_kernels(g, targets.get(preset))
    script = schedules.schedule(func, kernel, targets.get(preset)).script()
    assert 'T.sblock("conv2d_row_tiles_update")' in script and 'T.sblock("conv2d_rows_update")' not in script
    _check(tmp_path, _conv_graph(rng, c, o, hw, k, stride=stride, pads=pads, post=post), preset,
           want_ops=["conv2d_packed", *post])


def test_avx2_stem_row_tiles_write_back_is_vector_code(tmp_path):
    """Rows of 111 (a partial last vector): the whole tiles write back in vectors, the scalar code
    is the last vector's odd lane (TVM had made every tile's write-back scalar: 8 lanes x 4 channels
    of vmaxss per tile)."""
    import shutil
    import subprocess
    if not shutil.which("objdump"):
        pytest.skip("objdump (binutils) is not installed")
    from test_arm_schedules import conv_library
    lib = conv_library(tmp_path, "x86-avx2", 3, 32, 221, 3, stride=2)
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                         check=True).stdout
    ops = [line.split()[1] for line in asm.splitlines() if line.strip() and ":" in line and len(line.split()) > 1]
    assert ops.count("vmaxps") >= 4 * 3 and ops.count("vmaxss") <= 4, (ops.count("vmaxps"), ops.count("vmaxss"))


@pytest.mark.parametrize("preset", ["host", "x86-avx2"])
def test_stem_row_tiles_batch_2_match_numpy(tmp_path, rng, preset):  # noqa: F811
    """Two images: the batch is part of the parallel loop over (image, channel block, row)."""
    from edgec.compiler.ir import Graph
    if "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this machine has no AVX2 to run x86 code")
    g = Graph("conv")
    x = g.add_input("x", (2, 3, 21, 47))
    w = g.add_const((rng.standard_normal((20, 3, 3, 3)) / 5).astype("float32"))
    y, = g.add_node("conv2d", [x, w, g.add_const(rng.standard_normal(20).astype("float32"))],
                    {"groups": 1, "strides": [2, 2], "dilations": [1, 1], "pads": [0, 0, 0, 0]})
    y, = g.add_node("relu", [y])
    g.outputs = [y]
    (kernel, func), = lowered_kernels(g, targets.get(preset))
    assert 'T.sblock("conv2d_row_tiles_update")' in schedules.schedule(func, kernel, targets.get(preset)).script()
    _check(tmp_path, g, preset, want_ops=["conv2d_packed", "relu"])
