"""The ONNX import driver: load a model, walk its nodes in order, call one converter per node.

Converters (the other modules of this package) see a `Context` for the node being converted:
its attributes (`ctx.attr`), inputs (`ctx.input`, `ctx.value`, `ctx.const`) and a builder
(`ctx.add`) that adds IR nodes tagged with the ONNX node's name and folds nodes whose inputs are
all constants right away, so Shape -> Gather -> Concat -> Reshape chains become constants.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...compiler.ir import MAX_FOLD_BYTES, Graph, check_shape, fold_bytes
from ...compiler.ops import get_op
from ...errors import EdgecWarning, ModelError, UnsupportedError
from .. import run_converter
from .registry import lookup

# Converters are written for opsets 7..21 (attributes that became inputs are read from either);
# older and newer models are accepted too: the ops' semantics did not change past 21 for the ops
# edgec supports (newer versions add element types, which the dtype checks refuse), and legacy
# attributes of older versions are refused by the unread-attribute check.
MIN_OPSET, MAX_OPSET = 1, onnx.defs.onnx_opset_version()
DEFAULT_DOMAINS = ("", "ai.onnx")
# graph names exporters write for every model: the file's stem names the model instead
GENERIC_NAMES = {"", "tf2onnx", "main_graph", "torch_jit", "torch-jit-export", "graph", "model", "onnx_model",
                 "test", "tf2onnx_graph"}
MAX_NODES = 1_000_000

# ONNX element types edgec handles; everything else (strings, complex, bfloat16, float8, int4...)
# is rejected with UnsupportedError.
DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64",
          onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BOOL: "bool",
          onnx.TensorProto.INT8: "int8", onnx.TensorProto.INT16: "int16",
          onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64",
          onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.UINT16: "uint16",
          onnx.TensorProto.UINT32: "uint32", onnx.TensorProto.UINT64: "uint64"}


def dtype_name(elem_type):
    return onnx.TensorProto.DataType.Name(elem_type) if elem_type in onnx.TensorProto.DataType.values() \
        else str(elem_type)


def load_model(model_or_path):
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path, None
    path = Path(model_or_path)
    if not path.is_file():
        raise ModelError(f"ONNX model '{path}' does not exist")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # DecodeError, truncated external data, ...
        raise ModelError(f"ONNX model '{path}' is corrupt or truncated: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'cannot parse'}") from None
    if not model.graph.node and not model.graph.output:
        raise ModelError(f"ONNX model '{path}' is empty or not an ONNX model (no nodes, no outputs)")
    return model, path


class Context:
    """What a converter sees of the node it converts, and how it adds IR."""

    def __init__(self, importer, node, index):
        self.imp = importer
        self.graph = importer.graph
        self.node = node
        self.op_type = node.op_type
        self.opset = importer.opset
        self.name = node.name or f"{node.op_type}_{index}"
        self._attrs = {a.name: a for a in node.attribute}
        self._read = set()
        self.inputs = list(node.input)
        self.outputs = list(node.output)
        self._created = []

    # ---- errors -------------------------------------------------------------------------------
    def where(self):
        return (f"model '{self.imp.model_name}': {self.op_type} node '{self.name}' "
                f"(opset {self.opset})")

    def unsupported(self, what):
        return UnsupportedError(f"{self.where()}: {what}")

    def error(self, what):
        return ModelError(f"{self.where()}: {what}")

    # ---- attributes ---------------------------------------------------------------------------
    def attr(self, name, default=None):
        self._read.add(name)
        a = self._attrs.get(name)
        if a is None:
            return default
        if a.type == onnx.AttributeProto.TENSOR:
            return self.tensor_to_array(a.t, f"attribute '{name}'")
        if a.ref_attr_name:
            raise self.unsupported(f"attribute '{name}' refers to a function attribute")
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        return v

    def has_attr(self, name):
        return name in self._attrs

    def ignore(self, *names):
        """Mark attributes that do not change inference (seeds, momentum) as understood."""
        self._read.update(names)

    def tensor_to_array(self, t, what):
        if t.data_type not in DTYPES:
            raise self.unsupported(f"{what} has element type {dtype_name(t.data_type)}, which edgec does not support")
        check_shape(t.dims, f"{self.where()}: {what}")
        if fold_bytes(t.dims, DTYPES[t.data_type]) > MAX_FOLD_BYTES and not t.HasField("data_location"):
            raise self.error(f"{what} declares shape {list(t.dims)}, larger than edgec reads inline "
                             f"({MAX_FOLD_BYTES >> 20} MiB)")
        try:
            arr = numpy_helper.to_array(t, base_dir=self.imp.base_dir)
        except Exception as e:  # noqa: BLE001 - onnx raises many types for bad tensor data
            raise self.error(f"cannot read {what}: {' '.join(str(e).split())[:200]}") from None
        if tuple(arr.shape) != tuple(t.dims):
            raise self.error(f"{what} holds {arr.size} values for shape {list(t.dims)}")
        return arr.astype(DTYPES[t.data_type])

    # ---- inputs -------------------------------------------------------------------------------
    def has_input(self, i):
        return i < len(self.inputs) and self.inputs[i] != ""

    def input(self, i):
        """IR value name of the node's I-th input."""
        if not self.has_input(i):
            raise self.error(f"input {i} is missing")
        return self.imp.lookup(self.inputs[i], self)

    def value(self, i_or_name):
        name = self.input(i_or_name) if isinstance(i_or_name, int) else i_or_name
        return self.graph.values[name]

    def shape(self, i_or_name):
        return tuple(self.value(i_or_name).shape)

    def dtype(self, i_or_name):
        return self.value(i_or_name).dtype

    def is_const(self, i_or_name):
        name = self.input(i_or_name) if isinstance(i_or_name, int) else i_or_name
        return name in self.graph.constants

    def const(self, i, what=None, default=None):
        """The compile-time value of input I (numpy), DEFAULT if the input is absent."""
        if isinstance(i, int) and not self.has_input(i):
            return default
        name = self.input(i) if isinstance(i, int) else i
        if name not in self.graph.constants:
            label = what or (f"input {i} ('{self.inputs[i]}')" if isinstance(i, int) else f"'{name}'")
            raise self.unsupported(f"{label} must be a compile-time constant, but it is computed at run time")
        return self.graph.constants[name]

    # ---- building -----------------------------------------------------------------------------
    def fresh(self, hint):
        return self.imp.fresh(hint)

    def add_const(self, array, hint="const"):
        name = self.graph.add_const(np.asarray(array), self.fresh(hint))
        self._created.append(name)
        return name

    def add(self, op, inputs, attrs=None, n_outputs=1):
        """Add IR node OP; fold it to constants when all its inputs are constants. Returns outputs."""
        g = self.graph
        hint = self.imp.hint(self.name)
        outs = [self.fresh(hint) for _ in range(n_outputs)]
        names = g.add_node(op, inputs, attrs, name=self.fresh(hint + "_" + op), source=[self.name],
                           outputs=outs)
        self._created.extend(names)
        node = g.nodes[-1]
        small = sum(fold_bytes(g.values[o].shape, g.values[o].dtype) for o in names) <= MAX_FOLD_BYTES
        if small and all(i in g.constants for i in node.inputs):
            arrays = get_op(op).run(node, [g.constants[i] for i in node.inputs])
            g.nodes.pop()
            for name, arr in zip(names, arrays):
                val = g.values[name]
                g.constants[name] = np.asarray(arr).astype(val.dtype).reshape(val.shape)
        return names

    def add1(self, op, inputs, attrs=None):
        return self.add(op, inputs, attrs)[0]

    def cast(self, name, dtype):
        return name if self.dtype(name) == dtype else self.add1("cast", [name], {"dtype": dtype})

    def reshape(self, name, shape):
        shape = tuple(int(d) for d in shape)
        return name if self.shape(name) == shape else self.add1("reshape", [name], {"shape": list(shape)})


class Importer:
    def __init__(self, model, path, input_shapes, name):
        self.model = model
        self.base_dir = str(path.parent) if path else ""
        graph_name = model.graph.name if model.graph.name not in GENERIC_NAMES else ""
        self.model_name = name or graph_name or (path.stem if path else "") or model.graph.name or "model"
        self.graph = Graph(self.model_name)
        self.input_shapes = dict(input_shapes or {})
        self.env = {}  # ONNX value name -> IR value name
        self.reserved = set()
        self.opset = self._opset()
        self._hints = {}
        self.inits = {t.name for t in model.graph.initializer}

    def _opset(self):
        opset = None
        for imp in self.model.opset_import:
            if imp.domain in DEFAULT_DOMAINS:
                opset = imp.version
        if opset is None:
            raise ModelError(f"model '{self.model_name}': imports no default-domain ONNX opset")
        if not MIN_OPSET <= opset <= MAX_OPSET:
            raise UnsupportedError(f"model '{self.model_name}': ONNX opset {opset} is not supported "
                                   f"(edgec reads opsets {MIN_OPSET}..{MAX_OPSET})")
        return opset

    def fresh(self, hint):
        g = self.graph
        while True:
            g._counter += 1
            name = f"{hint}_{g._counter}"
            if name not in g.values and name not in self.reserved:
                return name

    def hint(self, node_name):
        h = self._hints.get(node_name)
        if h is None:
            h = "".join(c if c.isalnum() or c in "_-." else "_" for c in node_name)[:40] or "v"
            self._hints[node_name] = h
        return h

    def lookup(self, onnx_name, ctx=None):
        try:
            return self.env[onnx_name]
        except KeyError:
            where = ctx.where() if ctx else f"model '{self.model_name}'"
            raise ModelError(f"{where}: input '{onnx_name}' is not produced by any node, input or "
                             "initializer") from None

    # ---- the walk -----------------------------------------------------------------------------
    def run(self):
        g, graph = self.graph, self.model.graph
        if not graph.output:
            raise ModelError(f"model '{self.model_name}': the graph has no outputs")
        if len(graph.node) > MAX_NODES:
            raise ModelError(f"model '{self.model_name}': {len(graph.node)} nodes, more than edgec's limit "
                             f"of {MAX_NODES}")
        input_names = {vi.name for vi in graph.input}
        unknown = sorted(set(self.input_shapes) - input_names)
        if unknown:
            raise ModelError(f"model '{self.model_name}': --input-shape names unknown input(s) {', '.join(unknown)}; "
                             f"inputs are {', '.join(vi.name for vi in graph.input if vi.name not in self.inits)}")
        for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
            self.reserved.add(vi.name)
        for n in graph.node:
            self.reserved.update(o for o in n.output if o)
        for t in graph.initializer:
            self.reserved.add(t.name)
            if t.name in self.input_shapes:
                raise ModelError(f"model '{self.model_name}': --input-shape names '{t.name}', an initializer "
                                 "(a constant), not an input")
        for t in graph.sparse_initializer:
            raise UnsupportedError(f"model '{self.model_name}': sparse initializer "
                                   f"'{t.values.name}' is not supported")
        init_ctx = Context(self, onnx.NodeProto(op_type="initializer", name="initializer"), 0)
        for t in graph.initializer:
            g.add_const(init_ctx.tensor_to_array(t, f"initializer '{t.name}'"), t.name)
            self.env[t.name] = t.name
        for vi in graph.input:
            if vi.name in self.env:
                continue  # an initializer: a constant
            g.add_input(vi.name, *self._input_type(vi))
            self.env[vi.name] = vi.name
        used_names = set()
        for index, node in enumerate(graph.node):
            ctx = Context(self, node, index)
            if ctx.name in used_names:
                ctx.name = f"{ctx.name}_{index}"
            used_names.add(ctx.name)
            self._convert(ctx)
        for vi in graph.output:
            self._bind_output(vi.name)
        return g.verify()

    def _input_type(self, vi):
        t = vi.type
        if not t.HasField("tensor_type"):
            raise UnsupportedError(f"model '{self.model_name}': input '{vi.name}' is not a tensor "
                                   f"({t.WhichOneof('value')})")
        tt = t.tensor_type
        if tt.elem_type not in DTYPES:
            raise UnsupportedError(f"model '{self.model_name}': input '{vi.name}' has element type "
                                   f"{dtype_name(tt.elem_type)}, which edgec does not support")
        if vi.name in self.input_shapes:
            shape = tuple(int(d) for d in self.input_shapes[vi.name])
            if tt.HasField("shape") and len(shape) != len(tt.shape.dim):
                raise ModelError(f"model '{self.model_name}': input '{vi.name}' has rank {len(tt.shape.dim)}, "
                                 f"--input-shape gives {list(shape)}")
        else:
            if not tt.HasField("shape"):
                raise ModelError(f"model '{self.model_name}': input '{vi.name}' has no shape; give it with "
                                 f"input_shapes={{'{vi.name}': (...)}} (CLI: --input-shape {vi.name}=D0,D1,...)")
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
            if len(dims) > 1 and not isinstance(dims[0], int) and all(isinstance(d, int) for d in dims[1:]):
                warnings.warn(f"model '{self.model_name}': input '{vi.name}' has a dynamic batch dimension "
                              f"'{dims[0]}'; compiling for batch 1 (choose another with --input-shape "
                              f"{vi.name}=" + ",".join(["N"] + [str(d) for d in dims[1:]]) + ")", EdgecWarning,
                              stacklevel=2)
                dims[0] = 1
            if any(not isinstance(d, int) for d in dims):
                shown = ",".join(str(d) for d in dims)
                raise ModelError(f"model '{self.model_name}': input '{vi.name}' has symbolic shape [{shown}]; "
                                 f"give its shape with input_shapes={{'{vi.name}': (...)}} "
                                 f"(CLI: --input-shape {vi.name}=" + ",".join("N" if not isinstance(d, int) else
                                                                           str(d) for d in dims) + ")")
            shape = tuple(dims)
        return shape, DTYPES[tt.elem_type]

    def _convert(self, ctx):
        node = ctx.node
        default = node.domain in DEFAULT_DOMAINS  # other domains: converters named "domain:OpType"
        fn = lookup(node.op_type if default else f"{node.domain}:{node.op_type}", self.opset)
        if fn is None and not default:
            raise ctx.unsupported(f"op domain '{node.domain}' is not supported")
        if fn is None:
            raise ctx.unsupported(f"ONNX op {node.op_type} is not supported")
        for a in node.attribute:  # control-flow converters (control.py) inline their subgraphs
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) and not getattr(fn, "subgraphs", False):
                raise ctx.unsupported(f"subgraph attribute '{a.name}' is not supported")
        outs = run_converter(ctx, fn, ctx)
        unread = [a for a in ctx._attrs if a not in ctx._read]
        if unread:
            raise ctx.unsupported(f"attribute{'s' if len(unread) > 1 else ''} "
                                  f"{', '.join(map(str, unread))} {'are' if len(unread) > 1 else 'is'} not supported")
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        for i, onnx_out in enumerate(ctx.outputs):
            if not onnx_out:
                continue
            if i >= len(outs) or outs[i] is None:
                raise ctx.unsupported(f"output {i} ('{onnx_out}') is not supported")
            ir = outs[i]
            if ir in ctx._created and onnx_out not in self.graph.values and ir not in ctx.outputs:
                self._rename(ir, onnx_out)
                ctx._created = [onnx_out if c == ir else c for c in ctx._created]
                outs = [onnx_out if o == ir else o for o in outs]
                ir = onnx_out
            self.env[onnx_out] = ir

    def _rename(self, old, new):
        g = self.graph
        val = g.values.pop(old)
        g.values[new] = type(val)(new, val.shape, val.dtype)
        if old in g.constants:
            g.constants[new] = g.constants.pop(old)
        for n in reversed(g.nodes):
            n.inputs = [new if i == old else i for i in n.inputs]
            if old in n.outputs:
                n.outputs = [new if o == old else o for o in n.outputs]
                break

    def _bind_output(self, name):
        g = self.graph
        ir = self.lookup(name)
        if ir != name or name in g.outputs or any(v.name == name for v in g.inputs):
            # an output that is an input, another output or a renamed value: copy it
            shape = g.values[ir].shape
            out = name if name not in g.values else self.fresh(name)
            g.add_node("reshape", [ir], {"shape": list(shape)}, name=self.fresh("output_copy"),
                       source=[f"output {name}"], outputs=[out])
            if ir in g.constants:
                g.nodes.pop()
                g.constants[out] = g.constants[ir]
            name = out
        g.outputs.append(name)


def import_onnx(model_or_path, input_shapes=None, name=None):
    model, path = load_model(model_or_path)
    return Importer(model, path, input_shapes, name).run()
