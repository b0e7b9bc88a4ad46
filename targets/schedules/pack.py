"""Block sizes of the packed conv2d and dense schedules, from the preset's vector width and
register count. The layout pass (compiler/passes/layout.py) packs constant weights with them:
a conv2d weight becomes (blocks, I, KH, KW, block) (see compiler/ops/packed.py), the activations
keep the IR's NCHW layout, and the schedule computes `block` output channels per input pixel with
broadcast FMAs.
"""


def conv_params(preset):
    """(block, max width tile): block = output channels per accumulator row (one or two vectors),
    the width tile = how many such rows fit in the vector registers with room for operands."""
    lanes = max(preset.vector_bits // 32, 4)
    regs = 32 if preset.vector_bits >= 512 or preset.arch == "aarch64" else 16
    block = lanes if lanes >= 16 else 2 * lanes
    vecs = block // lanes
    return block, max(2, min(14, (regs - 4) // vecs))


def dense_block(preset):
    """Output features per dense accumulator tile: 8 vectors, enough FMAs in flight for a GEMV."""
    return 8 * max(preset.vector_bits // 32, 4)
