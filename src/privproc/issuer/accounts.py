"""Who may ask for tokens: pluggable account verifiers.

The default, :class:`SignedBearerVerifier`, accepts bearer tokens minted by the app's
account service: ``v1.<base64url(JSON {"sub": account, "exp": unix})>.<base64url(sig)>``
with an Ed25519 signature over ``"privproc-account-v1." + payload``, by a key configured
on the issuer's command line (a C2SP verifier key string). :func:`mint_account_token`
is what the account service runs. :class:`StaticAccountVerifier` maps fixed tokens to
accounts (tests and demos).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Protocol

from privproc.errors import PrivprocError
from privproc.wire import note

_CONTEXT = b"privproc-account-v1."


class AccountError(PrivprocError):
    """The bearer token does not identify an account."""


class AccountVerifier(Protocol):
    def account(self, bearer: str, now: float) -> str: ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise AccountError("account token is not base64url") from None


def mint_account_token(signer: note.Ed25519Signer, account: str, expires: int) -> str:
    payload = _b64(json.dumps({"sub": account, "exp": expires}, separators=(",", ":")).encode())
    return f"v1.{payload}.{_b64(signer.sign(_CONTEXT + payload.encode()))}"


class SignedBearerVerifier:
    def __init__(self, verifiers: Sequence[note.Ed25519Verifier]) -> None:
        if not verifiers:
            raise ValueError("at least one account-service key is needed")
        self._verifiers = list(verifiers)

    def account(self, bearer: str, now: float) -> str:
        parts = bearer.split(".")
        if len(parts) != 3 or parts[0] != "v1":
            raise AccountError("account token must be v1.<payload>.<signature>")
        signature = _unb64(parts[2])
        message = _CONTEXT + parts[1].encode()
        if not any(v.verify(message, signature) for v in self._verifiers):
            raise AccountError("account token signature does not verify")
        try:
            claims = json.loads(_unb64(parts[1]))
            account, expires = str(claims["sub"]), int(claims["exp"])
        except (ValueError, KeyError, TypeError):
            raise AccountError("account token payload is malformed") from None
        if not account:
            raise AccountError("account token has an empty subject")
        if expires <= now:
            raise AccountError("account token has expired")
        return account


class StaticAccountVerifier:
    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = dict(tokens)

    def account(self, bearer: str, now: float) -> str:
        account = self._tokens.get(bearer)
        if account is None:
            raise AccountError("unknown account token")
        return account
