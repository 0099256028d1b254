"""A small, typed facade over ``pyhpke`` for RFC 9180 HPKE.

Only DHKEM(X25519, HKDF-SHA256) with HKDF-SHA256 is offered, with AES-128-GCM,
AES-256-GCM, ChaCha20-Poly1305 or the export-only AEAD. All four modes (base, psk, auth,
auth_psk) work. Randomness is injectable: key generation and encapsulation take a
``rand`` callable (default :func:`os.urandom`) or an explicit ephemeral key, so tests can
reproduce the RFC vectors byte for byte.

Every failure surfaces as :class:`~privproc.wire.errors.HPKEError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKeyPair
from pyhpke.exceptions import PyHPKEError

from .errors import HPKEError

Rand = Callable[[int], bytes]

KEM_X25519_SHA256 = 0x0020
KDF_HKDF_SHA256 = 0x0001
NSK = 32
NPK = 32
NENC = 32


class Aead(IntEnum):
    """AEAD identifiers from the RFC 9180 registry that this facade supports."""

    AES_128_GCM = 0x0001
    AES_256_GCM = 0x0002
    CHACHA20_POLY1305 = 0x0003
    EXPORT_ONLY = 0xFFFF

    @property
    def key_size(self) -> int:
        return {0x0001: 16, 0x0002: 32, 0x0003: 32, 0xFFFF: 0}[self.value]

    @property
    def nonce_size(self) -> int:
        return 0 if self is Aead.EXPORT_ONLY else 12

    @property
    def tag_size(self) -> int:
        return 0 if self is Aead.EXPORT_ONLY else 16


_ERRORS: tuple[type[Exception], ...] = (PyHPKEError, InvalidTag, ValueError, TypeError)


@dataclass(frozen=True)
class Suite:
    """An HPKE cipher suite: KEM, KDF and AEAD identifiers."""

    kem_id: int
    kdf_id: int
    aead_id: int

    def __post_init__(self) -> None:
        if self.kem_id != KEM_X25519_SHA256:
            raise HPKEError(f"unsupported KEM 0x{self.kem_id:04x}: only 0x0020 is supported")
        if self.kdf_id != KDF_HKDF_SHA256:
            raise HPKEError(f"unsupported KDF 0x{self.kdf_id:04x}: only 0x0001 is supported")
        if self.aead_id not in Aead._value2member_map_:
            raise HPKEError(f"unsupported AEAD 0x{self.aead_id:04x}")

    @property
    def aead(self) -> Aead:
        return Aead(self.aead_id)

    def _pyhpke(self) -> Any:
        return _cipher_suite(self.aead_id)


_SUITES: dict[int, Any] = {}


def _cipher_suite(aead_id: int) -> Any:
    suite = _SUITES.get(aead_id)
    if suite is None:
        suite = CipherSuite.new(
            KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId(aead_id)
        )
        _SUITES[aead_id] = suite
    return suite


def is_supported(kem_id: int, kdf_id: int, aead_id: int) -> bool:
    """Whether this facade can run the given suite."""
    return (
        kem_id == KEM_X25519_SHA256
        and kdf_id == KDF_HKDF_SHA256
        and aead_id in Aead._value2member_map_
    )


class KeyPair:
    """An X25519 key pair for DHKEM(X25519, HKDF-SHA256)."""

    __slots__ = ("_pair", "_public")

    def __init__(self, pair: KEMKeyPair) -> None:
        self._pair = pair
        self._public: bytes = pair.public_key.to_public_bytes()

    @classmethod
    def derive(cls, ikm: bytes) -> KeyPair:
        """RFC 9180 DeriveKeyPair from input keying material (at least 32 bytes)."""
        if len(ikm) < NSK:
            raise HPKEError(f"DeriveKeyPair needs at least {NSK} bytes of ikm, got {len(ikm)}")
        try:
            return cls(_cipher_suite(Aead.AES_128_GCM).kem.derive_key_pair(ikm))
        except _ERRORS as exc:
            raise HPKEError(f"DeriveKeyPair failed: {exc}") from None

    @classmethod
    def generate(cls, rand: Rand = os.urandom) -> KeyPair:
        """A fresh key pair from ``rand``."""
        return cls.derive(rand(NSK))

    @classmethod
    def from_private_bytes(cls, sk: bytes) -> KeyPair:
        """Load a serialized 32-byte X25519 private key."""
        if len(sk) != NSK:
            raise HPKEError(f"X25519 private key must be {NSK} bytes, got {len(sk)}")
        try:
            kem = _cipher_suite(Aead.AES_128_GCM).kem
            private = kem.deserialize_private_key(sk)
            public = kem.deserialize_public_key(private.raw.public_key().public_bytes_raw())
        except _ERRORS as exc:
            raise HPKEError(f"invalid X25519 private key: {exc}") from None
        return cls(KEMKeyPair(private, public))

    @property
    def public_bytes(self) -> bytes:
        """The serialized public key (``pkR`` / ``enc`` form, 32 bytes)."""
        return self._public

    def private_bytes(self) -> bytes:
        """The serialized private key. Handle with care: never log it."""
        raw: bytes = self._pair.private_key.to_private_bytes()
        return raw

    @property
    def _kem_pair(self) -> KEMKeyPair:
        return self._pair

    def __repr__(self) -> str:
        return f"KeyPair(public={self._public.hex()})"


def _public_key(pk: bytes) -> Any:
    if len(pk) != NPK:
        raise HPKEError(f"X25519 public key must be {NPK} bytes, got {len(pk)}")
    try:
        return _cipher_suite(Aead.AES_128_GCM).kem.deserialize_public_key(pk)
    except _ERRORS as exc:
        raise HPKEError(f"invalid X25519 public key: {exc}") from None


def _check_psk(psk: bytes, psk_id: bytes) -> None:
    if bool(psk) != bool(psk_id):
        raise HPKEError("psk and psk_id must be given together (RFC 9180 VerifyPSKInputs)")
    if psk and len(psk) < 32:
        raise HPKEError(f"psk must have at least 32 bytes of entropy, got {len(psk)} bytes")


class Context:
    """An HPKE encryption context (sender or recipient role)."""

    __slots__ = ("_ctx", "suite")

    def __init__(self, ctx: Any, suite: Suite) -> None:
        self._ctx = ctx
        self.suite = suite

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """RFC 9180 Context.Export."""
        if not 0 < length <= 255 * 32:
            raise HPKEError(f"export length must be in 1..{255 * 32}, got {length}")
        try:
            out: bytes = self._ctx.export(exporter_context, length)
        except _ERRORS as exc:
            raise HPKEError(f"export failed: {exc}") from None
        return out


class SenderContext(Context):
    """The sender's context: seal messages and export secrets."""

    __slots__ = ()

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        if self.suite.aead is Aead.EXPORT_ONLY:
            raise HPKEError("seal is not available with the export-only AEAD")
        try:
            out: bytes = self._ctx.seal(plaintext, aad)
        except _ERRORS as exc:
            raise HPKEError(f"seal failed: {type(exc).__name__}") from None
        return out


class RecipientContext(Context):
    """The recipient's context: open messages and export secrets."""

    __slots__ = ()

    def open(self, ciphertext: bytes, aad: bytes = b"") -> bytes:
        if self.suite.aead is Aead.EXPORT_ONLY:
            raise HPKEError("open is not available with the export-only AEAD")
        try:
            out: bytes = self._ctx.open(ciphertext, aad)
        except _ERRORS:
            raise HPKEError("open failed: ciphertext or associated data not authentic") from None
        return out


def setup_sender(
    suite: Suite,
    recipient_public: bytes,
    info: bytes = b"",
    *,
    psk: bytes = b"",
    psk_id: bytes = b"",
    sender_key: KeyPair | None = None,
    ephemeral: KeyPair | None = None,
    rand: Rand = os.urandom,
) -> tuple[bytes, SenderContext]:
    """Encapsulate to ``recipient_public``; returns ``(enc, context)``.

    The mode follows from the arguments: a PSK selects psk mode, a ``sender_key`` auth
    mode, both auth_psk. ``ephemeral`` fixes the ephemeral key (tests); otherwise one is
    derived from ``rand``.
    """
    _check_psk(psk, psk_id)
    pkr = _public_key(recipient_public)
    eph = ephemeral if ephemeral is not None else KeyPair.generate(rand)
    sks = sender_key._kem_pair.private_key if sender_key is not None else None
    try:
        enc, ctx = suite._pyhpke().create_sender_context(
            pkr, info, sks=sks, psk=psk, psk_id=psk_id, eks=eph._kem_pair
        )
    except _ERRORS as exc:
        raise HPKEError(f"encapsulation failed: {exc}") from None
    return enc, SenderContext(ctx, suite)


def setup_recipient(
    suite: Suite,
    enc: bytes,
    recipient: KeyPair,
    info: bytes = b"",
    *,
    psk: bytes = b"",
    psk_id: bytes = b"",
    sender_public: bytes | None = None,
) -> RecipientContext:
    """Decapsulate ``enc`` with the recipient's key pair; returns the context."""
    _check_psk(psk, psk_id)
    if len(enc) != NENC:
        raise HPKEError(f"enc must be {NENC} bytes, got {len(enc)}")
    pks = _public_key(sender_public) if sender_public is not None else None
    try:
        ctx = suite._pyhpke().create_recipient_context(
            enc, recipient._kem_pair.private_key, info, pks=pks, psk=psk, psk_id=psk_id
        )
    except _ERRORS:
        raise HPKEError("decapsulation failed: enc is not a valid X25519 share") from None
    return RecipientContext(ctx, suite)
