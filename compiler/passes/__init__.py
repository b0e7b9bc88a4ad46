"""The pass manager. Each pass is one module exposing `NAME`, `run(graph) -> graph` (or
`run(graph, preset)` for a pass that needs the target) and a docstring that says what it rewrites;
`PIPELINE` is the default order. After every pass the IR verifier runs; `run_passes` can also
check numerics (`check=True`: the numpy interpreter runs the graph before and after each pass on
seeded random inputs), print or record the IR after every pass (`edgec inspect --passes`) and
skip passes by name (`--disable-pass`).
"""
import inspect
from dataclasses import dataclass

import numpy as np

from ...errors import EdgecError
from . import (conv_as_dense, dead_code, decompose, fold_batch_norm, fold_constants, fold_pad, fold_qdq, fold_scale,
               fold_swish, fuse, layout, reduce_as_pool, remove_identity, sink_transposes, split_k, subsample,
               unroll_recurrent)


@dataclass
class Pass:
    name: str
    run: callable
    doc: str

    def __call__(self, graph, preset=None):
        if "preset" in inspect.signature(self.run).parameters:
            return self.run(graph, preset=preset)
        return self.run(graph)


def _p(module):
    """A Pass whose doc is the first sentence of the module's docstring."""
    first = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
    return Pass(module.NAME, module.run, first.split(". ")[0].rstrip("."))


# composite ops (conv2d_transpose) decompose and recurrent nodes unroll first (folding then folds
# their weight slices and transposes); identity removal and folding first (BN folding wants
# constant weights), dead code sweeps what folding left behind, fusion groups the simplified
# graph, the layout hook sees the final kernels; QDQ islands become int8 kernels before folding
# would turn their int8 weights into float ones; zero pads fold into convs before dead code sweeps
# the transposes that folding a Keras (NHWC) pad leaves unread; transposes sink through the ops
# between them before that (meeting their inverses), and the reductions they leave NCHW become
# global pools; convs that are dense layers turn into dense ones once batch-norm folding has changed
# their weights; swish compositions fold into one op (after constant folding computed their
# constants) so that fusion can take them into the conv; on CUDA, convs too small to fill the GPU
# split their reduction (after batch-norm folding, so the bias is final) before fusion groups the
# sum with the bias and activation; on x86, strided 1x1 GEMMs read a strided slice (a kernel of its own)
PIPELINE = [_p(remove_identity), _p(fold_qdq), _p(decompose), _p(unroll_recurrent), _p(fold_constants),
            _p(sink_transposes), _p(reduce_as_pool), _p(fold_pad), _p(dead_code), _p(fold_batch_norm),
            _p(fold_scale), _p(conv_as_dense), _p(fold_swish), _p(split_k), _p(subsample), _p(fuse),
            _p(layout)]


def names():
    return [p.name for p in PIPELINE]


def run_passes(graph, disable=(), on_pass=None, pipeline=None, preset=None, check=False):
    """Run the pipeline on a copy of GRAPH; call on_pass(pass, before, after) after each pass."""
    unknown = set(disable) - set(names())
    if unknown:
        raise EdgecError(f"unknown pass(es) {', '.join(sorted(unknown))}; passes are {', '.join(names())}")
    graph = graph.copy()
    for p in pipeline or PIPELINE:
        if p.name in disable:
            continue
        before = graph
        graph = p(graph.copy(), preset)
        graph.prune_values()
        graph.verify()
        if check:
            check_numerics(p.name, before, graph)
        if on_pass:
            on_pass(p, before, graph)
    return graph


def check_numerics(name, before, after, seed=0, rtol=1e-4, atol=1e-5):
    """Raise EdgecError if BEFORE and AFTER differ on seeded random inputs (numpy interpreter)."""
    from ..interp import interpret
    rng = np.random.default_rng(seed)
    # integer/bool inputs (indices, masks) get zeros: always in range
    feed = {v.name: (rng.standard_normal(v.shape) if v.dtype.startswith("float") else np.zeros(v.shape)
                     ).astype(v.dtype) for v in before.inputs}
    want, got = interpret(before, feed), interpret(after, feed)
    for out in before.outputs:
        if not np.allclose(got[out], want[out], rtol=rtol, atol=atol):
            err = float(np.max(np.abs(got[out].astype(np.float64) - want[out])))
            raise EdgecError(f"model '{before.name}': pass {name} changed output '{out}' "
                             f"(max abs error {err:.3g} > {atol:g} + {rtol:g}*|expected|)")
