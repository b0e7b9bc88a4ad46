"""float32 exp, expm1, sigmoid and tanh as TIR expressions that vectorize: a polynomial exp instead
of the `exp` / `tanh` intrinsics, which LLVM turns into a scalar libm call per lane (x86 and aarch64
alike: no vector math library is linked). Used by the elementwise ops (compiler/lower/elementwise.py) and
the recurrent kernels' gate math (compiler/lower/recurrent.py).

Every function takes BIND: how a value used more than once is named, so that the expression stays
DAG-sized instead of growing into a tree: in hand-written TIR `T.bind` (a let statement); in a TE
compute `expression(fn, x)` binds them as Let expressions (these survive compute_inline into a
consumer that reads the value twice, and vectorize).

Accuracy: relative error below 2.5e-7 over the clamped range (|x| <= 87; see exp_parts); outside
it sigmoid and tanh are within that of 0, 1 and +-1. A NaN stays NaN.
"""
import math

from tvm import te, tirx


def f32(v):
    return tirx.const(float(v), "float32")


def expression(fn, x):
    """FN(X, bind) as one TIR expression, the values it binds as Let expressions around it."""
    binds = []

    def bind(value):
        var = tirx.Var(f"v{len(binds)}", value.ty)
        binds.append((var, value))
        return var
    out = fn(x, bind)
    for var, value in reversed(binds):
        out = tirx.Let(var, value, out)
    return out


def exp_parts(x, scale, bind, precise=True):
    """(s, q) with e^(SCALE*x) = s + s*q: SCALE*x = n ln2 + r, |r| <= ln2/2, s = 2^n, q = e^r - 1 by
    its Taylor series r(1 + r/2 + ... + r^6/7!) (truncation 2e-9 relative, no cancellation near
    0); SCALE*x clamped to [-87, 88], the range where 2^n is a normal float32 (min and max keep a
    NaN: TVM's max(a, b) is `a > b ? a : b`, the constant first). SCALE (1 or -1) is folded into the
    constants, which saves the negation: r = SCALE*u with u = x - n ln2 / SCALE, the series' k-th
    coefficient times SCALE^k. PRECISE: ln2 in two parts (n*hi is exact); else float32 ln2 in one
    multiply-add, 1.9e-9 off: |n| * 1.9e-9 relative error, at most 2.4e-7 and below 5e-8 for
    |SCALE*x| < 17, beyond which sigmoid and tanh saturate."""
    lo, hi = sorted((-87.0 / scale, 88.0 / scale))
    x = bind(te.max(f32(lo), te.min(f32(hi), x)))
    n = bind(te.floor(x * f32(scale / math.log(2)) + f32(0.5)))
    if precise:
        u = bind(x - n * f32(0.693359375 / scale) - n * f32(-2.12194440e-4 / scale))
    else:
        u = bind(x - n * f32(math.log(2) / scale))
    p = f32(scale ** 7 / math.factorial(7))
    for k in range(6, 0, -1):
        p = p * u + f32(scale ** k / math.factorial(k))
    s = bind(tirx.reinterpret("float32", tirx.shift_left(n.astype("int32") + 127, 23)))
    return s, p * u


def exp(x, bind):
    """e^x for x <= 88 (above it the clamp holds it at e^88: for bounded arguments; the `exp` op
    itself keeps the libm call and its overflow to +inf)."""
    s, q = exp_parts(x, 1, bind)
    return s * q + s


def expm1(x, bind):
    """e^x - 1 = s*q + (s - 1), accurate near 0 (no cancellation), for x <= 88 (elu, selu)."""
    s, q = exp_parts(x, 1, bind)
    return s * q + (s - f32(1))


def sigmoid(x, bind):
    """1 / (1 + e^-x) = 1 / (s*q + (s + 1)) with e^-x's parts."""
    s, q = exp_parts(x, -1, bind, precise=False)
    return f32(1) / (s * q + (s + f32(1)))


def tanh(x, bind):
    """tanh(x) = m / (-2 - m) with m = e^(-2x) - 1 = s*q + (s - 1) (see exp_parts; 2x is exact): one
    exp-like evaluation and a division, accurate near 0 (m = q there) without a series of its own.
    Sigmoid's scale, so the two share their constants: LLVM keeps the recurrent kernels' constants
    in registers on rpi4 (32 vector registers), and variants with more of them (rounding n by adding
    1.5 * 2^23, a shorter fitted series) spilled a GRU GEMV's accumulators there."""
    s, q = exp_parts(f32(2) * x, -1, bind, precise=False)
    m = bind(s * q + (s - f32(1)))
    return m / (f32(-2) - m)
