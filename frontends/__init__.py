"""Importers from model formats (keras/, onnx/) into the edgec IR."""
from ..errors import EdgecError


def run_converter(ctx, fn, *args):
    """FN(*ARGS), the converter of CTX's layer or node, with what it raises as one error naming it
    (ctx.error): an EdgecError from an IR-level check (e.g. a tensor too large), or the exception a
    converter's broken assumption raises on a malformed model. An error that already names the
    model passes through."""
    try:
        return fn(*args)
    except EdgecError as e:
        if str(e).startswith("model '"):
            raise
        raise ctx.error(str(e)) from None
    except (ValueError, IndexError, TypeError, KeyError, AttributeError, ArithmeticError) as e:
        raise ctx.error(f"cannot convert: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
