"""Constant, ConstantOfShape, Shape, Size, Identity, Dropout, Cast, CastLike."""
import numpy as np

from ...compiler.ir import MAX_FOLD_BYTES, check_shape, fold_bytes

from .importer import DTYPES, dtype_name
from .registry import converter
from .shape import _ints


@converter("Constant")
def constant(ctx):
    forms = {"value": None, "value_float": "float32", "value_floats": "float32",
             "value_int": "int64", "value_ints": "int64"}
    given = [a for a in ctx._attrs if a.startswith("value") or a == "sparse_value"]
    if len(given) != 1:
        raise ctx.error(f"needs exactly one value attribute, got {given}")
    form = given[0]
    if form not in forms:
        raise ctx.unsupported(f"attribute '{form}' is not supported")
    v = ctx.attr(form)
    arr = np.asarray(v) if form == "value" else np.asarray(v, forms[form])
    return [ctx.add_const(arr, ctx.imp.hint(ctx.name))]


@converter("ConstantOfShape")
def constant_of_shape(ctx):
    shape = _ints(ctx, ctx.const(0, "shape"), "shape")
    v = ctx.attr("value")
    v = np.zeros(1, "float32") if v is None else np.asarray(v)
    if v.size != 1:
        raise ctx.error(f"value must hold one element, it holds {v.size}")
    check_shape(shape, f"{ctx.where()}: the constant")
    if fold_bytes(shape, v.dtype) > MAX_FOLD_BYTES:
        raise ctx.error(f"the constant of shape {list(shape)} is larger than edgec builds at compile time "
                        f"({MAX_FOLD_BYTES >> 20} MiB)")
    return [ctx.add_const(np.full(shape, v.reshape(-1)[0], v.dtype), ctx.imp.hint(ctx.name))]


@converter("Shape")
def shape(ctx):
    s = list(ctx.shape(0))
    r = len(s)

    def clamp(i):
        i = i + r if i < 0 else i
        return min(max(i, 0), r)
    start, end = clamp(int(ctx.attr("start", 0))), ctx.attr("end")
    end = r if end is None else clamp(int(end))
    return [ctx.add_const(np.asarray(s[start:end], "int64"), ctx.imp.hint(ctx.name))]


@converter("Size")
def size(ctx):
    return [ctx.add_const(np.asarray(int(np.prod(ctx.shape(0))), "int64"), ctx.imp.hint(ctx.name))]


@converter("Identity")
def identity(ctx):
    return [ctx.input(0)]


@converter("Dropout")
def dropout(ctx):
    """Inference: Y = X; the optional mask output is all true."""
    ctx.ignore("seed", "ratio", "consumed_inputs")
    if ctx.opset < 7 and not int(ctx.attr("is_test", 0)):
        raise ctx.unsupported("is_test=0 (training) is not supported")
    ctx.ignore("is_test")
    if ctx.opset >= 12 and ctx.has_input(2):
        training = ctx.const(2, "training_mode")
        if bool(np.asarray(training).reshape(-1)[0]):
            raise ctx.unsupported("training_mode=true is not supported (inference only)")
    x = ctx.input(0)
    outs = [x]
    if len(ctx.outputs) > 1 and ctx.outputs[1]:
        outs.append(ctx.add_const(np.ones(ctx.shape(x), "bool"), "mask"))
    return outs


def _to_dtype(ctx, elem_type):
    if elem_type not in DTYPES:
        raise ctx.unsupported(f"element type {dtype_name(elem_type)} is not supported")
    return DTYPES[elem_type]


@converter("Cast")
def cast(ctx):
    ctx.ignore("saturate", "round_mode")  # only matter for float8 / float4 targets, refused below
    x = ctx.input(0)
    to = ctx.attr("to")
    dt = _to_dtype(ctx, to) if isinstance(to, int) else str(to).lower()
    return [ctx.add1("cast", [x], {"dtype": dt}) if ctx.dtype(x) != dt else
            ctx.add1("reshape", [x], {"shape": list(ctx.shape(x))})]


@converter("CastLike")
def cast_like(ctx):
    ctx.ignore("saturate", "round_mode")
    x, dt = ctx.input(0), ctx.dtype(1)
    return [ctx.add1("cast", [x], {"dtype": dt}) if ctx.dtype(x) != dt else
            ctx.add1("reshape", [x], {"shape": list(ctx.shape(x))})]
