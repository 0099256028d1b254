"""The Oblivious Relay: forwards encapsulated requests to one gateway, adding nothing.

``POST /`` takes a ``message/ohttp-req`` and answers the gateway's ``message/ohttp-res``.
The outbound request carries only ``Content-Type``: no client address, no forwarding
headers, no cookies, no user agent. ``GET /ohttp-keys`` proxies the gateway's key
configuration (cached, so every client is handed the same keys). Bodies are never
logged; neither are client addresses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from privproc.service import BodyTooLarge, anonymous_session, problem, read_body
from privproc.wire import ohttp

log = logging.getLogger("privproc.relay")

PASSED_STATUSES = frozenset({200, 400, 401, 413, 415, 422, 429, 503})


@dataclass
class RelayConfig:
    gateway: str
    keys_url: str | None = None
    max_body: int = 1 << 20
    timeout: float = 30.0
    keys_cache_seconds: float = 60.0

    @property
    def resolved_keys_url(self) -> str:
        return self.keys_url or urljoin(self.gateway, "/ohttp-keys")


def create_app(config: RelayConfig) -> Starlette:
    session: aiohttp.ClientSession | None = None
    keys_cache: tuple[float, bytes] | None = None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal session
        session = anonymous_session(config.timeout)
        try:
            yield
        finally:
            await session.close()

    async def relay(request: Request) -> Response:
        nonlocal keys_cache
        assert session is not None
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
            async with session.post(
                config.gateway,
                data=body,
                headers={"Content-Type": ohttp.MEDIA_TYPE_REQUEST},
                allow_redirects=False,
            ) as resp:
                answer = await resp.read()
                status = resp.status
                media_type = resp.headers.get("content-type", "")
        except TimeoutError:
            log.warning("gateway timed out after %.1fs", config.timeout)
            return problem(504, "gateway timed out")
        except aiohttp.ClientError as exc:
            log.warning("gateway unreachable: %s", type(exc).__name__)
            return problem(502, "gateway unreachable")
        log.info("forwarded: status=%d in=%d out=%d ms=%.1f", status, len(body), len(answer),
                 (time.perf_counter() - started) * 1000)
        if status == 422:
            keys_cache = None  # the gateway rotated past our cached configuration
        if status not in PASSED_STATUSES:
            return problem(502, f"gateway answered {status}")
        return Response(answer, status_code=status, media_type=media_type or None)

    async def keys(request: Request) -> Response:
        nonlocal keys_cache
        assert session is not None
        now = time.monotonic()
        if keys_cache is None or now - keys_cache[0] > config.keys_cache_seconds:
            try:
                async with session.get(config.resolved_keys_url) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        return problem(502, f"gateway key configuration answered {resp.status}")
            except TimeoutError:
                return problem(504, "gateway timed out")
            except aiohttp.ClientError:
                return problem(502, "gateway unreachable")
            keys_cache = (now, body)
        return Response(keys_cache[1], media_type=ohttp.MEDIA_TYPE_KEYS,
                        headers={"cache-control": f"max-age={int(config.keys_cache_seconds)}"})

    async def health(request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    return Starlette(
        routes=[
            Route("/", relay, methods=["POST"]),
            Route("/ohttp-keys", keys, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
