"""Recurrent kernels (lstm/gru/rnn cells and loops, rnn_stack) are hand-written TIR that comes
scheduled from compiler/lower/recurrent.py: parallel over (batch, hidden tile), the GEMV and the
gate math vectorized over the tile. This rule keeps the generic schedule away from them; a
target-specific refinement registers `@rule("recurrent", arch)`."""
from . import rule


@rule("recurrent")
def schedule(func, kernel, preset):
    return func
