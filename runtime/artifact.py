"""The `.edgec` artifact: a tar of the compiled library, params and `manifest.json`.

The manifest records edgec/TVM versions, the target, inputs/outputs, the kernel -> IR node ->
source-layer map and the sha256 of every member. Reading refuses anything unexpected: members
that are not regular files, absolute paths or `..`, names the manifest does not list, hash or
version mismatches. No pickle anywhere. Imports only the standard library.
"""
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from ..errors import ArtifactError

FORMAT = "edgec-artifact/1"
MANIFEST = "manifest.json"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write(path, members, manifest):
    """Write artifact PATH from MEMBERS (archive name -> local file path) and MANIFEST (dict)."""
    manifest = dict(manifest, format=FORMAT,
                    files={name: sha256_file(src) for name, src in sorted(members.items())})
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    tmp = Path(str(path) + ".tmp")
    with tarfile.open(tmp, "w") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
        for name, src in sorted(members.items()):
            tar.add(src, arcname=name, recursive=False)
    os.replace(tmp, path)
    return manifest


def _safe_name(name):
    p = Path(name)
    return not (p.is_absolute() or ".." in p.parts or name.startswith("/") or "\\" in name or not name)


def read_manifest(path):
    """The manifest of artifact PATH, without extracting anything."""
    with _open(path) as tar:
        return _manifest(tar, path)


def _open(path):
    if not os.path.isfile(path):
        raise ArtifactError(f"artifact '{path}' does not exist")
    try:
        return tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as e:
        raise ArtifactError(f"artifact '{path}' is not an edgec artifact (not a readable tar: {e})") from None


def _manifest(tar, path):
    try:
        member = tar.getmember(MANIFEST)
        data = json.loads(tar.extractfile(member).read())
    except (KeyError, ValueError, AttributeError, tarfile.TarError) as e:
        raise ArtifactError(f"artifact '{path}' has no readable {MANIFEST} ({e})") from None
    if data.get("format") != FORMAT:
        raise ArtifactError(f"artifact '{path}' has format {data.get('format')!r}; this edgec reads {FORMAT}")
    return data


def extract(path, dest):
    """Check and extract artifact PATH into folder DEST; return the manifest."""
    dest = Path(dest).resolve()
    with _open(path) as tar:
        manifest = _manifest(tar, path)
        files = manifest.get("files", {})
        for m in tar.getmembers():
            if not _safe_name(m.name) or not (dest / m.name).resolve().is_relative_to(dest):
                raise ArtifactError(f"artifact '{path}': member '{m.name}' would escape the extraction folder")
            if not m.isfile():
                raise ArtifactError(f"artifact '{path}': member '{m.name}' is not a regular file")
            if m.name != MANIFEST and m.name not in files:
                raise ArtifactError(f"artifact '{path}': member '{m.name}' is not listed in the manifest")
        for name, digest in files.items():
            if not _safe_name(name):
                raise ArtifactError(f"artifact '{path}': manifest lists unsafe member name '{name}'")
            try:
                src = tar.extractfile(name)
            except KeyError:
                raise ArtifactError(f"artifact '{path}': member '{name}' is missing") from None
            out = dest / name
            out.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            with open(out, "wb") as f:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    f.write(chunk)
            if h.hexdigest() != digest:
                raise ArtifactError(f"artifact '{path}': member '{name}' does not match its sha256 in the "
                                    "manifest (corrupt or tampered)")
    return manifest
