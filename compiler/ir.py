"""edgec's graph IR: a typed dataflow graph of ops in topological order.

A Graph has inputs (Values), outputs (value names), nodes (Node, topologically ordered) and
constants (numpy arrays keyed by value name). Every value, constant or not, has a Value record
with its static shape and dtype. Shapes and dtypes of node outputs come from the op registry's
shape rule (`edgec.compiler.ops`), so a graph is always typed.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError

MAX_ELEMENTS = 2**31 - 1  # per tensor: TVM indexes buffers with int32
MAX_FOLD_BYTES = 2**30  # a constant computed at compile time (folding, ConstantOfShape)


def fold_bytes(shape, dtype):
    """Bytes of a constant of SHAPE and DTYPE (exact Python integers: no overflow)."""
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


def check_shape(shape, what):
    """SHAPE as a tuple of ints; ModelError if a dim is negative or the tensor is too large."""
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError, OverflowError):
        raise ModelError(f"{what} has shape {list(shape)!r}, which is not a list of integers") from None
    if any(d < 0 for d in shape):
        raise ModelError(f"{what} has a negative dimension: {list(shape)}")
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise ModelError(f"{what} has shape {list(shape)} ({n:.3g} elements); edgec's limit is 2^31-1 "
                         "elements per tensor")
    return shape


@dataclass(frozen=True)
class Value:
    name: str
    shape: tuple
    dtype: str

    def to_json(self):
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class Node:
    op: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    source: list = field(default_factory=list)  # layer / node names in the user's model
    kernel: str = ""  # fused group this node is lowered in ("" = a kernel of its own)

    def to_json(self):
        return {"op": self.op, "name": self.name, "inputs": list(self.inputs),
                "outputs": list(self.outputs), "attrs": _jsonable(self.attrs),
                "source": list(self.source), "kernel": self.kernel}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


class Graph:
    def __init__(self, name="model"):
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[str] = []
        self.nodes: list[Node] = []
        self.constants: dict[str, np.ndarray] = {}
        self.values: dict[str, Value] = {}
        self.input_ranges: dict[str, list] = {}  # integer inputs' valid [lo, hi) (e.g. token ids)
        self._counter = 0

    # ---- building -------------------------------------------------------------------------
    def fresh(self, hint="v"):
        while True:
            self._counter += 1
            name = f"{hint}_{self._counter}"
            if name not in self.values:
                return name

    def add_input(self, name, shape, dtype="float32"):
        self._define(Value(name, check_shape(shape, f"model '{self.name}': input '{name}'"), str(dtype)))
        self.inputs.append(self.values[name])
        return name

    def add_const(self, array, name=None):
        array = np.asarray(array)
        name = name or self.fresh("const")
        self._define(Value(name, tuple(array.shape), str(array.dtype)))
        self.constants[name] = array
        return name

    def add_node(self, op, inputs, attrs=None, name=None, source=None, outputs=None, n_outputs=None):
        """Append a node, infer its output types, return its output names (a list)."""
        from .ops import get_op
        opdef = get_op(op)
        name = name or self.fresh(op)
        node = Node(op, name, list(inputs), [], dict(attrs or {}), list(source or []))
        in_vals = [self.value(i, node) for i in node.inputs]
        types = opdef.infer(node, in_vals)
        if outputs is None:
            outputs = [name if len(types) == 1 and name not in self.values else self.fresh(name)
                       for _ in types] if n_outputs is None else [self.fresh(name) for _ in range(n_outputs)]
        if len(outputs) != len(types):
            raise ModelError(f"{op} node '{name}': {len(outputs)} outputs named, op produces {len(types)}")
        node.outputs = list(outputs)
        for out, (shape, dtype) in zip(outputs, types):
            self._define(Value(out, check_shape(shape, f"{op} node '{name}': output '{out}'"), str(dtype)))
        self.nodes.append(node)
        return list(outputs)

    def _define(self, value):
        if value.name in self.values:
            raise ModelError(f"graph '{self.name}': value '{value.name}' is defined twice")
        self.values[value.name] = value

    def value(self, name, node=None):
        try:
            return self.values[name]
        except KeyError:
            where = f"{node.op} node '{node.name}'" if node else f"graph '{self.name}'"
            raise ModelError(f"{where}: input '{name}' is not defined") from None

    # ---- queries --------------------------------------------------------------------------
    def producers(self):
        return {o: n for n in self.nodes for o in n.outputs}

    def consumers(self):
        users = {}
        for n in self.nodes:
            for i in n.inputs:
                users.setdefault(i, []).append(n)
        return users

    def copy(self):
        g = Graph(self.name)
        g.inputs = list(self.inputs)
        g.outputs = list(self.outputs)
        g.nodes = [Node(n.op, n.name, list(n.inputs), list(n.outputs), dict(n.attrs), list(n.source),
                        n.kernel) for n in self.nodes]
        g.constants = dict(self.constants)
        g.values = dict(self.values)
        g.input_ranges = dict(self.input_ranges)
        g._counter = self._counter
        return g

    def prune_values(self):
        """Drop Value records and constants nothing refers to."""
        used = {v.name for v in self.inputs} | set(self.outputs)
        for n in self.nodes:
            used.update(n.inputs)
            used.update(n.outputs)
        self.values = {k: v for k, v in self.values.items() if k in used}
        self.constants = {k: v for k, v in self.constants.items() if k in used}

    # ---- checking, printing, saving -------------------------------------------------------
    def verify(self):
        """Check types, topological order, dangling and duplicate values. Raises ModelError."""
        from .ops import get_op
        where = f"graph '{self.name}'"
        defined = set()
        for v in self.inputs:
            if v.name in defined:
                raise ModelError(f"{where}: input '{v.name}' is declared twice")
            defined.add(v.name)
        for name, arr in self.constants.items():
            val = self.values.get(name)
            if val is None or val.shape != tuple(arr.shape) or val.dtype != str(arr.dtype):
                raise ModelError(f"{where}: constant '{name}' does not match its value record")
            defined.add(name)
        for node in self.nodes:
            for i in node.inputs:
                if i not in defined:
                    raise ModelError(f"{where}: {node.op} node '{node.name}' reads '{i}' before it is "
                                     "defined (dangling value or nodes out of order)")
            types = get_op(node.op).infer(node, [self.values[i] for i in node.inputs])
            if len(types) != len(node.outputs):
                raise ModelError(f"{where}: {node.op} node '{node.name}' has {len(node.outputs)} outputs, "
                                 f"op produces {len(types)}")
            for out, (shape, dtype) in zip(node.outputs, types):
                if out in defined:
                    raise ModelError(f"{where}: value '{out}' is defined twice")
                rec = self.values.get(out)
                if rec is None or rec.shape != tuple(shape) or rec.dtype != str(dtype):
                    raise ModelError(f"{where}: {node.op} node '{node.name}' output '{out}' is recorded as "
                                     f"{rec and (rec.shape, rec.dtype)} but the op gives {(tuple(shape), dtype)}")
                defined.add(out)
        for o in self.outputs:
            if o not in defined:
                raise ModelError(f"{where}: output '{o}' is never produced")
        return self

    def __str__(self):
        def ty(name):
            v = self.values[name]
            return f"{v.dtype}[{','.join(map(str, v.shape))}]"
        lines = [f"graph {self.name}("
                 + ", ".join(f"%{v.name}: {ty(v.name)}" for v in self.inputs) + ")"]
        for name, arr in self.constants.items():
            lines.append(f"  const %{name}: {ty(name)}")
        for n in self.nodes:
            attrs = ", ".join(f"{k}={_short(v)}" for k, v in sorted(n.attrs.items()))
            src = f"  # {', '.join(n.source)}" if n.source else ""
            src += f"  [{n.kernel}]" if n.kernel else ""
            outs = ", ".join(f"%{o}: {ty(o)}" for o in n.outputs)
            args = ", ".join(f"%{i}" for i in n.inputs)
            lines.append(f"  {outs} = {n.op}({args}{'; ' + attrs if attrs else ''}){src}")
        lines.append("  return " + ", ".join(f"%{o}" for o in self.outputs))
        return "\n".join(lines)

    def to_json(self):
        return {"format": "edgec-ir/1", "name": self.name,
                "inputs": [v.to_json() for v in self.inputs], "outputs": list(self.outputs),
                "input_ranges": self.input_ranges,
                "values": [v.to_json() for v in self.values.values()],
                "constants": sorted(self.constants), "nodes": [n.to_json() for n in self.nodes]}

    @classmethod
    def from_json(cls, data, constants):
        if data.get("format") != "edgec-ir/1":
            raise ModelError(f"not an edgec IR file (format {data.get('format')!r})")
        g = cls(data["name"])
        for v in data["values"]:
            g.values[v["name"]] = Value(v["name"], tuple(v["shape"]), v["dtype"])
        g.inputs = [g.values[v["name"]] for v in data["inputs"]]
        g.outputs = list(data["outputs"])
        g.input_ranges = dict(data.get("input_ranges", {}))
        g.constants = {k: np.asarray(constants[k]) for k in data["constants"]}
        g.nodes = [Node(n["op"], n["name"], n["inputs"], n["outputs"], n["attrs"], n["source"], n.get("kernel", ""))
                   for n in data["nodes"]]
        return g.verify()


def _short(v):
    text = json.dumps(_jsonable(v))
    return text if len(text) <= 60 else text[:57] + "..."


def save(graph, path):
    """Write GRAPH as PATH (JSON) plus PATH.npz (constants, loaded without pickle)."""
    path = Path(path)
    path.write_text(json.dumps(graph.to_json(), indent=1))
    np.savez(str(path) + ".npz", **graph.constants)


def load(path):
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        with np.load(str(path) + ".npz", allow_pickle=False) as z:
            consts = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read edgec IR '{path}': {e}") from None
    return Graph.from_json(data, consts)
