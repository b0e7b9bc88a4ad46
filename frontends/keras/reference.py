"""The independent reference for `edgec verify` of a Keras model: Keras's own `predict`.

Only this module imports Keras (and so TensorFlow); the importer itself never does.
"""
from ...errors import EdgecError, ModelError
from .files import read


def keras_predict(model_path, inputs):
    """(reference name, list of outputs) of Keras `predict` on INPUTS (dict input name -> array)."""
    try:
        import keras
    except ImportError:
        raise EdgecError(f"verifying '{model_path}' against Keras needs the keras extra "
                         "(pip install 'edgec[keras]'), or pass an ONNX export: --reference model.onnx") from None
    config, _ = read(model_path)
    names = _input_names(config)
    missing = [n for n in names if n not in inputs]
    if missing:
        raise EdgecError(f"'{model_path}': no values for input(s) {', '.join(missing)}")
    try:
        try:
            model = keras.saving.load_model(str(model_path), compile=False)
        except Exception:  # noqa: BLE001 - a legacy .h5 names keras.applications' own layers without their module
            model = keras.saving.load_model(str(model_path), compile=False, custom_objects=_application_layers(keras))
    except Exception as e:  # noqa: BLE001 - Keras raises many types; surface one line
        raise ModelError(f"Keras cannot load '{model_path}': {str(e).strip().splitlines()[0]}") from None
    args = [inputs[n] for n in names]
    try:
        out = model.predict(args[0] if len(args) == 1 else args, verbose=0)
    except Exception as e:  # noqa: BLE001 - Keras refuses the inputs (shapes, dtypes)
        raise ModelError(f"Keras cannot run '{model_path}' on these inputs: "
                         f"{' '.join(str(e).split())[:300]}") from None
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return f"Keras {keras.__version__} predict", outs


def _application_layers(keras):
    """{class name: class} of the layers keras.applications define for themselves (ConvNeXt's
    LayerScale), which Keras' legacy .h5 loader finds only when given them."""
    import importlib
    import pkgutil
    try:
        package = importlib.import_module("keras.src.applications")  # Keras 3's layout
    except ImportError:
        return {}
    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}")
        except ImportError:
            continue
        found.update({name: obj for name, obj in vars(module).items() if isinstance(obj, type)
                      and issubclass(obj, keras.layers.Layer) and obj.__module__ == module.__name__})
    return found


def _input_names(config):
    cfg = config.get("config", {})
    if config.get("class_name") == "Sequential":
        first = (cfg.get("layers") or [{}])[0]
        return [first.get("config", {}).get("name") if first.get("class_name") == "InputLayer" else "input"]
    spec = cfg.get("input_layers", [])
    spec = [spec] if spec and isinstance(spec[0], str) else spec
    return [s[0] for s in spec]
