"""Optional ed25519 signing of artifacts (the `sign` extra: the `cryptography` package).

The signature (`manifest.sig`, 64 raw bytes) covers the exact bytes of `manifest.json`, which hold
the sha256 of every other member: a device given trusted public keys refuses artifacts that none of
them signed. Keys are PEM files, as written by `edgec keygen KEY` (KEY private, KEY.pub public) or
`openssl genpkey -algorithm ed25519 -out KEY && openssl pkey -in KEY -pubout -out KEY.pub`.
Imported only when a key is used.
"""
import os
from pathlib import Path

from ..errors import ArtifactError, EdgecError


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise EdgecError("signing needs the `cryptography` package: pip install 'edgec[sign]'") from None
    return serialization, ed25519, InvalidSignature


def _pem(key):
    if isinstance(key, (bytes, bytearray)):
        return bytes(key), "the given key"
    try:
        return Path(key).read_bytes(), f"key file '{key}'"
    except OSError as e:
        raise EdgecError(f"cannot read key file '{key}': {e.strerror or e}") from None


def load_private_key(key):
    serialization, ed25519, _ = _crypto()
    data, what = _pem(key)
    try:
        k = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise EdgecError(f"{what} is not an unencrypted PEM private key ({str(e).splitlines()[0]})") from None
    if not isinstance(k, ed25519.Ed25519PrivateKey):
        raise EdgecError(f"{what} is not an ed25519 key (make one with `edgec keygen`)")
    return k


def load_public_key(key):
    """An ed25519 public key from a PEM file/bytes (a private key file gives its public half)."""
    serialization, ed25519, _ = _crypto()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    data, what = _pem(key)
    try:
        k = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        return load_private_key(key).public_key()
    if not isinstance(k, ed25519.Ed25519PublicKey):
        raise EdgecError(f"{what} is not an ed25519 public key")
    return k


def sign(data, key):
    return load_private_key(key).sign(data)


def verify(data, signature, trusted_keys, path):
    """Raise ArtifactError unless SIGNATURE over DATA verifies with one of TRUSTED_KEYS."""
    _, _, invalid = _crypto()
    for key in trusted_keys:
        try:
            load_public_key(key).verify(signature, data)
            return
        except invalid:
            continue
    raise ArtifactError(f"artifact '{path}' is not signed by any of the {len(trusted_keys)} trusted key(s)")


def keygen(path):
    """Write a new ed25519 private key to PATH (mode 0600) and its public key to PATH.pub."""
    serialization, ed25519, _ = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise EdgecError(f"cannot create key file '{path}': {e.strerror or e}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    Path(f"{path}.pub").write_bytes(public)
    return f"{path}.pub"
