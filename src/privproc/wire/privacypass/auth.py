"""The ``PrivateToken`` HTTP authentication scheme (RFC 9577 section 2).

WWW-Authenticate challenges and Authorization credentials, read with a strict RFC 9110
section 11 auth-parameter parser.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from privproc.wire.privacypass.common import (
    AUTH_SCHEME,
    SUPPORTED_TOKEN_TYPES,
    PrivacyPassError,
    _as_bytes,
    b64url_decode,
    b64url_encode,
)
from privproc.wire.privacypass.keys import encode_token_key
from privproc.wire.privacypass.structures import Token, TokenChallenge

__all__ = [
    "PrivateTokenChallenge",
    "format_authorization",
    "format_www_authenticate",
    "parse_authorization",
    "parse_www_authenticate",
]


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"
# The same sets as regular expressions, so that long values (a token is ~500 characters)
# are scanned in C rather than one character at a time.
_WS_RUN = re.compile(r"[ \t]*")
_TCHAR_RUN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]*")
_TOKEN68_RUN = re.compile(r"[\-._~+/0-9a-zA-Z]*")
# qdtext: what a quoted-string holds up to its closing quote when it has no quoted-pair.
_QDTEXT_RUN = re.compile(r"[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]*")


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
        match = _WS_RUN.match(self.s, i)
        return match.end() if match is not None else i

    def _token_end(self, i: int) -> int:
        match = _TCHAR_RUN.match(self.s, i)
        return match.end() if match is not None else i

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
        plain = _QDTEXT_RUN.match(self.s, self.i + 1)
        if plain is not None and plain.end() < len(self.s) and self.s[plain.end()] == '"':
            self.i = plain.end() + 1  # no quoted-pair: the common case, in one scan
            return plain.group()
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
                    run = _TOKEN68_RUN.match(self.s, self.i)
                    j = run.end() if run is not None else self.i
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
