"""Issuer keys: VOPRF (type 0x0001) and RSA (type 0x0002) keys, their encodings and ids."""

from __future__ import annotations

import hashlib
import secrets
import struct
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric import rsa
from voprf import p384

from privproc.wire import blindrsa
from privproc.wire.privacypass.common import (
    DIGEST_LEN,
    KEY_ID_LEN,
    NONCE_LEN,
    RSA_BITS,
    TOKEN_TYPE_VOPRF,
    VOPRF_KEY_INFO,
    VOPRF_NE,
    VOPRF_NS,
    PrivacyPassError,
    _as_bytes,
    _check_bytes,
    _check_supported,
)

__all__ = [
    "IssuerPrivateKey",
    "IssuerPublicKey",
    "VerificationKey",
    "VoprfEvaluator",
    "VoprfIssuerKey",
    "encode_token_key",
    "token_input",
    "token_key_id",
    "verification_key_id",
]


def _load_element(data: bytes, what: str) -> p384.BlindedInput:
    """A P-384 element, strictly: compressed SEC1 (0x02/0x03) and canonical."""
    data = _check_bytes(data, VOPRF_NE, what)
    if data[0] not in (0x02, 0x03):
        raise PrivacyPassError(f"{what} is not a compressed P-384 point")
    try:
        element = p384.BlindedInput.deserialize(data)
    except ValueError as exc:
        raise PrivacyPassError(f"{what} is not a valid P-384 element") from exc
    if element.serialize() != data:
        raise PrivacyPassError(f"{what} is not canonically encoded")
    return element


def _load_voprf_public_key(data: bytes) -> p384.PublicKey:
    data = _check_bytes(data, VOPRF_NE, "VOPRF public key")
    if data[0] not in (0x02, 0x03):
        raise PrivacyPassError("VOPRF public key is not a compressed P-384 point")
    try:
        key = p384.PublicKey.deserialize(data)
    except ValueError as exc:
        raise PrivacyPassError("VOPRF public key is not a valid P-384 element") from exc
    if key.serialize() != data:
        raise PrivacyPassError("VOPRF public key is not canonically encoded")
    return key


def _rsa_public_key(public_key: object) -> rsa.RSAPublicKey:
    if isinstance(public_key, bytes | bytearray | memoryview):
        try:
            public_key = blindrsa.load_public_key_spki(bytes(public_key))
        except blindrsa.BlindRSAError as exc:
            raise PrivacyPassError(f"bad type 0x0002 token key: {exc}") from exc
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise PrivacyPassError(
            f"type 0x0002 needs an RSA public key, got {type(public_key).__name__}"
        )
    if public_key.key_size != RSA_BITS:
        raise PrivacyPassError(
            f"type 0x0002 needs a {RSA_BITS}-bit RSA key, got {public_key.key_size} bits"
        )
    return public_key


@runtime_checkable
class VoprfEvaluator(Protocol):
    """What a type 0x0001 issuer key must offer (:class:`VoprfIssuerKey` is the real one)."""

    @property
    def public_key(self) -> bytes:
        """SerializeElement(pkI): 49 bytes."""
        ...

    def blind_evaluate(self, blinded_msg: bytes) -> tuple[bytes, bytes]:
        """BlindEvaluate: (evaluated element, SerializeScalar(c) || SerializeScalar(s))."""
        ...

    def evaluate(self, token_input: bytes) -> bytes:
        """Evaluate (the unblinded PRF output, 48 bytes)."""
        ...


class VoprfIssuerKey:
    """A type 0x0001 issuer private key: ``DeriveKeyPair(seed, info)`` via the ``voprf`` package.

    Persist :attr:`seed` (secret) and :attr:`info`; the same pair rebuilds the same key.
    """

    __slots__ = ("_evaluator", "_public_key", "_token_key_id", "info", "seed")

    def __init__(self, seed: bytes, info: bytes = VOPRF_KEY_INFO) -> None:
        seed = _as_bytes(seed, "VOPRF seed")
        info = _as_bytes(info, "VOPRF info")
        if len(seed) < 32:
            raise PrivacyPassError(f"VOPRF seed must be at least 32 bytes, got {len(seed)}")
        try:
            self._evaluator = p384.Evaluator.from_seed(seed, info)
        except ValueError as exc:
            raise PrivacyPassError(f"VOPRF DeriveKeyPair failed: {exc}") from exc
        self.seed = seed
        self.info = info
        self._public_key = self._evaluator.public_key.serialize()
        self._token_key_id = hashlib.sha256(self._public_key).digest()  # once per key

    @classmethod
    def generate(cls) -> VoprfIssuerKey:
        """A fresh key: ``seed = random(Ns)`` (48 bytes), info "PrivacyPass" (RFC 9578 5.5)."""
        return cls(secrets.token_bytes(VOPRF_NS))

    def __repr__(self) -> str:
        return f"VoprfIssuerKey(public_key={self._public_key.hex()})"

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def token_key_id(self) -> bytes:
        return self._token_key_id

    def blind_evaluate(self, blinded_msg: bytes) -> tuple[bytes, bytes]:
        blinded = _load_element(blinded_msg, "TokenRequest.blinded_msg")
        try:
            out = self._evaluator.evaluate(blinded).serialize()
        except ValueError as exc:
            raise PrivacyPassError(f"VOPRF BlindEvaluate failed: {exc}") from exc
        if len(out) != VOPRF_NE + 2 * VOPRF_NS:
            raise PrivacyPassError("unexpected VOPRF output size from the voprf package")
        # The package serializes proof (c || s) first, then the evaluated element.
        return out[2 * VOPRF_NS :], out[: 2 * VOPRF_NS]

    def evaluate(self, token_input: bytes) -> bytes:
        try:
            return self._evaluator.evaluate_known_input(bytes(token_input))
        except ValueError as exc:
            raise PrivacyPassError(f"VOPRF Evaluate failed: {exc}") from exc


IssuerPublicKey = bytes | rsa.RSAPublicKey
"""Type 0x0001: SerializeElement(pkI) (49 bytes). Type 0x0002: an RSA key or its SPKI."""
IssuerPrivateKey = VoprfEvaluator | rsa.RSAPrivateKey | blindrsa.SigningKey
VerificationKey = VoprfEvaluator | rsa.RSAPublicKey


def encode_token_key(token_type: int, public_key: IssuerPublicKey) -> bytes:
    """The ``token-key`` encoding: the element (type 1) or the id-RSASSA-PSS SPKI (type 2)."""
    token_type = _check_supported(token_type, "token key")
    if token_type == TOKEN_TYPE_VOPRF:
        if not isinstance(public_key, bytes | bytearray | memoryview):
            raise PrivacyPassError("type 0x0001 public key must be the 49-byte element")
        return _load_voprf_public_key(bytes(public_key)).serialize()
    return blindrsa.pss_spki(_rsa_public_key(public_key))


def token_key_id(token_type: int, public_key: IssuerPublicKey) -> bytes:
    """RFC 9578 token_key_id: SHA-256 of :func:`encode_token_key`."""
    return hashlib.sha256(encode_token_key(token_type, public_key)).digest()


_RSA_KEY_IDS: dict[int, tuple[rsa.RSAPublicKey, bytes]] = {}
_RSA_KEY_IDS_MAX = 64


def verification_key_id(token_type: int, key: VerificationKey) -> bytes:
    """The token_key_id of a verification key, computed once per key object.

    :class:`VoprfIssuerKey` keeps its own; an RSA public key's id (SHA-256 of its
    RFC 9578 SPKI) is cached by object identity (the cache holds the key, so an id is
    never reused while cached; public keys only, at most 64). Any other
    :class:`VoprfEvaluator` is hashed on each call.
    """
    token_type = _check_supported(token_type, "token key")
    if token_type == TOKEN_TYPE_VOPRF:
        if isinstance(key, VoprfIssuerKey):
            return key.token_key_id
        if not isinstance(key, VoprfEvaluator):
            raise PrivacyPassError("key for a type 0x0001 token must be a VOPRF issuer key")
        return hashlib.sha256(key.public_key).digest()
    cached = _RSA_KEY_IDS.get(id(key))
    if cached is not None and cached[0] is key:
        return cached[1]
    pk = _rsa_public_key(key)
    key_id = hashlib.sha256(blindrsa.pss_spki(pk)).digest()
    if pk is key:
        if len(_RSA_KEY_IDS) >= _RSA_KEY_IDS_MAX:
            _RSA_KEY_IDS.clear()  # a few rotations' worth: start over
        _RSA_KEY_IDS[id(pk)] = (pk, key_id)
    return key_id


def token_input(token_type: int, nonce: bytes, challenge_digest: bytes, key_id: bytes) -> bytes:
    """token_type || nonce || challenge_digest || token_key_id."""
    _check_supported(token_type, "token input")
    return (
        struct.pack(">H", token_type)
        + _check_bytes(nonce, NONCE_LEN, "nonce")
        + _check_bytes(challenge_digest, DIGEST_LEN, "challenge_digest")
        + _check_bytes(key_id, KEY_ID_LEN, "token_key_id")
    )
