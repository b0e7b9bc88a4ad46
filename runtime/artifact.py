"""The `.edgec` artifact: a plain tar of `manifest.json`, `model.so`, `params.bin` (and `kernels.cu`
for CUDA, `manifest.sig` when signed).

Reading trusts nothing in the file:
- members have fixed names (no folders, no paths from the manifest), each at most once, regular
  non-sparse files whose declared size lies inside the file; the tar must end with its end blocks;
- data is read straight from the file at the member's offset, hashed while it is written, so a
  lying header cannot make extraction write more than the artifact holds;
- the manifest is checked against a schema (types, names, shapes, dtypes, hashes) before any field
  is used; `params.bin` is parsed here (not by TVM) and must hold exactly the manifest's params;
  `model.so` must be a complete ELF shared object for the artifact's architecture (a truncated one
  would kill the process with SIGBUS when mapped).
Signing (optional) covers the manifest, which holds every member's sha256: see `signing.py`.
Imports only the standard library and numpy.
"""
import hashlib
import io
import json
import os
import re
import struct
import tarfile
from pathlib import Path

import numpy as np

from ..errors import ArtifactError

FORMAT = "edgec-artifact/2"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
LIBRARY, PARAMS, CUDA_SOURCE = "model.so", "params.bin", "kernels.cu"
FILES = (LIBRARY, PARAMS, CUDA_SOURCE)  # the members the manifest may list (LIBRARY and PARAMS must be)
MAX_MANIFEST_BYTES = 64 << 20
MAX_SIGNATURE_BYTES = 4096
MAX_DIMS = 32
MAX_TENSOR_BYTES = 1 << 40
DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64", "bool")
ELF_MACHINES = {"x86_64": 62, "aarch64": 183}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- writing ------------------------------------------------------------------------------------
def write(path, members, manifest, sign_key=None):
    """Write artifact PATH from MEMBERS (fixed member name -> local file path) and MANIFEST (dict);
    SIGN_KEY: an ed25519 private key file to sign the manifest with. Returns the manifest written."""
    unknown = set(members) - set(FILES)
    if unknown:
        raise ValueError(f"artifact members must be among {FILES}, got {sorted(unknown)}")
    manifest = dict(manifest, format=FORMAT,
                    files={name: sha256_file(src) for name, src in sorted(members.items())})
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    blobs = {MANIFEST: data}
    if sign_key is not None:
        from . import signing
        blobs[SIGNATURE] = signing.sign(data, sign_key)
    tmp = Path(str(path) + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, blob in blobs.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(blob), 0o644
            tar.addfile(info, io.BytesIO(blob))
        for name, src in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = os.path.getsize(src), 0o644
            with open(src, "rb") as f:
                tar.addfile(info, f)
    os.replace(tmp, path)
    return manifest


# ---- reading ------------------------------------------------------------------------------------
def read_manifest(path, trusted_keys=None):
    """The checked manifest of artifact PATH, without extracting anything."""
    with _Reader(path) as r:
        return r.manifest(trusted_keys)


def extract(path, dest, trusted_keys=None, with_manifest=False):
    """Check artifact PATH and write its members into the existing folder DEST; return the manifest.
    TRUSTED_KEYS: ed25519 public keys (paths or PEM bytes); when given, the manifest must carry a
    signature by one of them. WITH_MANIFEST: also write manifest.json (and manifest.sig) as they are."""
    with _Reader(path) as r:
        manifest = r.manifest(trusted_keys)
        try:
            for name, digest in manifest["files"].items():
                r.extract(name, os.path.join(dest, name), digest)
            for name in (MANIFEST, SIGNATURE) if with_manifest else ():
                if name in r.members:
                    Path(dest, name).write_bytes(r.read(name, MAX_MANIFEST_BYTES))
        except OSError as e:
            raise ArtifactError(f"artifact '{path}' cannot be extracted into {dest}: {e.strerror or e}") from None
    return manifest


class _Reader:
    """A checked index of an artifact's members: {name: (data offset, size)}."""

    def __init__(self, path):
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise ArtifactError(f"artifact '{path}' does not exist")
        try:
            self.f = open(self.path, "rb")
        except OSError as e:
            raise ArtifactError(f"artifact '{path}' cannot be read ({e.strerror or e})") from None
        try:
            self.size = os.fstat(self.f.fileno()).st_size
            self.members = self._index()
        except BaseException:
            self.f.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def error(self, what):
        return ArtifactError(f"artifact '{self.path}': {what}")

    def _index(self):
        allowed = (MANIFEST, SIGNATURE, *FILES)
        members = {}
        try:
            tar = tarfile.open(fileobj=self.f, mode="r:")
            while True:
                m = tar.next()
                if m is None:
                    break
                if m.name not in allowed:
                    shown = m.name if len(m.name) < 80 else m.name[:77] + "..."
                    raise self.error(f"member {shown!r} is not one of {', '.join(allowed)} (an edgec artifact "
                                     "holds these fixed names only; nothing may escape the extraction folder)")
                if m.name in members:
                    raise self.error(f"member '{m.name}' appears twice")
                if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or m.sparse is not None:
                    raise self.error(f"member '{m.name}' is not a regular file (links, devices and sparse "
                                     "files are refused)")
                if m.size < 0 or m.offset_data + m.size > self.size:
                    raise self.error(f"member '{m.name}' declares {m.size} bytes, more than the file holds "
                                     "(truncated)")
                members[m.name] = (m.offset_data, m.size)
            end = tar.offset
        except tarfile.TarError as e:
            raise ArtifactError(f"artifact '{self.path}' is not an edgec artifact (not a readable tar: {e})") \
                from None
        if not members and end == 0:
            raise ArtifactError(f"artifact '{self.path}' is not an edgec artifact (an empty tar)")
        self.f.seek(end)
        if self.f.read(1024) != bytes(1024):
            raise self.error("the tar ends without its end-of-archive blocks (truncated)")
        return members

    def read(self, name, limit):
        offset, size = self.members[name]
        if size > limit:
            raise self.error(f"member '{name}' is {size} bytes, more than the {limit} allowed")
        self.f.seek(offset)
        return self.f.read(size)

    def manifest(self, trusted_keys=None):
        if MANIFEST not in self.members:
            raise ArtifactError(f"artifact '{self.path}' is not an edgec artifact (no {MANIFEST})")
        data = self.read(MANIFEST, MAX_MANIFEST_BYTES)
        if trusted_keys:  # before anything in the manifest is read
            from . import signing
            if SIGNATURE not in self.members:
                raise self.error("is not signed, and trusted keys were given (sign it with "
                                 "`edgec compile --sign KEY`)")
            signing.verify(data, self.read(SIGNATURE, MAX_SIGNATURE_BYTES), trusted_keys, self.path)
        try:
            manifest = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise self.error(f"{MANIFEST} is not valid JSON ({str(e)[:120]})") from None
        validate(manifest, self.path)
        listed, present = set(manifest["files"]), set(self.members) - {MANIFEST, SIGNATURE}
        if present - listed:
            raise self.error(f"member '{sorted(present - listed)[0]}' is not listed in the manifest")
        if listed - present:
            raise self.error(f"member '{sorted(listed - present)[0]}' is missing")
        return manifest

    def extract(self, name, out, digest):
        offset, size = self.members[name]
        h = hashlib.sha256()
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as dst:
            self.f.seek(offset)
            left = size
            while left:
                chunk = self.f.read(min(left, 1 << 20))
                if not chunk:
                    raise self.error(f"member '{name}' is truncated")
                h.update(chunk)
                dst.write(chunk)
                left -= len(chunk)
        if h.hexdigest() != digest:
            raise self.error(f"member '{name}' does not match its sha256 in the manifest (corrupt or tampered)")


# ---- the manifest schema ------------------------------------------------------------------------
def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _str_list(v):
    return isinstance(v, list) and all(isinstance(s, str) for s in v)


def _shape(v):
    return isinstance(v, list) and len(v) <= MAX_DIMS and all(_is_int(d) and 0 <= d < 1 << 40 for d in v)


def _tensor_spec(v):
    if not (isinstance(v, dict) and isinstance(v.get("name"), str) and v["name"] and _shape(v.get("shape"))
            and v.get("dtype") in DTYPES):
        return False
    if tensor_bytes(v["shape"], v["dtype"]) > MAX_TENSOR_BYTES:
        return False
    r = v.get("range")
    return r is None or (isinstance(r, list) and len(r) == 2 and all(_is_int(x) and abs(x) < 1 << 62 for x in r)
                         and r[0] < r[1])


def _kernel(v):
    return (isinstance(v, dict) and isinstance(v.get("name"), str)
            and all(isinstance(v.get(k, ""), str) for k in ("function", "kind"))
            and all(_str_list(v.get(k, [])) for k in ("nodes", "ops", "sources", "inputs", "outputs"))
            and isinstance(v.get("output_shapes", []), list) and all(_shape(s) for s in v.get("output_shapes", []))
            and len(v.get("output_shapes", [])) <= len(v.get("outputs", []))
            and _is_int(v.get("flops", 0)) and v.get("flops", 0) >= 0)


def _unique_names(specs):
    names = [s if isinstance(s, str) else s["name"] for s in specs]
    return len(set(names)) == len(names)


_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
SCHEMA = {  # field: (required, check, what it must be)
    "format": (True, lambda v: v == FORMAT, f"'{FORMAT}'"),
    "model": (True, lambda v: isinstance(v, dict) and isinstance(v.get("name"), str), "an object with a name"),
    "versions": (True, lambda v: isinstance(v, dict) and all(isinstance(v.get(k), str) for k in ("edgec", "tvm")),
                 "an object with edgec and tvm version strings"),
    "target": (True, lambda v: isinstance(v, dict) and isinstance(v.get("name"), str)
               and isinstance(v.get("arch"), str) and re.fullmatch(r"[a-z0-9_]{1,32}", v["arch"])
               and v.get("device") in ("cpu", "cuda"),
               "an object with a name, an arch (e.g. x86_64, aarch64) and a device (cpu, cuda)"),
    "params": (True, lambda v: _str_list(v) and _unique_names(v), "a list of distinct names"),
    "inputs": (True, lambda v: isinstance(v, list) and all(_tensor_spec(s) for s in v) and _unique_names(v),
               "a list of {name, shape, dtype} with distinct names, known dtypes and sane shapes"),
    "outputs": (True, lambda v: isinstance(v, list) and v and all(_tensor_spec(s) for s in v),
                "a non-empty list of {name, shape, dtype} with known dtypes and sane shapes"),
    "kernels": (True, lambda v: isinstance(v, list) and all(_kernel(k) for k in v), "a list of kernel records"),
    "files": (True, lambda v: isinstance(v, dict) and {LIBRARY, PARAMS} <= set(v) <= set(FILES)
              and all(isinstance(h, str) and _HEX64.match(h) for h in v.values()),
              f"sha256 digests of {LIBRARY}, {PARAMS} (and optionally {CUDA_SOURCE})"),
    "tvm_names": (False, lambda v: isinstance(v, dict) and all(isinstance(c, str) for c in v.values()),
                  "an object mapping value names to the identifiers TVM uses"),
    "device_code": (False, lambda v: isinstance(v, dict) and v.get("format") == "fatbin"
                    and isinstance(v.get("cubin"), str) and re.fullmatch(r"sm_\d{2,3}[a-z]?", v["cubin"])
                    and isinstance(v.get("kernels", {}), dict),
                    "an object naming the GPU code's format (fatbin) and cubin architecture (sm_XY)"),
    "compile_seconds": (False, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
}


def validate(manifest, path):
    """Raise ArtifactError (one line) unless MANIFEST follows the schema."""
    if not isinstance(manifest, dict):
        raise ArtifactError(f"artifact '{path}': {MANIFEST} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"artifact '{path}' has format {str(manifest.get('format'))[:40]!r}; this edgec "
                            f"reads {FORMAT} (recompile it)")
    unknown = sorted(set(manifest) - set(SCHEMA), key=str)
    if unknown:
        raise ArtifactError(f"artifact '{path}': {MANIFEST} has unknown field {str(unknown[0])[:60]!r}")
    for field, (required, check, what) in SCHEMA.items():
        if field not in manifest:
            if required:
                raise ArtifactError(f"artifact '{path}': {MANIFEST} lacks '{field}'")
            continue
        if not check(manifest[field]):
            raise ArtifactError(f"artifact '{path}': {MANIFEST} field '{field}' must be {what}")
    if CUDA_SOURCE in manifest["files"] and manifest["target"]["device"] != "cuda":
        raise ArtifactError(f"artifact '{path}': {CUDA_SOURCE} in a CPU artifact")
    clash = {i["name"] for i in manifest["inputs"]} & set(manifest["params"])
    if clash:
        raise ArtifactError(f"artifact '{path}': '{sorted(clash)[0]}' is both an input and a param")


def tensor_bytes(shape, dtype):
    n = np.dtype(dtype).itemsize
    for d in shape:
        n *= d
    return n


# ---- params.bin (TVM's param dict format) -----------------------------------------------------
_LIST_MAGIC, _TENSOR_MAGIC = 0xF7E58D4F05049CB7, 0xDD5E40F096B4A13F
_DL_DTYPES = {(0, 8): "int8", (0, 16): "int16", (0, 32): "int32", (0, 64): "int64",
              (1, 8): "uint8", (1, 16): "uint16", (1, 32): "uint32", (1, 64): "uint64",
              (2, 16): "float16", (2, 32): "float32", (2, 64): "float64", (6, 8): "bool"}


def read_params(file, names, path):
    """The tensors of params file FILE as {name: numpy array}, checked to hold exactly NAMES.

    Parsed here with bounds checks (TVM's own reader trusts every size it reads)."""
    data = Path(file).read_bytes()
    pos = 0

    def bad(what):
        return ArtifactError(f"artifact '{path}': {PARAMS} is malformed ({what})")

    def take(fmt):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise bad("ends early")
        vals = struct.unpack_from(fmt, data, pos)
        pos += size
        return vals

    magic, _ = take("<QQ")
    if magic != _LIST_MAGIC:
        raise bad("not a TVM param dict")
    (count,) = take("<Q")
    if count > len(data) // 8:
        raise bad(f"claims {count} names")
    keys = []
    for _ in range(count):
        (n,) = take("<Q")
        if pos + n > len(data):
            raise bad("a name runs past the end")
        try:
            keys.append(data[pos:pos + n].decode())
        except UnicodeDecodeError:
            raise bad("a name is not UTF-8") from None
        pos += n
    (tcount,) = take("<Q")
    if tcount != count:
        raise bad(f"{count} names but {tcount} tensors")
    out = {}
    for key in keys:
        magic, _, _dev_type, _dev_id, ndim, code, bits, lanes = take("<QQiiiBBH")
        dtype = _DL_DTYPES.get((code, bits))
        if magic != _TENSOR_MAGIC or not 0 <= ndim <= MAX_DIMS or lanes != 1 or dtype is None:
            raise bad(f"tensor '{key[:60]}' has a bad header")
        shape = take(f"<{ndim}q")
        (nbytes,) = take("<q")
        if any(d < 0 for d in shape) or nbytes != tensor_bytes(shape, dtype) or pos + nbytes > len(data):
            raise bad(f"tensor '{key[:60]}' declares {nbytes} bytes for shape {list(shape)}")
        out[key] = np.frombuffer(data, dtype, count=int(np.prod(shape)), offset=pos).reshape(shape)
        pos += nbytes
    if pos != len(data):
        raise bad(f"{len(data) - pos} trailing bytes")
    if len(out) != len(keys) or list(out) != [k for k in names if k in out] or set(out) != set(names):
        extra, missing = sorted(set(out) - set(names)), sorted(set(names) - set(out))
        raise ArtifactError(f"artifact '{path}': {PARAMS} holds params {(extra or ['(none)'])[:3]} not in the "
                            f"manifest and lacks {(missing or ['(none)'])[:3]}" if extra or missing else
                            f"artifact '{path}': {PARAMS} holds duplicate params")
    return out


# ---- model.so -----------------------------------------------------------------------------------
def check_library(file, arch, path):
    """Refuse FILE unless it is a complete little-endian 64-bit ELF shared object for ARCH: every
    segment and section it declares lies inside the file (dlopen of a truncated library dies with
    SIGBUS instead of failing)."""
    def bad(what):
        return ArtifactError(f"artifact '{path}': {LIBRARY} {what}")

    with open(file, "rb") as f:
        data = f.read()
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise bad("is not an ELF shared library")
    if data[4] != 2 or data[5] != 1:
        raise bad("is not a little-endian 64-bit ELF file")
    (e_type, machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _) = \
        struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
    if e_type != 3:
        raise bad("is not a shared object")
    if machine != ELF_MACHINES.get(arch):
        raise bad(f"holds code for ELF machine {machine}, not {arch}")
    if phnum == 0 or phentsize < 56 or phoff + phnum * phentsize > len(data):
        raise bad("has no complete program header table (truncated)")
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
        if p_offset + p_filesz > len(data):
            raise bad(f"segment {i} runs past the end of the file (truncated)")
    if shnum:
        if shentsize < 64 or shoff + shnum * shentsize > len(data):
            raise bad("has no complete section header table (truncated)")
        for i in range(shnum):
            _, sh_type, _, _, sh_offset, sh_size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
            if sh_type != 8 and sh_offset + sh_size > len(data):  # 8 = SHT_NOBITS (.bss)
                raise bad(f"section {i} runs past the end of the file (truncated)")
