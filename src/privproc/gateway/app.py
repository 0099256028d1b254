"""The Oblivious Gateway: opens OHTTP requests, asks the upstream origin, seals the answer.

``GET /ohttp-keys`` serves the current key configuration. ``POST /gateway`` takes a
``message/ohttp-req``. Errors follow RFC 9458: 415 for a wrong media type, 413 for an
oversized body, 422 with the ``ohttp-key`` problem for a key identifier or suite it does
not hold, and a bare 400 for anything that does not open (no detail on why). Once a
request is open, every answer (including the gateway's own errors: stale date, replay,
unreachable upstream) goes back encapsulated, so only the client can read it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from privproc.service import BodyTooLarge, problem, read_body
from privproc.wire import bhttp, ohttp
from privproc.wire.errors import BinaryHttpError, DecryptError, UnknownKeyError

from . import keystore
from .redeem import Redeemer, RedemptionConfig
from .replay import ReplayGuard, Verdict, parse_http_date

log = logging.getLogger("privproc.gateway")

PROBLEM_OHTTP_KEY = "https://iana.org/assignments/http-problem-types#ohttp-key"
PROBLEM_DATE = "https://iana.org/assignments/http-problem-types#date"

# Connection-specific fields (RFC 9110 section 7.6.1) never cross the gateway.
HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
        b"trailer", b"upgrade", b"proxy-authorization", b"proxy-authenticate", b"host",
        b"content-length",
    }
)


@dataclass
class GatewayConfig:
    state_dir: Path
    upstream: str
    max_body: int = 1 << 20
    replay_window: float = 60.0
    upstream_timeout: float = 30.0
    redemption: RedemptionConfig | None = None
    clock: Callable[[], float] = field(default=time.time)


class KeyCache:
    """The key state, re-read whenever ``rotate-keys`` has replaced the file."""

    def __init__(self, state_dir: Path, clock: Callable[[], float]) -> None:
        self._dir = state_dir
        self._clock = clock
        self._mtime = -1
        self._state = keystore.load_or_create(state_dir, clock())
        self._refresh()

    def _refresh(self) -> None:
        mtime = (self._dir / keystore.KEYS_FILE).stat().st_mtime_ns
        if mtime != self._mtime:
            self._state = keystore.load(self._dir)
            self._mtime = mtime
            self._keys_body = ohttp.encode_key_configs(self._state.published())
            log.info("keys loaded: current key_id=%d, %d accepted",
                     self._state.current.key_id, len(self._state.keys))

    def accepted(self) -> ohttp.GatewayKeys:
        self._refresh()
        return self._state.accepted(self._clock())

    def keys_body(self) -> bytes:
        self._refresh()
        return self._keys_body


def _sealed(ctx: ohttp.ServerResponseContext, response: bhttp.Response) -> Response:
    return Response(
        ctx.encapsulate_response(bhttp.encode_response(response)),
        media_type=ohttp.MEDIA_TYPE_RESPONSE,
    )


def _inner_problem(status: int, title: str, type_: str, now: float) -> bhttp.Response:
    body = json.dumps({"type": type_, "title": title, "status": status}).encode()
    return bhttp.Response(
        status=status,
        headers=(
            bhttp.Field(b"content-type", b"application/problem+json"),
            bhttp.Field(b"date", formatdate(now, usegmt=True).encode()),
        ),
        content=body,
    )


def create_app(config: GatewayConfig) -> Starlette:
    keys = KeyCache(config.state_dir, config.clock)
    replay = ReplayGuard(config.replay_window)
    redeemer = Redeemer(config.redemption) if config.redemption is not None else None
    upstream = config.upstream.rstrip("/")
    session: aiohttp.ClientSession | None = None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal session
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=config.upstream_timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=256),
        )
        try:
            yield
        finally:
            await session.close()

    async def ohttp_keys(request: Request) -> Response:
        return Response(
            keys.keys_body(),
            media_type=ohttp.MEDIA_TYPE_KEYS,
            headers={"cache-control": "max-age=60"},
        )

    async def health(request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    async def forward(inner: bhttp.Request) -> bhttp.Response:
        assert session is not None
        headers = [
            (f.name.decode("latin-1"), f.value.decode("latin-1"))
            for f in inner.headers
            if f.name not in HOP_BY_HOP
        ]
        path = inner.path.decode("latin-1") or "/"
        if not path.startswith("/"):
            return _inner_problem(400, "request target must be a path", "about:blank",
                                  config.clock())
        try:
            async with session.request(
                inner.method.decode("latin-1"),
                upstream + path,
                headers=headers,
                data=inner.content or None,
                allow_redirects=False,
            ) as resp:
                content = await resp.read()
                out_headers = tuple(
                    bhttp.Field(n.lower(), v)
                    for n, v in resp.raw_headers
                    if n.lower() not in HOP_BY_HOP
                )
                return bhttp.Response(status=resp.status, headers=out_headers, content=content)
        except TimeoutError:
            return _inner_problem(504, "upstream timed out", "about:blank", config.clock())
        except aiohttp.ClientError:
            return _inner_problem(502, "upstream unreachable", "about:blank", config.clock())

    async def gateway(request: Request) -> Response:
        started = time.perf_counter()
        if request.headers.get("content-type", "").split(";")[0].strip() != (
            ohttp.MEDIA_TYPE_REQUEST
        ):
            return problem(415, f"content type must be {ohttp.MEDIA_TYPE_REQUEST}")
        try:
            body = await read_body(request, config.max_body)
        except BodyTooLarge:
            return problem(413, "encapsulated request too large")
        try:
            plain, ctx = keys.accepted().decapsulate_request(body)
        except UnknownKeyError:
            log.info("refused: unknown key id, size=%d", len(body))
            return problem(422, "key identifier unknown", PROBLEM_OHTTP_KEY)
        except DecryptError:
            log.info("refused: does not open, size=%d", len(body))
            return Response(status_code=400)
        now = config.clock()
        try:
            inner = bhttp.decode_request(plain)
        except BinaryHttpError:
            log.info("refused: inner request malformed, size=%d", len(body))
            return _sealed(ctx, _inner_problem(400, "malformed binary HTTP request",
                                               "about:blank", now))
        date = next((f.value for f in inner.headers if f.name == b"date"), None)
        verdict = replay.check(ctx.enc, parse_http_date(date) if date else None, now)
        if verdict is Verdict.BAD_DATE:
            log.info("refused: date missing or outside the replay window")
            return _sealed(ctx, _inner_problem(400, "date missing or not current",
                                               PROBLEM_DATE, now))
        if verdict is Verdict.REPLAYED:
            log.info("refused: replayed request")
            return problem(400, "replayed request")
        if redeemer is not None:
            inner, refusal = await redeemer.redeem(inner, now)
            if refusal is not None:
                log.info("refused: %s", refusal.reason)
                return _sealed(ctx, refusal.response)
        answer = await forward(inner)
        log.info(
            "ok: status=%d in=%d out=%d ms=%.1f",
            answer.status, len(body), len(answer.content),
            (time.perf_counter() - started) * 1000,
        )
        return _sealed(ctx, answer)

    return Starlette(
        routes=[
            Route("/ohttp-keys", ohttp_keys, methods=["GET"]),
            Route("/gateway", gateway, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
