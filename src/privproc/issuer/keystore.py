"""The issuer's token keys on disk, for both token types, with rotation and overlap.

``DIR/issuer-keys.json`` (mode 0600) holds every key the issuer still serves or that
redeemers still accept: type 0x0001 VOPRF seeds and type 0x0002 RSA-2048 keys (PKCS#8),
each with ``not_before``, ``not_after`` (fixed when the key is made, default 30 days
later, and published in its key record in the transparency log) and, once rotated out,
``retire_at``. The issuer signs only with the newest key of each type; redeemers accept
every key until its ``retire_at`` (the overlap window) or its ``not_after``, whichever
comes first, and the issuer renews its keys before they run out (:func:`renew_if_due`).
Gateways that redeem type 0x0001 tokens read this file too: a
privately verifiable token needs the issuer's secret. Times are passed in.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from privproc.files import replace_file
from privproc.tlog.record import KeyRecord, privacypass_purpose
from privproc.wire import blindrsa, privacypass
from privproc.wire.privacypass import TOKEN_TYPE_BLIND_RSA, TOKEN_TYPE_VOPRF

KEYS_FILE = "issuer-keys.json"
FORMAT_VERSION = 1
DEFAULT_OVERLAP = 7 * 24 * 3600
DEFAULT_LIFETIME = 30 * 24 * 3600
TOKEN_TYPES = (TOKEN_TYPE_VOPRF, TOKEN_TYPE_BLIND_RSA)


class IssuerKeyError(Exception):
    """The issuer key file is missing, unreadable, or malformed."""


@dataclass(frozen=True)
class IssuerKey:
    token_type: int
    private: privacypass.VoprfIssuerKey | blindrsa.SigningKey
    secret: bytes  # the VOPRF seed or the RSA key's PKCS#8 DER
    not_before: int
    retire_at: int | None
    not_after: int

    @property
    def public(self) -> privacypass.IssuerPublicKey:
        if isinstance(self.private, privacypass.VoprfIssuerKey):
            return self.private.public_key
        return self.private.public_key

    @property
    def token_key(self) -> bytes:
        return privacypass.encode_token_key(self.token_type, self.public)

    @property
    def key_id(self) -> bytes:
        return privacypass.token_key_id(self.token_type, self.public)

    @property
    def verification_key(self) -> privacypass.VerificationKey:
        if isinstance(self.private, privacypass.VoprfIssuerKey):
            return self.private
        return self.private.public_key

    @property
    def end_of_life(self) -> int:
        """When redeemers stop accepting the key's tokens (a spend is remembered as long)."""
        return self.not_after if self.retire_at is None else min(self.retire_at, self.not_after)

    def accepted_at(self, now: float) -> bool:
        return now < self.end_of_life

    def key_record(self, owner: str) -> KeyRecord:
        """The transparency-log record that makes this key usable by clients."""
        return KeyRecord(privacypass_purpose(self.token_type), owner, self.token_key,
                         self.not_before, self.not_after)


def _make(token_type: int, secret: bytes, not_before: int, retire_at: int | None,
          not_after: int) -> IssuerKey:
    if token_type == TOKEN_TYPE_VOPRF:
        private: privacypass.VoprfIssuerKey | blindrsa.SigningKey = (
            privacypass.VoprfIssuerKey(secret)
        )
    else:
        key = serialization.load_der_private_key(secret, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise IssuerKeyError("type 0x0002 key is not an RSA key")
        private = blindrsa.SigningKey.from_private_key(key)
    return IssuerKey(token_type, private, secret, not_before, retire_at, not_after)


def generate(token_type: int, now: int, lifetime: int = DEFAULT_LIFETIME) -> IssuerKey:
    if lifetime <= 0:
        raise IssuerKeyError(f"key lifetime must be > 0 seconds, got {lifetime}")
    if token_type == TOKEN_TYPE_VOPRF:
        return _make(token_type, os.urandom(48), now, None, now + lifetime)
    der = blindrsa.generate_private_key(2048).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _make(token_type, der, now, None, now + lifetime)


@dataclass(frozen=True)
class IssuerKeys:
    keys: tuple[IssuerKey, ...]

    def current(self, token_type: int) -> IssuerKey:
        return next(k for k in reversed(self.keys)
                    if k.token_type == token_type and k.retire_at is None)

    def accepted(self, now: float) -> dict[bytes, IssuerKey]:
        return {k.key_id: k for k in self.keys if k.accepted_at(now)}


def _encode(keys: IssuerKeys) -> bytes:
    return json.dumps({"version": FORMAT_VERSION, "keys": [
        {"token_type": k.token_type, "secret": base64.b64encode(k.secret).decode(),
         "not_before": k.not_before, "retire_at": k.retire_at, "not_after": k.not_after}
        for k in keys.keys
    ]}, indent=1).encode()


def load(state_dir: Path) -> IssuerKeys:
    path = state_dir / KEYS_FILE
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise IssuerKeyError(f"{path} does not exist: start the issuer once") from None
    if mode & 0o077:
        raise IssuerKeyError(f"{path} is readable by others (mode {mode:o}); expected 0600")
    try:
        doc = json.loads(data)
        if doc.get("version") != FORMAT_VERSION:
            raise IssuerKeyError(f"{path}: unsupported version {doc.get('version')!r}")
        keys = tuple(_make(int(k["token_type"]), base64.b64decode(k["secret"]),
                           int(k["not_before"]),
                           None if k["retire_at"] is None else int(k["retire_at"]),
                           # files written before key records: the default lifetime
                           int(k.get("not_after", int(k["not_before"]) + DEFAULT_LIFETIME)))
                     for k in doc["keys"])
    except (ValueError, KeyError, TypeError, AttributeError,
            privacypass.PrivacyPassError, blindrsa.BlindRSAError) as exc:
        raise IssuerKeyError(f"{path}: malformed key file ({type(exc).__name__})") from None
    for token_type in TOKEN_TYPES:
        if not any(k.token_type == token_type and k.retire_at is None for k in keys):
            raise IssuerKeyError(f"{path}: no current key of type 0x{token_type:04x}")
    return IssuerKeys(keys)


def _locked(state_dir: Path) -> int:
    fd = os.open(state_dir / ".issuer-keys.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def load_or_create(state_dir: Path, now: int, lifetime: int = DEFAULT_LIFETIME) -> IssuerKeys:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = _locked(state_dir)
    try:
        if (state_dir / KEYS_FILE).exists():
            return load(state_dir)
        keys = IssuerKeys(tuple(generate(t, now, lifetime) for t in TOKEN_TYPES))
        replace_file(state_dir / KEYS_FILE, _encode(keys), 0o600)
        return keys
    finally:
        os.close(fd)


def rotate(state_dir: Path, now: int, overlap: int = DEFAULT_OVERLAP,
           lifetime: int = DEFAULT_LIFETIME) -> IssuerKeys:
    """New current keys of both types; the old ones stay accepted for ``overlap`` seconds.

    Keys past their overlap are dropped from the file.
    """
    if overlap < 0:
        raise IssuerKeyError(f"overlap must be >= 0 seconds, got {overlap}")
    fd = _locked(state_dir)
    try:
        return _rotate_locked(state_dir, load(state_dir), now, overlap, lifetime)
    finally:
        os.close(fd)


def renew_if_due(state_dir: Path, now: int, overlap: int = DEFAULT_OVERLAP,
                 lifetime: int = DEFAULT_LIFETIME) -> IssuerKeys | None:
    """Rotate when a current key has less than a quarter of ``lifetime`` left; returns
    the new keys, or None. Checked under the file lock (replicas rotate once)."""
    fd = _locked(state_dir)
    try:
        keys = load(state_dir)
        if all(keys.current(t).not_after - now >= lifetime / 4 for t in TOKEN_TYPES):
            return None
        return _rotate_locked(state_dir, keys, now, overlap, lifetime)
    finally:
        os.close(fd)


def _rotate_locked(state_dir: Path, old: IssuerKeys, now: int, overlap: int,
                   lifetime: int) -> IssuerKeys:
    kept = tuple(
        replace(k, retire_at=now + overlap) if k.retire_at is None else k
        for k in old.keys if k.accepted_at(now)
    )
    keys = IssuerKeys(kept + tuple(generate(t, now, lifetime) for t in TOKEN_TYPES))
    replace_file(state_dir / KEYS_FILE, _encode(keys), 0o600)
    return keys


class KeyFileCache:
    """The key file, re-read when it changes (rotation by another process)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._mtime = -1
        self._keys = load(state_dir)

    def get(self) -> IssuerKeys:
        mtime = (self.state_dir / KEYS_FILE).stat().st_mtime_ns
        if mtime != self._mtime:
            self._keys = load(self.state_dir)
            self._mtime = mtime
        return self._keys
