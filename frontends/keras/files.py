"""Read a Keras model file without TensorFlow or Keras: its config (JSON) and its weights (h5py).

`.keras` (Keras 3): a zip of config.json, metadata.json and model.weights.h5, where a layer's
variables live under `layers/<snake_case(class)>[_N]/vars/0..k` (plus `cell/`, `forward_layer/`,
`backward_layer/` for nested layers). Legacy `.h5`: root attribute `model_config` (JSON) and
weights under `model_weights/<layer name>/`, listed in order by each group's `weight_names`.

Either way the result is the model's serialized config and, per layer name, a flat list of its
weight arrays in the layer's own variable order (nested layers: forward before backward).
"""
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from ...errors import ModelError


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
                config = json.loads(z.read("config.json"))
                blob = z.read("model.weights.h5")
            with h5py.File(io.BytesIO(blob), "r") as f:
                return config, _keras_v3_weights(config, f)
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise ModelError(f"'{path}' holds weights only (no model_config); save the whole model")
            raw = f.attrs["model_config"]
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            return config, _legacy_weights(f["model_weights"] if "model_weights" in f else f)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ModelError(f"Keras model '{path}' is corrupt or not a Keras model: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'unreadable'}") from None


def _keras_v3_weights(config, f):
    """Weights of the top-level layers, found by each group's `vars` name attribute, or else by
    the storage key Keras derives from the class name (counted in model.layers order)."""
    out = {}
    if "layers" not in f:
        return out
    by_key = _storage_keys(config)
    for key, group in f["layers"].items():
        vars_ = group.get("vars")
        name = vars_.attrs.get("name") if vars_ is not None else None
        name = name.decode() if isinstance(name, bytes) else name
        name = name or by_key.get(key)
        if name:
            out[name] = _collect(group)
    return out


def _storage_keys(config):
    layers = config.get("config", {}).get("layers", [])
    if config.get("class_name") == "Sequential":
        layers = [lc for lc in layers if lc.get("class_name") != "InputLayer"]
    keys, seen = {}, {}
    for lc in layers:
        base = snake_case(lc["class_name"])
        n = seen.get(base, 0)
        seen[base] = n + 1
        keys[base if n == 0 else f"{base}_{n}"] = lc.get("config", {}).get("name")
    return keys


def _child_order(key):
    return (0 if key == "forward_layer" else 1 if key == "backward_layer" else 2, key)


def _collect(group):
    arrays = []
    if "vars" in group:
        vars_ = group["vars"]
        arrays += [np.asarray(vars_[k]) for k in sorted(vars_, key=int)]
    for key in sorted((k for k in group if k != "vars"), key=_child_order):
        arrays += _collect(group[key])
    return arrays


def _legacy_weights(root):
    out = {}
    for name, group in root.items():
        names = group.attrs.get("weight_names", [])
        out[name] = [np.asarray(group[n.decode() if isinstance(n, bytes) else n]) for n in names]
    return out
