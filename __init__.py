"""edgec: compile Keras and ONNX models through Apache TVM for x86, ARM and CUDA edge devices.

    import edgec
    art = edgec.compile("model.onnx", target="host", output="model.edgec")
    model = edgec.load("model.edgec")
    outputs = model.run({"input": x})
    report = edgec.verify("model.onnx", "model.edgec")

The compiler side (compile, verify) imports TVM's compiler lazily; `edgec.load` and
`edgec.runtime` need only numpy and the TVM runtime.
"""
__version__ = "0.1.0"

_API = {"compile": "edgec.api", "verify": "edgec.api", "import_model": "edgec.api",
        "load": "edgec.runtime"}


def __getattr__(name):
    if name in _API:
        import importlib
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'edgec' has no attribute {name!r}")


from .errors import EdgecError  # noqa: E402,F401
