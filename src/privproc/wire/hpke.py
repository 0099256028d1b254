"""RFC 9180 HPKE on the primitives of ``cryptography``: our own key schedule (sans-IO).

KEMs: DHKEM(X25519, HKDF-SHA256) (``0x0020``, RFC 9180 section 4.1) and the hybrid
post-quantum MLKEM768-X25519 (``0x647A``, draft-ietf-hpke-pq: the X-Wing KEM of
draft-connolly-cfrg-xwing-kem). KDFs: HKDF-SHA256, HKDF-SHA384 and HKDF-SHA512. AEADs:
AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 and the export-only AEAD. Modes: base and psk
with every KEM; auth and auth_psk with the DH-based KEM only (a KEM without a static
sender key cannot authenticate the sender).

Randomness is injectable: key generation and encapsulation take a ``rand`` callable
(default :func:`os.urandom`); DHKEM also takes an explicit ephemeral key, so tests
reproduce the RFC vectors byte for byte. The one exception is the ML-KEM half of the
hybrid's encapsulation, whose 32 random bytes ``cryptography`` draws itself (it exposes
no derandomised ML-KEM encapsulation); its decapsulation is deterministic.

Every failure surfaces as :class:`~privproc.wire.errors.HPKEError`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from types import MappingProxyType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from .errors import HPKEError

Rand = Callable[[int], bytes]

KEM_X25519_SHA256 = 0x0020
KEM_MLKEM768_X25519 = 0x647A
DEFAULT_KEM = KEM_MLKEM768_X25519
"""The KEM new gateway and node keys use: the hybrid, post-quantum one."""

KDF_HKDF_SHA256 = 0x0001
KDF_HKDF_SHA384 = 0x0002
KDF_HKDF_SHA512 = 0x0003

# Sizes of DHKEM(X25519, HKDF-SHA256), kept for callers written before the hybrid KEM;
# use :func:`kem_info` (``Suite.kem``, ``KeyPair.kem``) for the sizes of any KEM.
NSK = 32
NPK = 32
NENC = 32

MODE_BASE = 0x00
MODE_PSK = 0x01
MODE_AUTH = 0x02
MODE_AUTH_PSK = 0x03

_V1 = b"HPKE-v1"
_X25519_LEN = 32
_MLKEM768_EK = 1184
_MLKEM768_CT = 1088
_MLKEM768_SEED = 64
_XWING_LABEL = bytes.fromhex("5c2e2f2f5e5c")  # "\.//^\"


class Aead(IntEnum):
    """AEAD identifiers from the RFC 9180 registry that this module supports."""

    AES_128_GCM = 0x0001
    AES_256_GCM = 0x0002
    CHACHA20_POLY1305 = 0x0003
    EXPORT_ONLY = 0xFFFF

    @property
    def key_size(self) -> int:
        return _AEAD_KEY_SIZE[self]

    @property
    def nonce_size(self) -> int:
        return 0 if self is Aead.EXPORT_ONLY else 12

    @property
    def tag_size(self) -> int:
        return 0 if self is Aead.EXPORT_ONLY else 16


_AEAD_KEY_SIZE = {0x0001: 16, 0x0002: 32, 0x0003: 32, 0xFFFF: 0}


class Kdf(IntEnum):
    """KDF identifiers from the RFC 9180 registry that this module supports."""

    HKDF_SHA256 = KDF_HKDF_SHA256
    HKDF_SHA384 = KDF_HKDF_SHA384
    HKDF_SHA512 = KDF_HKDF_SHA512

    @property
    def hash_name(self) -> str:
        return _KDF_HASH[self][0]

    @property
    def hash_size(self) -> int:
        """Nh: the size of the hash, and so of an extracted key."""
        return _KDF_HASH[self][1]


_KDF_HASH = {1: ("sha256", 32), 2: ("sha384", 48), 3: ("sha512", 64)}


@dataclass(frozen=True)
class KemInfo:
    """A KEM's identifier, name and sizes (RFC 9180 section 7.1 terms)."""

    kem_id: int
    name: str
    nsecret: int  # the shared secret
    nenc: int  # the encapsulated key
    npk: int  # the serialized public key
    nsk: int  # the serialized private key (the hybrid's: a 32-byte seed)
    auth: bool  # whether the auth modes are defined for it
    post_quantum: bool


KEMS: Mapping[int, KemInfo] = MappingProxyType({
    KEM_X25519_SHA256: KemInfo(KEM_X25519_SHA256, "X25519", 32, 32, 32, 32, True, False),
    KEM_MLKEM768_X25519: KemInfo(
        KEM_MLKEM768_X25519, "MLKEM768-X25519", 32, _MLKEM768_CT + _X25519_LEN,
        _MLKEM768_EK + _X25519_LEN, 32, False, True),
})


def kem_info(kem_id: int) -> KemInfo:
    """The sizes of a supported KEM; raises :class:`HPKEError` for any other."""
    info = KEMS.get(kem_id)
    if info is None:
        known = ", ".join(f"0x{k:04x} ({v.name})" for k, v in KEMS.items())
        raise HPKEError(f"unsupported KEM 0x{kem_id:04x}: supported are {known}")
    return info


def kem_name(kem_id: int) -> str:
    """A KEM's display name ("MLKEM768-X25519", "X25519"), or ``KEM 0x....`` if unknown."""
    info = KEMS.get(kem_id)
    return info.name if info is not None else f"KEM 0x{kem_id:04x}"


def is_supported(kem_id: int, kdf_id: int, aead_id: int) -> bool:
    """Whether this module can run the given suite."""
    return (
        kem_id in KEMS
        and kdf_id in Kdf._value2member_map_
        and aead_id in Aead._value2member_map_
    )


# --------------------------------------------------------------------------- HKDF


def _extract(hash_name: str, salt: bytes, ikm: bytes, size: int) -> bytes:
    return hmac.digest(salt or bytes(size), ikm, hash_name)


def _expand(hash_name: str, prk: bytes, info: bytes, length: int, size: int) -> bytes:
    if length <= size:  # one block: every key, nonce and secret of the request path
        return hmac.digest(prk, info + b"\x01", hash_name)[:length]
    if length > 255 * size:
        raise HPKEError(f"HKDF-Expand length must be at most {255 * size}, got {length}")
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), hash_name)
        out += block
        counter += 1
    return out[:length]


class _Labeled:
    """LabeledExtract / LabeledExpand (RFC 9180 section 4) for one suite_id and KDF."""

    __slots__ = ("_hash", "_size", "_suite_id")

    def __init__(self, suite_id: bytes, kdf: Kdf) -> None:
        self._suite_id = suite_id
        self._hash = kdf.hash_name
        self._size = kdf.hash_size

    def extract(self, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return _extract(self._hash, salt, _V1 + self._suite_id + label + ikm, self._size)

    def expand(self, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
        labeled = struct.pack("!H", length) + _V1 + self._suite_id + label + info
        return _expand(self._hash, prk, labeled, length, self._size)


# --------------------------------------------------------------------------- KEMs

_DHKEM = _Labeled(b"KEM" + struct.pack("!H", KEM_X25519_SHA256), Kdf.HKDF_SHA256)


def _x25519_private(sk: bytes) -> X25519PrivateKey:
    if len(sk) != _X25519_LEN:
        raise HPKEError(f"X25519 private key must be {_X25519_LEN} bytes, got {len(sk)}")
    return X25519PrivateKey.from_private_bytes(sk)


def _x25519_public(pk: bytes, what: str = "X25519 public key") -> X25519PublicKey:
    if len(pk) != _X25519_LEN:
        raise HPKEError(f"{what} must be {_X25519_LEN} bytes, got {len(pk)}")
    return X25519PublicKey.from_public_bytes(pk)


# A client seals many requests to the same few keys (its gateway's, its nodes'): parsed
# once, not per request. Only valid keys are kept (a parse that raises is not cached).
@functools.lru_cache(maxsize=64)
def _recipient_x25519(pk: bytes) -> X25519PublicKey:
    return _x25519_public(pk)


@functools.lru_cache(maxsize=64)
def _hybrid_public(pk: bytes) -> tuple[mlkem.MLKEM768PublicKey, X25519PublicKey]:
    return (mlkem.MLKEM768PublicKey.from_public_bytes(pk[:_MLKEM768_EK]),
            X25519PublicKey.from_public_bytes(pk[_MLKEM768_EK:]))


def _dh(sk: X25519PrivateKey, pk: X25519PublicKey) -> bytes:
    try:
        shared = sk.exchange(pk)
    except ValueError:
        shared = bytes(_X25519_LEN)
    if not any(shared):
        raise HPKEError("X25519 shared secret is all zero: the peer's share has low order")
    return shared


def _raw(pk: X25519PublicKey) -> bytes:
    return pk.public_bytes_raw()


def _dhkem_shared_secret(dh: bytes, kem_context: bytes) -> bytes:
    prk = _DHKEM.extract(b"", b"eae_prk", dh)
    return _DHKEM.expand(prk, b"shared_secret", kem_context, 32)


def _xwing_label(ikm: bytes) -> bytes:
    """SHAKE256.LabeledDerive(ikm, "DeriveKeyPair", "", 32) of draft-ietf-hpke-pq."""
    suite_id = b"KEM" + struct.pack("!H", KEM_MLKEM768_X25519)
    label = b"DeriveKeyPair"
    labeled = ikm + _V1 + suite_id + struct.pack("!H", len(label)) + label + struct.pack("!H", 32)
    return hashlib.shake_256(labeled).digest(32)


def _xwing_expand(seed: bytes) -> tuple[mlkem.MLKEM768PrivateKey, X25519PrivateKey]:
    """X-Wing's key expansion: SHAKE256(seed, 96) = ML-KEM-768 seed (d || z) || X25519 sk."""
    full = hashlib.shake_256(seed).digest(_MLKEM768_SEED + _X25519_LEN)
    pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(full[:_MLKEM768_SEED])
    return pq, X25519PrivateKey.from_private_bytes(full[_MLKEM768_SEED:])


def _xwing_combine(ss_pq: bytes, ss_t: bytes, ct_t: bytes, pk_t: bytes) -> bytes:
    return hashlib.sha3_256(ss_pq + ss_t + ct_t + pk_t + _XWING_LABEL).digest()


# --------------------------------------------------------------------------- key pairs


class KeyPair:
    """A recipient's (or, for the auth modes, a sender's) HPKE key pair for one KEM.

    The private key is the KEM's serialized private key: the X25519 scalar for
    DHKEM(X25519), the 32-byte seed for MLKEM768-X25519. The two are the same size, so a
    stored private key is only meaningful together with its KEM identifier.
    """

    __slots__ = ("_mlkem", "_public", "_sk", "_x25519", "kem")

    def __init__(self, kem: KemInfo, sk: bytes, public: bytes,
                 x25519: X25519PrivateKey, pq: mlkem.MLKEM768PrivateKey | None) -> None:
        self.kem = kem
        self._sk = sk
        self._public = public
        self._x25519 = x25519
        self._mlkem = pq

    @classmethod
    def from_private_bytes(cls, sk: bytes, kem_id: int = KEM_X25519_SHA256) -> KeyPair:
        """Load a serialized private key of ``kem_id`` (default DHKEM(X25519))."""
        kem = kem_info(kem_id)
        if len(sk) != kem.nsk:
            what = "X25519 private key" if kem_id == KEM_X25519_SHA256 else f"{kem.name} seed"
            raise HPKEError(f"{what} must be {kem.nsk} bytes, got {len(sk)}")
        sk = bytes(sk)
        try:
            if kem_id == KEM_X25519_SHA256:
                x = _x25519_private(sk)
                return cls(kem, sk, _raw(x.public_key()), x, None)
            pq, x = _xwing_expand(sk)
        except ValueError as exc:
            raise HPKEError(f"invalid {kem.name} private key: {exc}") from None
        public = pq.public_key().public_bytes_raw() + _raw(x.public_key())
        return cls(kem, sk, public, x, pq)

    @classmethod
    def derive(cls, ikm: bytes, kem_id: int = KEM_X25519_SHA256) -> KeyPair:
        """DeriveKeyPair from input keying material (at least ``Nsk`` bytes): RFC 9180
        section 7.1.3 for X25519, SHAKE256.LabeledDerive of draft-ietf-hpke-pq for the
        hybrid."""
        kem = kem_info(kem_id)
        if len(ikm) < kem.nsk:
            raise HPKEError(
                f"DeriveKeyPair needs at least {kem.nsk} bytes of ikm, got {len(ikm)}")
        if kem_id == KEM_X25519_SHA256:
            prk = _DHKEM.extract(b"", b"dkp_prk", bytes(ikm))
            return cls.from_private_bytes(_DHKEM.expand(prk, b"sk", b"", kem.nsk), kem_id)
        return cls.from_private_bytes(_xwing_label(bytes(ikm)), kem_id)

    @classmethod
    def generate(cls, rand: Rand = os.urandom, kem_id: int = KEM_X25519_SHA256) -> KeyPair:
        """A fresh key pair from ``rand`` (for the hybrid, the seed is ``rand(32)``)."""
        kem = kem_info(kem_id)
        if kem_id == KEM_X25519_SHA256:
            return cls.derive(rand(kem.nsk), kem_id)
        return cls.from_private_bytes(rand(kem.nsk), kem_id)

    @property
    def kem_id(self) -> int:
        return self.kem.kem_id

    @property
    def public_bytes(self) -> bytes:
        """The serialized public key (``pkR``; for X25519 also the ``enc`` form)."""
        return self._public

    def private_bytes(self) -> bytes:
        """The serialized private key. Handle with care: never log it."""
        return self._sk

    def __repr__(self) -> str:
        return f"KeyPair(kem={self.kem.name}, public={self._public[:16].hex()}...)"


# --------------------------------------------------------------------------- encapsulation


def _encap(kem: KemInfo, pk_r: bytes, ephemeral: KeyPair | None, rand: Rand,
           sender: KeyPair | None) -> tuple[bytes, bytes]:
    """(shared_secret, enc) for ``pk_r``; ``sender`` selects AuthEncap."""
    if len(pk_r) != kem.npk:
        raise HPKEError(f"{kem.name} public key must be {kem.npk} bytes, got {len(pk_r)}")
    if kem.kem_id == KEM_X25519_SHA256:
        if ephemeral is None:
            ephemeral = KeyPair.generate(rand, KEM_X25519_SHA256)
        elif ephemeral.kem_id != KEM_X25519_SHA256:
            raise HPKEError(f"ephemeral key is {ephemeral.kem.name}, expected X25519")
        try:
            pub = _recipient_x25519(bytes(pk_r))
        except ValueError as exc:
            raise HPKEError(f"invalid X25519 public key: {exc}") from None
        enc = ephemeral.public_bytes
        dh = _dh(ephemeral._x25519, pub)
        context = enc + pk_r
        if sender is not None:
            dh += _dh(sender._x25519, pub)
            context += sender.public_bytes
        return _dhkem_shared_secret(dh, context), enc
    if ephemeral is not None:
        raise HPKEError(
            f"{kem.name} takes no ephemeral key: its ML-KEM encapsulation draws its own "
            "randomness (pass rand for the X25519 half)")
    ek_t = pk_r[_MLKEM768_EK:]
    try:
        pub_pq, pub_t = _hybrid_public(bytes(pk_r))
        ss_pq, ct_pq = pub_pq.encapsulate()
        eph = X25519PrivateKey.from_private_bytes(rand(_X25519_LEN))
    except ValueError as exc:
        raise HPKEError(f"invalid {kem.name} public key: {exc}") from None
    ct_t = _raw(eph.public_key())
    ss_t = _dh(eph, pub_t)
    return _xwing_combine(ss_pq, ss_t, ct_t, ek_t), ct_pq + ct_t


def _decap(kem: KemInfo, enc: bytes, recipient: KeyPair, sender_public: bytes | None) -> bytes:
    if len(enc) != kem.nenc:
        raise HPKEError(f"{kem.name} enc must be {kem.nenc} bytes, got {len(enc)}")
    if recipient.kem_id != kem.kem_id:
        raise HPKEError(f"recipient key is {recipient.kem.name}, the suite's KEM is {kem.name}")
    if kem.kem_id == KEM_X25519_SHA256:
        try:
            pub = _x25519_public(enc, "enc")
        except ValueError as exc:
            raise HPKEError(f"enc is not a valid X25519 share: {exc}") from None
        dh = _dh(recipient._x25519, pub)
        context = enc + recipient.public_bytes
        if sender_public is not None:
            try:
                spub = _x25519_public(sender_public, "sender public key")
            except ValueError as exc:
                raise HPKEError(f"invalid sender public key: {exc}") from None
            dh += _dh(recipient._x25519, spub)
            context += sender_public
        return _dhkem_shared_secret(dh, context)
    assert recipient._mlkem is not None
    ct_pq, ct_t = enc[:_MLKEM768_CT], enc[_MLKEM768_CT:]
    try:
        ss_pq = recipient._mlkem.decapsulate(ct_pq)
        pub_t = X25519PublicKey.from_public_bytes(ct_t)
    except ValueError as exc:
        raise HPKEError(f"enc is not a valid {kem.name} ciphertext: {exc}") from None
    ss_t = _dh(recipient._x25519, pub_t)
    return _xwing_combine(ss_pq, ss_t, ct_t, recipient.public_bytes[_MLKEM768_EK:])


def encapsulate(kem_id: int, recipient_public: bytes, rand: Rand = os.urandom
                ) -> tuple[bytes, bytes]:
    """The KEM alone: ``(shared_secret, enc)`` for ``recipient_public``."""
    return _encap(kem_info(kem_id), bytes(recipient_public), None, rand, None)


def decapsulate(enc: bytes, recipient: KeyPair) -> bytes:
    """The KEM alone: the shared secret ``enc`` carries to ``recipient``."""
    return _decap(recipient.kem, bytes(enc), recipient, None)


# --------------------------------------------------------------------------- suites


@dataclass(frozen=True)
class Suite:
    """An HPKE cipher suite: KEM, KDF and AEAD identifiers."""

    kem_id: int
    kdf_id: int
    aead_id: int
    # derived once (the request path reads them for every message)
    kem: KemInfo = field(init=False, repr=False, compare=False)
    kdf: Kdf = field(init=False, repr=False, compare=False)
    aead: Aead = field(init=False, repr=False, compare=False)
    suite_id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kem = kem_info(self.kem_id)
        if self.kdf_id not in Kdf._value2member_map_:
            raise HPKEError(
                f"unsupported KDF 0x{self.kdf_id:04x}: supported are 0x0001, 0x0002, 0x0003")
        if self.aead_id not in Aead._value2member_map_:
            raise HPKEError(
                f"unsupported AEAD 0x{self.aead_id:04x}: supported are 0x0001, 0x0002, "
                "0x0003, 0xffff")
        object.__setattr__(self, "kem", kem)
        object.__setattr__(self, "kdf", Kdf(self.kdf_id))
        object.__setattr__(self, "aead", Aead(self.aead_id))
        object.__setattr__(self, "suite_id", b"HPKE" + struct.pack(
            "!HHH", self.kem_id, self.kdf_id, self.aead_id))


@lru_cache(maxsize=64)
def suite(kem_id: int, kdf_id: int, aead_id: int) -> Suite:
    """A :class:`Suite`, made once per identifier triple (raises :class:`HPKEError`)."""
    return Suite(kem_id, kdf_id, aead_id)


@lru_cache(maxsize=64)
def _labeled(suite: Suite) -> _Labeled:
    return _Labeled(suite.suite_id, suite.kdf)


@lru_cache(maxsize=1024)
def _key_schedule_context(suite: Suite, mode: int, info: bytes, psk_id: bytes) -> bytes:
    """mode || psk_id_hash || info_hash: public, and the same for every request to a key
    (OHTTP's info is its label and header), so it is computed once."""
    labeled = _labeled(suite)
    return (bytes((mode,)) + labeled.extract(b"", b"psk_id_hash", psk_id)
            + labeled.extract(b"", b"info_hash", info))


def _check_psk(psk: bytes, psk_id: bytes) -> None:
    if bool(psk) != bool(psk_id):
        raise HPKEError("psk and psk_id must be given together (RFC 9180 VerifyPSKInputs)")
    if psk and len(psk) < 32:
        raise HPKEError(f"psk must have at least 32 bytes of entropy, got {len(psk)} bytes")


def _check_auth(suite: Suite, auth: bool) -> None:
    if auth and not suite.kem.auth:
        raise HPKEError(
            f"the auth modes need a DH-based KEM; {suite.kem.name} offers base and psk only")


class Context:
    """An HPKE encryption context (sender or recipient role): RFC 9180 section 5."""

    __slots__ = ("_aead", "_base_nonce", "_exporter", "_labeled", "_seq", "suite")

    def __init__(self, suite: Suite, shared_secret: bytes, mode: int, info: bytes, *,
                 psk: bytes = b"", psk_id: bytes = b"") -> None:
        self.suite = suite
        labeled = _labeled(suite)
        context = _key_schedule_context(suite, mode, bytes(info), bytes(psk_id))
        secret = labeled.extract(shared_secret, b"secret", psk)
        aead = suite.aead
        self._aead: AESGCM | ChaCha20Poly1305 | None = None
        self._base_nonce = b""
        if aead is not Aead.EXPORT_ONLY:
            key = labeled.expand(secret, b"key", context, aead.key_size)
            self._base_nonce = labeled.expand(secret, b"base_nonce", context, aead.nonce_size)
            self._aead = ChaCha20Poly1305(key) if aead is Aead.CHACHA20_POLY1305 else AESGCM(key)
        self._exporter = labeled.expand(secret, b"exp", context, suite.kdf.hash_size)
        self._labeled = labeled
        self._seq = 0

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """RFC 9180 Context.Export."""
        limit = 255 * self.suite.kdf.hash_size
        if not 0 < length <= limit:
            raise HPKEError(f"export length must be in 1..{limit}, got {length}")
        return self._labeled.expand(self._exporter, b"sec", exporter_context, length)

    def _next_nonce(self, verb: str) -> tuple[AESGCM | ChaCha20Poly1305, bytes]:
        if self._aead is None:
            raise HPKEError(f"{verb} is not available with the export-only AEAD")
        n = len(self._base_nonce)
        if self._seq >= (1 << (8 * n)) - 1:
            raise HPKEError("message limit reached: the sequence number would overflow")
        nonce = (int.from_bytes(self._base_nonce, "big") ^ self._seq).to_bytes(n, "big")
        return self._aead, nonce


class SenderContext(Context):
    """The sender's context: seal messages and export secrets."""

    __slots__ = ()

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        cipher, nonce = self._next_nonce("seal")
        out = cipher.encrypt(nonce, plaintext, aad)
        self._seq += 1
        return out


class RecipientContext(Context):
    """The recipient's context: open messages and export secrets."""

    __slots__ = ()

    def open(self, ciphertext: bytes, aad: bytes = b"") -> bytes:
        cipher, nonce = self._next_nonce("open")
        try:
            out = cipher.decrypt(nonce, ciphertext, aad)
        except (InvalidTag, ValueError):
            raise HPKEError("open failed: ciphertext or associated data not authentic") from None
        self._seq += 1
        return out


def _mode(psk: bytes, auth: bool) -> int:
    return (MODE_AUTH if auth else MODE_BASE) | (MODE_PSK if psk else MODE_BASE)


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
    mode, both auth_psk. ``ephemeral`` fixes DHKEM's ephemeral key (tests); otherwise one
    is made from ``rand``.
    """
    _check_psk(psk, psk_id)
    _check_auth(suite, sender_key is not None)
    if sender_key is not None and sender_key.kem_id != suite.kem_id:
        raise HPKEError(f"sender key is {sender_key.kem.name}, the suite's KEM is "
                        f"{suite.kem.name}")
    shared, enc = _encap(suite.kem, bytes(recipient_public), ephemeral, rand, sender_key)
    ctx = SenderContext(suite, shared, _mode(psk, sender_key is not None), info,
                        psk=psk, psk_id=psk_id)
    return enc, ctx


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
    _check_auth(suite, sender_public is not None)
    shared = _decap(suite.kem, bytes(enc), recipient, sender_public)
    mode = _mode(psk, sender_public is not None)
    return RecipientContext(suite, shared, mode, info, psk=psk, psk_id=psk_id)
