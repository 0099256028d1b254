"""The Privacy Pass issuer (RFC 9578): knows the account, never where a token is spent.

- ``GET /.well-known/private-token-issuer-directory``: the active keys of both token
  types, with their ``not-before`` times.
- ``POST /token-request`` with ``Authorization: Bearer <account token>`` and an
  ``application/private-token-request`` body: one token per request, counted against the
  account's quota (default 200 per day); over quota -> 429 with ``Retry-After``.

It stores per account only a count per period: nothing of the blinded messages, so
nothing that links an issued token to its redemption.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from privproc.service import BodyTooLarge, problem, read_body
from privproc.wire import privacypass as pp

from . import keystore
from .accounts import AccountError, AccountVerifier
from .quota import DEFAULT_LIMIT, DEFAULT_PERIOD, QuotaStore, QuotaUnavailable

log = logging.getLogger("privproc.issuer")


@dataclass
class IssuerConfig:
    state_dir: Path
    accounts: AccountVerifier
    quota: QuotaStore
    request_uri: str = "/token-request"
    limit: int = DEFAULT_LIMIT
    period: int = DEFAULT_PERIOD
    clock: Callable[[], float] = field(default=time.time)


def directory_for(keys: keystore.IssuerKeys, request_uri: str, now: float) -> bytes:
    entries = [pp.TokenKey(k.token_type, k.token_key, k.not_before)
               for k in reversed(keys.keys) if k.accepted_at(now)]
    return pp.IssuerDirectory(request_uri, entries).encode()


def create_app(config: IssuerConfig) -> Starlette:
    keystore.load_or_create(config.state_dir, int(config.clock()))
    keys = keystore.KeyFileCache(config.state_dir)

    async def directory(request: Request) -> Response:
        body = directory_for(keys.get(), config.request_uri, config.clock())
        return Response(body, media_type=pp.MEDIA_TYPE_ISSUER_DIRECTORY,
                        headers={"cache-control": "max-age=300"})

    async def token_request(request: Request) -> Response:
        now = config.clock()
        auth = request.headers.get("authorization", "")
        scheme, _, bearer = auth.partition(" ")
        if scheme.lower() != "bearer" or not bearer.strip():
            return problem(401, "an account bearer token is required")
        try:
            account = config.accounts.account(bearer.strip(), now)
        except AccountError as exc:
            log.info("refused: %s", exc)
            return problem(401, "account token refused")
        if request.headers.get("content-type", "").split(";")[0].strip() != (
            pp.MEDIA_TYPE_TOKEN_REQUEST
        ):
            return problem(415, f"content type must be {pp.MEDIA_TYPE_TOKEN_REQUEST}")
        try:
            token_request = pp.TokenRequest.decode(await read_body(request, 4096))
        except BodyTooLarge:
            return problem(413, "token request too large")
        except pp.PrivacyPassError as exc:
            return problem(400, f"malformed token request: {exc}")
        current = keys.get().current(token_request.token_type)
        try:
            decision = await run_in_threadpool(config.quota.take, account, 1, config.limit,
                                               config.period, now)
        except QuotaUnavailable as exc:
            log.warning("quota store unavailable: %s", exc)
            return problem(503, "quota store unavailable")
        if not decision.granted:
            log.info("refused: over quota")
            return Response(
                b'{"title": "token quota exceeded", "status": 429}', status_code=429,
                media_type="application/problem+json",
                headers={"retry-after": str(decision.retry_after)},
            )
        try:
            response = await run_in_threadpool(pp.issue, current.private, token_request)
        except pp.PrivacyPassError as exc:
            return problem(400, f"token request refused: {exc}")
        log.info("issued: type=0x%04x", token_request.token_type)
        return Response(response.encode(), media_type=pp.MEDIA_TYPE_TOKEN_RESPONSE)

    async def health(request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    return Starlette(routes=[
        Route(pp.WELL_KNOWN_ISSUER_DIRECTORY, directory, methods=["GET"]),
        Route(config.request_uri, token_request, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ])
