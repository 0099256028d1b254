"""Privacy Pass: RFC 9577 (HTTP authentication scheme) and RFC 9578 (issuance), sans-IO.

Wire structures (all strict: exact lengths, no trailing bytes, known token types only):

* :class:`TokenChallenge` -- RFC 9577 section 2.1.1, with ``origin_info`` as a list of names;
* :class:`TokenRequest` / :class:`TokenResponse` -- RFC 9578 sections 5.1/5.2 (type 0x0001,
  VOPRF(P-384, SHA-384)) and 6.1/6.2 (type 0x0002, blind RSA 2048);
* :class:`Token` -- RFC 9577 section 2.2.1.

Issuance, one function per role::

    request, state = begin_issuance(token_type, issuer_public_key, challenge)   # client
    response = issue(issuer_private_key, request)                               # issuer
    token = finalize_token(state, response)                                     # client
    verify_token(token, {key_id: key}, challenge=challenge)                     # verifier

Type 0x0001 uses the ``voprf`` package (RFC 9497 mode 1, suite P384-SHA384; keys from
``DeriveKeyPair(seed, "PrivacyPass")`` as RFC 9578 section 5.5 recommends) through
:class:`VoprfIssuerKey`; any object with the :class:`VoprfEvaluator` shape can stand in
for it. Type 0x0002 uses :mod:`privproc.wire.blindrsa` with RSABSSA-SHA384-PSS-Deterministic,
and the key identifier is SHA-256 of the RFC 9578 section 6.5 id-RSASSA-PSS SPKI.

Also here: the issuer directory (RFC 9578 section 4) and the ``PrivateToken`` header
fields (RFC 9577 section 2): :func:`format_www_authenticate`,
:func:`parse_www_authenticate`, :func:`format_authorization`, :func:`parse_authorization`.

Every failure on bad input raises :class:`PrivacyPassError`. The one exception is a fault
inside the issuer's own RSA signing, which :func:`issue` lets through as
:class:`~privproc.wire.blindrsa.BlindRSAError` (a server fault, not a bad request).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric import rsa
from voprf import p384

from . import blindrsa
from .errors import WireError

__all__ = [
    "PrivacyPassError",
    "TOKEN_TYPE_VOPRF",
    "TOKEN_TYPE_BLIND_RSA",
    "SUPPORTED_TOKEN_TYPES",
    "AUTH_SCHEME",
    "MEDIA_TYPE_TOKEN_REQUEST",
    "MEDIA_TYPE_TOKEN_RESPONSE",
    "MEDIA_TYPE_ISSUER_DIRECTORY",
    "WELL_KNOWN_ISSUER_DIRECTORY",
    "VOPRF_KEY_INFO",
    "TokenChallenge",
    "TokenRequest",
    "TokenResponse",
    "Token",
    "VoprfEvaluator",
    "VoprfIssuerKey",
    "ClientState",
    "token_key_id",
    "encode_token_key",
    "token_input",
    "begin_issuance",
    "finalize_token",
    "issue",
    "verify_token",
    "TokenKey",
    "IssuerDirectory",
    "encode_issuer_directory",
    "parse_issuer_directory",
    "PrivateTokenChallenge",
    "format_www_authenticate",
    "parse_www_authenticate",
    "format_authorization",
    "parse_authorization",
    "b64url_encode",
    "b64url_decode",
]


class PrivacyPassError(WireError):
    """A Privacy Pass structure, header, directory or protocol step is invalid."""


TOKEN_TYPE_VOPRF = 0x0001
"""VOPRF(P-384, SHA-384), privately verifiable (RFC 9578 section 5)."""
TOKEN_TYPE_BLIND_RSA = 0x0002
"""Blind RSA (2048-bit), publicly verifiable (RFC 9578 section 6)."""
SUPPORTED_TOKEN_TYPES = frozenset({TOKEN_TYPE_VOPRF, TOKEN_TYPE_BLIND_RSA})

AUTH_SCHEME = "PrivateToken"
MEDIA_TYPE_TOKEN_REQUEST = "application/private-token-request"
MEDIA_TYPE_TOKEN_RESPONSE = "application/private-token-response"
MEDIA_TYPE_ISSUER_DIRECTORY = "application/private-token-issuer-directory"
WELL_KNOWN_ISSUER_DIRECTORY = "/.well-known/private-token-issuer-directory"

VOPRF_KEY_INFO = b"PrivacyPass"
"""The DeriveKeyPair info string of RFC 9578 section 5.5."""

NONCE_LEN = 32
DIGEST_LEN = 32
KEY_ID_LEN = 32  # Nid
REDEMPTION_CONTEXT_LEN = 32
VOPRF_NE = 49  # SerializeElement(P-384), compressed
VOPRF_NS = 48  # SerializeScalar(P-384)
VOPRF_NK = 48  # Nh of SHA-384: the type 1 authenticator
RSA_NK = 256  # 2048-bit modulus: blinded message, blind signature, authenticator
RSA_BITS = 2048
RSA_VARIANT = blindrsa.Variant.PSS_DETERMINISTIC

_NK = {TOKEN_TYPE_VOPRF: VOPRF_NK, TOKEN_TYPE_BLIND_RSA: RSA_NK}
_REQUEST_MSG_LEN = {TOKEN_TYPE_VOPRF: VOPRF_NE, TOKEN_TYPE_BLIND_RSA: RSA_NK}
_RESPONSE_LEN = {TOKEN_TYPE_VOPRF: VOPRF_NE + 2 * VOPRF_NS, TOKEN_TYPE_BLIND_RSA: RSA_NK}

Rand = Callable[[int], bytes]


def _type_name(token_type: int) -> str:
    return f"0x{token_type:04x}"


def _check_supported(token_type: object, what: str) -> int:
    if isinstance(token_type, bool) or not isinstance(token_type, int):
        raise PrivacyPassError(f"{what}: token_type must be an int")
    if token_type not in SUPPORTED_TOKEN_TYPES:
        if 0 <= token_type <= 0xFFFF:
            raise PrivacyPassError(f"{what}: unsupported token type {_type_name(token_type)}")
        raise PrivacyPassError(f"{what}: token_type {token_type} does not fit in 16 bits")
    return token_type


def _check_bytes(value: object, length: int, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise PrivacyPassError(f"{what} must be bytes, got {type(value).__name__}")
    value = bytes(value)
    if len(value) != length:
        raise PrivacyPassError(f"{what} must be {length} bytes, got {len(value)}")
    return value


def _as_bytes(data: object, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise PrivacyPassError(f"{what} must be bytes, got {type(data).__name__}")
    return bytes(data)


# --------------------------------------------------------------------------- base64url

_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def b64url_encode(data: bytes) -> str:
    """base64url with padding, as RFC 9577 and RFC 9578 require."""
    return base64.urlsafe_b64encode(data).decode("ascii")


def b64url_decode(text: str, what: str = "base64url value") -> bytes:
    """Strict base64url: URL alphabet only, padding optional but correct, canonical bits."""
    if not isinstance(text, str):
        raise PrivacyPassError(f"{what} must be a string")
    if _B64URL_RE.fullmatch(text) is None:
        raise PrivacyPassError(f"{what} is not base64url")
    body = text.rstrip("=")
    if len(text) != len(body) and len(text) % 4 != 0:
        raise PrivacyPassError(f"{what} has wrong base64url padding")
    if len(body) % 4 == 1:
        raise PrivacyPassError(f"{what} has an impossible base64url length")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise PrivacyPassError(f"{what} is not base64url: {exc}") from exc
    if b64url_encode(raw).rstrip("=") != body:
        raise PrivacyPassError(f"{what} is not canonical base64url (nonzero trailing bits)")
    return raw


# --------------------------------------------------------------------------- reader


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int, field_name: str) -> bytes:
        if self.pos + n > len(self.data):
            raise PrivacyPassError(f"{self.what}: truncated in {field_name}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, field_name: str) -> int:
        return self.take(1, field_name)[0]

    def u16(self, field_name: str) -> int:
        value: int = struct.unpack(">H", self.take(2, field_name))[0]
        return value

    def end(self) -> None:
        if self.pos != len(self.data):
            raise PrivacyPassError(
                f"{self.what}: {len(self.data) - self.pos} trailing bytes after the structure"
            )


# --------------------------------------------------------------------------- challenge

_SERVER_NAME_FORBIDDEN = frozenset(",@/?#\\")


def _check_server_name(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise PrivacyPassError(f"{what} must be a str, got {type(name).__name__}")
    if not name:
        raise PrivacyPassError(f"{what} must not be empty")
    for ch in name:
        if not 0x21 <= ord(ch) <= 0x7E or ch in _SERVER_NAME_FORBIDDEN:
            raise PrivacyPassError(f"{what} {name!r} is not a server name (bad character {ch!r})")
    return name


@dataclass(frozen=True)
class TokenChallenge:
    """RFC 9577 section 2.1.1 TokenChallenge.

    ``origin_info`` is the list of origin names (comma-joined on the wire, empty for
    cross-origin tokens); ``redemption_context`` is empty or 32 bytes.
    """

    token_type: int
    issuer_name: str
    redemption_context: bytes = b""
    origin_info: Sequence[str] = ()

    def __post_init__(self) -> None:
        _check_supported(self.token_type, "TokenChallenge")
        _check_server_name(self.issuer_name, "issuer_name")
        ctx = _as_bytes(self.redemption_context, "redemption_context")
        if len(ctx) not in (0, REDEMPTION_CONTEXT_LEN):
            raise PrivacyPassError(f"redemption_context must be 0 or 32 bytes, got {len(ctx)}")
        if isinstance(self.origin_info, str):
            raise PrivacyPassError("origin_info must be a list of names, not a str")
        origins = tuple(self.origin_info)
        for origin in origins:
            _check_server_name(origin, "origin name")
        object.__setattr__(self, "redemption_context", ctx)
        object.__setattr__(self, "origin_info", origins)
        if len(self.issuer_name) > 0xFFFF:
            raise PrivacyPassError("issuer_name longer than 65535 bytes")
        if len(",".join(origins)) > 0xFFFF:
            raise PrivacyPassError("origin_info longer than 65535 bytes")

    def encode(self) -> bytes:
        issuer = self.issuer_name.encode("ascii")
        origins = ",".join(self.origin_info).encode("ascii")
        return b"".join(
            (
                struct.pack(">HH", self.token_type, len(issuer)),
                issuer,
                bytes([len(self.redemption_context)]),
                self.redemption_context,
                struct.pack(">H", len(origins)),
                origins,
            )
        )

    def digest(self) -> bytes:
        """SHA-256 of the encoded challenge: the Token's ``challenge_digest``."""
        return hashlib.sha256(self.encode()).digest()

    @classmethod
    def decode(cls, data: bytes) -> TokenChallenge:
        r = _Reader(_as_bytes(data, "TokenChallenge"), "TokenChallenge")
        token_type = r.u16("token_type")
        _check_supported(token_type, "TokenChallenge")
        issuer_raw = r.take(r.u16("issuer_name length"), "issuer_name")
        if not issuer_raw:
            raise PrivacyPassError("TokenChallenge: empty issuer_name")
        ctx_len = r.u8("redemption_context length")
        if ctx_len not in (0, REDEMPTION_CONTEXT_LEN):
            raise PrivacyPassError(
                f"TokenChallenge: redemption_context length must be 0 or 32, got {ctx_len}"
            )
        ctx = r.take(ctx_len, "redemption_context")
        origins_raw = r.take(r.u16("origin_info length"), "origin_info")
        r.end()
        try:
            issuer = issuer_raw.decode("ascii")
            origins_text = origins_raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise PrivacyPassError("TokenChallenge: names must be ASCII") from exc
        origins = origins_text.split(",") if origins_text else []
        return cls(token_type, issuer, ctx, origins)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class TokenRequest:
    """RFC 9578 TokenRequest (sections 5.1 and 6.1): type, truncated key id, blinded message."""

    token_type: int
    truncated_token_key_id: int
    blinded_msg: bytes

    def __post_init__(self) -> None:
        _check_supported(self.token_type, "TokenRequest")
        kid = self.truncated_token_key_id
        if isinstance(kid, bool) or not isinstance(kid, int) or not 0 <= kid <= 0xFF:
            raise PrivacyPassError("truncated_token_key_id must be an int in 0..255")
        blinded = _check_bytes(
            self.blinded_msg, _REQUEST_MSG_LEN[self.token_type], "TokenRequest.blinded_msg"
        )
        object.__setattr__(self, "blinded_msg", blinded)

    def encode(self) -> bytes:
        return struct.pack(">HB", self.token_type, self.truncated_token_key_id) + self.blinded_msg

    @classmethod
    def decode(cls, data: bytes) -> TokenRequest:
        r = _Reader(_as_bytes(data, "TokenRequest"), "TokenRequest")
        token_type = _check_supported(r.u16("token_type"), "TokenRequest")
        kid = r.u8("truncated_token_key_id")
        blinded = r.take(_REQUEST_MSG_LEN[token_type], "blinded_msg")
        r.end()
        return cls(token_type, kid, blinded)


@dataclass(frozen=True)
class TokenResponse:
    """RFC 9578 TokenResponse; it carries no type on the wire, so decoding needs one.

    Type 0x0001 fills ``evaluate_msg`` (49 bytes) and ``evaluate_proof`` (96 bytes);
    type 0x0002 fills ``blind_sig`` (256 bytes). The other fields stay empty.
    """

    token_type: int
    evaluate_msg: bytes = b""
    evaluate_proof: bytes = b""
    blind_sig: bytes = b""

    def __post_init__(self) -> None:
        _check_supported(self.token_type, "TokenResponse")
        if self.token_type == TOKEN_TYPE_VOPRF:
            msg = _check_bytes(self.evaluate_msg, VOPRF_NE, "TokenResponse.evaluate_msg")
            proof = _check_bytes(self.evaluate_proof, 2 * VOPRF_NS, "TokenResponse.evaluate_proof")
            _check_bytes(self.blind_sig, 0, "TokenResponse.blind_sig (type 0x0001)")
            object.__setattr__(self, "evaluate_msg", msg)
            object.__setattr__(self, "evaluate_proof", proof)
        else:
            sig = _check_bytes(self.blind_sig, RSA_NK, "TokenResponse.blind_sig")
            _check_bytes(self.evaluate_msg, 0, "TokenResponse.evaluate_msg (type 0x0002)")
            _check_bytes(self.evaluate_proof, 0, "TokenResponse.evaluate_proof (type 0x0002)")
            object.__setattr__(self, "blind_sig", sig)

    def encode(self) -> bytes:
        return self.evaluate_msg + self.evaluate_proof + self.blind_sig

    @classmethod
    def decode(cls, data: bytes, token_type: int) -> TokenResponse:
        token_type = _check_supported(token_type, "TokenResponse")
        data = _as_bytes(data, "TokenResponse")
        want = _RESPONSE_LEN[token_type]
        if len(data) != want:
            raise PrivacyPassError(
                f"TokenResponse for type {_type_name(token_type)} must be {want} bytes, "
                f"got {len(data)}"
            )
        if token_type == TOKEN_TYPE_VOPRF:
            return cls(token_type, evaluate_msg=data[:VOPRF_NE], evaluate_proof=data[VOPRF_NE:])
        return cls(token_type, blind_sig=data)


@dataclass(frozen=True)
class Token:
    """RFC 9577 section 2.2.1 Token (Nid = 32; Nk = 48 for type 0x0001, 256 for 0x0002)."""

    token_type: int
    nonce: bytes
    challenge_digest: bytes
    token_key_id: bytes
    authenticator: bytes

    def __post_init__(self) -> None:
        _check_supported(self.token_type, "Token")
        object.__setattr__(self, "nonce", _check_bytes(self.nonce, NONCE_LEN, "Token.nonce"))
        object.__setattr__(
            self,
            "challenge_digest",
            _check_bytes(self.challenge_digest, DIGEST_LEN, "Token.challenge_digest"),
        )
        object.__setattr__(
            self, "token_key_id", _check_bytes(self.token_key_id, KEY_ID_LEN, "Token.token_key_id")
        )
        object.__setattr__(
            self,
            "authenticator",
            _check_bytes(self.authenticator, _NK[self.token_type], "Token.authenticator"),
        )

    @property
    def authenticator_input(self) -> bytes:
        """token_type || nonce || challenge_digest || token_key_id (what the issuer signs)."""
        return (
            struct.pack(">H", self.token_type)
            + self.nonce
            + self.challenge_digest
            + self.token_key_id
        )

    def encode(self) -> bytes:
        return self.authenticator_input + self.authenticator

    @classmethod
    def decode(cls, data: bytes) -> Token:
        r = _Reader(_as_bytes(data, "Token"), "Token")
        token_type = _check_supported(r.u16("token_type"), "Token")
        nonce = r.take(NONCE_LEN, "nonce")
        digest = r.take(DIGEST_LEN, "challenge_digest")
        kid = r.take(KEY_ID_LEN, "token_key_id")
        auth = r.take(_NK[token_type], "authenticator")
        r.end()
        return cls(token_type, nonce, digest, kid, auth)


# --------------------------------------------------------------------------- keys


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

    __slots__ = ("_evaluator", "_public_key", "info", "seed")

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
        return hashlib.sha256(self._public_key).digest()

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


def token_input(token_type: int, nonce: bytes, challenge_digest: bytes, key_id: bytes) -> bytes:
    """token_type || nonce || challenge_digest || token_key_id."""
    _check_supported(token_type, "token input")
    return (
        struct.pack(">H", token_type)
        + _check_bytes(nonce, NONCE_LEN, "nonce")
        + _check_bytes(challenge_digest, DIGEST_LEN, "challenge_digest")
        + _check_bytes(key_id, KEY_ID_LEN, "token_key_id")
    )


# --------------------------------------------------------------------------- issuance


@dataclass(repr=False, eq=False)
class ClientState:
    """What the client keeps between :func:`begin_issuance` and :func:`finalize_token`."""

    token_type: int
    nonce: bytes
    challenge_digest: bytes
    token_key_id: bytes
    token_input: bytes
    _voprf_client: p384.Client | None = field(default=None)
    _voprf_public_key: p384.PublicKey | None = field(default=None)
    _rsa_public_key: rsa.RSAPublicKey | None = field(default=None)
    _rsa_inv: int = 0

    def __repr__(self) -> str:
        return f"ClientState(token_type={_type_name(self.token_type)}, nonce={self.nonce.hex()})"


def begin_issuance(
    token_type: int,
    issuer_public_key: IssuerPublicKey,
    challenge: TokenChallenge | bytes,
    *,
    nonce: bytes | None = None,
    rand: Rand = os.urandom,
) -> tuple[TokenRequest, ClientState]:
    """Client: build the TokenRequest for ``challenge`` (RFC 9578 sections 5.1 / 6.1).

    ``challenge`` is a :class:`TokenChallenge` or the challenge bytes as received.
    ``rand`` supplies, in this order: the nonce (32 bytes, unless ``nonce`` is given) and,
    for type 0x0002, the PSS salt (48 bytes) then the RSA blinding factor (256 bytes,
    redrawn while not in [1, n)). The type 0x0001 blind comes from the ``voprf`` package's
    own CSPRNG and cannot be injected.
    """
    token_type = _check_supported(token_type, "begin_issuance")
    if isinstance(challenge, TokenChallenge):
        if challenge.token_type != token_type:
            raise PrivacyPassError(
                f"challenge is for token type {_type_name(challenge.token_type)}, "
                f"not {_type_name(token_type)}"
            )
        challenge_bytes = challenge.encode()
    else:
        challenge_bytes = _as_bytes(challenge, "challenge")
    if nonce is None:
        nonce = rand(NONCE_LEN)
    nonce = _check_bytes(nonce, NONCE_LEN, "nonce")
    digest = hashlib.sha256(challenge_bytes).digest()
    key_bytes = encode_token_key(token_type, issuer_public_key)
    key_id = hashlib.sha256(key_bytes).digest()
    t_input = token_input(token_type, nonce, digest, key_id)
    state = ClientState(token_type, nonce, digest, key_id, t_input)
    if token_type == TOKEN_TYPE_VOPRF:
        try:
            client, blinded = p384.Client.blind(t_input)
        except ValueError as exc:
            raise PrivacyPassError(f"VOPRF Blind failed: {exc}") from exc
        state._voprf_client = client
        state._voprf_public_key = _load_voprf_public_key(key_bytes)
        blinded_msg = blinded.serialize()
    else:
        pk = _rsa_public_key(issuer_public_key)
        try:
            blinded_msg, inv = blindrsa.blind(pk, t_input, RSA_VARIANT, rand=rand)
        except blindrsa.BlindRSAError as exc:
            raise PrivacyPassError(f"blind RSA Blind failed: {exc}") from exc
        state._rsa_public_key = pk
        state._rsa_inv = inv
    return TokenRequest(token_type, key_id[-1], blinded_msg), state


def finalize_token(state: ClientState, response: TokenResponse) -> Token:
    """Client: check the issuer's answer and build the Token (RFC 9578 sections 5.3 / 6.3)."""
    if response.token_type != state.token_type:
        raise PrivacyPassError(
            f"response is for token type {_type_name(response.token_type)}, "
            f"expected {_type_name(state.token_type)}"
        )
    if state.token_type == TOKEN_TYPE_VOPRF:
        if state._voprf_client is None or state._voprf_public_key is None:
            raise PrivacyPassError("client state has no VOPRF context")
        _load_element(response.evaluate_msg, "TokenResponse.evaluate_msg")
        try:
            output = p384.VerifiableOutput.deserialize(
                response.evaluate_proof + response.evaluate_msg
            )
            authenticator = state._voprf_client.finalize(output, state._voprf_public_key)
        except ValueError as exc:
            raise PrivacyPassError(f"VOPRF Finalize failed (bad proof or element): {exc}") from exc
    else:
        if state._rsa_public_key is None:
            raise PrivacyPassError("client state has no blind RSA context")
        try:
            authenticator = blindrsa.finalize(
                state._rsa_public_key,
                state.token_input,
                response.blind_sig,
                state._rsa_inv,
                RSA_VARIANT,
            )
        except blindrsa.BlindRSAError as exc:
            raise PrivacyPassError(f"blind RSA Finalize failed: {exc}") from exc
    return Token(
        state.token_type, state.nonce, state.challenge_digest, state.token_key_id, authenticator
    )


def issue(issuer_private_key: IssuerPrivateKey, request: TokenRequest) -> TokenResponse:
    """Issuer: answer a TokenRequest (RFC 9578 sections 5.2 / 6.2).

    Raises :class:`PrivacyPassError` (HTTP 422 territory) when the key does not suit the
    request's type, the truncated key id does not match, or the blinded message is invalid.
    """
    if request.token_type == TOKEN_TYPE_VOPRF:
        if not isinstance(issuer_private_key, VoprfEvaluator):
            raise PrivacyPassError("type 0x0001 request needs a VOPRF issuer key")
        key_id = hashlib.sha256(issuer_private_key.public_key).digest()
        if key_id[-1] != request.truncated_token_key_id:
            raise PrivacyPassError("truncated_token_key_id does not match the issuer key")
        evaluated, proof = issuer_private_key.blind_evaluate(request.blinded_msg)
        return TokenResponse(TOKEN_TYPE_VOPRF, evaluate_msg=evaluated, evaluate_proof=proof)
    if isinstance(issuer_private_key, rsa.RSAPrivateKey):
        try:
            signing_key = blindrsa.SigningKey.from_private_key(issuer_private_key)
        except blindrsa.BlindRSAError as exc:
            raise PrivacyPassError(f"bad type 0x0002 issuer key: {exc}") from exc
    elif isinstance(issuer_private_key, blindrsa.SigningKey):
        signing_key = issuer_private_key
    else:
        raise PrivacyPassError("type 0x0002 request needs an RSA issuer key")
    pk = _rsa_public_key(signing_key.public_key)
    if hashlib.sha256(blindrsa.pss_spki(pk)).digest()[-1] != request.truncated_token_key_id:
        raise PrivacyPassError("truncated_token_key_id does not match the issuer key")
    if int.from_bytes(request.blinded_msg, "big") >= signing_key.n:
        raise PrivacyPassError("TokenRequest.blinded_msg is not below the RSA modulus")
    blind_sig = blindrsa.blind_sign(signing_key, request.blinded_msg)
    return TokenResponse(TOKEN_TYPE_BLIND_RSA, blind_sig=blind_sig)


def verify_token(
    token: Token,
    issuer_keys: Mapping[bytes, VerificationKey],
    *,
    challenge: TokenChallenge | bytes | None = None,
    challenge_digest: bytes | None = None,
) -> None:
    """Verifier: accept ``token`` or raise :class:`PrivacyPassError` (fail closed).

    ``issuer_keys`` maps full 32-byte token_key_ids to keys: a :class:`VoprfEvaluator`
    (type 0x0001, needs the issuer's private key) or an RSA public key (type 0x0002).
    Give exactly one of ``challenge`` (a :class:`TokenChallenge` or its encoded bytes) and
    ``challenge_digest``. Double-spend checks are the caller's job.
    """
    if (challenge is None) == (challenge_digest is None):
        raise PrivacyPassError("give exactly one of challenge and challenge_digest")
    if challenge_digest is None:
        if isinstance(challenge, TokenChallenge):
            expected = challenge.digest()
        else:
            expected = hashlib.sha256(_as_bytes(challenge, "challenge")).digest()
    else:
        expected = _check_bytes(challenge_digest, DIGEST_LEN, "challenge_digest")
    if not hmac.compare_digest(token.challenge_digest, expected):
        raise PrivacyPassError("token is not for this challenge (challenge_digest mismatch)")
    key = issuer_keys.get(token.token_key_id)
    if key is None:
        raise PrivacyPassError("token names an unknown issuer key (token_key_id)")
    if token.token_type == TOKEN_TYPE_VOPRF:
        if not isinstance(key, VoprfEvaluator):
            raise PrivacyPassError("key for a type 0x0001 token must be a VOPRF issuer key")
        if hashlib.sha256(key.public_key).digest() != token.token_key_id:
            raise PrivacyPassError("issuer key does not match its token_key_id")
        expected_auth = key.evaluate(token.authenticator_input)
        if not hmac.compare_digest(expected_auth, token.authenticator):
            raise PrivacyPassError("invalid type 0x0001 token authenticator")
        return
    pk = _rsa_public_key(key)
    if hashlib.sha256(blindrsa.pss_spki(pk)).digest() != token.token_key_id:
        raise PrivacyPassError("issuer key does not match its token_key_id")
    try:
        blindrsa.verify(pk, token.authenticator_input, token.authenticator, RSA_VARIANT)
    except blindrsa.BlindRSAError as exc:
        raise PrivacyPassError("invalid type 0x0002 token authenticator") from exc


# --------------------------------------------------------------------------- directory


@dataclass(frozen=True)
class TokenKey:
    """One ``token-keys`` entry of the issuer directory (``token_key`` is the decoded key)."""

    token_type: int
    token_key: bytes
    not_before: int | None = None

    def __post_init__(self) -> None:
        t = self.token_type
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= 0xFFFF:
            raise PrivacyPassError("token-type must be an integer in 0..65535")
        object.__setattr__(self, "token_key", _as_bytes(self.token_key, "token-key"))
        nb = self.not_before
        if nb is not None and (isinstance(nb, bool) or not isinstance(nb, int) or nb < 0):
            raise PrivacyPassError("not-before must be a non-negative integer")
        if t in SUPPORTED_TOKEN_TYPES:
            if t == TOKEN_TYPE_VOPRF:
                _load_voprf_public_key(self.token_key)
            elif blindrsa.pss_spki(_rsa_public_key(self.token_key)) != self.token_key:
                # RFC 9578 section 6.5: the id-RSASSA-PSS encoding, hashed as published.
                raise PrivacyPassError("type 0x0002 token-key must be the RSASSA-PSS SPKI")

    @property
    def token_key_id(self) -> bytes:
        """The full key id (only for supported token types)."""
        return token_key_id(self.token_type, self.token_key)


@dataclass(frozen=True)
class IssuerDirectory:
    """RFC 9578 section 4 issuer directory (media type application/private-token-issuer-directory).

    Entries of token types this module does not support are kept (their keys unparsed) so
    the directory round-trips; :meth:`select` skips them.
    """

    issuer_request_uri: str
    token_keys: Sequence[TokenKey] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.issuer_request_uri, str) or not self.issuer_request_uri:
            raise PrivacyPassError("issuer-request-uri must be a non-empty string")
        keys = tuple(self.token_keys)
        for key in keys:
            if not isinstance(key, TokenKey):
                raise PrivacyPassError("token-keys entries must be TokenKey")
        object.__setattr__(self, "token_keys", keys)

    def encode(self) -> bytes:
        keys: list[dict[str, object]] = []
        for key in self.token_keys:
            entry: dict[str, object] = {
                "token-type": key.token_type,
                "token-key": b64url_encode(key.token_key),
            }
            if key.not_before is not None:
                entry["not-before"] = key.not_before
            keys.append(entry)
        doc = {"issuer-request-uri": self.issuer_request_uri, "token-keys": keys}
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes | str) -> IssuerDirectory:
        if isinstance(data, bytes | bytearray | memoryview):
            try:
                text = bytes(data).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PrivacyPassError("issuer directory is not UTF-8") from exc
        elif isinstance(data, str):
            text = data
        else:
            raise PrivacyPassError("issuer directory must be bytes or str")
        try:
            doc = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise PrivacyPassError(f"issuer directory is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise PrivacyPassError("issuer directory must be a JSON object")
        uri = doc.get("issuer-request-uri")
        if not isinstance(uri, str):
            raise PrivacyPassError("issuer directory: issuer-request-uri missing or not a string")
        raw_keys = doc.get("token-keys")
        if not isinstance(raw_keys, list):
            raise PrivacyPassError("issuer directory: token-keys missing or not a list")
        keys = []
        for i, entry in enumerate(raw_keys):
            if not isinstance(entry, dict):
                raise PrivacyPassError(f"issuer directory: token-keys[{i}] is not an object")
            t = entry.get("token-type")
            k = entry.get("token-key")
            nb = entry.get("not-before")
            if isinstance(t, bool) or not isinstance(t, int):
                raise PrivacyPassError(f"issuer directory: token-keys[{i}].token-type not an int")
            if not isinstance(k, str):
                raise PrivacyPassError(f"issuer directory: token-keys[{i}].token-key not a string")
            if nb is not None and (isinstance(nb, bool) or not isinstance(nb, int)):
                raise PrivacyPassError(f"issuer directory: token-keys[{i}].not-before not an int")
            key_bytes = b64url_decode(k, f"token-keys[{i}].token-key")
            keys.append(TokenKey(t, key_bytes, nb))
        return cls(uri, keys)

    def select(self, token_type: int, now: int) -> TokenKey | None:
        """The first key of ``token_type`` usable at unix time ``now`` (RFC 9578 section 4)."""
        for key in self.token_keys:
            if key.token_type == token_type and (key.not_before is None or key.not_before <= now):
                return key
        return None


def _reject_constant(name: str) -> object:
    raise PrivacyPassError(f"issuer directory: {name} is not valid JSON")


def encode_issuer_directory(directory: IssuerDirectory) -> bytes:
    """JSON bytes of ``directory``."""
    return directory.encode()


def parse_issuer_directory(data: bytes | str) -> IssuerDirectory:
    """Parse an issuer directory document."""
    return IssuerDirectory.decode(data)


# --------------------------------------------------------------------------- HTTP auth

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68_CHARS = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"


@dataclass(frozen=True)
class _AuthItem:
    scheme: str
    params: dict[str, str]
    token68: str | None


class _AuthParser:
    """RFC 9110 section 11 challenge / credentials lists."""

    def __init__(self, value: str, what: str) -> None:
        if not isinstance(value, str):
            raise PrivacyPassError(f"{what} must be a str")
        self.s = value
        self.i = 0
        self.what = what

    def _err(self, msg: str) -> PrivacyPassError:
        return PrivacyPassError(f"{self.what}: {msg} at offset {self.i}")

    def _skip_ws(self, i: int) -> int:
        while i < len(self.s) and self.s[i] in _WS:
            i += 1
        return i

    def _token_end(self, i: int) -> int:
        while i < len(self.s) and self.s[i] in _TCHAR:
            i += 1
        return i

    def _param_ahead(self, i: int) -> bool:
        """Whether an auth-param (token BWS "=" BWS (token / quoted-string)) starts at i."""
        j = self._token_end(i)
        if j == i:
            return False
        j = self._skip_ws(j)
        if j >= len(self.s) or self.s[j] != "=":
            return False
        j = self._skip_ws(j + 1)
        return j < len(self.s) and (self.s[j] == '"' or self.s[j] in _TCHAR)

    def _quoted(self) -> str:
        out: list[str] = []
        self.i += 1  # opening quote
        while self.i < len(self.s):
            ch = self.s[self.i]
            if ch == '"':
                self.i += 1
                return "".join(out)
            if ch == "\\":
                self.i += 1
                if self.i >= len(self.s):
                    break
                ch = self.s[self.i]
                if not (ch in _WS or 0x21 <= ord(ch) <= 0x7E or 0x80 <= ord(ch) <= 0xFF):
                    raise self._err("invalid quoted-pair")
            elif not (ch in _WS or 0x21 <= ord(ch) <= 0x7E or 0x80 <= ord(ch) <= 0xFF):
                raise self._err("invalid character in quoted-string")
            out.append(ch)
            self.i += 1
        raise self._err("unterminated quoted-string")

    def _param(self, params: dict[str, str]) -> None:
        j = self._token_end(self.i)
        name = self.s[self.i : j].lower()
        self.i = self._skip_ws(self._skip_ws(j) + 1)  # past BWS "=" BWS
        if self.s[self.i] == '"':
            value = self._quoted()
        else:
            j = self._token_end(self.i)
            # Base64 padding is not a token character (RFC 9110 section 5.6.2), yet common
            # implementations send unquoted padded values (privacypass-ts does by default):
            # accept a run of "=" that ends the value.
            k = j
            while k < len(self.s) and self.s[k] == "=":
                k += 1
            if k > j:
                after = self._skip_ws(k)
                if after >= len(self.s) or self.s[after] == ",":
                    j = k
            value = self.s[self.i : j]
            self.i = j
        if name in params:
            raise self._err(f"duplicate parameter {name!r}")
        params[name] = value

    def _after_element(self) -> bool:
        """Skip OWS; True at a "," (consumed, with following OWS), False at end; else error."""
        self.i = self._skip_ws(self.i)
        if self.i >= len(self.s):
            return False
        if self.s[self.i] != ",":
            raise self._err("expected ',' or end of field")
        self.i = self._skip_ws(self.i + 1)
        return True

    def parse(self) -> list[_AuthItem]:
        items: list[_AuthItem] = []
        while True:
            # empty list elements ("," OWS) are allowed and skipped
            while self.i < len(self.s) and (self.s[self.i] == "," or self.s[self.i] in _WS):
                self.i += 1
            if self.i >= len(self.s):
                return items
            j = self._token_end(self.i)
            if j == self.i:
                raise self._err("expected an auth-scheme")
            scheme = self.s[self.i : j]
            self.i = j
            params: dict[str, str] = {}
            token68: str | None = None
            k = self._skip_ws(self.i)
            if k < len(self.s) and self.s[k] != "," and k == self.i:
                raise self._err("expected whitespace after the auth-scheme")
            self.i = k
            if self.i < len(self.s) and self.s[self.i] != ",":
                if self._param_ahead(self.i):
                    self._param(params)
                    more = self._after_element()
                    while more:
                        while self.i < len(self.s) and self.s[self.i] in ", \t":
                            self.i += 1  # empty elements
                        if self._param_ahead(self.i):
                            self._param(params)
                            more = self._after_element()
                        else:
                            break
                else:
                    j = self.i
                    while j < len(self.s) and self.s[j] in _TOKEN68_CHARS:
                        j += 1
                    if j == self.i:
                        raise self._err("expected auth-params or token68")
                    while j < len(self.s) and self.s[j] == "=":
                        j += 1
                    token68 = self.s[self.i : j]
                    self.i = j
                    self._after_element()
            items.append(_AuthItem(scheme, params, token68))


@dataclass(frozen=True)
class PrivateTokenChallenge:
    """One ``PrivateToken`` challenge from a WWW-Authenticate field."""

    challenge: TokenChallenge
    token_key: bytes | None = None
    max_age: int | None = None

    @property
    def challenge_digest(self) -> bytes:
        return self.challenge.digest()


def format_www_authenticate(
    challenges: Sequence[tuple[TokenChallenge, bytes | None]], max_age: int | None = None
) -> str:
    """A WWW-Authenticate value with one ``PrivateToken`` challenge per (challenge, token-key).

    ``token-key`` is the encoded key (:func:`encode_token_key`) or ``None`` to omit it.
    """
    if not challenges:
        raise PrivacyPassError("need at least one challenge")
    if max_age is not None and (
        isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0
    ):
        raise PrivacyPassError("max-age must be a non-negative integer")
    parts = []
    for challenge, key in challenges:
        if not isinstance(challenge, TokenChallenge):
            raise PrivacyPassError("challenges must be TokenChallenge instances")
        text = f'{AUTH_SCHEME} challenge="{b64url_encode(challenge.encode())}"'
        if key is not None:
            text += f', token-key="{b64url_encode(_as_bytes(key, "token-key"))}"'
        if max_age is not None:
            text += f", max-age={max_age}"
        parts.append(text)
    return ", ".join(parts)


def _int_param(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise PrivacyPassError(f"{what} must be a non-negative decimal integer")
    return int(text)


def parse_www_authenticate(value: str) -> list[PrivateTokenChallenge]:
    """All ``PrivateToken`` challenges in a WWW-Authenticate value, in order.

    Other schemes and challenges of unsupported token types are skipped (RFC 9577 section
    2.1.1: clients MUST ignore them); a malformed field or PrivateToken challenge raises.
    """
    out: list[PrivateTokenChallenge] = []
    for item in _AuthParser(value, "WWW-Authenticate").parse():
        if item.scheme.lower() != AUTH_SCHEME.lower():
            continue
        if item.token68 is not None:
            raise PrivacyPassError("PrivateToken challenge must use auth-params, not token68")
        raw_challenge = item.params.get("challenge")
        if raw_challenge is None:
            raise PrivacyPassError("PrivateToken challenge lacks the challenge parameter")
        raw = b64url_decode(raw_challenge, "challenge parameter")
        if len(raw) >= 2 and int.from_bytes(raw[:2], "big") not in SUPPORTED_TOKEN_TYPES:
            continue
        challenge = TokenChallenge.decode(raw)
        key: bytes | None = None
        if "token-key" in item.params:
            key = b64url_decode(item.params["token-key"], "token-key parameter")
            encode_token_key(challenge.token_type, key)  # validates it for this type
        max_age = None
        if "max-age" in item.params:
            max_age = _int_param(item.params["max-age"], "max-age")
        out.append(PrivateTokenChallenge(challenge, key, max_age))
    return out


def format_authorization(token: Token) -> str:
    """The Authorization value ``PrivateToken token="<base64url>"``."""
    if not isinstance(token, Token):
        raise PrivacyPassError("format_authorization needs a Token")
    return f'{AUTH_SCHEME} token="{b64url_encode(token.encode())}"'


def parse_authorization(value: str) -> Token:
    """The Token from an Authorization value with one ``PrivateToken`` credential."""
    items = _AuthParser(value, "Authorization").parse()
    if len(items) != 1:
        raise PrivacyPassError(f"Authorization must hold exactly one credential, got {len(items)}")
    item = items[0]
    if item.scheme.lower() != AUTH_SCHEME.lower():
        raise PrivacyPassError(f"Authorization scheme is {item.scheme!r}, not {AUTH_SCHEME}")
    if item.token68 is not None:
        raise PrivacyPassError("PrivateToken credentials must use auth-params, not token68")
    raw = item.params.get("token")
    if raw is None:
        raise PrivacyPassError("PrivateToken credentials lack the token parameter")
    return Token.decode(b64url_decode(raw, "token parameter"))
