"""What every part of Privacy Pass shares: the error, token types, sizes, base64url.

All strict: exact lengths, known token types only, canonical base64url.
"""

from __future__ import annotations

import base64
import binascii
import re

from privproc.wire import blindrsa
from privproc.wire.errors import WireError

__all__ = [
    "AUTH_SCHEME",
    "MEDIA_TYPE_ISSUER_DIRECTORY",
    "MEDIA_TYPE_TOKEN_REQUEST",
    "MEDIA_TYPE_TOKEN_RESPONSE",
    "SUPPORTED_TOKEN_TYPES",
    "TOKEN_TYPE_BLIND_RSA",
    "TOKEN_TYPE_VOPRF",
    "VOPRF_KEY_INFO",
    "WELL_KNOWN_ISSUER_DIRECTORY",
    "PrivacyPassError",
    "b64url_decode",
    "b64url_encode",
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
