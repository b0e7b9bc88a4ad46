"""The pass manager. Each pass is one module exposing `run(graph) -> graph` and a docstring that
says what it rewrites; `PIPELINE` is the default order. `run_passes` can print or record the IR
after every pass (`edgec inspect --passes`) and skip passes by name (`--disable-pass`).
"""
from dataclasses import dataclass

from ...errors import EdgecError
from . import dead_code, fold_constants


@dataclass
class Pass:
    name: str
    run: callable
    doc: str


def _p(module):
    return Pass(module.NAME, module.run, (module.__doc__ or "").strip().splitlines()[0])


PIPELINE = [_p(fold_constants), _p(dead_code)]


def names():
    return [p.name for p in PIPELINE]


def run_passes(graph, disable=(), on_pass=None, pipeline=None):
    """Run the pipeline on a copy of GRAPH; call on_pass(pass, before, after) after each pass."""
    unknown = set(disable) - set(names())
    if unknown:
        raise EdgecError(f"unknown pass(es) {', '.join(sorted(unknown))}; passes are {', '.join(names())}")
    graph = graph.copy()
    for p in pipeline or PIPELINE:
        if p.name in disable:
            continue
        before = graph
        graph = p.run(graph.copy())
        graph.prune_values()
        graph.verify()
        if on_pass:
            on_pass(p, before, graph)
    return graph
