"""Seeded mutation fuzzing of the Keras frontend: the example models (Sequential CNN and LSTM), a
hand-written functional model and a legacy .h5, each with one mutation (config values and types,
config structure, weights, zip members, raw bytes) are imported, every 25th also compiled, in a
memory-capped worker (tests/fuzz.py): success or a one-line EdgecError, never anything else.

`make test` runs 150 cases; `pytest -m fuzz` runs 2,000. Regression cases from the issue
(a config nested 100,000 deep, `layers = 7`, a zip member declaring 3 GiB...) run by name.
"""
import copy
import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgec.errors import EdgecError
import fuzz
from fuzz import run_cases

h5py = pytest.importorskip("h5py", reason="h5py (the dev extra) reads Keras weights")
EXAMPLES = Path(__file__).parent.parent / "examples"
CATEGORIES = ["config", "structure", "weights", "zip", "bytes", "legacy"]
VALUES = [0, -1, 2**40, float("inf"), float("nan"), None, "x", "", [], {}, [0, 0], [1, -1], True, 1.5,
          [[[[1]]]], {"class_name": "Foo"}]


def _read_keras(path):
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("config.json")), z.read("model.weights.h5")


def _keras_bytes(config, weights_h5, config_text=None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.0"}))
        z.writestr("config.json", config_text if config_text is not None else json.dumps(config))
        z.writestr("model.weights.h5", weights_h5)
    return buf.getvalue()


def _h5_bytes(build):
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        build(f)
    return buf.getvalue()


def _tensor(layer):
    return {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "dtype": "float32",
                                                          "keras_history": [layer, 0, 0]}}


def functional_seed():
    """x -> Dense(4, relu), Dense(4) -> Add -> Dense(3, softmax), as Keras 3 writes it."""
    def dense(name, units, act, src):
        return {"class_name": "Dense", "name": name, "config": {"name": name, "units": units, "activation": act,
                                                                  "use_bias": True},
                "inbound_nodes": [{"args": [_tensor(src)], "kwargs": {}}]}
    layers = [{"class_name": "InputLayer", "name": "x", "config": {"name": "x", "batch_shape": [None, 6],
                                                                    "dtype": "float32"}, "inbound_nodes": []},
              dense("d1", 4, "relu", "x"), dense("d2", 4, "linear", "x"),
              {"class_name": "Add", "name": "add", "config": {"name": "add"},
               "inbound_nodes": [{"args": [[_tensor("d1"), _tensor("d2")]], "kwargs": {}}]},
              dense("y", 3, "softmax", "add")]
    config = {"class_name": "Functional", "config": {"name": "functional_seed", "layers": layers,
                                                     "input_layers": [["x", 0, 0]], "output_layers": [["y", 0, 0]]}}
    rng = np.random.default_rng(0)

    def build(f):
        for key, (i, o) in {"dense": (6, 4), "dense_1": (6, 4), "dense_2": (4, 3)}.items():
            g = f.create_group(f"layers/{key}/vars")
            g["0"] = rng.standard_normal((i, o)).astype(np.float32)
            g["1"] = rng.standard_normal(o).astype(np.float32)
        f.create_group("layers/add/vars")
        f.create_group("layers/input_layer/vars")
    return config, _h5_bytes(build)


def legacy_h5(config, weights):
    """A legacy .h5 (model_config attribute, model_weights/<layer>/ with weight_names) of a model."""
    from edgec.frontends.keras.files import _keras_v3_weights

    def build(f):
        f.attrs["model_config"] = json.dumps(config)
        with h5py.File(io.BytesIO(weights), "r") as src:
            arrays = _keras_v3_weights(config, src)
        root = f.create_group("model_weights")
        for layer, ws in arrays.items():
            g = root.create_group(layer)
            names = [f"{layer}/w{i}:0" for i in range(len(ws))]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for n, w in zip(names, ws):
                g[n] = w
    return _h5_bytes(build)


def seeds():
    """[(suffix, config, weights h5 bytes)]: .keras seeds and one legacy .h5."""
    out = [(".keras",) + _read_keras(EXAMPLES / "digits_cnn.keras"), (".keras",) + _read_keras(EXAMPLES / "seq_lstm.keras"),
           (".keras",) + functional_seed()]
    out.append((".h5", out[0][1], out[0][2]))
    return out


# ---- mutations ----------------------------------------------------------------------------------
def _paths(obj, prefix=()):
    """Every (path, value) inside a JSON value."""
    yield prefix, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        yield from _paths(v, prefix + (k,))


def _set(obj, path, value):
    for k in path[:-1]:
        obj = obj[k]
    if value is _DELETE:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


_DELETE = object()


def m_config(r, config):
    paths = [p for p, _ in _paths(config) if p]
    path = r.choice(paths)
    _set(config, path, _DELETE if r.random() < 0.15 else copy.deepcopy(r.choice(VALUES)))


def m_structure(r, config):
    cfg = config.get("config", {})
    layers = cfg.get("layers", [])
    choice = r.random()
    if choice < 0.1:
        cfg["layers"] = r.choice([7, "x", None, {}])
    elif choice < 0.2:
        config["config"] = r.choice([123, "x", [], None])
    elif choice < 0.3:
        config["class_name"] = r.choice(["Model", "Sequential", "Functional", "Foo", 5])
    elif choice < 0.5 and len(layers) > 1:
        del layers[r.randrange(len(layers))]
    elif choice < 0.6 and layers:
        layers.insert(r.randrange(len(layers)), copy.deepcopy(r.choice(layers)))
    elif choice < 0.7 and layers:
        r.shuffle(layers)
    elif choice < 0.85 and layers:
        r.choice(layers)["class_name"] = r.choice(["Conv2D", "Dense", "LSTM", "Add", "Flatten", "InputLayer",
                                                    "MaxPooling2D", "Unknown"])
    elif layers:
        layer = r.choice(layers)
        layer.setdefault("config", {})[r.choice(["filters", "kernel_size", "strides", "groups", "units",
                                                  "pool_size", "batch_shape", "padding"])] = r.choice(VALUES)


def m_weights(r, h5_bytes):
    buf = io.BytesIO(h5_bytes)
    with h5py.File(buf, "r+") as f:
        datasets = []
        f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
        if not datasets:
            return buf.getvalue()
        name = r.choice(datasets)
        old = f[name]
        shape, dtype = old.shape, old.dtype
        del f[name]
        choice = r.random()
        if choice < 0.2:
            f[name] = np.array([b"abc"] * max(1, int(np.prod(shape) or 1)))
        elif choice < 0.4:
            f.create_dataset(name, shape=(2**20, 2**20), dtype="float32")  # declared 4 TiB, nothing stored
        elif choice < 0.55:
            f[name] = np.zeros(tuple(d + 1 for d in shape) or (2,), dtype)
        elif choice < 0.7:
            f[name] = np.full(shape, np.nan, dtype)
        elif choice < 0.8:
            f[name] = np.zeros(shape, r.choice(["int8", "float64", "bool", "complex64"]))
        elif choice < 0.9:
            f.create_group(name)
        # else: deleted
    return buf.getvalue()


def _patch_declared_size(data, member, size):
    """Rewrite MEMBER's uncompressed size in the zip's local and central headers (a lying bomb)."""
    data = bytearray(data)
    name = member.encode()
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (i := data.find(sig, start)) >= 0:
            name_at = i + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                data[i + offset:i + offset + 4] = struct.pack("<I", size)
            start = i + 4
    return bytes(data)


def m_zip(r, config, weights):
    choice = r.random()
    member = r.choice(["config.json", "model.weights.h5"])
    if choice < 0.4:
        return _patch_declared_size(_keras_bytes(config, weights), member, r.choice([2**32 - 1, 3 << 30, 0, 5]))
    if choice < 0.6:  # a real deflate bomb: 80 MiB of zeros in ~80 KB
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("config.json", json.dumps(config) if member != "config.json" else b"\0" * (80 << 20))
            z.writestr("model.weights.h5", weights if member != "model.weights.h5" else b"\0" * (80 << 20))
        return buf.getvalue()
    if choice < 0.8:  # a member missing
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("config.json" if member != "config.json" else "other.json", json.dumps(config))
        return buf.getvalue()
    text = r.choice(["", "{", "[]", "42", "null", '"x"', "\xff", "[" * 50000 + "]" * 50000, "NaN"])
    return _keras_bytes(config, weights, config_text=text)


def m_legacy(r, config, weights):
    data = legacy_h5(config, weights)
    buf = io.BytesIO(data)
    with h5py.File(buf, "r+") as f:
        choice = r.random()
        if choice < 0.3:
            f.attrs["model_config"] = r.choice([42, b"\xff\xfe", "[]", json.dumps(7), np.arange(3)])
        elif choice < 0.5:
            del f.attrs["model_config"]
        elif choice < 0.8:
            layer = r.choice(list(f["model_weights"]))
            f["model_weights"][layer].attrs["weight_names"] = r.choice([[b"nope"], [1, 2], b"x", np.zeros(3)])
        else:
            del f["model_weights"]
    return buf.getvalue()


def mutate(r, seed, category):
    suffix, config, weights = seed
    config = copy.deepcopy(config)
    if category == "legacy":
        return ".h5", m_legacy(r, config, weights)
    if category == "zip":
        return ".keras", m_zip(r, config, weights)
    if category == "config":
        for _ in range(r.choice([1, 1, 2, 3])):
            m_config(r, config)
    elif category == "structure":
        m_structure(r, config)
    elif category == "weights":
        weights = m_weights(r, weights)
    data = legacy_h5(config, weights) if suffix == ".h5" and category != "bytes" else _keras_bytes(config, weights)
    if suffix == ".h5" and category == "bytes":
        data = legacy_h5(config, weights)
    if category == "bytes":
        data = bytearray(data)
        if r.random() < 0.3:
            return suffix, bytes(data[:r.randrange(len(data))])
        for _ in range(r.randint(1, 16)):
            data[r.randrange(len(data))] = r.randrange(256)
        return suffix, bytes(data)
    return suffix, data


def check(tmp_path, n, seed, compile_every=25):
    models = seeds()

    def make(r, category):
        try:
            return mutate(r, r.choice(models), category)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, EdgecError):
            return None  # json/h5py refuse to write it, or the legacy .h5 cannot be made from the mutated weights
    return fuzz.check(tmp_path, "Keras", CATEGORIES, make, n, seed, compile_every)


# ---- regression cases from the issue ---------------------------------------------------------------
def regression_files(folder):
    config, weights = _read_keras(EXAMPLES / "digits_cnn.keras")
    files = {}

    def keras(name, cfg=None, w=weights, text=None):
        files[name] = _keras_bytes(cfg if cfg is not None else config, w, text)

    def with_(mutator):
        c = copy.deepcopy(config)
        mutator(c)
        return c

    keras("deep.keras", text='{"a":' * 100_000 + "1" + "}" * 100_000)
    keras("layers7.keras", with_(lambda c: c["config"].__setitem__("layers", 7)))
    keras("config123.keras", with_(lambda c: c.__setitem__("config", 123)))
    keras("strides0.keras", with_(lambda c: c["config"]["layers"][1]["config"].__setitem__("strides", [0, 0])))
    keras("groups0.keras", with_(lambda c: c["config"]["layers"][1]["config"].__setitem__("groups", 0)))
    keras("filters_inf.keras", text=json.dumps(config).replace('"filters": 16', '"filters": 1e999', 1))
    keras("batch0.keras", with_(lambda c: c["config"]["layers"][0]["config"].__setitem__("batch_shape",
                                                                                       [None, 0, 8, 1])))
    def strings(f):
        del f["layers/conv2d/vars/0"]
        f["layers/conv2d/vars/0"] = np.array([b"abc"] * 4)
    keras("strings.keras", w=m_legacy_with(weights, strings))
    files["bomb_config.keras"] = _patch_declared_size(_keras_bytes(config, weights), "config.json", 3 << 30)
    files["bomb_weights.keras"] = _patch_declared_size(_keras_bytes(config, weights), "model.weights.h5", 3 << 30)

    def model_config_42(f):
        f.attrs["model_config"] = 42
    h5 = bytearray(legacy_h5(config, weights))
    files["model_config42.h5"] = m_legacy_with(h5, model_config_42)
    files["header.h5"] = bytes(h5[:8]) + b"\xff" * 40 + bytes(h5[48:])  # corrupted HDF5 superblock
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return list(files)


def m_legacy_with(data, edit):
    buf = io.BytesIO(bytes(data))
    with h5py.File(buf, "r+") as f:
        edit(f)
    return buf.getvalue()


def test_regressions_are_clean_errors(tmp_path):
    names = regression_files(tmp_path)
    results = run_cases(tmp_path, [(i, "regression", n, False) for i, n in enumerate(names)])
    for i, name in enumerate(names):
        _, outcome, detail = results[i]
        assert outcome == "error", f"{name}: {outcome}: {detail}"


def test_seed_models_compile(tmp_path):
    """The seeds are valid: all import; the functional and the legacy .h5 ones also compile (the
    examples compile in test_keras_examples)."""
    for i, (suffix, config, weights) in enumerate(seeds()):
        data = legacy_h5(config, weights) if suffix == ".h5" else _keras_bytes(config, weights)
        (tmp_path / f"seed{i}{suffix}").write_bytes(data)
    results = run_cases(tmp_path, [(i, "seed", f"seed{i}{s[0]}", i in (2, 3)) for i, s in enumerate(seeds())])
    assert all(o == "ok" for _, o, _ in results.values()), results


def test_fuzz_keras_sample(tmp_path):
    check(tmp_path, 150, seed=1)


@pytest.mark.fuzz
def test_fuzz_keras_full(tmp_path):
    check(tmp_path, 2000, seed=2, compile_every=10)


def test_generic_model_name_comes_from_the_file(tmp_path):
    from edgec import api
    config, weights = functional_seed()
    config["config"]["name"] = "functional_3"  # what Keras calls every unnamed model
    (tmp_path / "my_net.keras").write_bytes(_keras_bytes(config, weights))
    assert api.import_model(tmp_path / "my_net.keras").name == "my_net"
    config["config"]["name"] = "classifier"
    (tmp_path / "other.keras").write_bytes(_keras_bytes(config, weights))
    assert api.import_model(tmp_path / "other.keras").name == "classifier"
