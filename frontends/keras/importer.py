"""The Keras import driver: a model config + weights -> an edgec Graph.

Sequential models chain their layers; functional models connect layer calls ("nodes") through
`inbound_nodes`, whose tensors name `keras_history = [layer, node index, tensor index]` (Keras 3)
or `[layer, node index, tensor index, kwargs]` (Keras 2 files). A layer called twice is shared:
each call is converted with the same weights.

A model used as a layer (a Sequential or functional model inside another, as keras.applications'
ConvNeXt stem) is inlined: a child importer converts its layers into the same graph, its inputs
bound to the call's inputs, its layer names prefixed with the sub-model's (`stem/conv2d`), its
weights a nested {layer name: arrays} of their own. Each call of a shared sub-model is inlined
again with the same weights.
"""
from __future__ import annotations

import warnings

import numpy as np

from ...compiler.ir import Graph
from ...errors import EdgecWarning, ModelError, UnsupportedError
from .. import run_converter
from .registry import CONVERTERS

INPUT_DTYPES = {"float32", "float16", "float64", "int32", "int64", "int8", "uint8", "int16", "bool"}
# layer options that are counts or sizes (an int or a tuple of ints), checked before any converter
# computes with them: >= 1, or >= 0 for paddings
POSITIVE_OPTIONS = ("filters", "kernel_size", "strides", "pool_size", "dilation_rate", "groups", "depth_multiplier",
                    "units", "size", "input_dim", "output_dim", "num_heads", "key_dim")
NONNEGATIVE_OPTIONS = ("padding", "cropping")
MAX_LAYERS = 100_000
MODEL_CLASSES = ("Sequential", "Functional", "Model")


class Context:
    """What a converter sees of the layer call it converts, and how it adds IR."""

    def __init__(self, importer, layer, weights):
        self.imp = importer
        self.graph = importer.graph
        self.cls = layer["class_name"]
        self.config = layer.get("config", {})
        self.name = importer.prefix + (self.config.get("name") or layer.get("name") or self.cls)
        self.weights = weights
        self.kwargs = {}

    # ---- errors -------------------------------------------------------------------------------
    def where(self):
        return f"model '{self.imp.model_name}': layer '{self.name}' ({self.cls})"

    def unsupported(self, what):
        return UnsupportedError(f"{self.where()}: {what}")

    def error(self, what):
        return ModelError(f"{self.where()}: {what}")

    # ---- config -------------------------------------------------------------------------------
    def opt(self, key, default=None):
        return self.config.get(key, default)

    def require(self, key, *allowed, default=None):
        """The option's value; UnsupportedError if it is not one of ALLOWED."""
        value = self.config.get(key, default)
        if value not in allowed:
            raise self.unsupported(f"option {key}={value!r} is not supported "
                                   f"(supported: {', '.join(repr(a) for a in allowed)})")
        return value

    def weight(self, i, shape=None):
        if i >= len(self.weights):
            raise self.error(f"expected at least {i + 1} weight arrays, the file has {len(self.weights)}")
        w = np.asarray(self.weights[i], dtype=np.float32)
        if shape is not None and tuple(w.shape) != tuple(shape):
            raise self.error(f"weight {i} has shape {list(w.shape)}, expected {list(shape)}")
        return w

    # ---- building -----------------------------------------------------------------------------
    def shape(self, name):
        return self.graph.values[name].shape

    def dtype(self, name):
        return self.graph.values[name].dtype

    def const(self, array, dtype=np.float32):
        return self.graph.add_const(np.ascontiguousarray(np.asarray(array, dtype=dtype)),
                                    self.graph.fresh(f"{self.name}_w"))

    def add(self, op, inputs, attrs=None, n_outputs=None):
        outs = self.graph.add_node(op, inputs, attrs, name=self.graph.fresh(f"{self.name}_{op}"),
                                   source=[self.name], n_outputs=n_outputs)
        for o in outs:
            self.imp.producer[o] = self.graph.nodes[-1]
        return outs if n_outputs else outs[0]

    def transpose(self, x, perm):
        """transpose(X, PERM); undoes a transpose that produced X instead of stacking another."""
        src = self.imp.producer.get(x)
        if src is not None and src.op == "transpose" and [src.attrs["perm"][p] for p in perm] == sorted(perm):
            return src.inputs[0]
        return self.add("transpose", [x], {"perm": list(perm)})

    def nchw_source(self, x):
        """V when X = transpose(V, NCHW -> NHWC), so elementwise layers can run on V; else None."""
        src = self.imp.producer.get(x)
        if src is not None and src.op == "transpose" and list(src.attrs["perm"]) == [0, 2, 3, 1]:
            return src.inputs[0]
        return None

    def reshape(self, x, shape):
        return x if tuple(self.shape(x)) == tuple(shape) else self.add("reshape", [x], {"shape": list(shape)})


class Importer:
    def __init__(self, config, weights, input_shapes=None, name=None, parent=None, prefix=""):
        self.config = config
        self.weights = weights
        self.cls = config.get("class_name")
        self.cfg = config.get("config", {})
        own = self.cfg.get("name") if isinstance(self.cfg, dict) else None
        self.model_name = name or (own if isinstance(own, str) else "") or "keras_model"
        self.graph = Graph(self.model_name) if parent is None else parent.graph
        self.input_shapes = dict(input_shapes or {})
        self.tensors = {}  # (layer name, node index, tensor index) -> IR value
        self.producer = {} if parent is None else parent.producer  # IR value -> the node that made it
        self.prefix = prefix  # of a sub-model's layer names: "stem/"
        self.all_weights = weights if parent is None else parent.all_weights  # the whole model's

    def run(self):
        self._check_structure()
        try:
            if self.cls == "Sequential":
                layers = self.cfg.get("layers", [])
                self.graph.outputs = self._sequential()
                self._name_outputs([layers[-1]["config"]["name"]])
            elif self.cls in ("Functional", "Model"):
                self.graph.outputs = self._functional()
                self._name_outputs([r[0] for r in _refs(self.cfg.get("output_layers", []))])
            else:
                raise UnsupportedError(f"model '{self.model_name}': top-level class {self.cls!r} is not supported "
                                       "(Sequential and functional models are)")
        except (ValueError, IndexError, TypeError, KeyError, AttributeError, ArithmeticError) as e:
            # the config's wiring (inbound nodes, input/output layers) is malformed
            raise ModelError(f"model '{self.model_name}': malformed config: {type(e).__name__}: "
                             f"{' '.join(str(e).split())[:200]}") from None
        unused = set(self.input_shapes) - {v.name for v in self.graph.inputs}
        if unused:
            raise ModelError(f"model '{self.model_name}': --input-shape names unknown input(s) "
                             f"{', '.join(sorted(unused))}; inputs are {', '.join(v.name for v in self.graph.inputs)}")
        return self.graph.verify()

    def _check_structure(self):
        """The config's skeleton has the types the importer relies on (every layer a dict with a
        class name and a config dict), so a damaged file is a one-line ModelError."""
        where = f"model '{self.model_name}'"
        if not isinstance(self.cfg, dict):
            raise ModelError(f"{where}: 'config' is a {type(self.cfg).__name__}, not an object")
        layers = self.cfg.get("layers", [])
        if not isinstance(layers, list):
            raise ModelError(f"{where}: 'layers' is a {type(layers).__name__}, not a list")
        if len(layers) > MAX_LAYERS:
            raise ModelError(f"{where}: {len(layers)} layers, more than edgec's limit of {MAX_LAYERS}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict) or not isinstance(layer.get("class_name"), str) \
                    or not isinstance(layer.get("config", {}), dict):
                raise ModelError(f"{where}: layer {i} is not an object with a class_name and a config")
            name = layer.get("config", {}).get("name", layer.get("name"))
            if name is not None and not isinstance(name, str):
                raise ModelError(f"{where}: layer {i} has a name that is not text ({name!r})")
            if not isinstance(layer.get("inbound_nodes", []), list):
                raise ModelError(f"{where}: layer {i} ('{name}') has inbound_nodes that are not a list")

    def _check_options(self, ctx):
        for key in POSITIVE_OPTIONS + NONNEGATIVE_OPTIONS:
            value = ctx.config.get(key)
            if value is None or (key == "padding" and isinstance(value, str)):
                continue
            least = 0 if key in NONNEGATIVE_OPTIONS else 1
            if not _ints_at_least(value, least):
                raise ctx.error(f"option {key}={value!r} must be {'an integer' if least == 0 else 'a positive integer'} "
                                f"or a list of them")

    # ---- inputs -------------------------------------------------------------------------------
    def _add_input(self, name, batch_shape, dtype):
        if not isinstance(batch_shape, (list, tuple)) or \
                not all(d is None or (_ints_at_least(d, 1) and not isinstance(d, list)) for d in batch_shape):
            raise ModelError(f"model '{self.model_name}': input '{name}' has batch shape {batch_shape!r}; "
                             "dims must be positive integers or null")
        shape = list(self.input_shapes.get(name, batch_shape))
        if len(shape) != len(batch_shape):
            raise ModelError(f"model '{self.model_name}': input '{name}' has rank {len(batch_shape)}, "
                             f"--input-shape gives {list(shape)}")
        if shape and shape[0] is None:
            if all(d is not None for d in shape[1:]):
                warnings.warn(f"model '{self.model_name}': input '{name}' has a dynamic batch dimension; compiling "
                              f"for batch 1 (choose another with --input-shape {name}="
                              + ",".join(["N"] + [str(d) for d in shape[1:]]) + ")", EdgecWarning, stacklevel=2)
            shape[0] = 1
        if any(d is None for d in shape):
            raise ModelError(f"model '{self.model_name}': input '{name}' has unknown dims {list(batch_shape)}; "
                             f"fix them with --input-shape {name}=D1,D2,...")
        dtype = _dtype_name(dtype) or "float32"
        if dtype not in INPUT_DTYPES:
            raise UnsupportedError(f"model '{self.model_name}': input '{name}' has dtype {dtype!r}")
        return self.graph.add_input(name, shape, dtype)

    def _input_layer(self, layer):
        c = layer.get("config", {})
        shape = c.get("batch_shape") or c.get("batch_input_shape")
        if shape is None:
            raise ModelError(f"model '{self.model_name}': input layer '{c.get('name')}' has no shape")
        return self._add_input(c["name"], shape, c.get("dtype"))

    # ---- model kinds --------------------------------------------------------------------------
    def _sequential(self, inputs=None):
        """The output of the chain of layers; INPUTS: the values a sub-model is called with."""
        layers = self.cfg.get("layers", [])
        if not layers:
            raise ModelError(f"model '{self.model_name}': {self._what()} has no layers")
        if inputs is not None:
            if len(inputs) != 1:
                raise ModelError(f"model '{self.model_name}': {self._what()} is called with {len(inputs)} inputs, "
                                 "a Sequential model takes one")
            x = inputs[0]
            layers = layers[1:] if layers[0]["class_name"] == "InputLayer" else layers
        elif layers[0]["class_name"] == "InputLayer":
            x = self._input_layer(layers[0])
            layers = layers[1:]
        else:
            first = layers[0].get("config", {})
            shape = first.get("batch_input_shape") or first.get("batch_shape") or self.cfg.get("build_input_shape")
            if shape is None:
                raise ModelError(f"model '{self.model_name}': Sequential model has no input shape (never built)")
            x = self._add_input("input", shape, first.get("dtype") if isinstance(first.get("dtype"), str) else None)
        for layer in layers:
            outs = self._convert(layer, [x], {})
            if len(outs) != 1:
                raise self._ctx(layer).error("a layer inside a Sequential model must have one output")
            x = outs[0]
        return [x]

    def _functional(self, inputs=None):
        """The model's output values; INPUTS: the values a sub-model is called with."""
        layers = self.cfg.get("layers", [])
        input_names = [r[0] for r in _refs(self.cfg.get("input_layers", []))]
        if inputs is not None and len(inputs) != len(input_names):
            raise ModelError(f"model '{self.model_name}': {self._what()} is called with {len(inputs)} inputs, "
                             f"it has {len(input_names)}")
        keras2 = any(isinstance(n, list) for layer in layers for n in layer.get("inbound_nodes", []))
        self.first_call = {layer["config"]["name"]: _first_call_index(layer["class_name"], keras2) for layer in layers}
        pending = []
        for layer in layers:
            if layer["class_name"] == "InputLayer":
                name = layer["config"]["name"]
                self.tensors[(name, 0, 0)] = self._input_layer(layer) if inputs is None \
                    else inputs[input_names.index(name)]
                continue
            for i, node in enumerate(layer.get("inbound_nodes", [])):
                pending.append((layer, i + keras2 * self.first_call[layer["config"]["name"]], _parse_node(node)))
        while pending:  # convert every call whose inputs are ready (config order is usually topological)
            progress = False
            for item in list(pending):
                layer, i, (args, kwargs) = item
                refs = [r for r in args if not isinstance(r, Literal)] + [r for r in kwargs.values() if r is not None]
                if all(tuple(r) in self.tensors for r in refs):
                    ins = [self.graph.add_const(np.float32(r.value), self.graph.fresh("literal"))
                           if isinstance(r, Literal) else self.tensors[tuple(r)] for r in args]
                    kw = {k: self.tensors[tuple(r)] for k, r in kwargs.items() if r is not None}
                    outs = self._convert(layer, ins, kw)
                    for t, v in enumerate(outs):
                        self.tensors[(layer["config"]["name"], i, t)] = v
                    pending.remove(item)
                    progress = True
            if not progress:
                missing = sorted({r[0] for _, _, (a, k) in pending for r in a + list(k.values())
                                  if r is not None and not isinstance(r, Literal) and tuple(r) not in self.tensors})
                raise ModelError(f"model '{self.model_name}': layer calls depend on tensors never produced "
                                 f"(from {', '.join(missing)})")
        outs = [self._ref(r, keras2) for r in _refs(self.cfg.get("output_layers", []))]
        if inputs is None:
            ins = [self._ref(r, keras2) for r in _refs(self.cfg.get("input_layers", []))]
            order = {v: i for i, v in enumerate(ins)}
            self.graph.inputs.sort(key=lambda v: order.get(v.name, len(order)))
        return outs

    def _what(self):
        return f"sub-model '{self.prefix[:-1]}'" if self.prefix else f"{self.cls} model"

    def _ref(self, r, keras2):
        """The value of model input/output reference R: its node index counts a sub-model's own
        node (see _first_call_index), which in Keras 3 the layer calls' references do not."""
        try:
            name, node, t = r
            return self.tensors[(name, node - (not keras2) * self.first_call.get(name, 0), t)]
        except (KeyError, ValueError, TypeError):
            raise ModelError(f"model '{self.model_name}': model tensor {list(r)} is never produced") from None

    def _name_outputs(self, layer_names):
        """Rename each output to its layer name where that name is free (readable artifacts)."""
        for i, (out, want) in enumerate(zip(list(self.graph.outputs), layer_names)):
            if out == want or want in self.graph.values or out in {v.name for v in self.graph.inputs} \
                    or out in self.graph.constants or self.graph.outputs.count(out) > 1:
                continue
            g = self.graph
            g.values[want] = type(g.values[out])(want, g.values[out].shape, g.values[out].dtype)
            del g.values[out]
            for n in g.nodes:
                n.inputs = [want if v == out else v for v in n.inputs]
                n.outputs = [want if v == out else v for v in n.outputs]
            g.outputs = [want if v == out else v for v in g.outputs]

    # ---- one layer call -----------------------------------------------------------------------
    def _ctx(self, layer):
        name = layer.get("config", {}).get("name") or layer.get("name")
        # a layer shared by two (sub-)models has its weights stored once, where Keras met it first
        weights = self.weights.get(name) or _find_weights(self.all_weights, name) or []
        return Context(self, layer, weights)

    def _convert(self, layer, inputs, kwargs):
        ctx = self._ctx(layer)
        if ctx.cls in MODEL_CLASSES:
            return self._submodel(ctx, layer, inputs)
        fn = CONVERTERS.get(ctx.cls)
        if fn is None:
            raise ctx.unsupported(f"layer class {ctx.cls!r} is not supported")
        if ctx.config.get("data_format", "channels_last") != "channels_last":
            ctx.require("data_format", "channels_last")
        ctx.kwargs = dict(kwargs)
        self._check_options(ctx)
        outs = run_converter(ctx, fn, ctx, inputs)
        if ctx.kwargs:
            raise ctx.unsupported(f"call argument(s) {', '.join(sorted(ctx.kwargs))} are not supported")
        return outs


    def _submodel(self, ctx, layer, inputs):
        """Inline one call of the sub-model LAYER: its layers convert into this graph."""
        weights = ctx.weights if isinstance(ctx.weights, dict) else {}
        if not isinstance(ctx.weights, dict) and len(ctx.weights):
            raise ctx.error("the file stores the sub-model's weights as one flat list, not per layer")
        child = Importer({"class_name": ctx.cls, "config": ctx.config}, weights, name=self.model_name,
                         parent=self, prefix=ctx.name + "/")
        child._check_structure()
        return child._sequential(inputs) if ctx.cls == "Sequential" else child._functional(inputs)


def _find_weights(tree, name, depth=0):
    """The first non-empty weights of layer NAME in the nested {layer name: arrays or dict} TREE."""
    if tree.get(name):
        return tree[name]
    for sub in tree.values():
        if isinstance(sub, dict) and depth < 100:
            found = _find_weights(sub, name, depth + 1)
            if found:
                return found
    return None


def _first_call_index(cls, keras2):
    """The node index of a layer's first call: 1 for a functional sub-model (its node 0 links its
    own inputs to its outputs), also for a Sequential one in Keras 2 files (there a Sequential is
    functional); else 0. Keras 2 counts it in every reference; Keras 3 only in the model's
    input/output references, not in those of layer calls."""
    return int(cls in ("Functional", "Model") or (cls == "Sequential" and keras2))


def _ints_at_least(value, least):
    """VALUE is an int >= LEAST, or a (nested) list of them (JSON: no bools, no floats like 1e999)."""
    if isinstance(value, list):
        return len(value) <= 8 and all(_ints_at_least(v, least) for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and least <= value < 2**31


def _dtype_name(dtype):
    if isinstance(dtype, dict):  # a DTypePolicy
        dtype = dtype.get("config", {}).get("name")
    return dtype


def _is_tensor(obj):
    return isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__"


class Literal:
    """A number passed to a layer call (Keras 3 ops such as `x + 3.0` in MobileNetV3's hard sigmoid)."""

    def __init__(self, value):
        self.value = value


def _parse_node(node):
    """(positional tensor refs, {kwarg: tensor ref}) of one inbound node, either file format."""
    if isinstance(node, dict):  # Keras 3
        args = []

        def walk(obj):
            if _is_tensor(obj):
                args.append(obj["config"]["keras_history"][:3])
            elif isinstance(obj, (int, float)) and not isinstance(obj, bool):  # `x + 3.0` in a functional model
                args.append(Literal(obj))
            elif isinstance(obj, (list, tuple)):
                for o in obj:
                    walk(o)
        walk(node.get("args", []))
        kwargs = {}
        for k, v in node.get("kwargs", {}).items():
            if _is_tensor(v):
                kwargs[k] = v["config"]["keras_history"][:3]
            elif isinstance(v, (list, tuple)) and any(_is_tensor(o) for o in v):
                for j, o in enumerate(v):
                    kwargs[f"{k}[{j}]"] = o["config"]["keras_history"][:3] if _is_tensor(o) else None
        return args, kwargs
    return [list(t[:3]) for t in node], {}  # Keras 2: [[layer, node, tensor, kwargs], ...]


def _refs(spec):
    """output_layers / input_layers: one [name, node, tensor] or a list of them."""
    if spec and isinstance(spec[0], str):
        return [spec[:3]]
    return [s[:3] for s in spec]
