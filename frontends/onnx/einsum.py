"""Einsum, as transposes, reshapes, reduce_sum and (batched) matmul.

Operands are contracted left to right; each step keeps the letters that the output or a later
operand still needs. A letter repeated inside one operand (a diagonal) is not supported.
"""
import numpy as np

from .registry import converter


def parse(ctx, equation, ranks):
    """Per operand its letters, and the output's letters; '...' becomes digits aligned right."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ctx.error(f"equation {equation!r} names {len(terms)} operands, the node has {len(ranks)}")
    ell = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t), default=0)
    dots = "".join(str(i) for i in range(ell))

    def expand(term, rank):
        if "..." not in term:
            return term
        k = rank - len(term.replace("...", ""))
        return term.replace("...", dots[ell - k:])
    ins = [expand(t, r) for t, r in zip(terms, ranks)]
    for t, r in zip(ins, ranks):
        if len(t) != r:
            raise ctx.error(f"equation {equation!r}: term {t!r} does not match an operand of rank {r}")
        if len(set(t)) != len(t):
            raise ctx.unsupported(f"equation {equation!r}: a repeated index in one operand (diagonal) is not supported")
    if arrow:
        out = rhs.replace("...", dots)
    else:  # implicit output: the broadcast dims, then the letters used once, alphabetically
        counts = "".join(ins)
        out = dots + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and not c.isdigit()))
    return ins, out


@converter("Einsum")
def einsum(ctx):
    names = [ctx.input(i) for i in range(len(ctx.inputs))]
    ins, out = parse(ctx, ctx.attr("equation"), [len(ctx.shape(n)) for n in names])
    x, letters = _reduce(ctx, names[0], ins[0], set(out) | set("".join(ins[1:])))
    for k in range(1, len(names)):
        keep = set(out) | set("".join(ins[k + 1:]))
        y, yl = _reduce(ctx, names[k], ins[k], keep | set(letters))
        x, letters = _contract(ctx, x, letters, y, yl, keep)
    x, letters = _reduce(ctx, x, letters, set(out))
    if set(letters) != set(out):
        raise ctx.error(f"output letters {out!r} are not all in the operands")
    return [_transpose(ctx, x, letters, out)]


def _reduce(ctx, x, letters, keep):
    drop = [i for i, c in enumerate(letters) if c not in keep]
    if not drop:
        return x, letters
    return (ctx.add1("reduce_sum", [x], {"axes": drop, "keepdims": False}),
            "".join(c for c in letters if c in keep))


def _transpose(ctx, x, letters, order):
    perm = [letters.index(c) for c in order]
    return x if perm == sorted(perm) else ctx.add1("transpose", [x], {"perm": perm})


def _contract(ctx, a, al, b, bl, keep):
    sa, sb = dict(zip(al, ctx.shape(a))), dict(zip(bl, ctx.shape(b)))
    batch = [c for c in al if c in bl and c in keep]
    inner = [c for c in al if c in bl and c not in keep]
    left = [c for c in al if c not in bl]
    right = [c for c in bl if c not in al]

    def size(s, cs):
        return int(np.prod([s[c] for c in cs]))
    a = ctx.reshape(_transpose(ctx, a, al, batch + left + inner),
                    [sa[c] for c in batch] + [size(sa, left), size(sa, inner)])
    b = ctx.reshape(_transpose(ctx, b, bl, batch + inner + right),
                    [sb[c] for c in batch] + [size(sb, inner), size(sb, right)])
    y = ctx.add1("matmul", [a, b])
    bshape = list(ctx.shape(y)[:len(batch)])
    y = ctx.reshape(y, bshape + [sa[c] for c in left] + [sb[c] for c in right])
    return y, "".join(batch + left + right)
