"""Ed25519 signed-note keys on disk: the log's key, the witness's cosigner key, release
and key publishers' keys.

These keys do not rotate: every client's trust file pins them. A key file holds one C2SP
signer key string (``PRIVATE+KEY+name+hash+key``), mode 0600 from creation, created
atomically and never overwritten; the matching verifier key string (public, 0644) is
written beside it, as ``<file>.vkey`` unless the caller names another file (the witness
keeps ``witness.vkey``). A key is checked on every read: mode, encoding, signature type
(0x01 for note signers, 0x04 for cosigners) and, where the caller expects one, its name.
Key material never appears in error messages.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from privproc.errors import PrivprocError
from privproc.files import replace_file, write_new_file
from privproc.wire import note
from privproc.wire.checkpoint import CosignatureSigner
from privproc.wire.errors import NoteError

log = logging.getLogger("privproc.keys")

K = TypeVar("K", bound=note.Ed25519KeySigner)
Rand = Callable[[int], bytes]
SEED_BYTES = 32


class KeyFileError(PrivprocError):
    """A key file is missing, unreadable, readable by others, or malformed."""


class KeyNameError(KeyFileError):
    """A key file holds a key of another name than the one expected."""

    def __init__(self, path: Path, found: str, expected: str) -> None:
        super().__init__(f"{path} holds the key {found!r}, expected {expected!r}")
        self.path = path
        self.found = found
        self.expected = expected


def vkey_path(path: Path) -> Path:
    """Where the verifier key of the key file ``path`` goes by default."""
    return path.with_name(path.name + ".vkey")


def read_key(path: Path, kind: type[K], *, name: str | None = None, what: str = "key") -> K:
    """Load a signer key file of ``kind``'s signature type (must be mode 0600); with
    ``name``, refuse a key of another name (:class:`KeyNameError`)."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise KeyFileError(f"{path} is accessible by others (mode {mode:o}); expected 0600")
    try:
        signer = kind.from_key(data.decode("ascii").strip())
    except (UnicodeDecodeError, NoteError) as exc:
        raise KeyFileError(
            f"{path}: malformed {what} ({type(exc).__name__}); expected a "
            f"PRIVATE+KEY+<name>+<hash>+<key> string of signature type 0x{kind.ALG:02x}"
        ) from None
    if name is not None and signer.name != name:
        raise KeyNameError(path, signer.name, name)
    return signer


def _new_key_string(kind: type[K], name: str, rand: Rand) -> str:
    try:
        note.check_key_name(name)
    except NoteError as exc:
        raise KeyFileError(f"key name: {exc}") from None
    seed = rand(SEED_BYTES)
    if len(seed) != SEED_BYTES:
        raise KeyFileError(f"seed source returned {len(seed)} bytes, expected {SEED_BYTES}")
    return note.format_signer_key(name, seed, alg=kind.ALG)


def _write_vkey(signer: note.Ed25519KeySigner, vkey: Path) -> None:
    data = signer.verifier_key.encode("ascii") + b"\n"
    try:
        if vkey.read_bytes() == data:
            return
    except OSError:
        pass
    replace_file(vkey, data, 0o644)


def create_key(path: Path, kind: type[K], name: str, rand: Rand = os.urandom, *,
               vkey: Path | None = None, what: str = "key") -> K:
    """Create a key file (refusing to overwrite one) and its verifier key beside it."""
    skey = _new_key_string(kind, name, rand)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not write_new_file(path, skey.encode("ascii") + b"\n", 0o600):
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key")
    log.info("created a new %s for %s", what, name)
    signer = read_key(path, kind, name=name, what=what)
    _write_vkey(signer, vkey or vkey_path(path))
    return signer


def load_or_create_key(path: Path, kind: type[K], name: str, rand: Rand = os.urandom, *,
                       vkey: Path | None = None, what: str = "key") -> K:
    """Load the key at ``path`` (it must be ``name``'s), creating it on first use; the
    verifier key beside it is (re)written if it is missing or stale."""
    if not path.exists():
        skey = _new_key_string(kind, name, rand)
        path.parent.mkdir(parents=True, exist_ok=True)
        if write_new_file(path, skey.encode("ascii") + b"\n", 0o600):
            log.info("created a new %s for %s", what, name)
        # else: another process created it first; read theirs
    signer = read_key(path, kind, name=name, what=what)
    _write_vkey(signer, vkey or vkey_path(path))
    return signer


# --------------------------------------------------------------------------- note signers


def read_signer(path: Path) -> note.Ed25519Signer:
    """Load an Ed25519 signer key file (must be mode 0600)."""
    return read_key(path, note.Ed25519Signer)


def create_signer(path: Path, name: str, rand: Rand = os.urandom) -> note.Ed25519Signer:
    """Create a new key file (refusing to overwrite one) and its ``.vkey`` beside it."""
    return create_key(path, note.Ed25519Signer, name, rand)


def load_or_create_signer(path: Path, name: str, rand: Rand = os.urandom
                          ) -> note.Ed25519Signer:
    """Load the key at ``path``, creating it for ``name`` on first use."""
    return load_or_create_key(path, note.Ed25519Signer, name, rand)


def read_key_publisher(path: Path, owner: str) -> note.Ed25519Signer:
    """A key publisher key for ``owner``: the log takes key records only from a key named
    like their owner, so a key of another name is refused here, before anything is sent."""
    signer = read_signer(path)
    if signer.name != owner:
        raise KeyFileError(f"{path} holds the key {signer.name!r}; a key publisher must be "
                           f"named like the owner of its key records, {owner!r}")
    return signer


# --------------------------------------------------------------------------- cosigners


def read_cosigner(path: Path, name: str | None = None) -> CosignatureSigner:
    """Load a cosignature/v1 (type 0x04) signer key file (must be mode 0600)."""
    return read_key(path, CosignatureSigner, name=name, what="cosigner key")


def load_or_create_cosigner(path: Path, name: str, rand: Rand = os.urandom, *,
                            vkey: Path | None = None, what: str = "cosigner key"
                            ) -> CosignatureSigner:
    """Load the cosigner key at ``path``, creating it for ``name`` on first use."""
    return load_or_create_key(path, CosignatureSigner, name, rand, vkey=vkey, what=what)
