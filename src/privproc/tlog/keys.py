"""Ed25519 signed-note keys on disk: the log's key and release publishers' keys.

A key file holds one C2SP signer key string (``PRIVATE+KEY+name+hash+key``), mode 0600;
the matching verifier key string is written beside it as ``<file>.vkey``. Key material
never appears in error messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from privproc.files import replace_file, write_new_file
from privproc.wire import note
from privproc.wire.errors import NoteError


class KeyFileError(Exception):
    """A key file is missing, unreadable, readable by others, or malformed."""


def read_signer(path: Path) -> note.Ed25519Signer:
    """Load an Ed25519 signer key file (must be mode 0600)."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key: {exc.strerror}") from None
    if mode & 0o077:
        raise KeyFileError(f"{path} is accessible by others (mode {mode:o}); expected 0600")
    try:
        return note.Ed25519Signer.from_key(data.decode("ascii").strip())
    except (UnicodeDecodeError, NoteError) as exc:
        raise KeyFileError(
            f"{path}: malformed key ({type(exc).__name__}); expected a "
            "PRIVATE+KEY+<name>+<hash>+<key> string"
        ) from None


def create_signer(path: Path, name: str, rand: Callable[[int], bytes] = os.urandom
                  ) -> note.Ed25519Signer:
    """Create a new key file (refusing to overwrite one) and its ``.vkey`` beside it."""
    try:
        skey, vkey = note.generate_signer(name, rand(32))
    except NoteError as exc:
        raise KeyFileError(f"key name: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    if not write_new_file(path, skey.encode("ascii") + b"\n", 0o600):
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key")
    replace_file(path.with_name(path.name + ".vkey"), vkey.encode("ascii") + b"\n", 0o644)
    return read_signer(path)


def load_or_create_signer(path: Path, name: str) -> note.Ed25519Signer:
    """Load the key at ``path``, creating it for ``name`` on first use."""
    if not path.exists():
        try:
            return create_signer(path, name)
        except KeyFileError:
            if not path.exists():
                raise
    signer = read_signer(path)
    if signer.name != name:
        raise KeyFileError(f"{path} holds the key {signer.name!r}, expected {name!r}")
    return signer


def read_key_publisher(path: Path, owner: str) -> note.Ed25519Signer:
    """A key publisher key for ``owner``: the log takes key records only from a key named
    like their owner, so a key of another name is refused here, before anything is sent."""
    signer = read_signer(path)
    if signer.name != owner:
        raise KeyFileError(f"{path} holds the key {signer.name!r}; a key publisher must be "
                           f"named like the owner of its key records, {owner!r}")
    return signer
