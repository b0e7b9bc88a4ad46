"""The innermost FMA loops of a compiled library, from `objdump -d` (x86-64 AT&T or aarch64).

A loop is a backward branch and the instructions from its target to it; the innermost FMA loops
are those that contain FMAs and no smaller such loop. Used to prove that a register tile fits:
no stack (spill) traffic inside the loop, and vector FMAs in it.
"""
import re
import subprocess
import tarfile

_LINE = re.compile(r"^\s*([0-9a-f]+):\s+((?:\{\w+\}\s+)?\S+)\s*(.*)$")  # mnemonic with an encoding prefix ({vex})
_TARGET = re.compile(r"\b([0-9a-f]+) <")
_BRANCH = re.compile(r"^(j[a-z]+|b|b\.[a-z]+|cbn?z|tbn?z)$")
_FMA = re.compile(r"^(vfn?m(add|sub)\d+ps|fmla)$")


def library(artifact, tmp_path):
    with tarfile.open(artifact) as t:
        t.extract("model.so", tmp_path)
    return tmp_path / "model.so"


def innermost_fma_loops(lib, objdump="objdump", enclosing=False):
    """[[(mnemonic, operands), ...] per innermost FMA loop] of the library LIB (ENCLOSING: per
    smallest loop around one, e.g. a GEMM's register tile around its reduction)."""
    asm = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                         check=True).stdout
    ins = []
    for line in asm.splitlines():
        m = _LINE.match(line)
        if m:
            ins.append((int(m[1], 16), m[2], m[3]))
    loops = []
    for addr, op, args in ins:
        target = _TARGET.search(args) if _BRANCH.match(op) else None
        if target and int(target[1], 16) < addr:
            body = [(o, a) for x, o, a in ins if int(target[1], 16) <= x <= addr]
            if any(_FMA.match(o) for o, _ in body):
                loops.append((int(target[1], 16), addr, body))
    inner = [(lo, hi, body) for lo, hi, body in loops
             if not any((lo, hi) != (l2, h2) and lo <= l2 and h2 <= hi for l2, h2, _ in loops)]
    if not enclosing:
        return [body for _, _, body in inner]
    bodies = {(lo, hi): body for lo, hi, body in loops}
    around = {min(((l2, h2) for l2, h2 in bodies if l2 <= lo and hi <= h2 and (l2, h2) != (lo, hi)),
                  key=lambda x: x[1] - x[0], default=None) for lo, hi, _ in inner} - {None}
    return [bodies[k] for k in sorted(around)]


def stack_accesses(body):
    """Instructions of BODY that load or store through the stack pointer (spills)."""
    return [(o, a) for o, a in body if "(%rsp)" in a or "[sp" in a]


def vector_stores(body):
    """x86 vector stores of BODY (a register tile's reduction loop stores nothing: a store there is
    an accumulator kept in memory, a load-FMA-store chain per step)."""
    return [(o, a) for o, a in body if o.startswith("vmov") and ("%ymm" in a or "%zmm" in a)
            and a.rstrip().endswith(")")]


def vector_fmas(body):
    return [(o, a) for o, a in body if _FMA.match(o) and ("%ymm" in a or "%zmm" in a or ".4s" in a)]


def accumulators(body):
    """The vector registers BODY's FMAs accumulate into (x86 AT&T: the last operand; aarch64: the
    first): a register tile's size, as the code holds it."""
    regs = set()
    for o, a in vector_fmas(body):
        ops = [x.strip() for x in a.split(",")]
        regs.add(ops[-1] if "%" in a else ops[0])
    return regs
