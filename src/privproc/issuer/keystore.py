"""The issuer's token keys on disk, for both token types, with rotation and overlap.

``DIR/issuer-keys.json`` (mode 0600) holds every key the issuer still serves or that
redeemers still accept: type 0x0001 VOPRF seeds and type 0x0002 RSA-2048 keys (PKCS#8),
each with ``not_before``, ``not_after`` (fixed when the key is made, default 30 days
later, and published in its key record in the transparency log) and, once rotated out,
``retire_at``. The issuer signs only with the newest key of each type; redeemers accept
every key until its ``retire_at`` (the overlap window) or its ``not_after``, whichever
comes first, and the issuer renews its keys before they run out (:func:`renew_if_due`).
Times are passed in.

It is a thin adapter over :mod:`privproc.keyring`: one kind per token type (the key
record purpose, ``privacypass-0001`` and ``privacypass-0002``), the secret is the VOPRF
seed or the RSA key's PKCS#8 DER (base64). Files of format version 1 (``{"version": 1,
"keys": [{"token_type", "secret", "not_before", "retire_at", "not_after"}]}``) are read,
and rewritten in the key-ring format by :func:`load_or_create` (at issuer start) or the
next rotation.

**What a redeemer reads.** Whenever its keys change (and at every :func:`load_or_create`)
the issuer also writes ``DIR/issuer-verification-keys.json`` (mode 0600): only what a
gateway needs to redeem tokens, never the private file. For type 0x0002 that is the
public key (``token_key``, the RFC 9578 SPKI) with its token type, ``not_before`` and end
of life. Type 0x0001 is the one documented exception: a VOPRF token is privately
verifiable, so redeeming it takes the issuer's secret, and its entry carries the VOPRF
seed too. Format (``version`` 1)::

    {"format": "privproc-issuer-verification-keys", "version": 1,
     "keys": [{"token_type": 2, "token_key": "<base64>", "not_before": 1700000000,
               "end_of_life": 1702592000, "current": true},
              {"token_type": 1, "token_key": "<base64>", "not_before": 1700000000,
               "end_of_life": 1702592000, "current": true, "secret": "<base64 seed>"}]}

A reader refuses a type 0x0002 entry that carries a secret, and a type 0x0001 secret that
does not match its ``token_key``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from privproc import keyring
from privproc.errors import PrivprocError
from privproc.files import replace_file
from privproc.tlog.record import KeyRecord, privacypass_purpose
from privproc.wire import blindrsa, privacypass
from privproc.wire.privacypass import TOKEN_TYPE_BLIND_RSA, TOKEN_TYPE_VOPRF

KEYS_FILE = "issuer-keys.json"
LOCK_FILE = ".issuer-keys.lock"
VERIFICATION_KEYS_FILE = "issuer-verification-keys.json"
FORMAT_VERSION = keyring.FORMAT_VERSION
VERIFICATION_FORMAT = "privproc-issuer-verification-keys"
VERIFICATION_FORMAT_VERSION = 1
DEFAULT_OVERLAP = 7 * 24 * 3600
DEFAULT_LIFETIME = 30 * 24 * 3600
TOKEN_TYPES = (TOKEN_TYPE_VOPRF, TOKEN_TYPE_BLIND_RSA)
SECRET_TYPE = "privacypass-issuer-key"
KINDS = {t: privacypass_purpose(t) for t in TOKEN_TYPES}
_TOKEN_TYPE_OF_KIND = {kind: t for t, kind in KINDS.items()}


class IssuerKeyError(PrivprocError):
    """The issuer key file is missing, unreadable, or malformed."""


@dataclass(frozen=True)
class IssuerKey:
    token_type: int
    private: privacypass.VoprfIssuerKey | blindrsa.SigningKey
    secret: bytes = field(repr=False)  # the VOPRF seed or the RSA key's PKCS#8 DER
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

    @functools.cached_property
    def key_id(self) -> bytes:  # computed once per key
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


@dataclass(frozen=True)
class _TokenSecret:
    """A ring secret: the private key, ready to use, and the bytes it was made from."""

    private: privacypass.VoprfIssuerKey | blindrsa.SigningKey = field(repr=False)
    raw: bytes = field(repr=False)


def _token_secret(token_type: int, raw: bytes) -> _TokenSecret:
    if token_type == TOKEN_TYPE_VOPRF:
        return _TokenSecret(privacypass.VoprfIssuerKey(raw), raw)
    key = serialization.load_der_private_key(raw, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise IssuerKeyError("type 0x0002 key is not an RSA key")
    return _TokenSecret(blindrsa.SigningKey.from_private_key(key), raw)


def _make(token_type: int, secret: bytes, not_before: int, retire_at: int | None,
          not_after: int) -> IssuerKey:
    s = _token_secret(token_type, secret)
    return IssuerKey(token_type, s.private, secret, not_before, retire_at, not_after)


def _new_secret(token_type: int) -> _TokenSecret:
    if token_type == TOKEN_TYPE_VOPRF:
        return _token_secret(token_type, os.urandom(48))
    der = blindrsa.generate_private_key(2048).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _token_secret(token_type, der)


def generate(token_type: int, now: int, lifetime: int = DEFAULT_LIFETIME) -> IssuerKey:
    if lifetime <= 0:
        raise IssuerKeyError(f"key lifetime must be > 0 seconds, got {lifetime}")
    s = _new_secret(token_type)
    return IssuerKey(token_type, s.private, s.raw, now, None, now + lifetime)


@dataclass(frozen=True)
class IssuerKeys:
    keys: tuple[IssuerKey, ...]

    def current(self, token_type: int) -> IssuerKey:
        return next(k for k in reversed(self.keys)
                    if k.token_type == token_type and k.retire_at is None)

    def accepted(self, now: float) -> dict[bytes, IssuerKey]:
        return {k.key_id: k for k in self.keys if k.accepted_at(now)}


# --------------------------------------------------------------------------- the ring


def _token_type(kind: str) -> int:
    try:
        return _TOKEN_TYPE_OF_KIND[kind]
    except KeyError:
        raise ValueError("unknown key kind") from None


def _decode_secret(kind: str, text: str) -> _TokenSecret:
    try:
        return _token_secret(_token_type(kind), base64.b64decode(text, validate=True))
    except (IssuerKeyError, privacypass.PrivacyPassError, blindrsa.BlindRSAError,
            binascii.Error, TypeError, UnsupportedAlgorithm):
        raise ValueError("not an issuer private key") from None


CODEC: keyring.SecretCodec[_TokenSecret] = keyring.SecretCodec(
    SECRET_TYPE, lambda s: base64.b64encode(s.raw).decode(), _decode_secret)


def _read_v1(doc: Mapping[str, Any]) -> keyring.KeyRing[_TokenSecret]:
    """Format version 1 (before the key ring): ids are given in file order."""
    entries = []
    for key_id, k in enumerate(doc["keys"], start=1):
        token_type = int(k["token_type"])
        if token_type not in KINDS:
            raise ValueError("unknown token type")
        not_before = int(k["not_before"])
        entries.append(keyring.KeyEntry(
            id=key_id,
            kind=KINDS[token_type],
            secret=_decode_secret(KINDS[token_type], k["secret"]),
            not_before=not_before,
            # files written before key records: the default lifetime
            not_after=int(k.get("not_after", not_before + DEFAULT_LIFETIME)),
            retire_at=None if k["retire_at"] is None else int(k["retire_at"]),
        ))
    return keyring.KeyRing(tuple(entries))


def _store(state_dir: Path) -> keyring.FileKeyStore[_TokenSecret]:
    return keyring.FileKeyStore(
        state_dir / KEYS_FILE, CODEC, kinds=tuple(KINDS.values()),
        legacy={1: _read_v1}, lock_path=state_dir / LOCK_FILE,
        derived=lambda ring: _write_verification_keys(state_dir, _keys(ring)),
        missing_hint="start the issuer once",
    )


def _keys(ring: keyring.KeyRing[_TokenSecret]) -> IssuerKeys:
    return IssuerKeys(tuple(
        IssuerKey(_token_type(e.kind), e.secret.private, e.secret.raw, int(e.not_before),
                  None if e.retire_at is None else int(e.retire_at), int(e.not_after))
        for e in ring.entries
    ))


def _new_token_secret(spec: keyring.NewKey) -> _TokenSecret:
    return _new_secret(_token_type(spec.kind))


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except keyring.KeyRingError as exc:
        raise IssuerKeyError(str(exc)) from None


def _check_lifetime(lifetime: int) -> None:
    if lifetime <= 0:
        raise IssuerKeyError(f"key lifetime must be > 0 seconds, got {lifetime}")


def _check_overlap(overlap: int) -> None:
    if overlap < 0:
        raise IssuerKeyError(f"overlap must be >= 0 seconds, got {overlap}")


# --------------------------------------------------------------------------- operations


def load(state_dir: Path) -> IssuerKeys:
    with _errors():
        return _keys(_store(state_dir).read())


def load_or_create(state_dir: Path, now: int, lifetime: int = DEFAULT_LIFETIME) -> IssuerKeys:
    """Read the keys, creating the first ones on first start; (re)writes the redeemers'
    verification key file either way."""
    _check_lifetime(lifetime)
    with _errors():
        return _keys(_store(state_dir).load_or_create(now, lifetime=lifetime,
                                                      new_secret=_new_token_secret))


def rotate(state_dir: Path, now: int, overlap: int = DEFAULT_OVERLAP,
           lifetime: int = DEFAULT_LIFETIME) -> IssuerKeys:
    """New current keys of both types; the old ones stay accepted for ``overlap`` seconds.

    Keys past their overlap are dropped from the file.
    """
    _check_overlap(overlap)
    _check_lifetime(lifetime)
    with _errors():
        return _keys(_store(state_dir).rotate(now, grace=overlap, lifetime=lifetime,
                                              new_secret=_new_token_secret))


def renew_if_due(state_dir: Path, now: int, overlap: int = DEFAULT_OVERLAP,
                 lifetime: int = DEFAULT_LIFETIME) -> IssuerKeys | None:
    """Rotate when a current key has less than a quarter of ``lifetime`` left; returns
    the new keys, or None. Checked under the file lock (replicas rotate once)."""
    _check_overlap(overlap)
    _check_lifetime(lifetime)
    with _errors():
        ring = _store(state_dir).renew_if_due(now, grace=overlap, lifetime=lifetime,
                                              new_secret=_new_token_secret)
    return None if ring is None else _keys(ring)


class KeyFileCache:
    """The key file, re-read when it changes (rotation by another process)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._cache = keyring.FileCache(state_dir / KEYS_FILE, lambda: load(state_dir))

    def get(self) -> IssuerKeys:
        return self._cache.get()


# --------------------------------------------------------------------------- redeemers


@dataclass(frozen=True)
class AcceptedKey:
    """What a redeemer knows of one issuer key: enough to verify its tokens, no more
    (for type 0x0001 that is the VOPRF secret: see the module docstring)."""

    token_type: int
    token_key: bytes
    verification_key: privacypass.VerificationKey = field(repr=False)
    not_before: int
    end_of_life: int
    current: bool

    @functools.cached_property
    def key_id(self) -> bytes:  # computed once per key
        return hashlib.sha256(self.token_key).digest()

    def accepted_at(self, now: float) -> bool:
        return now < self.end_of_life


@dataclass(frozen=True)
class VerificationKeys:
    """The contents of ``issuer-verification-keys.json``."""

    keys: tuple[AcceptedKey, ...]

    def accepted(self, now: float) -> dict[bytes, AcceptedKey]:
        return {k.key_id: k for k in self.keys if k.accepted_at(now)}

    def current_token_key(self, token_type: int) -> bytes:
        for k in reversed(self.keys):
            if k.token_type == token_type and k.current:
                return k.token_key
        raise IssuerKeyError(f"no current issuer key of type 0x{token_type:04x}")


def encode_verification_keys(keys: IssuerKeys) -> bytes:
    entries: list[dict[str, object]] = []
    for k in keys.keys:
        entry: dict[str, object] = {
            "token_type": k.token_type,
            "token_key": base64.b64encode(k.token_key).decode(),
            "not_before": k.not_before,
            "end_of_life": k.end_of_life,
            "current": k.retire_at is None,
        }
        if k.token_type == TOKEN_TYPE_VOPRF:  # privately verifiable: the one exception
            entry["secret"] = base64.b64encode(k.secret).decode()
        entries.append(entry)
    return json.dumps({"format": VERIFICATION_FORMAT, "version": VERIFICATION_FORMAT_VERSION,
                       "keys": entries}, indent=1).encode() + b"\n"


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise IssuerKeyError(f"{what} is not a non-negative integer")
    return value


def _verification_key(k: Mapping[str, Any]) -> AcceptedKey:
    token_type = _int(k["token_type"], "token_type")
    if token_type not in TOKEN_TYPES:
        raise IssuerKeyError(f"unsupported token type 0x{token_type:04x}")
    token_key = base64.b64decode(k["token_key"], validate=True)
    privacypass.TokenKey(token_type, token_key)  # a canonical token-key of its type
    verification_key: privacypass.VerificationKey
    if token_type == TOKEN_TYPE_VOPRF:
        voprf = privacypass.VoprfIssuerKey(base64.b64decode(k["secret"], validate=True))
        if voprf.public_key != token_key:
            raise IssuerKeyError("a type 0x0001 secret does not match its token_key")
        verification_key = voprf
    else:
        if "secret" in k:
            raise IssuerKeyError("a type 0x0002 entry carries a secret: a redeemer needs "
                                 "only its public key")
        verification_key = blindrsa.load_public_key_spki(token_key)
    current = k["current"]
    if not isinstance(current, bool):
        raise IssuerKeyError("current is not a boolean")
    return AcceptedKey(token_type, token_key, verification_key,
                       _int(k["not_before"], "not_before"),
                       _int(k["end_of_life"], "end_of_life"), current)


def decode_verification_keys(data: bytes, path: Path) -> VerificationKeys:
    try:
        doc = json.loads(data)
        if doc.get("format") != VERIFICATION_FORMAT or (
                doc.get("version") != VERIFICATION_FORMAT_VERSION):
            raise IssuerKeyError(f"unsupported format {doc.get('format')!r} version "
                                 f"{doc.get('version')!r}")
        keys = tuple(_verification_key(k) for k in doc["keys"])
    except IssuerKeyError as exc:
        raise IssuerKeyError(f"{path}: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError,
            privacypass.PrivacyPassError, blindrsa.BlindRSAError) as exc:
        raise IssuerKeyError(f"{path}: malformed verification key file "
                             f"({type(exc).__name__})") from None
    for token_type in TOKEN_TYPES:
        if not any(k.token_type == token_type and k.current for k in keys):
            raise IssuerKeyError(f"{path}: no current key of type 0x{token_type:04x}")
    return VerificationKeys(keys)


def read_verification_keys(state_dir: Path) -> VerificationKeys:
    """Read ``state_dir/issuer-verification-keys.json`` (must be mode 0600)."""
    path = state_dir / VERIFICATION_KEYS_FILE
    try:
        data = keyring.read_private_file(
            path, "start the issuer (or rotate its keys) once to write it")
    except keyring.KeyRingError as exc:
        raise IssuerKeyError(str(exc)) from None
    return decode_verification_keys(data, path)


def _write_verification_keys(state_dir: Path, keys: IssuerKeys) -> None:
    path = state_dir / VERIFICATION_KEYS_FILE
    data = encode_verification_keys(keys)
    with contextlib.suppress(OSError):
        if path.read_bytes() == data and path.stat().st_mode & 0o777 == 0o600:
            return
    replace_file(path, data, 0o600)

