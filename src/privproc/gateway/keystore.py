"""The gateway's OHTTP key pairs on disk, with rotation and a grace period.

The state directory holds ``ohttp-keys.json`` (mode 0600, written atomically): every key
pair the gateway still accepts. Exactly one key is *current* (published in
``/ohttp-keys``); rotated-out keys carry ``retire_at`` and are accepted until then, so
clients holding the previous configuration keep working during the grace period.
Every key also has a ``not_after``, fixed when it is made (default 30 days later) and
published with it in its key record in the transparency log: clients use a key only
until then, so the gateway renews its current key before (:func:`renew_if_due`). The
gateway itself keeps opening requests under a key until it is retired, ``not_after`` or
not: what a client sealed is the client's decision, and a gateway that runs without a log
(and so renews nothing) must not go dark when its key's ``not_after`` passes.
Times are passed in by the caller (seconds since the epoch): this module reads no clock.

This is a thin adapter over :mod:`privproc.keyring` (one kind, ``ohttp-gateway``; the
secret is the private key in hex: a bare X25519 private key for DHKEM(X25519), or
``mlkem768-x25519:`` and the 32-byte seed for the hybrid KEM that new keys use, 0x647A;
key ids 0..255, never reused while a key holding one is kept). Files of format version 1
(``{"version": 1, "keys": [{"key_id", "private_key", "created_at", "retire_at",
"not_after"}]}``) are read, and rewritten in the key-ring format by :func:`load_or_create`
(at gateway start) or the next rotation.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privproc import keyring
from privproc.errors import PrivprocError
from privproc.tlog.record import PURPOSE_OHTTP_GATEWAY, KeyRecord
from privproc.wire import hpke, ohttp
from privproc.wire.errors import HPKEError

KEYS_FILE = "ohttp-keys.json"
LOCK_FILE = ".ohttp-keys.lock"
FORMAT_VERSION = keyring.FORMAT_VERSION
DEFAULT_GRACE_SECONDS = 24 * 3600
DEFAULT_LIFETIME_SECONDS = 30 * 24 * 3600
KIND = PURPOSE_OHTTP_GATEWAY
SECRET_TYPE = "hpke-x25519-private-key"
KEY_IDS = keyring.cyclic_ids(256, first=1)


class KeyStoreError(PrivprocError):
    """The key state directory is unusable or its file is malformed."""


@dataclass(frozen=True)
class StoredKey:
    key_id: int
    key_pair: hpke.KeyPair
    created_at: float
    retire_at: float | None  # None for the current key
    not_after: float  # clients use the key only before this (its key record says so)

    @functools.cached_property
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
        """The keys that open requests at ``now``: the current one and those in grace
        (the same object for as long as that set does not change)."""
        live = tuple(k for k in self.keys if k.retire_at is None or k.retire_at > now)
        ids = tuple(k.key_id for k in live)
        cached = self.__dict__.get("_accepted")
        if cached is None or cached[0] != ids:
            cached = (ids, ohttp.GatewayKeys(k.gateway_key for k in live))
            self.__dict__["_accepted"] = cached  # frozen: a memo, not a field
        return cached[1]

    def published(self) -> list[ohttp.KeyConfig]:
        """The configurations to serve as ``application/ohttp-keys`` (current only)."""
        return [self.current.gateway_key.config]


# --------------------------------------------------------------------------- the ring


_HYBRID_PREFIX = "mlkem768-x25519:"


def _decode_pair(kind: str, text: str) -> hpke.KeyPair:
    hybrid = text.startswith(_HYBRID_PREFIX)
    kem_id = hpke.KEM_MLKEM768_X25519 if hybrid else hpke.KEM_X25519_SHA256
    try:
        return hpke.KeyPair.from_private_bytes(
            bytes.fromhex(text.removeprefix(_HYBRID_PREFIX)), kem_id)
    except (HPKEError, ValueError):
        raise ValueError(f"not a {hpke.kem_name(kem_id)} private key") from None


def _encode_pair(pair: hpke.KeyPair) -> str:
    prefix = _HYBRID_PREFIX if pair.kem_id == hpke.KEM_MLKEM768_X25519 else ""
    return prefix + pair.private_bytes().hex()


CODEC: keyring.SecretCodec[hpke.KeyPair] = keyring.SecretCodec(
    SECRET_TYPE, _encode_pair, _decode_pair)


def _read_v1(doc: Mapping[str, Any]) -> keyring.KeyRing[hpke.KeyPair]:
    """Format version 1 (before the key ring)."""
    return keyring.KeyRing(tuple(
        keyring.KeyEntry(
            id=int(k["key_id"]),
            kind=KIND,
            secret=_decode_pair(KIND, k["private_key"]),
            not_before=float(k["created_at"]),
            # files written before key records carry no not_after: the default lifetime
            not_after=float(k.get("not_after",
                                  float(k["created_at"]) + DEFAULT_LIFETIME_SECONDS)),
            retire_at=None if k["retire_at"] is None else float(k["retire_at"]),
        )
        for k in doc["keys"]
    ))


def _store(state_dir: Path) -> keyring.FileKeyStore[hpke.KeyPair]:
    return keyring.FileKeyStore(
        state_dir / KEYS_FILE, CODEC, kinds=(KIND,), allocate=KEY_IDS,
        # accepted until retired, past not_after too (see the module docstring)
        expire_at_not_after=False,
        legacy={1: _read_v1}, lock_path=state_dir / LOCK_FILE,
        missing_hint="start the gateway once to create it",
    )


def _state(ring: keyring.KeyRing[hpke.KeyPair]) -> KeyState:
    return KeyState(tuple(
        StoredKey(e.id, e.secret, e.not_before, e.retire_at, e.not_after)
        for e in ring.entries
    ))


def _new_pair(rand: hpke.Rand) -> Callable[[keyring.NewKey], hpke.KeyPair]:
    return lambda spec: hpke.KeyPair.generate(rand, hpke.DEFAULT_KEM)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except keyring.KeyRingError as exc:
        raise KeyStoreError(str(exc)) from None


def _check_lifetime(lifetime: float) -> None:
    if lifetime <= 0:
        raise KeyStoreError(f"key lifetime must be > 0 seconds, got {lifetime}")


def _check_grace(grace_seconds: float) -> None:
    if grace_seconds < 0:
        raise KeyStoreError(f"grace period must be >= 0 seconds, got {grace_seconds}")


# --------------------------------------------------------------------------- operations


def load(state_dir: Path) -> KeyState:
    """Read the key state; raises :class:`KeyStoreError` if there is none or it is bad."""
    with _errors():
        return _state(_store(state_dir).read())


def load_or_create(state_dir: Path, now: float, rand: hpke.Rand = os.urandom,
                   lifetime: float = DEFAULT_LIFETIME_SECONDS) -> KeyState:
    """Read the key state, creating a first key on first start (and rewriting a file of
    an older format in the current one)."""
    _check_lifetime(lifetime)
    with _errors():
        return _state(_store(state_dir).load_or_create(now, lifetime=lifetime,
                                                       new_secret=_new_pair(rand)))


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
    _check_grace(grace_seconds)
    _check_lifetime(lifetime)
    with _errors():
        return _state(_store(state_dir).rotate(now, grace=grace_seconds, lifetime=lifetime,
                                               new_secret=_new_pair(rand)))


def renew_if_due(state_dir: Path, now: float, grace_seconds: float = DEFAULT_GRACE_SECONDS,
                 lifetime: float = DEFAULT_LIFETIME_SECONDS, rand: hpke.Rand = os.urandom
                 ) -> KeyState | None:
    """Rotate when the current key has less than a quarter of ``lifetime`` left (so
    clients always find a key valid for a while); returns the new state, or None.

    Checked under the file lock, so replicas sharing the state rotate once."""
    _check_grace(grace_seconds)
    _check_lifetime(lifetime)
    with _errors():
        ring = _store(state_dir).renew_if_due(now, grace=grace_seconds, lifetime=lifetime,
                                              new_secret=_new_pair(rand))
    return None if ring is None else _state(ring)
