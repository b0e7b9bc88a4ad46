"""Differential fuzzing of the CPU schedules: seeded random conv stacks (tests/conv_fuzz.py) compiled
for `host` and `x86-avx2`, run with 2 threads, against onnxruntime. Every case must match within
conv_fuzz.TOLERANCE, compile in time and not crash (a worker process per batch, tests/fuzz.py).

`make test` runs 16 seeds on host, 8 on x86-avx2 and 6 on rpi4 under qemu, and 4, 2 and 2 of the
large family (conv_fuzz.LARGE: real networks' channels and images, past the L2) (fixed seeds: a
failure reproduces); `pytest -m fuzz tests/test_fuzz_schedules.py` runs 600 and 300, and 400 and
200 large. It found: depthwise
convs with one output column and an epilogue (wrong values), a global pool after a generic-scheduled
conv (garbage), a padded pool fused after a conv of under 1 KB of output (wrong averages), 5x5
convs whose flat row of 1800 pixels took LLVM over 5 minutes, and six shapes whose kernel fell back
to the generic schedule (test_schedules.py holds a regression test for each).
"""
from collections import Counter

import pytest

import conv_fuzz
import fuzz

AVX2 = "avx2" in open("/proc/cpuinfo").read()


def _run(tmp_path, target, seeds):
    cases = [(s, target, s, target) for s in seeds]
    results = fuzz.run_cases(tmp_path, cases, compile_timeout=180.0, worker=conv_fuzz.__file__)
    counts = Counter(outcome for _, outcome, _ in results.values())
    print(f"\nconv stacks on {target}: {len(results)} seeds from {seeds[0]}: {dict(counts)}")
    bad = {s: r for s, r in results.items() if r[1] != "ok"}
    assert not bad, "\n".join(f"seed {s} ({target}): {o}: {d}" for s, (_, o, d) in sorted(bad.items())[:20])


LARGE = conv_fuzz.LARGE


@pytest.mark.parametrize("target,seeds", [("host", range(0, 16)), ("x86-avx2", range(5000, 5008)),
                                          ("host", range(LARGE, LARGE + 4)),
                                          ("x86-avx2", range(LARGE + 5000, LARGE + 5002))])
def test_conv_stacks_match_onnxruntime(tmp_path, target, seeds):
    if target == "x86-avx2" and not AVX2:
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    _run(tmp_path, target, list(seeds))


@pytest.mark.fuzz
@pytest.mark.parametrize("target,seeds", [("host", range(100, 700)), ("x86-avx2", range(6000, 6300)),
                                          ("host", range(LARGE + 100, LARGE + 500)),
                                          ("x86-avx2", range(LARGE + 6000, LARGE + 6200))])
def test_conv_stacks_match_onnxruntime_many(tmp_path, target, seeds):
    if target == "x86-avx2" and not AVX2:
        pytest.skip("this machine has no AVX2 to run x86-avx2 code")
    _run(tmp_path, target, list(seeds))


def test_the_fuzzer_finds_a_wrong_schedule(tmp_path):
    """The harness fails a case whose output is wrong: a worker whose tolerance is negative."""
    worker = tmp_path / "worker.py"
    worker.write_text(f"import sys; sys.path.insert(0, {str(conv_fuzz.__file__.rsplit('/', 1)[0])!r})\n"
                      "import conv_fuzz; conv_fuzz.TOLERANCE = -1.0\nconv_fuzz._worker(sys.argv[1])\n")
    results = fuzz.run_cases(tmp_path, [(0, "host", 0, "host")], compile_timeout=180.0, worker=str(worker))
    assert results[0][1] == "fail" and "error" in results[0][2], results


@pytest.mark.arm
@pytest.mark.parametrize("seed", [*range(9000, 9006), LARGE + 9000, LARGE + 9001])
def test_conv_stacks_match_onnxruntime_on_rpi4(tmp_path, seed):
    """The NEON schedules (rpi4 preset), emulated: the bundle's C++ runner under qemu."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    import arm_env
    from edgec import api
    arm_env.require_tools()
    m, desc = conv_fuzz.model(seed)
    path = str(tmp_path / "m.onnx")
    onnx.save(m, path)
    feed = conv_fuzz.inputs(m, seed)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    art = api.compile(path, "rpi4", str(tmp_path / "m.edgec"), progress=False)
    got = arm_env.run_artifact(art, [feed[i.name] for i in m.graph.input], tmp_path, 1)[0]
    err = np.abs(got - want).max() / (1 + np.abs(want).max())
    assert got.shape == want.shape and err <= conv_fuzz.TOLERANCE, f"error {err:.2e}: {' | '.join(desc)}"
