"""Recurrent loop kernels (lstm/gru/rnn, one per direction) are hand-written TIR that comes
scheduled from compiler/lower/recurrent.py: tiles sized from the preset's vector width by the
unroll_recurrent pass, the GEMV and the gate math vectorized over a tile, the tile loop parallel
only for large steps. This rule keeps the generic schedule away from them; a target-specific
refinement registers `@rule("recurrent", arch)`."""
from . import rule


@rule("recurrent")
def schedule(func, kernel, preset):
    return func
