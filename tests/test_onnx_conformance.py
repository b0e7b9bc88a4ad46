"""ONNX's own backend node tests (onnx.backend.test.case.node), run through edgec.

Every case whose ops are all claimed by `supported_ops()` runs here: import with from_onnx, run on
a backend (`run_case` in onnx_cases.py, the one place a compiled backend plugs in) and compare with
the case's expected outputs at the case's own rtol/atol. Cases edgec legitimately cannot support
are listed below with the reason; they must raise UnsupportedError, never be skipped silently.
"""
import fnmatch

import pytest

from edgec.errors import UnsupportedError
from onnx_cases import all_cases, claimed_cases, run_case

# fnmatch patterns over case names -> why edgec refuses them (each must raise UnsupportedError)
EXPECTED_UNSUPPORTED = {
    # 3-D (volumetric) pooling: edgec's IR has 1-D (via H=1) and 2-D pooling only
    "test_averagepool_3d_*": "3-D pooling",
    "test_maxpool_3d_*": "3-D pooling",
    "test_convtranspose_3d": "3-D transposed convolution",
    # element types edgec does not handle: bfloat16, float8/float4, packed int4/int2, strings
    "test_cast*BFLOAT16*": "bfloat16",
    "test_celu_bfloat16_expanded": "bfloat16",
    "test_einsum_*_bfloat16": "bfloat16",
    "test_reversesequence_bfloat16": "bfloat16",
    "test_cast*FLOAT8*": "float8 (incl. e8m0)",
    "test_cast*FLOAT4*": "float4",
    "test_cast*INT4*": "packed int4 / uint4",
    "test_cast*INT2*": "packed int2 / uint2",
    "test_equal_string*": "strings",
    "test_*quantizelinear_e4m3fn*": "float8",
    "test_*quantizelinear_e5m2": "float8",
    "test_*quantizelinear_float4e2m1": "float4",
    "test_*quantizelinear_*int4": "packed int4 / uint4",
    "test_*quantizelinear_*int2": "packed int2 / uint2",
    # Loop whose trip count is computed at run time from the inputs (Range's expanded form)
    "test_range_*_expanded": "Loop trip count computed at run time",
    # non-tensor inputs (optional, sequence)
    "test_identity_opt": "optional type",
    "test_identity_sequence": "sequence type",
    # training behaviour: edgec compiles inference graphs only
    "test_batchnorm_*_training_mode": "BatchNormalization training_mode=1",
    "test_training_dropout*": "Dropout training_mode=true",
    # MaxPool's Indices output
    "test_maxpool_with_argmax_*": "MaxPool Indices output",
    # ReduceMax/Min over an empty axis (identity -inf/+inf or error) is refused
    "test_reduce_max_empty_set*": "ReduceMax over an empty axis",
    "test_reduce_min_empty_set": "ReduceMin over an empty axis",
    # Pad amounts computed from a run-time input (the target shape is a graph input)
    "test_center_crop_pad_*_expanded": "run-time pad amounts",
    # Einsum taking a diagonal (an index repeated inside one operand)
    "test_einsum_batch_diagonal": "Einsum diagonal",
    # control flow over sequences/optionals, and opset 8's batched Scan
    "test_loop13_seq": "sequence type",
    "test_loop16_seq_none": "optional type",
    "test_if_opt": "optional type",
    "test_if_seq": "sequence type",
    "test_scan_sum": "Scan before opset 9",
    # Pad mode 'wrap' (opset 19) has no IR pad mode
    "test_wrap_pad": "Pad mode wrap",
}


def expected_unsupported(name):
    return next((why for pat, why in EXPECTED_UNSUPPORTED.items() if fnmatch.fnmatch(name, pat)), None)


CLAIMED = claimed_cases()


@pytest.mark.parametrize("backend", ["interp", "tvm"])  # numpy reference, and the compiled artifact
@pytest.mark.parametrize("name", CLAIMED)
def test_onnx_node_case(name, backend):
    case = all_cases()[name]
    why = expected_unsupported(name)
    if why:
        with pytest.raises(UnsupportedError):
            run_case(case, backend)
    else:
        run_case(case, backend)


def test_expected_unsupported_patterns_are_used():
    """Every pattern in the list matches a claimed case (no stale entries)."""
    for pat in EXPECTED_UNSUPPORTED:
        assert any(fnmatch.fnmatch(n, pat) for n in CLAIMED), f"stale pattern {pat}"


def test_claims_cover_the_core_ops():
    assert len(CLAIMED) > 600
    tested = {n.op_type for name in CLAIMED for n in all_cases()[name].model.graph.node}
    for op in ("Conv", "MaxPool", "AveragePool", "Gemm", "BatchNormalization", "Reshape", "Softmax", "Pad"):
        assert op in tested, op
