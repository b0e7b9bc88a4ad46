"""Read a Keras model file without TensorFlow or Keras: its config (JSON) and its weights (h5py).

`.keras` (Keras 3): a zip of config.json, metadata.json and model.weights.h5, where a layer's
variables live under `layers/<snake_case(class)>[_N]/vars/0..k` (plus `cell/`, `forward_layer/`,
`backward_layer/` for nested layers). Legacy `.h5`: root attribute `model_config` (JSON) and
weights under `model_weights/<layer name>/`, listed in order by each group's `weight_names`.

Either way the result is the model's serialized config and, per layer name, a flat list of its
weight arrays in the layer's own variable order (nested layers: forward before backward). A
sub-model used as a layer gets a dict of its own instead, {its layer name: arrays or dict}: from
its `layers/` group in a .keras file, from its weight names (`stem/conv2d/kernel`) in an .h5.
"""
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from ...errors import ModelError

MAX_CONFIG_BYTES = 64 << 20  # config.json / model_config
MAX_WEIGHTS_BYTES = 4 << 30  # model.weights.h5 inside a .keras zip
MAX_RATIO = 200  # a zip member that inflates more than this (and past 64 MiB) is a bomb, not weights
MAX_DEPTH = 200  # nesting of the config JSON
MODEL_CLASSES = ("Sequential", "Functional", "Model")


def snake_case(name):
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def read(path):
    """(config dict, {layer name: [arrays]}) of the Keras model file PATH."""
    import h5py
    path = Path(path)
    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as z:
                config = _config(path, _member(path, z, "config.json", MAX_CONFIG_BYTES))
                blob = _member(path, z, "model.weights.h5", MAX_WEIGHTS_BYTES)
            with h5py.File(io.BytesIO(blob), "r") as f:
                return config, _keras_v3_weights(config, f)
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise ModelError(f"'{path}' holds weights only (no model_config); save the whole model")
            attr = f.attrs.get_id("model_config")
            if attr.get_storage_size() > MAX_CONFIG_BYTES:
                raise ModelError(f"Keras model '{path}': model_config is larger than {MAX_CONFIG_BYTES >> 20} MiB")
            raw = f.attrs["model_config"]
            if isinstance(raw, np.ndarray) and raw.size == 1:
                raw = raw.reshape(-1)[0]
            if not isinstance(raw, (bytes, str)):
                raise ModelError(f"Keras model '{path}': model_config is not JSON text")
            config = _config(path, raw)
            return config, _legacy_weights(path, config, f["model_weights"] if "model_weights" in f else f)
    except (OSError, KeyError, ValueError, TypeError, AttributeError, RuntimeError, EOFError,
            zipfile.BadZipFile, zipfile.LargeZipFile) as e:  # h5py and zipfile errors on a damaged file
        raise ModelError(f"Keras model '{path}' is corrupt or not a Keras model: {type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200] or 'unreadable'}") from None


def _member(path, z, name, limit):
    """Member NAME of zip Z, read only after its declared size passed the checks, and at most LIMIT bytes."""
    try:
        info = z.getinfo(name)
    except KeyError:
        raise ModelError(f"Keras model '{path}' has no {name}: not a Keras 3 .keras file") from None
    if info.file_size > limit:
        raise ModelError(f"Keras model '{path}': {name} declares {info.file_size} bytes, more than edgec reads "
                         f"({limit >> 20} MiB)")
    if info.file_size > 64 << 20 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ModelError(f"Keras model '{path}': {name} inflates {info.compress_size} bytes to "
                         f"{info.file_size} (a zip bomb?)")
    with z.open(info) as f:
        data = f.read(info.file_size + 1)
    if len(data) > info.file_size:
        raise ModelError(f"Keras model '{path}': {name} holds more than the {info.file_size} bytes it declares")
    return data


def _config(path, raw):
    """The model config: JSON text of at most MAX_DEPTH levels, a dict."""
    try:
        config = json.loads(raw)
    except RecursionError:
        raise ModelError(f"Keras model '{path}': the config is nested too deeply") from None
    if _depth(config) > MAX_DEPTH:
        raise ModelError(f"Keras model '{path}': the config is nested deeper than {MAX_DEPTH} levels")
    if not isinstance(config, dict):
        raise ModelError(f"Keras model '{path}': the config is a JSON {type(config).__name__}, not an object")
    return config


def _depth(obj):
    """Nesting depth of a JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            break
        if isinstance(o, dict):
            stack += [(v, d + 1) for v in o.values()]
        elif isinstance(o, list):
            stack += [(v, d + 1) for v in o]
    return deepest


def _keras_v3_weights(config, f, depth=0):
    """Weights of the model's layers, found by each group's `vars` name attribute, or else by
    the storage key Keras derives from the class name (counted in model.layers order); a
    sub-model's from its own `layers/` group."""
    out = {}
    if "layers" not in f or not isinstance(f["layers"], h5py_group()):
        return out
    if depth > MAX_DEPTH:
        raise ModelError(f"weights group '{f.name}' is nested too deeply")
    by_key = _storage_keys(config)
    configs = {_layer_name(lc): lc for lc in _layer_configs(config)}
    for key, group in f["layers"].items():
        if not isinstance(group, h5py_group()):
            continue
        vars_ = group.get("vars")
        name = vars_.attrs.get("name") if isinstance(vars_, h5py_group()) else None
        name = name.decode() if isinstance(name, bytes) else name
        name = (name if isinstance(name, str) else None) or by_key.get(key)
        if name and configs.get(name, {}).get("class_name") in MODEL_CLASSES:
            out[name] = _keras_v3_weights(configs[name], group, depth + 1)
        elif name:
            out[name] = _collect(group)
    return out


def _layer_configs(config):
    """The layer configs (dicts with a class name) of a model config."""
    cfg = config.get("config")
    layers = cfg.get("layers", []) if isinstance(cfg, dict) else []
    return [lc for lc in layers if isinstance(lc, dict) and isinstance(lc.get("class_name"), str)] \
        if isinstance(layers, list) else []


def _layer_name(lc):
    lcfg = lc.get("config")
    return lcfg.get("name") if isinstance(lcfg, dict) else None


def h5py_group():
    import h5py
    return h5py.Group


def _array(ds):
    """Dataset DS as a numeric numpy array, its declared size checked before reading."""
    import h5py
    if not isinstance(ds, h5py.Dataset):
        raise ModelError(f"weight '{ds.name}' is not an array")
    if ds.dtype.kind not in "fiub":
        raise ModelError(f"weight '{ds.name}' holds {ds.dtype} values, not numbers")
    nbytes = int(np.prod(ds.shape, dtype=object)) * ds.dtype.itemsize if ds.shape is not None else 0
    if nbytes > MAX_WEIGHTS_BYTES or (nbytes > 64 << 20 and ds.id.get_storage_size() * MAX_RATIO < nbytes):
        raise ModelError(f"weight '{ds.name}' declares shape {list(ds.shape)} ({nbytes} bytes), more than its file holds")
    return np.asarray(ds)


def _storage_keys(config):
    layers = _layer_configs(config)
    if config.get("class_name") == "Sequential":
        layers = [lc for lc in layers if lc.get("class_name") != "InputLayer"]
    keys, seen = {}, {}
    for lc in layers:
        base = snake_case(lc["class_name"])
        n = seen.get(base, 0)
        seen[base] = n + 1
        keys[base if n == 0 else f"{base}_{n}"] = _layer_name(lc)
    return keys


def _child_order(key):
    return (0 if key == "forward_layer" else 1 if key == "backward_layer" else 2, key)


def _collect(group, depth=0):
    if depth > MAX_DEPTH:
        raise ModelError(f"weights group '{group.name}' is nested too deeply")
    arrays = []
    if "vars" in group:
        vars_ = group["vars"]
        if not isinstance(vars_, h5py_group()) or not all(k.isdigit() for k in vars_):
            raise ModelError(f"weights group '{vars_.name}' is not a list of numbered arrays")
        arrays += [_array(vars_[k]) for k in sorted(vars_, key=int)]
    for key in sorted((k for k in group if k != "vars"), key=_child_order):
        if isinstance(group[key], h5py_group()):
            arrays += _collect(group[key], depth + 1)
    return arrays


def _legacy_weights(path, config, root):
    out = {}
    configs = {_layer_name(lc): lc for lc in _layer_configs(config)}
    for name, group in root.items():
        if not isinstance(group, h5py_group()):
            continue
        names = group.attrs.get("weight_names", [])
        names = [n.decode() if isinstance(n, bytes) else n for n in np.asarray(names).reshape(-1)]
        if not all(isinstance(n, str) for n in names):
            raise ModelError(f"Keras model '{path}': layer '{name}' lists weight names that are not text")
        out[name] = [_array(group[n]) for n in names]
        if configs.get(name, {}).get("class_name") in MODEL_CLASSES:
            out[name] = _split_by_layer(path, configs[name], names, out[name])
    return out


def _split_by_layer(path, config, names, arrays, depth=0):
    """The flat weights of sub-model CONFIG as {its layer name: arrays or dict}: a weight name
    (`stem/conv2d/kernel`, `conv2d/kernel:0`) names the layer that owns it."""
    if depth > MAX_DEPTH:
        raise ModelError(f"Keras model '{path}': sub-models nested too deeply")
    configs = {_layer_name(lc): lc for lc in _layer_configs(config)}
    parts = {}
    for wname, array in zip(names, arrays):
        steps = wname.split("/")
        at = next((i for i, step in enumerate(steps[:-1]) if step in configs), None)
        if at is None:
            raise ModelError(f"Keras model '{path}': weight '{wname}' of sub-model '{_layer_name(config)}' "
                             "names none of its layers")
        names_arrays = parts.setdefault(steps[at], ([], []))
        names_arrays[0].append("/".join(steps[at + 1:]))
        names_arrays[1].append(array)
    return {name: _split_by_layer(path, configs[name], sub_names, sub_arrays, depth + 1)
            if configs[name].get("class_name") in MODEL_CLASSES else sub_arrays
            for name, (sub_names, sub_arrays) in parts.items()}
