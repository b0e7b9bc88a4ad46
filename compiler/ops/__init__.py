"""The op registry: every IR op has a shape/dtype rule and a numpy reference.

An op is declared once with `defop(name, kind, infer)` on its numpy reference:

    @defop("relu", "elementwise", same_as_input)
    def relu(attrs, x):
        return np.maximum(x, 0)

`infer(attrs, *values)` returns (shape, dtype) or a list of them; it raises ShapeError on bad
input, which the registry turns into a ModelError naming the node. `reference(attrs, *arrays)`
returns an array or a tuple of arrays. `kind` is the op's family (conv2d, dense, pool,
elementwise, reduce, layout, recurrent): fusion and target schedules key on it.
`flops(attrs, in_values, out_values)` (optional) counts floating-point operations.
"""
from dataclasses import dataclass
from typing import Callable, Optional

from ...errors import ModelError, UnsupportedError


class ShapeError(ValueError):
    """Raised by a shape rule; the registry adds the node's name and op."""


@dataclass
class OpDef:
    name: str
    kind: str
    infer_fn: Callable
    reference: Callable
    flops_fn: Optional[Callable] = None

    def infer(self, node, in_values):
        try:
            out = self.infer_fn(node.attrs, *in_values)
        except ShapeError as e:
            raise ModelError(f"{self.name} node '{node.name}'"
                             f"{' (' + ', '.join(node.source) + ')' if node.source else ''}: {e}") from None
        return [out] if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], str) else list(out)

    def run(self, node, arrays):
        out = self.reference(node.attrs, *arrays)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    def flops(self, node, in_values, out_values):
        return self.flops_fn(node.attrs, in_values, out_values) if self.flops_fn else 0


OPS: dict = {}


def defop(name, kind, infer, flops=None):
    def deco(reference):
        if name in OPS:
            raise RuntimeError(f"op {name} registered twice")
        OPS[name] = OpDef(name, kind, infer, reference, flops)
        return reference
    return deco


def get_op(name):
    try:
        return OPS[name]
    except KeyError:
        raise UnsupportedError(f"edgec IR has no op '{name}'") from None


def same_as_input(attrs, x, *rest):
    return x.shape, x.dtype


from . import elementwise, layer_norm, nn, packed, quant, recurrent, tensor, upsample, winograd  # noqa: E402,F401  (registers the ops)
