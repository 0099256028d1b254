"""The issuer directory (RFC 9578 section 4): the issuer's request URI and token keys."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from privproc import jsondoc
from privproc.wire import blindrsa
from privproc.wire.privacypass.common import (
    SUPPORTED_TOKEN_TYPES,
    TOKEN_TYPE_VOPRF,
    PrivacyPassError,
    _as_bytes,
    b64url_decode,
    b64url_encode,
)
from privproc.wire.privacypass.keys import _load_voprf_public_key, _rsa_public_key, token_key_id

__all__ = ["IssuerDirectory", "TokenKey", "encode_issuer_directory", "parse_issuer_directory"]


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
            doc = jsondoc.parse(text, parse_constant=_reject_constant)
        except ValueError as exc:
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
