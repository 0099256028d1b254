"""Privacy Pass redemption inside the OHTTP layer (so the relay never sees a token).

Each inner request must carry ``Authorization: PrivateToken token=...`` for the
gateway's challenge (its issuer name, origin name and optional redemption context). The
token is verified against the issuer's accepted keys (the current ones and those in
their rotation overlap) and recorded in the double-spend store before the request goes
on. A missing, malformed, wrong-key or already-spent token gets 401 with a fresh
challenge; a store that cannot be reached gets 503 (never admit what was not recorded).
The ``Authorization`` field is removed before the request is forwarded.

The gateway never reads the issuer's private key file. It reads only what the issuer
writes for redeemers, ``issuer-verification-keys.json`` in the issuer's key directory
(:data:`RedemptionConfig.issuer_keys`), through the narrow :class:`IssuerKeySource`:
type 0x0002 public keys, and, the one exception, type 0x0001 secrets (a VOPRF token is
privately verifiable). See :mod:`privproc.issuer.keystore` for the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from privproc.issuer.keystore import (
    VERIFICATION_KEYS_FILE,
    AcceptedKey,
    VerificationKeys,
    read_verification_keys,
)
from privproc.keyring import FileCache
from privproc.wire import bhttp
from privproc.wire import privacypass as pp

from .spend import SpendStore, SpendStoreUnavailable

log = logging.getLogger("privproc.gateway")


class IssuerKeySource(Protocol):
    """What redemption needs of the issuer's keys (and all it gets)."""

    def accepted(self, now: float) -> Mapping[bytes, AcceptedKey]:
        """The keys whose tokens are accepted at ``now``, by full token_key_id."""
        ...

    def current_token_key(self, token_type: int) -> bytes:
        """The token-key to name in a 401's challenge for ``token_type``."""
        ...

    def lookup(self, token_key_id: bytes, now: float) -> AcceptedKey | None:
        """The key named by ``token_key_id`` if its tokens are accepted at ``now``."""
        ...


class VerificationKeyFile:
    """An :class:`IssuerKeySource` over the issuer's verification key file, re-read
    whenever the issuer replaces it (a rotation); reads it once at construction, so a
    missing or bad file fails at start. Raises :class:`IssuerKeyError`."""

    def __init__(self, issuer_dir: Path) -> None:
        self.path = issuer_dir / VERIFICATION_KEYS_FILE
        self._cache = FileCache(self.path, lambda: read_verification_keys(issuer_dir))
        self._index: tuple[VerificationKeys, dict[bytes, AcceptedKey]] | None = None

    def get(self) -> VerificationKeys:
        return self._cache.get()

    def lookup(self, token_key_id: bytes, now: float) -> AcceptedKey | None:
        keys = self.get()
        index = self._index
        if index is None or index[0] is not keys:  # key ids hashed once per file read
            index = self._index = (keys, {k.key_id: k for k in keys.keys})
        key = index[1].get(token_key_id)
        return key if key is not None and key.accepted_at(now) else None

    def accepted(self, now: float) -> Mapping[bytes, AcceptedKey]:
        return self.get().accepted(now)

    def current_token_key(self, token_type: int) -> bytes:
        return self.get().current_token_key(token_type)


@dataclass(frozen=True)
class RedemptionConfig:
    issuer_keys: Path  # the issuer's key directory (its issuer-verification-keys.json)
    issuer_name: str
    origin_name: str
    spend_store: SpendStore
    redemption_context: bytes = b""


@dataclass(frozen=True)
class Refusal:
    response: bhttp.Response
    reason: str


class Redeemer:
    def __init__(self, config: RedemptionConfig) -> None:
        self.config = config
        self.keys = VerificationKeyFile(config.issuer_keys)  # .get(): the whole file
        self.source: IssuerKeySource = self.keys  # all that redemption uses
        self.challenges = {
            t: pp.TokenChallenge(t, config.issuer_name, config.redemption_context,
                                 [config.origin_name])
            for t in (pp.TOKEN_TYPE_VOPRF, pp.TOKEN_TYPE_BLIND_RSA)
        }
        self.digests = {t: c.digest() for t, c in self.challenges.items()}

    def challenge_header(self) -> bytes:
        keys = self.source
        pairs = [(challenge, keys.current_token_key(t)) for t, challenge in
                 sorted(self.challenges.items(), reverse=True)]
        return pp.format_www_authenticate(pairs).encode()

    def _refuse(self, status: int, title: str) -> Refusal:
        headers = [bhttp.Field(b"content-type", b"application/problem+json")]
        if status == 401:
            headers.append(bhttp.Field(b"www-authenticate", self.challenge_header()))
        body = json.dumps({"title": title, "status": status}).encode()
        return Refusal(bhttp.Response(status=status, headers=tuple(headers), content=body),
                       title)

    async def redeem(self, inner: bhttp.Request, now: float
                     ) -> tuple[bhttp.Request, Refusal | None]:
        """Check and spend the request's token; returns the request to forward."""
        forwarded, refusal, spending = await self.begin(inner, now)
        if refusal is None and spending is not None:
            refusal = await self.finish(spending)
        return forwarded, refusal

    async def begin(self, inner: bhttp.Request, now: float
                    ) -> tuple[bhttp.Request, Refusal | None, asyncio.Future[bool] | None]:
        """Check the request's token and start its spend: the request to forward, a
        refusal, or the spend under way, whose outcome :meth:`finish` turns into a
        refusal or None. A token found spent already is refused here, before anything is
        forwarded (:meth:`SpendStore.reserve_async`)."""
        values = [f.value for f in inner.headers if f.name == b"authorization"]
        forwarded = bhttp.Request(
            method=inner.method, scheme=inner.scheme, authority=inner.authority,
            path=inner.path, content=inner.content, trailers=inner.trailers,
            headers=tuple(f for f in inner.headers if f.name != b"authorization"),
        )
        if len(values) != 1:
            return forwarded, self._refuse(401, "a Privacy Pass token is required"), None
        try:
            token = pp.parse_authorization(values[0].decode("latin-1"))
        except pp.PrivacyPassError:
            return forwarded, self._refuse(401, "malformed Privacy Pass token"), None
        challenge = self.challenges.get(token.token_type)
        key = self.source.lookup(token.token_key_id, now)
        if challenge is None or key is None or key.token_type != token.token_type:
            return forwarded, self._refuse(401, "token from an unknown issuer key"), None
        try:
            # In the event loop: a type 0x0002 check takes tens of microseconds, and a
            # type 0x0001 one holds the GIL throughout, so a thread would add only a hop.
            pp.verify_token(token, {token.token_key_id: key.verification_key},
                            challenge_digest=self.digests[token.token_type])
        except pp.PrivacyPassError:
            return forwarded, self._refuse(401, "invalid Privacy Pass token"), None
        token_id = hashlib.sha256(
            token.token_type.to_bytes(2, "big") + token.token_key_id + token.nonce
        ).digest()
        try:
            spending = await self.config.spend_store.reserve_async(token_id,
                                                                  key.end_of_life, now)
        except SpendStoreUnavailable as exc:
            log.warning("double-spend store unavailable: %s", exc)
            return forwarded, self._refuse(503, "token store unavailable"), None
        if spending.done() and spending.exception() is None and not spending.result():
            return forwarded, self._refuse(401, "token already spent"), None
        return forwarded, None, spending

    async def finish(self, spending: asyncio.Future[bool]) -> Refusal | None:
        """The spend's durable outcome: None for the token's first spend, else the
        refusal (the answer computed meanwhile must then be dropped)."""
        try:
            # (A request cancelled here cancels only its wait: the spend is written.)
            first = await spending
        except SpendStoreUnavailable as exc:
            log.warning("double-spend store unavailable: %s", exc)
            return self._refuse(503, "token store unavailable")
        if not first:
            return self._refuse(401, "token already spent")
        return None
