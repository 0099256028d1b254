"""The Privacy Pass issuer (RFC 9578): knows the account, never where a token is spent.

- ``GET /.well-known/private-token-issuer-directory``: the active keys of both token
  types, with their ``not-before`` times.
- ``POST /token-request`` with ``Authorization: Bearer <account token>`` and an
  ``application/private-token-request`` body: one token per request, counted against the
  account's quota (default 200 per day); over quota -> 429 with ``Retry-After``.

It stores per account only a count per period: nothing of the blinded messages, so
nothing that links an issued token to its redemption.

With a log (:class:`KeyLogging`), the issuer publishes a key record for each of its keys
at start and whenever it rotates: clients use only token keys they find in the
transparency log, so a key made for one client would be public for all to see. It renews
its keys before their ``not_after`` (checked every ``interval`` seconds).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from privproc.service import BodyTooLarge, problem, read_body
from privproc.tlog.publish import RecordPublisher
from privproc.wire import note
from privproc.wire import privacypass as pp

from . import keystore
from .accounts import AccountError, AccountVerifier
from .quota import DEFAULT_LIMIT, DEFAULT_PERIOD, QuotaStore, QuotaUnavailable

log = logging.getLogger("privproc.issuer")


@dataclass
class KeyLogging:
    """Where the issuer publishes its key records, as whom, and how often it checks."""

    log_url: str
    signer: note.Signer  # a key publisher named ``owner``
    owner: str  # the issuer name (the challenge's issuer name)
    interval: float = 60.0


@dataclass
class IssuerConfig:
    state_dir: Path
    accounts: AccountVerifier
    quota: QuotaStore
    request_uri: str = "/token-request"
    limit: int = DEFAULT_LIMIT
    period: int = DEFAULT_PERIOD
    key_lifetime: int = keystore.DEFAULT_LIFETIME
    overlap: int = keystore.DEFAULT_OVERLAP
    key_logging: KeyLogging | None = None
    clock: Callable[[], float] = field(default=time.time)


def directory_for(keys: keystore.IssuerKeys, request_uri: str, now: float) -> bytes:
    entries = [pp.TokenKey(k.token_type, k.token_key, k.not_before)
               for k in reversed(keys.keys) if k.accepted_at(now)]
    return pp.IssuerDirectory(request_uri, entries).encode()


async def keep_keys_logged(config: IssuerConfig, logging_: KeyLogging) -> None:
    """Renew keys before they run out and keep every accepted key's record in the log."""
    publisher = RecordPublisher(logging_.log_url, logging_.signer)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while True:
            now = int(config.clock())
            renewed = await asyncio.to_thread(keystore.renew_if_due, config.state_dir, now,
                                              config.overlap, config.key_lifetime)
            if renewed is not None:
                log.info("keys renewed before their not-after")
            keys = await asyncio.to_thread(keystore.load, config.state_dir)
            records = [k.key_record(logging_.owner).encode() for k in keys.keys
                       if k.accepted_at(now)]
            failures = await publisher.publish_all(session, records)
            for exc in failures:
                log.warning("key record not logged yet (retrying): %s", exc)
            await asyncio.sleep(logging_.interval if not failures else min(
                logging_.interval, 2.0))


def create_app(config: IssuerConfig) -> Starlette:
    keystore.load_or_create(config.state_dir, int(config.clock()), config.key_lifetime)
    keys = keystore.KeyFileCache(config.state_dir)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = (asyncio.create_task(keep_keys_logged(config, config.key_logging))
                if config.key_logging is not None else None)
        try:
            yield
        finally:
            if task is not None:
                task.cancel()

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
    ], lifespan=lifespan)
