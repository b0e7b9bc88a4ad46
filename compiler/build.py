"""The compile driver: IR graph -> passes -> kernels -> Relax module -> TVM -> `.edgec` artifact."""
import contextlib
import os
import re
import tempfile
import time

import numpy as np

from ..errors import EdgecError
from ..progress import progress as progress_bar
from ..runtime import artifact
from . import lower
from .passes import run_passes


def to_relax(graph, kernels):
    """A Relax module whose `main(*inputs, *params)` calls one PrimFunc per kernel.

    Returns (module, param names, the PrimFunc name each kernel calls): the BlockBuilder shares
    one PrimFunc among structurally identical kernels, so that name can be another kernel's.
    """
    from tvm import relax
    bb = relax.BlockBuilder()
    env = {}
    args = []
    functions = []
    read = set(graph.outputs).union(*(n.inputs for n in graph.nodes))
    used = [c for c in graph.constants if c in read]
    params = [c for c in used if graph.constants[c].size]  # TVM's param files hold no empty tensors
    names = identifiers([v.name for v in graph.inputs] + params)
    for name in [v.name for v in graph.inputs] + params:
        v = graph.values[name]
        var = relax.Var(names[name], relax.TensorType(list(v.shape), v.dtype))
        env[name] = var
        args.append(var)
    with bb.function("main", args):
        with bb.dataflow():
            for c in used:
                if not graph.constants[c].size:
                    v = graph.values[c]
                    env[c] = bb.emit(relax.op.zeros(relax.ShapeExpr(list(v.shape)), v.dtype))
            for k in kernels:
                call = bb.emit_te(lower.te_kernel(graph, k), *[env[i] for i in k.inputs],
                                  primfunc_name_hint=k.name)
                functions.append(bb.lookup_binding(call).args[0].name_hint)
                if len(k.outputs) == 1:
                    env[k.outputs[0]] = call
                else:
                    for i, o in enumerate(k.outputs):
                        env[o] = bb.emit(relax.TupleGetItem(call, i))
            outs = [env[o] for o in graph.outputs]
            result = bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
        bb.emit_func_output(result)
    return bb.get(), params, functions


def lowered_kernels(graph, preset, disable_passes=()):
    """[(kernel description, PrimFunc)] of GRAPH for PRESET, one per distinct PrimFunc."""
    graph = run_passes(graph, disable=disable_passes, preset=preset)
    kernels = lower.partition(graph)
    mod, _, functions = to_relax(graph, kernels)
    by_function = {}
    for k, f in zip(kernels, functions):
        by_function.setdefault(f, k.describe(graph))
    return [(by_function[gv.name_hint], func) for gv, func in mod.functions_items()
            if gv.name_hint in by_function]


C_KEYWORDS = frozenset("""auto bool break case char const continue default do double else enum extern float for
goto if inline int long register restrict return short signed sizeof static struct switch typedef union unsigned
void volatile while class delete new private public protected template this throw try catch namespace using
virtual friend operator true false nullptr""".split())


def identifiers(names):
    """{name: a distinct C identifier for it}. TVM names kernel parameters and buffers after the
    Relax variables, and the CUDA C++ it writes keeps them: source names like
    `model/conv_1/BiasAdd:0` must become `model_conv_1_BiasAdd_0` (the manifest keeps the source names)."""
    out, taken = {}, set()
    for name in names:
        c = re.sub(r"[^A-Za-z0-9_]", "_", name)
        if not c or c[0].isdigit() or c in C_KEYWORDS or c.startswith("__"):
            c = "v_" + c
        unique, k = c, 1
        while unique in taken:
            k += 1
            unique = f"{c}_{k}"
        taken.add(unique)
        out[name] = unique
    return out


def apply_schedules(mod, kernels, preset, progress=None, tuned=None):
    """Schedule every kernel PrimFunc of MOD for PRESET (TUNED: a targets.tune.Tuned database whose
    schedule wins where it beat the hand schedule)."""
    import tvm
    from ..targets import schedules
    by_name = {k["name"]: k for k in kernels}
    updates = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc) and gv.name_hint in by_name:
            func = func.with_attr("global_symbol", gv.name_hint)
            scheduled = tuned.schedule(func) if tuned else None
            if scheduled is None:
                scheduled = schedules.schedule(func, by_name[gv.name_hint], preset)
            updates[gv] = scheduled
            if progress:
                progress()
    for gv, func in updates.items():
        mod[gv] = func
    return mod


def compile_graph(graph, preset, output, *, disable_passes=(), model_info=None, progress=True, tune_db=None,
                  sign_key=None, debug=False):
    """Compile GRAPH for PRESET into artifact OUTPUT (signed with ed25519 private key file SIGN_KEY if
    given); return the manifest. DEBUG: the artifact also returns every kernel's outputs, after the
    model's own (`edgec verify --per-layer`)."""
    import tvm
    from .. import __version__
    from ..targets import export
    t0 = time.perf_counter()
    graph = run_passes(graph, disable=disable_passes, preset=preset)
    kernels = lower.partition(graph)
    if debug:
        graph.outputs = list(dict.fromkeys([*graph.outputs, *(o for k in kernels for o in k.outputs)]))
    described = [k.describe(graph) for k in kernels]
    mod, params, functions = to_relax(graph, kernels)
    for d, f in zip(described, functions):
        d["function"] = f
    target = preset.tvm_target()
    with progress_bar(progress, f"compiling {graph.name} for {preset.name}", len(kernels) + 1) as step:
        with target:
            tuned = None
            if tune_db:
                from ..targets.tune import Tuned
                tuned = Tuned(tune_db, target)
            mod = apply_schedules(mod, described, preset, step, tuned)
        try:
            with _keep_device_source(preset), _pass_config(preset):
                ex = tvm.compile(mod, target=target)
        except Exception as e:  # noqa: BLE001 - TVM raises many types; surface one line
            raise EdgecError(f"model '{graph.name}': TVM failed to compile for {preset.name}: "
                             f"{str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}") from e
        step()
    device_code, export_options = None, {}
    if preset.device == "cuda":  # device code compiled now: loading needs no compiler
        from ..targets import cuda
        source = _device_source(ex, "cuda")
        device_code = cuda.compile_device_code(source, preset)
        export_options["fpack_imports"] = cuda.pack_imports(source, device_code.binary)
    with tempfile.TemporaryDirectory(prefix="edgec-build-") as tmp:
        lib = os.path.join(tmp, "model.so")
        export.export_library(ex, lib, preset, **export_options)
        pfile = os.path.join(tmp, "params.bin")
        tvm.runtime.save_param_dict_to_file(
            {p: tvm.runtime.tensor(np.require(graph.constants[p], requirements="C")) for p in params}, pfile)
        manifest = {
            "model": dict(model_info or {}, name=graph.name),
            "versions": _versions(__version__),
            "target": preset.to_json(),
            "params": params,
            "inputs": [dict(v.to_json(), **({"range": graph.input_ranges[v.name]} if v.name in graph.input_ranges
                                             else {})) for v in graph.inputs],
            "outputs": [graph.values[o].to_json() for o in graph.outputs],
            "kernels": described,
            "tvm_names": {n: c for n, c in identifiers([v.name for v in graph.inputs] + params).items() if n != c},
            "compile_seconds": round(time.perf_counter() - t0, 3),
        }
        members = {artifact.LIBRARY: lib, artifact.PARAMS: pfile}
        if device_code:  # the library holds the fatbin; the CUDA C++ it came from is kept for inspection
            manifest["device_code"] = device_code.to_json()
            members[artifact.CUDA_SOURCE] = os.path.join(tmp, artifact.CUDA_SOURCE)
            with open(members[artifact.CUDA_SOURCE], "w") as f:
                f.write(source)
        return artifact.write(output, members, manifest, sign_key)


def _keep_device_source(preset):
    """Where TVM's device code must stay source for the preset's own compiler (targets/cuda.py)."""
    if preset.device == "cuda":
        from ..targets import cuda
        return cuda.keep_device_source()
    return contextlib.nullcontext()


def _pass_config(preset):
    """TVM's lowering options for the preset: on CPUs, LoopPartition also splits loops of constant
    extent at their `likely` conditions (a pointwise GEMM's padded last tile, compiler/lower/packed.py:
    the whole tiles then run without the bound check, which would make them scalar)."""
    import tvm
    if preset.device == "cuda":
        return contextlib.nullcontext()
    return tvm.transform.PassContext(config={"s_tir.LoopPartition": {"partition_const_loop": True}})


def _device_source(ex, fmt):
    """The device code TVM generated (e.g. CUDA C++), found among the executable's imports."""
    pending, texts = list(ex.mod.imports), []
    while pending:
        m = pending.pop()
        pending += list(m.imports)
        try:
            texts.append(m.inspect_source(fmt))
        except Exception:  # noqa: BLE001 - host (LLVM) modules have no CUDA source
            pass
    return "\n".join(texts)


def _versions(edgec_version):
    import importlib.metadata as md
    import tvm
    try:
        ffi = md.version("apache-tvm-ffi")
    except md.PackageNotFoundError:
        ffi = "unknown"
    return {"edgec": edgec_version, "tvm": tvm.__version__, "tvm_ffi": ffi}
