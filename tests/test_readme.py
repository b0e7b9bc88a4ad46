"""Every `edgec` command in README.md's shell blocks runs as written (a test per command).

Commands run in README order, in process (`cli.main`), in one folder that holds `examples/` (a link
to the repository's) and the files the placeholder commands name: `model.onnx` and `model.keras`
(the digits example), `calib.npz`, `input.npy`. Each must exit 0, or 1 where it verifies a
quantized model (a mismatch is its documented outcome). Those of the CLI tour run in the default
suite; the rest (bench, tune, packaging, CUDA, quantization...) are `slow`. Skipped, with the reason
printed: commands that need a device (`--remote`, ssh/scp), the Android NDK or a GPU, and lines
that are not edgec commands (make, pip, python setup lines).
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgec import cli

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


def readme_commands():
    """[(section, command line, its comment)] of the README's sh blocks; `a && b` stays one line."""
    text = (ROOT / "README.md").read_text()
    out = []
    for m in re.finditer(r"```(sh|bash)\n(.*?)```", text, re.S):
        section = re.findall(r"^## (.+)$", text[:m.start()], re.M)[-1]
        for raw in m.group(2).splitlines():
            line = re.sub(r"\s#.*$", "", raw).strip()
            if line:
                out.append((section, line, raw[len(raw.split(" #")[0]):]))
    return out


def skip_reason(line, section="", comment=""):
    if not line.startswith("edgec "):
        return "not an edgec command (setup, make, device shell)"
    if "--remote" in line or "pi.local" in line:
        return "needs a device (TVM RPC server)"
    if "android-arm64" in line and not os.environ.get("TVM_NDK_CC") and not os.environ.get("ANDROID_NDK_HOME"):
        return "needs the Android NDK"
    runs = line.split()[1] in ("run", "verify", "profile", "bench")
    if "GPU machine" in comment or ("CUDA" in section and runs) or ("--target cuda" in line and runs):
        return "needs a GPU"
    return None


def params():
    out = []
    for section, line, comment in readme_commands():
        marks = [] if section == "CLI tour" else [pytest.mark.slow]
        out.append(pytest.param(line, skip_reason(line, section, comment), marks=marks, id=line[:70]))
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    (d / "examples").symlink_to(EXAMPLES)
    shutil.copy(EXAMPLES / "digits_cnn.onnx", d / "model.onnx")
    shutil.copy(EXAMPLES / "digits_cnn.keras", d / "model.keras")
    with np.load(EXAMPLES / "digits_test.npz") as z:
        np.savez(d / "calib.npz", image=z["image"][:1])
        np.save(d / "input.npy", z["image"][:1])
    return d


@pytest.mark.parametrize("line, reason", params())
def test_readme_command_runs(line, reason, workdir, monkeypatch, capsys):
    if reason:
        print(f"skipped README command `{line}`: {reason}")
        pytest.skip(reason)
    monkeypatch.chdir(workdir)
    for command in line.split("&&"):
        command = re.sub(r"\[[^\]]*\]", "", command)  # a synopsis' [optional arguments]
        args = shlex.split(command)
        if args[1] == "tune" and "--trials" in args:  # the README's budget is a user's; 4 trials prove the command
            args[args.index("--trials") + 1] = "4"
        redirect = args.index(">") if ">" in args else None
        if redirect is not None:
            args, target = args[:redirect], args[redirect + 1]
        if args[1] == "keygen":  # the README makes the same key in two sections; keygen never overwrites
            Path(args[2]).unlink(missing_ok=True)
        if args[1] == "tune":  # MetaSchedule's worker pools and log handlers break pytest's capture
            out = subprocess.run([sys.executable, "-m", "edgec", *args[1:]], capture_output=True, text=True)
            code = out.returncode
        else:
            try:
                code = cli.main(args[1:])
            except SystemExit as e:  # argparse's --version and --help exit
                code = e.code
            out = capsys.readouterr()
        if redirect is not None:
            Path(target).write_text(out.out)
        allowed = (0, 1) if args[1] == "verify" and "int8" in command else (0,)
        assert code in allowed, f"`{command.strip()}` exited {code}:\n{out.out[-2000:]}\n{out.err[-2000:]}"
