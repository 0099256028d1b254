"""The gateway's OHTTP key pairs on disk, with rotation and a grace period.

The state directory holds ``ohttp-keys.json`` (mode 0600, written atomically): every key
pair the gateway still accepts. Exactly one key is *current* (published in
``/ohttp-keys``); rotated-out keys carry ``retire_at`` and are accepted until then, so
clients holding the previous configuration keep working during the grace period.
Every key also has a ``not_after``, fixed when it is made (default 30 days later) and
published with it in its key record in the transparency log: clients use a key only
until then, so the gateway renews its current key before (:func:`renew_if_due`).
Times are passed in by the caller (seconds since the epoch): this module reads no clock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from privproc.files import replace_file
from privproc.tlog.record import PURPOSE_OHTTP_GATEWAY, KeyRecord
from privproc.wire import hpke, ohttp
from privproc.wire.errors import HPKEError

KEYS_FILE = "ohttp-keys.json"
LOCK_FILE = ".ohttp-keys.lock"
FORMAT_VERSION = 1
DEFAULT_GRACE_SECONDS = 24 * 3600
DEFAULT_LIFETIME_SECONDS = 30 * 24 * 3600


class KeyStoreError(Exception):
    """The key state directory is unusable or its file is malformed."""


@dataclass(frozen=True)
class StoredKey:
    key_id: int
    key_pair: hpke.KeyPair
    created_at: float
    retire_at: float | None  # None for the current key
    not_after: float  # clients use the key only before this (its key record says so)

    @property
    def gateway_key(self) -> ohttp.GatewayKey:
        return ohttp.GatewayKey.create(self.key_id, self.key_pair)

    def key_record(self, owner: str) -> KeyRecord:
        """The transparency-log record that makes this key usable by clients."""
        return KeyRecord(PURPOSE_OHTTP_GATEWAY, owner, self.gateway_key.config.encode(),
                         int(self.created_at), int(self.not_after))


@dataclass(frozen=True)
class KeyState:
    keys: tuple[StoredKey, ...]

    @property
    def current(self) -> StoredKey:
        return next(k for k in self.keys if k.retire_at is None)

    def accepted(self, now: float) -> ohttp.GatewayKeys:
        """The keys that open requests at ``now``: the current one and those in grace."""
        return ohttp.GatewayKeys(
            k.gateway_key for k in self.keys if k.retire_at is None or k.retire_at > now
        )

    def published(self) -> list[ohttp.KeyConfig]:
        """The configurations to serve as ``application/ohttp-keys`` (current only)."""
        return [self.current.gateway_key.config]


def _encode(state: KeyState) -> bytes:
    doc = {
        "version": FORMAT_VERSION,
        "keys": [
            {
                "key_id": k.key_id,
                "private_key": k.key_pair.private_bytes().hex(),
                "created_at": k.created_at,
                "retire_at": k.retire_at,
                "not_after": k.not_after,
            }
            for k in state.keys
        ],
    }
    return json.dumps(doc, indent=1).encode() + b"\n"


def _decode(data: bytes, path: Path) -> KeyState:
    try:
        doc = json.loads(data)
        if doc.get("version") != FORMAT_VERSION:
            raise KeyStoreError(
                f"{path}: unsupported format version {doc.get('version')!r}, "
                f"expected {FORMAT_VERSION}"
            )
        keys = tuple(
            StoredKey(
                key_id=int(k["key_id"]),
                key_pair=hpke.KeyPair.from_private_bytes(bytes.fromhex(k["private_key"])),
                created_at=float(k["created_at"]),
                retire_at=None if k["retire_at"] is None else float(k["retire_at"]),
                # files written before key records carry no not_after: the default lifetime
                not_after=float(k.get("not_after",
                                      float(k["created_at"]) + DEFAULT_LIFETIME_SECONDS)),
            )
            for k in doc["keys"]
        )
    except (ValueError, KeyError, TypeError, AttributeError, HPKEError) as exc:
        raise KeyStoreError(f"{path}: malformed key file ({type(exc).__name__}: {exc})") from None
    currents = [k for k in keys if k.retire_at is None]
    if len(currents) != 1:
        raise KeyStoreError(f"{path}: expected exactly one current key, found {len(currents)}")
    if len({k.key_id for k in keys}) != len(keys):
        raise KeyStoreError(f"{path}: duplicate key identifiers")
    return KeyState(keys)


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _prepare_dir(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not state_dir.is_dir():
        raise KeyStoreError(f"{state_dir} is not a directory")


def load(state_dir: Path) -> KeyState:
    """Read the key state; raises :class:`KeyStoreError` if there is none or it is bad."""
    path = state_dir / KEYS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(f"{path} does not exist: start the gateway once to create it") from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyStoreError(f"{path} is readable by others (mode {mode:o}); expected 0600")
    return _decode(data, path)


def _check_lifetime(lifetime: float) -> None:
    if lifetime <= 0:
        raise KeyStoreError(f"key lifetime must be > 0 seconds, got {lifetime}")


def load_or_create(state_dir: Path, now: float, rand: hpke.Rand = os.urandom,
                   lifetime: float = DEFAULT_LIFETIME_SECONDS) -> KeyState:
    """Read the key state, creating a first key on first start."""
    _check_lifetime(lifetime)
    _prepare_dir(state_dir)
    with _locked(state_dir):
        if (state_dir / KEYS_FILE).exists():
            return load(state_dir)
        state = KeyState((StoredKey(1, hpke.KeyPair.generate(rand), now, None,
                                    now + lifetime),))
        replace_file(state_dir / KEYS_FILE, _encode(state), 0o600)
        return state


def rotate(
    state_dir: Path,
    now: float,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    rand: hpke.Rand = os.urandom,
    lifetime: float = DEFAULT_LIFETIME_SECONDS,
) -> KeyState:
    """Make a new current key; the old one is accepted for ``grace_seconds`` more.

    Keys whose grace period has ended are dropped from the file, so their private keys
    are gone from disk.
    """
    if grace_seconds < 0:
        raise KeyStoreError(f"grace period must be >= 0 seconds, got {grace_seconds}")
    _check_lifetime(lifetime)
    _prepare_dir(state_dir)
    with _locked(state_dir):
        return _rotate_locked(state_dir, load(state_dir), now, grace_seconds, rand=rand,
                              lifetime=lifetime)


def renew_if_due(state_dir: Path, now: float, grace_seconds: float = DEFAULT_GRACE_SECONDS,
                 lifetime: float = DEFAULT_LIFETIME_SECONDS, rand: hpke.Rand = os.urandom
                 ) -> KeyState | None:
    """Rotate when the current key has less than a quarter of ``lifetime`` left (so
    clients always find a key valid for a while); returns the new state, or None.

    Checked under the file lock, so replicas sharing the state rotate once."""
    _check_lifetime(lifetime)
    with _locked(state_dir):
        state = load(state_dir)
        if state.current.not_after - now >= lifetime / 4:
            return None
        return _rotate_locked(state_dir, state, now, grace_seconds, rand=rand, lifetime=lifetime)


def _rotate_locked(state_dir: Path, old: KeyState, now: float, grace_seconds: float, *,
                   rand: hpke.Rand, lifetime: float) -> KeyState:
    live = [k for k in old.keys if k.retire_at is None or k.retire_at > now]
    used = {k.key_id for k in live}
    new_id = next(
        (i % 256 for i in range(old.current.key_id + 1, old.current.key_id + 257)
         if i % 256 not in used),
        None,
    )
    if new_id is None:
        raise KeyStoreError("all 256 key identifiers are in use; wait for grace to end")
    kept = tuple(
        StoredKey(k.key_id, k.key_pair, k.created_at, now + grace_seconds, k.not_after)
        if k.retire_at is None
        else k
        for k in live
    )
    state = KeyState((*kept, StoredKey(new_id, hpke.KeyPair.generate(rand), now, None,
                                       now + lifetime)))
    replace_file(state_dir / KEYS_FILE, _encode(state), 0o600)
    return state
