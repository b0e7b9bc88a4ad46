"""Gemm and MatMul (a constant 2-D B -> dense with an (N, K) weight, else matmul)."""
import numpy as np

from .registry import converter


@converter("Gemm")
def gemm(ctx):
    ctx.ignore("broadcast")  # opset < 7: C broadcasts anyway
    a, b = ctx.input(0), ctx.input(1)
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    dt = ctx.dtype(a)
    if not dt.startswith("float"):
        raise ctx.unsupported(f"input dtype {dt} is not supported (floats only)")
    if len(ctx.shape(a)) != 2 or len(ctx.shape(b)) != 2:
        raise ctx.error(f"Gemm wants 2-D A and B, got {list(ctx.shape(a))} and {list(ctx.shape(b))}")
    if int(ctx.attr("transA", 0)):
        a = ctx.add1("transpose", [a], {"perm": [1, 0]})
    trans_b = bool(int(ctx.attr("transB", 0)))
    m = ctx.shape(a)[0]
    n = ctx.shape(b)[0 if trans_b else 1]
    c = ctx.input(2) if ctx.has_input(2) and beta != 0 else None

    def scaled(name, factor):
        return name if factor == 1.0 else ctx.add1("mul", [name, ctx.add_const(np.asarray(factor, dt))])

    if ctx.is_const(b):
        w = b if trans_b else ctx.add1("transpose", [b], {"perm": [1, 0]})  # (N, K), folds
        w = scaled(w, alpha)
        ins = [a, w]
        if c is not None and ctx.is_const(c):
            cv = ctx.const(c)
            if cv.size == 1 or cv.shape in ((n,), (1, n)):  # a per-output bias
                ins.append(ctx.add_const(np.broadcast_to(cv.reshape(-1) * np.asarray(beta, dt), (n,))
                                         .astype(dt)))
                c = None
        y = ctx.add1("dense", ins)
    else:
        bt = ctx.add1("transpose", [b], {"perm": [1, 0]}) if trans_b else b
        y = scaled(ctx.add1("matmul", [a, bt]), alpha)
    if c is not None:
        y = ctx.add1("add", [y, scaled(c, beta)])
    if ctx.shape(y) != (m, n):
        raise ctx.error(f"C of shape {list(ctx.shape(ctx.input(2)))} does not broadcast to {[m, n]}")
    return [y]


@converter("MatMul")
def matmul(ctx):
    a, b = ctx.input(0), ctx.input(1)
    if ctx.dtype(a) != ctx.dtype(b):
        raise ctx.error(f"operand dtypes differ: {ctx.dtype(a)} and {ctx.dtype(b)}")
    if ctx.is_const(b) and len(ctx.shape(a)) == 2 and len(ctx.shape(b)) == 2 and ctx.dtype(a).startswith("float"):
        # a constant (K, N) B: dense with its (N, K) transpose, as Gemm's, so the weight is packed in
        # panels per block of outputs and the blocks run in parallel (MatMul's loops split only the
        # rows: a batch-1 classifier, MobileNetV2's 1280->1000 and its 5 MB, ran on one thread)
        return [ctx.add1("dense", [a, ctx.add1("transpose", [b], {"perm": [1, 0]})])]
    return [ctx.add1("matmul", [a, b])]
