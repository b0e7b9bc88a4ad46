"""Conv (1-D and 2-D). 1-D convolutions become 2-D ones with H = 1."""
from .registry import converter


def spatial_pads(ctx, in_sizes, kernel, strides, dilations):
    """Explicit pads [begin..., end...] from `pads` / `auto_pad` (SAME_UPPER, SAME_LOWER, VALID)."""
    r = len(in_sizes)
    auto = ctx.attr("auto_pad", "NOTSET")
    pads = ctx.attr("pads")
    if auto in ("NOTSET", ""):
        pads = list(pads) if pads is not None else [0] * (2 * r)
        if len(pads) != 2 * r:
            raise ctx.error(f"pads {pads} need {2 * r} entries")
        return pads
    if auto == "VALID":
        return [0] * (2 * r)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.unsupported(f"auto_pad={auto!r} is not supported")
    begin, end = [], []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return begin + end


def window_attrs(ctx, in_sizes, kernel):
    r = len(in_sizes)
    strides = list(ctx.attr("strides") or [1] * r)
    dilations = list(ctx.attr("dilations") or [1] * r)
    if len(strides) != r or len(dilations) != r or len(kernel) != r:
        raise ctx.error(f"strides {strides}, dilations {dilations} or kernel {list(kernel)} "
                        f"do not match {r} spatial dims")
    for what, values in [("kernel_shape", kernel), ("strides", strides), ("dilations", dilations)]:
        if any(v < 1 for v in values):
            raise ctx.error(f"{what} {list(values)} must be >= 1")
    pads = spatial_pads(ctx, in_sizes, kernel, strides, dilations)
    if any(p < 0 for p in pads):
        raise ctx.unsupported(f"negative pads {pads} are not supported")
    for size, k, d, p0, p1 in zip(in_sizes, kernel, dilations, pads[:r], pads[r:]):
        if (k - 1) * d + 1 > size + p0 + p1:
            raise ctx.error(f"window {list(kernel)} (dilations {dilations}) is larger than the padded input "
                            f"{list(in_sizes)} (pads {pads})")
    return strides, dilations, pads


def to_2d(ctx, name, strides, dilations, pads):
    """Lift a 1-D (N, C, L) window op to 2-D (N, C, 1, L); returns new name and 2-D attrs."""
    shape = ctx.shape(name)
    return (ctx.reshape(name, shape[:2] + (1, shape[2])), [1, strides[0]], [1, dilations[0]],
            [0, pads[0], 0, pads[1]])


@converter("Conv")
def conv(ctx):
    x, w = ctx.input(0), ctx.input(1)
    xs, ws = ctx.shape(x), ctx.shape(w)
    rank = len(xs) - 2
    if rank not in (1, 2):
        raise ctx.unsupported(f"{rank}-D convolution is not supported (1-D and 2-D only)")
    if len(ws) != len(xs):
        raise ctx.error(f"weight {list(ws)} does not match input {list(xs)}")
    if not ctx.dtype(x).startswith("float"):
        raise ctx.unsupported(f"input dtype {ctx.dtype(x)} is not supported (floats only)")
    strides, dilations, pads, group = conv_attrs(ctx, xs, ws)
    ins = [x, w] + ([ctx.input(2)] if ctx.has_input(2) else [])
    return [add_conv(ctx, "conv2d", ins, strides, dilations, pads, group)]


def conv_attrs(ctx, xs, ws):
    """Validated strides, dilations, pads and group of a Conv-like node over input shape XS and
    weight shape WS."""
    kernel = list(ctx.attr("kernel_shape") or ws[2:])
    if kernel != list(ws[2:]):
        raise ctx.error(f"kernel_shape {kernel} does not match weight {list(ws)}")
    strides, dilations, pads = window_attrs(ctx, xs[2:], kernel)
    group = int(ctx.attr("group", 1))
    if group < 1 or xs[1] % group or ws[0] % group or ws[1] * group != xs[1]:
        raise ctx.error(f"group={group} does not fit input channels {xs[1]} and weight {list(ws)}")
    return strides, dilations, pads, group


def add_conv(ctx, op, ins, strides, dilations, pads, group):
    """Add OP (conv2d, qconv2d) over INS = [input, weight, ...]; a 1-D conv runs as a 2-D one over
    an image of height 1."""
    x, w = ins[0], ins[1]
    one_d = len(ctx.shape(x)) == 3
    if one_d:
        ws = ctx.shape(w)
        ins = list(ins)
        ins[0], strides, dilations, pads = to_2d(ctx, x, strides, dilations, pads)
        ins[1] = ctx.reshape(w, ws[:2] + (1, ws[2]))
    y = ctx.add1(op, ins, {"strides": strides, "dilations": dilations, "pads": pads, "groups": group})
    if one_d:
        ys = ctx.shape(y)
        y = ctx.reshape(y, (ys[0], ys[1], ys[3]))
    return y
