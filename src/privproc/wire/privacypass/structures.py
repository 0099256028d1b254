"""The Privacy Pass wire structures: TokenChallenge, TokenRequest, TokenResponse, Token.

* :class:`TokenChallenge` -- RFC 9577 section 2.1.1, with ``origin_info`` as a list of names;
* :class:`TokenRequest` / :class:`TokenResponse` -- RFC 9578 sections 5.1/5.2 (type 0x0001,
  VOPRF(P-384, SHA-384)) and 6.1/6.2 (type 0x0002, blind RSA 2048);
* :class:`Token` -- RFC 9577 section 2.2.1.

All strict: exact lengths, no trailing bytes, known token types only.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from privproc.wire.privacypass.common import (
    _NK,
    _REQUEST_MSG_LEN,
    _RESPONSE_LEN,
    DIGEST_LEN,
    KEY_ID_LEN,
    NONCE_LEN,
    REDEMPTION_CONTEXT_LEN,
    RSA_NK,
    TOKEN_TYPE_VOPRF,
    VOPRF_NE,
    VOPRF_NS,
    PrivacyPassError,
    _as_bytes,
    _check_bytes,
    _check_supported,
    _type_name,
)

__all__ = ["Token", "TokenChallenge", "TokenRequest", "TokenResponse"]


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
        """SHA-256 of the encoded challenge: the Token's ``challenge_digest`` (computed
        once: the challenge is immutable)."""
        memo: bytes | None = self.__dict__.get("_digest")
        if memo is None:
            memo = hashlib.sha256(self.encode()).digest()
            object.__setattr__(self, "_digest", memo)
        return memo

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
