"""Compile time stays near-linear in graph size: long chains compile (fused groups are capped,
passes rewrite in one walk) and the result is right. 2,000 nodes in the default suite (measured
~2 s on a quiet 2-core machine; the bound is generous for a busy one), 20,000 under `-m scale`."""
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgec import api
from edgec.runtime import load


def chain(n, path):
    """x -> Relu -> Neg -> Relu -> Neg ... (n nodes): alternating, so no pass can shorten it."""
    ops = ["Relu", "Neg"]
    nodes = [helper.make_node(ops[i % 2], [f"t{i}"], [f"t{i + 1}"], name=f"n{i}") for i in range(n)]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info(f"t{n}", TensorProto.FLOAT, [1, 16])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def compile_chain(tmp_path, n):
    t0 = time.perf_counter()
    art = api.compile(chain(n, tmp_path / "chain.onnx"), output=tmp_path / "chain.edgec", progress=False)
    seconds = time.perf_counter() - t0
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16)
    expected = x.copy()
    for i in range(n):
        expected = np.maximum(expected, 0) if i % 2 == 0 else -expected
    np.testing.assert_array_equal(load(art).run({"t0": x})[0], expected)
    print(f"\n{n}-node chain: compiled in {seconds:.1f} s ({len(load(art).kernels)} kernels)")
    return seconds


def test_2000_node_chain_compiles_fast(tmp_path):
    assert compile_chain(tmp_path, 2000) < 60  # was 107 s for a 2,000-relu chain before the group cap


@pytest.mark.scale
def test_20000_node_chain_compiles(tmp_path):
    assert compile_chain(tmp_path, 20000) < 300
