"""LSTM/GRU/RNN: ONNX conformance cases, random models vs onnxruntime, masked steps, one loop
kernel per direction, and a Keras LSTM via tf2onnx (interpreter and compiled)."""
import importlib.util
import os
import re
import tarfile
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import runtime, targets
from edgec.compiler.build import compile_graph
from edgec.compiler.interp import interpret
from edgec.compiler.passes import run_passes, unroll_recurrent
from edgec.errors import EdgecError
from edgec.frontends.onnx import from_onnx

HERE = os.path.dirname(__file__)
_spec = importlib.util.spec_from_file_location("make_recurrent_models",
                                               os.path.join(HERE, "..", "examples", "make_recurrent_models.py"))
mk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mk)
RTOL, ATOL = 1e-4, 1e-5


def _cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [c for c in collect_testcases(None)
                if c.name.startswith(("test_lstm", "test_gru", "test_simple_rnn", "test_rnn_seq"))]


CASES = _cases()


def _compiled(graph, tmp_path, feed):
    out = str(tmp_path / "m.edgec")
    compile_graph(graph, targets.get("host"), out, progress=False)
    return runtime.load(out).run(feed)


def _run_at(out, feed, threads, monkeypatch):
    """Outputs of artifact OUT on each of THREADS pool sizes, the contention policy off (on a busy
    machine it would shrink the pool, and kernels with parallel steps run their serial form on one
    thread)."""
    from edgec.runtime.contention import configure
    monkeypatch.setenv("EDGEC_ADAPT_THREADS", "0")
    model = runtime.load(out)
    try:
        results = []
        for n in threads:
            configure(n)
            results.append(model.run(feed))
        return results
    finally:
        configure(os.cpu_count() or 1)


def _check(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)


def test_all_18_conformance_cases_collected():
    assert len(CASES) == 18


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_onnx_conformance(case, tmp_path):
    g = from_onnx(case.model)
    inputs, expected = case.data_sets[0]
    feed = {vi.name: a for vi, a in zip(case.model.graph.input, inputs)}
    _check([interpret(g, feed)[o] for o in g.outputs], expected)
    _check([interpret(run_passes(g), feed)[o] for o in g.outputs], expected)
    _check(_compiled(g, tmp_path, feed), expected)


def _ort(model, feed):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def _x(kw, seed=1):
    return np.random.default_rng(seed).standard_normal((kw["seq"], kw.get("batch", 1), kw["inp"])).astype(np.float32)


BIG = [  # realistic sizes, compiled: kept few so the suite stays fast
    dict(op="LSTM", seq=32, batch=4, inp=64, hidden=128, layers=2, direction="bidirectional"),
    dict(op="LSTM", seq=100, batch=1, inp=64, hidden=512),
    dict(op="GRU", seq=40, batch=4, inp=32, hidden=256, linear_before_reset=1),
    dict(op="GRU", seq=80, batch=1, inp=32, hidden=128, direction="bidirectional"),
]


@pytest.mark.parametrize("kw", BIG, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_random_models_match_onnxruntime(kw, tmp_path):
    model = mk.recurrent_model(**kw)
    feed = {"X": _x(kw)}
    _check(_compiled(from_onnx(model), tmp_path, feed), _ort(model, feed))


@pytest.mark.parametrize("kw", [dict(op="LSTM", direction="bidirectional", batch=3, hidden=48),
                                dict(op="GRU", batch=5, hidden=24),
                                dict(op="GRU", batch=5, hidden=32, linear_before_reset=1)],
                         ids=["bilstm-b3", "gru-lbr0-b5", "gru-lbr1-b5"])
def test_parallel_regions_and_batch_groups_match_onnxruntime(kw, tmp_path, monkeypatch):
    """The threaded paths (tiles of a step over the cores, directions on two threads), forced on
    for small nodes, with batch rows sharing weight loads in groups (on AVX2, GRU linear_before_reset
    hidden 32 with 5 rows: a group of 4 on 8-lane tiles and a rest of 1; the projection's 25 rows:
    groups of 4 and a rest of 1)."""
    from edgec.compiler.lower import recurrent
    monkeypatch.setattr(recurrent, "PARALLEL_STEP_MACS", 0)
    kw = dict(seq=5, inp=7, scale=1.0, **kw)
    model = mk.recurrent_model(**kw)
    feed = {"X": _x(kw)}
    expected = _ort(model, feed)
    out = str(tmp_path / "m.edgec")
    compile_graph(from_onnx(model), targets.get("host"), out, progress=False)
    for got in _run_at(out, feed, (2, 1), monkeypatch):  # parallel steps, then their serial form
        _check(got, expected)
    with tarfile.open(out) as t:  # the kernel picks its form from the pool's thread count when called
        lib = t.extractfile("model.so").read()
    assert b"runtime.NumThreads" in lib and b"TVMBackendParallelBarrier" in lib
    monkeypatch.setattr(recurrent, "PARALLEL_STEP_MACS", 1 << 62)
    monkeypatch.setattr(recurrent, "PARALLEL_DIRECTION_MACS", 0)
    _check(_compiled(from_onnx(model), tmp_path, feed), _ort(model, feed))


ATTR_MODELS = [  # small, numpy interpreter and compiled
    dict(op="LSTM", clip=0.5, input_forget=1, activations=["HardSigmoid", "Elu", "Softsign"] * 2,
         activation_alpha=[0.3, 0.7, 0.25, 0.9], activation_beta=[0.4, 0.45], direction="bidirectional"),
    dict(op="GRU", activations=["Sigmoid", "Softplus"], clip=2.0),
    dict(op="GRU", direction="reverse", linear_before_reset=1, activations=["HardSigmoid", "LeakyRelu"],
         activation_alpha=[0.15, 0.05], activation_beta=[0.55]),
    dict(op="RNN", activations=["Relu"]),
    dict(op="RNN", activations=["ThresholdedRelu"], activation_alpha=[0.1]),
]


@pytest.mark.parametrize("kw", ATTR_MODELS, ids=lambda k: f"{k['op']}-{'-'.join(k.get('activations', []))}")
def test_attributes_match_onnxruntime(kw, tmp_path):
    kw = dict(seq=6, batch=3, inp=5, hidden=16, scale=1.0, **kw)
    model = mk.recurrent_model(**kw)
    feed = {"X": _x(kw)}
    expected = _ort(model, feed)
    g = from_onnx(model)
    _check([interpret(g, feed)[o] for o in g.outputs], expected)
    _check(_compiled(g, tmp_path, feed), expected)


def _masked_model(op, direction, seq, batch, hidden=16, inp=5, peephole=False):
    rng = np.random.default_rng(3)
    dirs, g = (2 if direction == "bidirectional" else 1), mk.GATES[op]
    inits = [numpy_helper.from_array(rng.uniform(-0.5, 0.5, s).astype(np.float32), n) for n, s in
             (("W", (dirs, g * hidden, inp)), ("R", (dirs, g * hidden, hidden)), ("B", (dirs, 2 * g * hidden)),
              ("h0", (dirs, batch, hidden)))]
    ins = ["X", "W", "R", "B", "lens", "h0"]
    outs = ["Y", "Y_h"]
    if op == "LSTM":
        inits += [numpy_helper.from_array(rng.uniform(-0.5, 0.5, s).astype(np.float32), n)
                  for n, s in (("c0", (dirs, batch, hidden)), ("P", (dirs, 3 * hidden)))]
        ins += ["c0", "P"] if peephole else ["c0"]
        outs.append("Y_c")
    node = helper.make_node(op, ins, outs, hidden_size=hidden, direction=direction)
    graph = helper.make_graph([node], "masked", [
        helper.make_tensor_value_info("X", TensorProto.FLOAT, [seq, batch, inp]),
        helper.make_tensor_value_info("lens", TensorProto.INT32, [batch])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


@pytest.mark.parametrize("op,direction", [("LSTM", "bidirectional"), ("GRU", "reverse"), ("RNN", "forward")])
def test_sequence_lens_masks_steps_like_onnxruntime(op, direction, tmp_path):
    seq, batch = 7, 4
    model = _masked_model(op, direction, seq, batch, peephole=True)
    feed = {"X": _x(dict(seq=seq, batch=batch, inp=5)), "lens": np.array([7, 3, 1, 5], np.int32)}
    expected = _ort(model, feed)
    g = from_onnx(model)
    _check([interpret(g, feed)[o] for o in g.outputs], expected)
    _check(_compiled(g, tmp_path, feed), expected)


@pytest.mark.parametrize("op,direction", [("LSTM", "bidirectional"), ("GRU", "reverse"), ("RNN", "forward")])
def test_gate_math_after_all_tiles_matches_onnxruntime(op, direction, tmp_path, monkeypatch):
    """Steps of a multi-row group with the gate math right after each tile's GEMV and with it in a
    loop of its own after the tiles (forced on for a small hidden size): serial steps, and parallel
    steps in chunks (the LSTM, hidden 48: 6 tiles of 8 lanes, gate math on 16 lanes, 2 tiles a chunk), with
    masked steps, peepholes, initial states and GRU's two passes (linear_before_reset=0)."""
    from edgec.compiler.lower import recurrent
    model = _masked_model(op, direction, seq=6, batch=3, hidden=48, peephole=True)
    feed = {"X": _x(dict(seq=6, batch=3, inp=5)), "lens": np.array([6, 2, 4], np.int32)}
    expected = _ort(model, feed)
    for min_tiles, step_macs in ((1, 1 << 62), (1 << 30, 1 << 62), (1, 0)):
        monkeypatch.setattr(recurrent, "SPLIT_MIN_TILES", min_tiles)
        monkeypatch.setattr(recurrent, "PARALLEL_STEP_MACS", step_macs)
        out = str(tmp_path / f"m{min_tiles}_{step_macs}.edgec")
        compile_graph(from_onnx(model), targets.get("x86-avx2"), out, progress=False)
        for got in _run_at(out, feed, (3, 2, 1), monkeypatch):  # 3 chunks: 1 or 2 a thread, serial
            _check(got, expected)


@pytest.mark.parametrize("seq", [1, 100])
def test_one_loop_kernel_with_packed_weights(seq):
    g = run_passes(from_onnx(mk.recurrent_model(op="LSTM", seq=seq, inp=8, hidden=48, direction="bidirectional")),
                   preset=targets.get("x86-avx512"))
    loops = [n for n in g.nodes if n.op == "lstm_loop"]
    assert len(loops) == 1 and loops[0].attrs["seq"] == seq
    wp, rp = (g.values[loops[0].inputs[i]] for i in (1, 5))
    assert wp.shape == (2, 3, 8, 4, 16) and rp.shape == (2, 3, 48, 4, 16)  # tiles of 16 (32 does not divide 48)
    assert unroll_recurrent.tile_lanes(128, targets.get("x86-avx512")) == 32
    assert unroll_recurrent.tile_lanes(128, targets.get("x86-avx2")) == 16
    assert loops[0].attrs["project_rows"] == min(seq, 5)  # 5 x 4 accumulators, 5 broadcasts, 3 weights: 28 zmm
    assert loops[0].attrs["step_rows"] == [1]


@pytest.mark.parametrize("peepholes", [0.0, 0.3])
def test_zero_peepholes_are_dropped_from_the_loop_kernel(peepholes, tmp_path):
    """An LSTM whose P is all zero (ONNX's default, here given explicitly) runs its loop kernel without
    P (no peephole loads and multiply-adds per unit and step); nonzero peepholes stay. Both match
    onnxruntime, compiled for the host and AVX2."""
    model = mk.recurrent_model(op="LSTM", seq=6, batch=2, inp=8, hidden=24)
    p = np.random.default_rng(3).uniform(-peepholes, peepholes, (1, 72)).astype(np.float32)
    model.graph.initializer.append(numpy_helper.from_array(p, "P"))
    model.graph.node[0].input.extend(["", "", "", "P"])  # sequence_lens, initial_h, initial_c absent
    g = run_passes(from_onnx(model), preset=targets.get("x86-avx2"))
    loop = next(n for n in g.nodes if n.op == "lstm_loop")
    assert len(loop.inputs) == (7 if peepholes else 6)  # X, WP, bias, h0, c0, RP (, P)
    feed = {"X": _x(dict(seq=6, batch=2, inp=8))}
    expected = _ort(model, feed)
    for target in ("host", "x86-avx2"):
        out = str(tmp_path / f"{target}.edgec")
        compile_graph(from_onnx(model), targets.get(target), out, progress=False)
        _check(runtime.load(out).run(feed), expected)


def test_batch_rows_share_weight_loads_at_the_packed_tile_width():
    """AVX2, batch 3 LSTM: the step's tile is 3 rows x 4 gates x 1 vector (12 of 16 ymm), and RP is
    packed at that width (8 lanes), so the tile streams whole cache lines of RP once per step
    (packed at 16 lanes, each tile read half of every line and the next tile the other half)."""
    g = run_passes(from_onnx(mk.recurrent_model(op="LSTM", seq=5, batch=3, inp=8, hidden=64)),
                   preset=targets.get("x86-avx2"))
    loop = next(n for n in g.nodes if n.op == "lstm_loop")
    wp, rp = (g.values[loop.inputs[i]] for i in (1, 5))
    assert rp.shape == (1, 8, 64, 4, 8) and loop.attrs["step_rows"] == [3]
    assert wp.shape == (1, 8, 8, 4, 8) and loop.attrs["project_rows"] == 3
    gru = run_passes(from_onnx(mk.recurrent_model(op="GRU", seq=5, batch=5, inp=8, hidden=32)),
                     preset=targets.get("x86-avx2"))
    loop = next(n for n in gru.nodes if n.op == "gru_loop")
    assert loop.attrs["step_rows"] == [5, 5]  # z, r*h (2 gates x 5 rows); then the h gate
    assert gru.values[loop.inputs[4]].shape[4] == 8


@pytest.mark.parametrize("op, direction, batch", [("LSTM", "bidirectional", 1), ("GRU", "forward", 3)])
def test_cuda_weights_are_unit_minor(op, direction, batch, tmp_path):
    """On CUDA a thread computes one hidden unit: WP and RP are one tile of every unit, unit-minor
    ([D, 1, K, G, H]), so a warp's 32 threads read 32 consecutive weights at each k (packed a tile
    per unit, they read floats K*G apart: an H200 ran lstm_s100_h512 in 54 ms, coalesced 6.8 ms).
    The packed graph still computes the node (interpreter before and after every pass), and the
    CUDA source indexes the weights by the thread, never by a stride times the thread."""
    hidden = 48
    model = mk.recurrent_model(op=op, seq=7, batch=batch, inp=8, hidden=hidden, direction=direction)
    g = run_passes(from_onnx(model), preset=targets.get("cuda-sm90"), check=True)
    loop = next(n for n in g.nodes if n.op.endswith("_loop"))
    gates, dirs = {"LSTM": 4, "GRU": 3}[op], 2 if direction == "bidirectional" else 1
    wp, rp = g.values[loop.inputs[1]], g.values[loop.inputs[5 if op == "LSTM" else 4]]
    assert wp.shape == (dirs, 1, 8, gates, hidden) and rp.shape == (dirs, 1, hidden, gates, hidden)
    preset = targets.get("cuda-sm90")
    if preset.missing_tools():
        pytest.skip(f"cuda-sm90 needs {preset.missing_tools()} (CI has nvcc)")
    compile_graph(from_onnx(model), preset, str(tmp_path / "m.edgec"), progress=False)
    with tarfile.open(tmp_path / "m.edgec") as t:
        source = t.extractfile("kernels.cu").read().decode()
    # every weight read is `(k * G*H) + threadIdx.x (+ g*H)`; a unit-major layout has `threadIdx.x * stride`
    assert re.search(rf"\(v\w* \* {gates * hidden}\) \+ \(\(int\)threadIdx\.x\)", source)
    assert not re.search(r"\(\(int\)threadIdx\.x\) \* \d+", source)


def test_bad_sequence_lens_and_activation_are_clear_errors():
    model = _masked_model("RNN", "forward", 5, 2)
    model.graph.input.pop()
    model.graph.initializer.append(numpy_helper.from_array(np.array([6, 2], np.int32), "lens"))
    with pytest.raises(EdgecError, match="RNN node .*sequence_lens"):
        from_onnx(model)
    bad = mk.recurrent_model(op="RNN", seq=3, inp=4, hidden=4, activations=["Gelu"])
    with pytest.raises(EdgecError, match="activation 'gelu'"):
        from_onnx(bad)


@pytest.mark.keras
def test_keras_lstm_via_tf2onnx_matches_predict(tmp_path):
    try:
        import keras
        import tf2onnx  # noqa: F401
    except ImportError as e:
        pytest.skip(f"needs TensorFlow, Keras and tf2onnx (the keras extra): {e}")
    import subprocess
    import sys
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20, 8)), keras.layers.LSTM(32, return_sequences=True),
                              keras.layers.LSTM(16)])
    x = np.random.default_rng(0).standard_normal((2, 20, 8)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    path = tmp_path / "m.onnx"
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(tmp_path / "sm"), "--opset", "17",
                    "--output", str(path)], check=True, capture_output=True)
    onnx_model = onnx.load(str(path))
    assert sum(n.op_type == "LSTM" for n in onnx_model.graph.node) == 2
    name = onnx_model.graph.input[0].name
    g = from_onnx(onnx_model, input_shapes={name: x.shape})
    np.testing.assert_allclose(interpret(g, {name: x})[g.outputs[0]], expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(_compiled(g, tmp_path, {name: x})[0], expected, rtol=RTOL, atol=ATOL)


def test_kernel_exp_tanh_sigmoid_match_float64_numpy():
    """The recurrent kernels' vectorized float32 exp/tanh (TirMath) against float64 numpy."""
    import tvm
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    from edgec.compiler.lower.recurrent import TirMath
    from edgec.compiler.ops.recurrent import activate
    x = np.concatenate([np.linspace(-100, 100, 4001), np.linspace(-0.2, 0.2, 4001), [0.125, -0.125, 1e-30]])
    x = x[:len(x) // 16 * 16].astype(np.float32)
    fns = {"exp": TirMath.exp, "tanh": TirMath.tanh,
           "sigmoid": lambda v: activate(TirMath, ["sigmoid", 0, 0], v)}
    want = {"exp": np.exp(np.minimum(x.astype(np.float64), 88)), "tanh": np.tanh(x.astype(np.float64)),
            "sigmoid": 1 / (1 + np.exp(-x.astype(np.float64)))}
    for name, fn in fns.items():
        with IRBuilder() as ib:
            with T.prim_func():
                T.func_name("main")
                a = T.match_buffer(T.arg("a", T.handle()), (len(x),), "float32")
                b = T.match_buffer(T.arg("b", T.handle()), (len(x),), "float32")
                with T.serial(0, len(x) // 16) as i:
                    with T.vectorized(0, 16) as j:
                        T.buffer_store(b, fn(a[i * 16 + j]), [i * 16 + j])
        lib = tvm.compile(tvm.IRModule({"main": ib.get()}), target=tvm.target.Target({"kind": "llvm"}))
        out = tvm.runtime.tensor(np.zeros_like(x), tvm.cpu())
        lib["main"](tvm.runtime.tensor(x, tvm.cpu()), out)
        got = out.numpy().astype(np.float64)
        w = want[name]
        keep = (x > -87) if name == "exp" else np.ones(len(x), bool)  # exp clamps below -87 (~1e-38)
        np.testing.assert_allclose(got[keep], w[keep], rtol=4e-7, atol=1e-30 if name == "exp" else 6e-8,
                                   err_msg=name)


@pytest.mark.parametrize("target,objdump", [("x86-avx2", "objdump"), ("x86-avx512", "objdump"),
                                            ("rpi4", "aarch64-linux-gnu-objdump")])
def test_recurrent_register_tiles_do_not_spill(target, objdump, tmp_path):
    """The GEMV loops of the projection and the steps (LSTM and GRU, batch 2, rows that do not divide
    the groups: 14 projection rows) keep their accumulators in vector registers: no stack traffic.
    The loops over a group's rows (their sigmoid/tanh divide) read the accumulators staged on the stack."""
    import shutil
    import sys
    sys.path.insert(0, HERE)
    from disasm import innermost_fma_loops, library, stack_accesses, vector_fmas
    if not shutil.which(objdump):
        pytest.skip(f"needs {objdump} to read the {target} library")
    for op in ("LSTM", "GRU"):
        out = str(tmp_path / f"{op}.edgec")
        compile_graph(from_onnx(mk.recurrent_model(op=op, seq=7, batch=2, inp=24, hidden=64)), targets.get(target),
                      out, progress=False)
        loops = innermost_fma_loops(library(out, tmp_path), objdump)
        loops = [body for body in loops if not any(o in ("vdivps", "fdiv") for o, _ in body)]
        assert loops and all(vector_fmas(body) for body in loops), op
        assert [stack_accesses(body) for body in loops if stack_accesses(body)] == [], op
