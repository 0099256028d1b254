"""The Privacy Pass issuer (RFC 9578): knows the account, never where a token is spent.

- ``GET /.well-known/private-token-issuer-directory``: the active keys of both token
  types, with their ``not-before`` times.
- ``POST /token-request`` with ``Authorization: Bearer <account token>`` and an
  ``application/private-token-request`` body: one token per request, counted against the
  account's quota (default 200 per day); over quota -> 429 with ``Retry-After``.
- ``POST /token-request-batch`` (advertised in the directory as
  ``privproc-batch-request-uri`` with ``privproc-batch-max``): the same, for 1 to
  ``batch_max`` TokenRequests in one exchange (a length-prefixed list,
  :mod:`privproc.wire.privacypass.batch`), answered with one TokenResponse each, in
  order. The quota counts every token: a batch that does not fit in what is left of it
  is refused whole (429), nothing issued.

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
from privproc.upkeep import keep_running
from privproc.wire import note
from privproc.wire import privacypass as pp
from privproc.wire.privacypass import batch as ppbatch

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
    batch_uri: str | None = "/token-request-batch"  # None: no batch endpoint
    batch_max: int = ppbatch.MAX_BATCH
    limit: int = DEFAULT_LIMIT
    period: int = DEFAULT_PERIOD
    key_lifetime: int = keystore.DEFAULT_LIFETIME
    overlap: int = keystore.DEFAULT_OVERLAP
    key_logging: KeyLogging | None = None
    clock: Callable[[], float] = field(default=time.time)


def directory_for(keys: keystore.IssuerKeys, request_uri: str, now: float,
                  batch_uri: str | None = None, batch_max: int = ppbatch.MAX_BATCH) -> bytes:
    entries = [pp.TokenKey(k.token_type, k.token_key, k.not_before)
               for k in reversed(keys.keys) if k.accepted_at(now)]
    encoded = pp.IssuerDirectory(request_uri, entries).encode()
    if batch_uri is None:
        return encoded
    return ppbatch.with_batch_offer(encoded, batch_uri, batch_max)


async def keep_keys_logged(config: IssuerConfig, logging_: KeyLogging) -> None:
    """Renew keys before they run out and keep every accepted key's record in the log."""
    publisher = RecordPublisher(logging_.log_url, logging_.signer)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def step() -> float:
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
            return logging_.interval if not failures else min(logging_.interval, 2.0)

        await keep_running("key upkeep", step, log)


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
        body = directory_for(keys.get(), config.request_uri, config.clock(),
                             config.batch_uri, config.batch_max)
        return Response(body, media_type=pp.MEDIA_TYPE_ISSUER_DIRECTORY,
                        headers={"cache-control": "max-age=300"})

    def account_of(request: Request, media_type: str, now: float) -> str | Response:
        """The request's account, or the answer that refuses it (401 for the account,
        then 415 unless its Content-Type is ``media_type``)."""
        auth = request.headers.get("authorization", "")
        scheme, _, bearer = auth.partition(" ")
        if scheme.lower() != "bearer" or not bearer.strip():
            return problem(401, "an account bearer token is required")
        try:
            account = config.accounts.account(bearer.strip(), now)
        except AccountError as exc:
            log.info("refused: %s", exc)
            return problem(401, "account token refused")
        if request.headers.get("content-type", "").split(";")[0].strip() != media_type:
            return problem(415, f"content type must be {media_type}")
        return account

    async def take_quota(account: str, count: int, now: float) -> Response | None:
        """Count ``count`` tokens against the account, or the answer that refuses them."""
        try:
            decision = await run_in_threadpool(config.quota.take, account, count,
                                               config.limit, config.period, now)
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
        return None

    async def token_request(request: Request) -> Response:
        now = config.clock()
        account = account_of(request, pp.MEDIA_TYPE_TOKEN_REQUEST, now)
        if isinstance(account, Response):
            return account
        try:
            token_request = pp.TokenRequest.decode(await read_body(request, 4096))
        except BodyTooLarge:
            return problem(413, "token request too large")
        except pp.PrivacyPassError as exc:
            return problem(400, f"malformed token request: {exc}")
        current = keys.get().current(token_request.token_type)
        refused = await take_quota(account, 1, now)
        if refused is not None:
            return refused
        try:
            response = await run_in_threadpool(pp.issue, current.private, token_request)
        except pp.PrivacyPassError as exc:
            return problem(400, f"token request refused: {exc}")
        log.info("issued: type=0x%04x", token_request.token_type)
        return Response(response.encode(), media_type=pp.MEDIA_TYPE_TOKEN_RESPONSE)

    async def token_request_batch(request: Request) -> Response:
        now = config.clock()
        account = account_of(request, ppbatch.MEDIA_TYPE_BATCH_REQUEST, now)
        if isinstance(account, Response):
            return account
        limit = ppbatch.max_batch_size(config.batch_max)
        try:
            body = await read_body(request, limit * (2 + ppbatch.MAX_ITEM))
            requests = [pp.TokenRequest.decode(item)
                        for item in ppbatch.decode_batch(body, limit)]
        except BodyTooLarge:
            return problem(413, f"a batch holds at most {limit} token requests")
        except pp.PrivacyPassError as exc:
            return problem(400, f"malformed token request batch: {exc}")
        current = keys.get()
        try:
            signers = [current.current(r.token_type).private for r in requests]
        except StopIteration:
            return problem(400, "token request refused: no key of its token type")
        refused = await take_quota(account, len(requests), now)
        if refused is not None:
            return refused

        def issue_all() -> list[bytes]:
            return [pp.issue(key, r).encode() for key, r in zip(signers, requests, strict=True)]

        try:
            responses = await run_in_threadpool(issue_all)
        except pp.PrivacyPassError as exc:
            return problem(400, f"token request refused: {exc}")
        log.info("issued: batch of %d", len(requests))
        return Response(ppbatch.encode_batch(responses),
                        media_type=ppbatch.MEDIA_TYPE_BATCH_RESPONSE)

    async def health(request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    routes = [
        Route(pp.WELL_KNOWN_ISSUER_DIRECTORY, directory, methods=["GET"]),
        Route(config.request_uri, token_request, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ]
    if config.batch_uri is not None:
        routes.append(Route(config.batch_uri, token_request_batch, methods=["POST"]))
    return Starlette(routes=routes, lifespan=lifespan)
