"""The Keras frontend: `.keras`, legacy `.h5` and live `keras.Model` -> edgec Graph.

Model files are read with json + h5py only (no TensorFlow, no Keras); a live model is saved to
a temporary `.keras` file through its own API and read the same way.
"""
import os
import re
import tempfile

from ...errors import ModelError
from . import applications, conv, core, image, merge, pool, recurrent  # noqa: F401  (register the converters)
from .files import read
from .importer import Importer
from .registry import supported_layers

__all__ = ["from_keras", "supported_layers"]
GENERIC_NAME = re.compile(r"(sequential|functional|model)(_\d+)?|")


def from_keras(model_or_path, input_shapes=None, name=None):
    """Import a Keras model (a .keras / .h5 path or a live keras.Model) into an edgec Graph."""
    if isinstance(model_or_path, (str, os.PathLike)):
        if not os.path.isfile(model_or_path):
            raise ModelError(f"Keras model '{model_or_path}' does not exist")
        config, weights = read(model_or_path)
        own = config.get("config", {}).get("name") if isinstance(config.get("config"), dict) else None
        if name is None and (not isinstance(own, str) or GENERIC_NAME.fullmatch(own)):
            name = os.path.splitext(os.path.basename(model_or_path))[0]  # 'sequential_3' names nothing
    elif hasattr(model_or_path, "save") and hasattr(model_or_path, "get_config"):
        with tempfile.TemporaryDirectory(prefix="edgec-keras-") as tmp:
            path = os.path.join(tmp, "model.keras")
            model_or_path.save(path)
            config, weights = read(path)
    else:
        raise ModelError(f"from_keras wants a .keras/.h5 path or a keras.Model, got {type(model_or_path).__name__}")
    return Importer(config, weights, input_shapes, name).run()
