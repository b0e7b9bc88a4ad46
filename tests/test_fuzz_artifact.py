"""Seeded mutation fuzzer for the artifact loader and the runtime's inputs.

Every case must end "ok or EdgecError": never another exception, a crash, a hang or unbounded
memory. Cases run in one worker process (runtime-only TVM) so that a crash names its case instead
of killing pytest; the worker reports one JSON line per case, and its peak RSS. One compiled
artifact is mutated (members rehashed where a category needs it, so the checks behind the hash
check are reached). A few hundred cases by default, thousands under `-m fuzz`.

    python tests/test_fuzz_artifact.py ARTIFACT N SEED [KEY]     # the worker (used by the tests)
"""
import collections
import copy
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np
import pytest

FILES = ("model.so", "params.bin")
WRONG = [None, True, 0, -1, 2 ** 63, 1.5, 1e308, "", "x", "../../etc/passwd", "/dev/zero", [], {}, [[]],
         {"name": 1}, [1, "a"], [-1], ["float32"], "float32"]


# ---- building artifacts -----------------------------------------------------------------------
def sha(data):
    return hashlib.sha256(data).hexdigest()


def member(name, data, kind=tarfile.REGTYPE, **attrs):
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = len(data), kind, 0o644
    for k, v in attrs.items():
        setattr(info, k, v)
    return info, data


def tar_bytes(entries, fmt=tarfile.USTAR_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def artifact_bytes(manifest, files, rehash=True, extra=(), sig=None):
    """A tar of MANIFEST (dict or raw bytes) and FILES {name: bytes}; REHASH: fix the manifest's
    hashes to match FILES (what an attacker who can rewrite members does)."""
    if isinstance(manifest, dict) and rehash:
        manifest = dict(manifest, files={n: sha(d) for n, d in files.items()})
    data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    entries = [member("manifest.json", data)] + ([member("manifest.sig", sig)] if sig is not None else [])
    return tar_bytes(entries + [member(n, d) for n, d in files.items()] + list(extra))


def gnu_sparse_member(name, data, realsize):
    """A GNU 'S' (old sparse) header claiming REALSIZE bytes, with a sparse map entry at the end."""
    info = tarfile.TarInfo(name)
    info.size, info.type = len(data), tarfile.GNUTYPE_SPARSE
    buf = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    buf[386:398] = b"%011o\0" % (realsize - len(data))  # sparse[0].offset
    buf[398:410] = b"%011o\0" % len(data)  # sparse[0].numbytes
    buf[483:495] = b"%011o\0" % realsize  # realsize
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf[:512])
    pad = (-len(data)) % 512
    return bytes(buf) + data + bytes(pad)


def raw_tar(blocks):
    return b"".join(blocks) + bytes(1024)


def param_dict(tensors):
    """TVM's param dict format for {name: array} (what a valid but wrong params.bin holds)."""
    codes = {"f": 2, "i": 0, "u": 1, "b": 6}
    out = [struct.pack("<QQQ", 0xF7E58D4F05049CB7, 0, len(tensors))]
    for name in tensors:
        out.append(struct.pack("<Q", len(name.encode())) + name.encode())
    out.append(struct.pack("<Q", len(tensors)))
    for a in tensors.values():
        out.append(struct.pack("<QQiiiBBH", 0xDD5E40F096B4A13F, 0, 1, 0, a.ndim, codes[a.dtype.kind],
                               a.dtype.itemsize * 8, 1))
        out.append(struct.pack(f"<{a.ndim}q", *a.shape) + struct.pack("<q", a.nbytes) + a.tobytes())
    return b"".join(out)


# ---- mutations: each returns (artifact bytes, trusted keys or None) -----------------------------
def json_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from json_paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from json_paths(v, prefix + (i,))


def set_path(obj, path, value):
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def del_path(obj, path):
    for k in path[:-1]:
        obj = obj[k]
    del obj[path[-1]]


def pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def m_manifest_types(rng, base):
    m = copy.deepcopy(base.manifest)
    path = pick(rng, [p for p in json_paths(m) if p and p != ("files",)])
    deep = rng.random() < 0.1  # nested 100,000 deep: json.loads recursion
    set_path(m, path, "DEEP" if deep else pick(rng, WRONG))
    m["files"] = {n: sha(d) for n, d in base.files.items()}
    data = json.dumps(m).encode()
    if deep:
        data = data.replace(b'"DEEP"', b"[" * 100000 + b"]" * 100000)
    return artifact_bytes(data, base.files), None


def m_manifest_fields(rng, base):
    m = copy.deepcopy(base.manifest)
    r = rng.integers(5)
    if r == 0:
        del_path(m, pick(rng, [p for p in json_paths(m) if p]))
    elif r == 1:  # the attack of issue 13: a manifest naming another library or params file
        m[pick(rng, ["library", "params_file"])] = pick(rng, ["/lib/x86_64-linux-gnu/libm.so.6", "/etc/passwd",
                                                              "/dev/zero", "../model.so", "model.so"])
    elif r == 2:
        m["files"][pick(rng, ["kernels.cu", "../x", "/etc/passwd", "model.so/"])] = "0" * 64
    elif r == 3:
        m["format"] = pick(rng, ["edgec-artifact/1", "edgec-artifact/3", "", None])
    else:
        data = json.dumps(m).encode()
        cut = int(rng.integers(len(data)))
        return artifact_bytes(data[:cut] + bytes(rng.integers(0, 256, int(rng.integers(1, 4)), np.uint8)) + data[cut:],
                              base.files), None
    return artifact_bytes(m, base.files, rehash=False), None


def m_params_list(rng, base):
    m = copy.deepcopy(base.manifest)
    p = m["params"]
    r = rng.integers(6)
    if r == 0:
        p.reverse()
    elif r == 1:
        m["params"] = []
    elif r == 2:
        p.append(p[0])
    elif r == 3:
        p.append("extra")
    elif r == 4:
        p.pop(int(rng.integers(len(p))))
    else:
        p[int(rng.integers(len(p)))] = "renamed"
    return artifact_bytes(m, base.files), None


def m_io_specs(rng, base):
    m = copy.deepcopy(base.manifest)
    specs = m[pick(rng, ["inputs", "outputs"])]
    s = specs[int(rng.integers(len(specs)))]
    r = rng.integers(8)
    if r == 0:
        s["shape"][int(rng.integers(len(s["shape"])))] += int(pick(rng, [-1, 1, 7]))
    elif r == 1:
        s["shape"].append(1)
    elif r == 2:
        s["shape"] = s["shape"][1:]
    elif r == 3:
        s["shape"] = pick(rng, [[1, 3, 100000, 100000], [2 ** 31], [0], [2 ** 40, 2 ** 40]])
    elif r == 4:
        s["dtype"] = pick(rng, ["float64", "int32", "uint8", "bool", "float16", "complex64", "object"])
    elif r == 5:
        s["name"] = "renamed"
    elif r == 6:
        specs.append(copy.deepcopy(s) | {"name": "another"})
    else:
        s["range"] = pick(rng, [[0, 5], [5, 0], [-2 ** 63, 2 ** 63], [1.5, 2]])
    return artifact_bytes(m, base.files), None


def m_params_bin(rng, base):
    data = base.files["params.bin"]
    r = rng.integers(6)
    if r == 0:
        new = bytes(rng.integers(0, 256, int(rng.integers(0, 4096)), np.uint8))
    elif r == 1:
        new = data[:int(rng.integers(len(data)))]
    elif r == 2:  # a flipped byte in the headers
        new = bytearray(data)
        i = int(rng.integers(min(len(data), 200)))
        new[i] ^= int(rng.integers(1, 256))
        new = bytes(new)
    elif r == 3:  # valid format, same names, other shapes/dtypes
        tensors = {n: np.zeros(pick(rng, [(3,), (2, 2), (0,), ()]), pick(rng, ["float32", "int64", "bool"]))
                   for n in base.manifest["params"]}
        new = param_dict(tensors)
    elif r == 4:  # huge declared count / size
        new = bytearray(data)
        off = pick(rng, [16, 40 + len(base.manifest["params"][0])])
        new[off:off + 8] = struct.pack("<Q", pick(rng, [2 ** 63 - 1, 2 ** 40, 10 ** 6]))
        new = bytes(new)
    else:
        new = data + bytes(int(rng.integers(1, 64)))
    return artifact_bytes(base.manifest, dict(base.files, **{"params.bin": new})), None


def m_model_so(rng, base):
    data = base.files["model.so"]
    r = rng.integers(5)
    if r == 0:
        new = bytes(rng.integers(0, 256, int(rng.integers(0, 8192)), np.uint8))
    elif r == 1:  # truncated: dlopen of this used to die with SIGBUS
        new = data[:int(rng.integers(len(data)))]
    elif r == 2:  # ELF header fields that locate the rest of the file
        new = bytearray(data)
        field = pick(rng, [(4, "B"), (5, "B"), (16, "<H"), (18, "<H"), (32, "<Q"), (40, "<Q"), (56, "<H"), (60, "<H")])
        off, fmt = field
        struct.pack_into(fmt, new, off, int(rng.integers(0, 2 ** min(63, 8 * struct.calcsize(fmt)))))
        new = bytes(new)
    elif r == 3:
        new = b"\x7fELF" + data[4:64]
    else:  # a real library that is not an edgec model
        new = open(pick(rng, [p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6")
                              if os.path.exists(p)] or ["/bin/sh"]), "rb").read()
    return artifact_bytes(base.manifest, dict(base.files, **{"model.so": new})), None


def m_tar_truncated(rng, base):
    return base.tar[:int(rng.integers(base.end))], None


def m_tar_bytes(rng, base):
    data = bytearray(base.tar)
    for _ in range(int(rng.integers(1, 8))):
        i = int(rng.integers(len(data))) if rng.random() < 0.5 else int(rng.integers(min(len(data), 4096)))
        data[i] = int(rng.integers(256))
    return bytes(data), None


def m_sparse_bomb(rng, base):
    realsize = pick(rng, [2 ** 31, 2 ** 40, 10 ** 12])
    r = rng.integers(2)
    man = member("manifest.json", json.dumps(base.manifest).encode())
    if r == 0:
        blocks = [man[0].tobuf() + man[1] + bytes((-len(man[1])) % 512),
                  gnu_sparse_member("model.so", b"\0" * 1024, realsize)]
        return raw_tar(blocks), None
    info, data = member("model.so", b"\0" * 512)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "model.so",
                        "GNU.sparse.realsize": str(realsize)}
    data = b"1\n%d\n512\n" % (realsize - 512)
    data += bytes((-len(data)) % 512) + b"\0" * 512
    info.size = len(data)
    return tar_bytes([man, (info, data)], tarfile.PAX_FORMAT), None


def m_members(rng, base):
    m, files = base.manifest, dict(base.files)
    r = rng.integers(10)
    extra = []
    if r == 0:
        files[pick(rng, ["../model.so", "/tmp/model.so", "./model.so", "dir/model.so", "model.so/", "a/../model.so"])] = \
            files.pop("model.so")
    elif r == 1:
        files.pop("model.so")
        extra = [member("model.so", b"", tarfile.SYMTYPE, linkname=pick(rng, ["/etc/passwd", "../x", "params.bin"]))]
    elif r == 2:
        files.pop("params.bin")
        extra = [member("params.bin", b"", tarfile.LNKTYPE, linkname="model.so")]
    elif r == 3:
        extra = [member(pick(rng, ["dev", "model.so"]), b"", pick(rng, [tarfile.CHRTYPE, tarfile.BLKTYPE,
                                                                        tarfile.FIFOTYPE, tarfile.DIRTYPE]))]
    elif r == 4:
        extra = [member("model.so", files["model.so"])]  # a second model.so after the checked one
    elif r == 5:
        extra = [member(pick(rng, ["extra.so", "kernels.cu", "manifest.sig"]), b"x" * 10)]
    elif r == 6:  # a header that declares more bytes than the file holds
        data = artifact_bytes(m, files)
        raw = bytearray(data)
        off = 512 + ((len(json.dumps(dict(m, files={n: sha(d) for n, d in files.items()})).encode()) + 511) // 512) * 512
        raw[off + 124:off + 136] = b"%011o\0" % (2 ** 33)
        raw[off + 148:off + 156] = b" " * 8
        raw[off + 148:off + 156] = b"%06o\0 " % sum(raw[off:off + 512])
        return bytes(raw), None
    elif r == 7:
        return b"", None
    elif r == 8:
        return tar_bytes([member("manifest.json", json.dumps(m).encode())]), None
    else:
        return base.tar[:base.end - 1024], None  # no end-of-archive blocks
    return artifact_bytes(m, files, extra=extra), None


def m_signature(rng, base):
    if base.key is None:
        return base.tar, None
    from edgec.runtime import signing
    data = json.dumps(base.manifest).encode()
    sig = signing.sign(data, base.key)
    r = rng.integers(5)
    if r == 0:
        sig = bytes(b ^ (i == int(rng.integers(64))) for i, b in enumerate(sig))
    elif r == 1:
        sig = None
    elif r == 2:
        data = data.replace(b'"name"', b'"name" ', 1)  # the manifest changed after signing
    elif r == 3:
        sig = bytes(rng.integers(0, 256, int(rng.integers(0, 200)), np.uint8))
    else:
        return artifact_bytes(data, base.files, sig=sig), [base.key + ".pub"]  # a good signature: ok
    return artifact_bytes(data, base.files, sig=sig), [base.key + ".pub"]


MUST_FAIL = {"params-list", "model-so", "tar-truncated", "sparse-bomb"}  # no mutation there can load
CATEGORIES = {
    "manifest-types": m_manifest_types, "manifest-fields": m_manifest_fields, "params-list": m_params_list,
    "io-specs": m_io_specs, "params-bin": m_params_bin, "model-so": m_model_so, "tar-truncated": m_tar_truncated,
    "tar-bytes": m_tar_bytes, "sparse-bomb": m_sparse_bomb, "members": m_members, "signature": m_signature,
}


# ---- runtime inputs ---------------------------------------------------------------------------
def bad_inputs(rng, model):
    spec = model.inputs[0]
    x = model.random_inputs(int(rng.integers(1000)))
    name, shape = spec["name"], tuple(spec["shape"])
    r = rng.integers(14)
    choices = [
        lambda: {name: np.zeros(shape[:-1] + (shape[-1] + 1,), np.float32)},
        lambda: {name: np.zeros(shape, np.float64)},
        lambda: {name: np.zeros(shape, np.int32)},
        lambda: {"nope": x[name]},
        lambda: dict(x, extra=x[name]),
        lambda: {},
        lambda: None,
        lambda: "input",
        lambda: {name: "text"},
        lambda: {name: np.empty(shape, object)},
        lambda: {name: x[name].tolist()},
        lambda: {name: np.full(shape, pick(rng, [np.nan, np.inf, -np.inf, 3e38]), np.float32)},
        lambda: [x[name], x[name]],
        lambda: {name: np.zeros(()), },
    ]
    return choices[r](), (pick(rng, [None, [np.empty((1,), np.float32)], [None], "x", []]) if rng.random() < 0.2
                          else None)


# ---- the worker ------------------------------------------------------------------------------
class Base:
    def __init__(self, path, key):
        self.tar = open(path, "rb").read()
        with tarfile.open(path) as t:
            self.manifest = json.loads(t.extractfile("manifest.json").read())
            self.files = {n: t.extractfile(n).read() for n in FILES}
            last = t.getmembers()[-1]
        self.end = last.offset_data + (last.size + 511) // 512 * 512 + 1024  # after the end-of-archive blocks
        self.key = key


def worker(path, n, seed, key=None):
    import edgec
    from edgec.errors import EdgecError
    base = Base(path, key)
    rng = np.random.default_rng(seed)
    names = list(CATEGORIES) + ["runtime-inputs"]
    tmp = tempfile.mkdtemp(prefix="fuzz-")
    good = edgec.load(path)
    for i in range(n):
        cat = names[i % len(names)]
        print(json.dumps({"case": i, "category": cat, "start": True}), flush=True)
        if cat == "runtime-inputs":
            inputs, out = bad_inputs(rng, good)
        else:
            data, keys = CATEGORIES[cat](rng, base)
        t0 = time.perf_counter()
        try:
            if cat == "runtime-inputs":
                good.run(inputs, out=out)
            else:
                art = os.path.join(tmp, "case.edgec")
                with open(art, "wb") as f:
                    f.write(data)
                with edgec.load(art, trusted_keys=keys) as model:
                    if sum(np.prod(s["shape"]) for s in model.inputs) < 1 << 24:
                        model.run(model.random_inputs(i))
            result = "ok"
        except EdgecError as e:
            result = type(e).__name__
            if "\n" in str(e):
                result = "MULTILINE " + result + ": " + str(e)[:300]
        except Exception as e:  # noqa: BLE001 - this is what the fuzzer looks for
            result = f"OTHER {type(e).__name__}: {str(e)[:300]}"
        print(json.dumps({"case": i, "category": cat, "result": result,
                          "seconds": round(time.perf_counter() - t0, 4)}), flush=True)
    left = [p for p in os.listdir(tmp) if p != "case.edgec"]
    shutil.rmtree(tmp, ignore_errors=True)
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it reports the (forked) parent's size
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(json.dumps({"maxrss_kib": peak, "left": left[:5]}), flush=True)


# ---- the tests -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_artifact(tmp_path_factory):
    from edgec import targets
    from edgec.compiler import ir
    from edgec.compiler.build import compile_graph
    from edgec.runtime import signing
    d = tmp_path_factory.mktemp("fuzz")
    g = ir.Graph("fuzz")
    x = g.add_input("x", (1, 3, 8, 8))
    rng = np.random.default_rng(0)
    w = g.add_const(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = g.add_const(rng.standard_normal(4).astype(np.float32), "b")
    (y,) = g.add_node("conv2d", [x, w, b], {"pads": [1, 1, 1, 1]})
    (y,) = g.add_node("relu", [y])
    (y,) = g.add_node("global_avg_pool", [y])
    g.outputs = [y]
    compile_graph(g, targets.get("host"), d / "base.edgec", progress=False)
    signing.keygen(str(d / "key"))
    return d / "base.edgec", d / "key"


def fuzz(base_artifact, n, seed, timeout):
    art, key = base_artifact
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1", TMPDIR=str(art.parent))
    proc = subprocess.run([sys.executable, __file__, str(art), str(n), str(seed), str(key)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    started = [ln for ln in lines if ln.get("start")]
    done = [ln for ln in lines if "result" in ln]
    assert proc.returncode == 0 and len(done) == n, (
        f"worker died (rc {proc.returncode}) in case {started[-1] if started else None}: {proc.stderr[-2000:]}")
    counts = collections.defaultdict(collections.Counter)
    for ln in done:
        counts[ln["category"]][ln["result"].split(":")[0]] += 1
    print(f"\nfuzz seed {seed}: {n} cases")
    for cat, c in sorted(counts.items()):
        print(f"  {cat:<16} {sum(c.values()):>5}  " + ", ".join(f"{k} {v}" for k, v in c.most_common()))
    bad = [ln for ln in done if ln["result"].startswith(("OTHER", "MULTILINE"))
           or (ln["result"] == "ok" and ln["category"] in MUST_FAIL)]
    assert not bad, bad[:5]
    slow = [ln for ln in done if ln["seconds"] > 10]
    assert not slow, slow[:5]
    tail = lines[-1]
    print(f"  worker peak RSS {tail['maxrss_kib'] / 1024:.0f} MiB")
    assert tail["maxrss_kib"] < 1024 * 1024 and not tail["left"], tail
    assert not [p for p in os.listdir(art.parent) if p.startswith("edgec-")]  # no extraction folder left
    return counts


def test_fuzz_sample(base_artifact):
    counts = fuzz(base_artifact, 360, seed=1, timeout=300)
    assert len(counts) == len(CATEGORIES) + 1
    assert counts["runtime-inputs"]["InputError"] and counts["sparse-bomb"]["ArtifactError"]


@pytest.mark.fuzz
def test_fuzz_thousands(base_artifact):
    fuzz(base_artifact, 4000, seed=2, timeout=1800)


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
