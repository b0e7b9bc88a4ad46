"""IR ops added for the ONNX frontend (comparisons, logic) and reference fixes (clip, slice):
numpy reference vs the TE lowering built with TVM for the host."""
import numpy as np
import pytest

from edgec.compiler.ir import Node
from edgec.compiler.ops import get_op


def run_lowering(op, attrs, *arrays):
    tvm = pytest.importorskip("tvm")
    from tvm import te

    from edgec.compiler.lower import LOWERINGS
    ins = [te.placeholder(a.shape, str(a.dtype), name=f"in{i}") for i, a in enumerate(arrays)]
    out = LOWERINGS[op](attrs, *ins)
    func = te.create_prim_func(ins + [out])
    lib = tvm.compile(tvm.IRModule({"main": func}), target=tvm.target.Target({"kind": "llvm"}))
    dev = tvm.cpu()
    res = tvm.runtime.tensor(np.zeros([int(d) for d in out.shape], str(out.dtype)), dev)
    lib["main"](*[tvm.runtime.tensor(a, dev) for a in arrays], res)
    return res.numpy()


def reference(op, attrs, *arrays):
    return get_op(op).run(Node(op, "n", [], [], attrs), list(arrays))[0]


@pytest.mark.parametrize("op", ["equal", "less", "greater", "less_equal", "greater_equal"])
def test_compare_ops(op):
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 3, (3, 4)).astype(np.float32)
    y = rng.integers(-3, 3, (1, 4)).astype(np.float32)
    want = reference(op, {}, x, y)
    assert want.dtype == bool
    np.testing.assert_array_equal(run_lowering(op, {}, x, y), want)


@pytest.mark.parametrize("op", ["logical_and", "logical_or", "logical_xor"])
def test_logic_ops(op):
    x = np.array([[True, False], [True, True]])
    y = np.array([False, True])
    np.testing.assert_array_equal(run_lowering(op, {}, x, y), reference(op, {}, x, y))
    np.testing.assert_array_equal(run_lowering("logical_not", {}, x), ~x)


def test_clip_integer_without_bounds():
    x = np.array([-128, 0, 127], np.int8)
    np.testing.assert_array_equal(reference("clip", {}, x), x)
    np.testing.assert_array_equal(reference("clip", {"min": -1}, x), [-1, 0, 127])


def test_slice_negative_step_through_zero():
    x = np.arange(5, dtype=np.float32)
    attrs = {"starts": [-1], "ends": [-100], "steps": [-2], "axes": [0]}
    np.testing.assert_array_equal(reference("slice", attrs, x), [4, 2, 0])
    np.testing.assert_array_equal(run_lowering("slice", attrs, x), [4, 2, 0])
