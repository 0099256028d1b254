"""The Oblivious Relay: forwards encapsulated requests to one gateway, adding nothing.

``POST /`` takes a ``message/ohttp-req`` and answers the gateway's ``message/ohttp-res``.
The outbound request carries only ``Content-Type``: no client address, no forwarding
headers, no cookies, no user agent. Bodies are never logged; neither are client
addresses.

Public material is proxied with GET and cached, so every client is handed the same bytes
and neither the gateway nor the log learns who asked:

- ``GET /ohttp-keys``: the gateway's key configuration (RFC 9458);
- ``GET /privproc/keys``: the gateway's log bundle of its and the issuer's key records;
- ``GET /log/checkpoint`` and ``GET /log/tile/...``: the transparency log (``--log``),
  checkpoint and C2SP tiles only. Tiles never change and are cached until the cache's
  byte bound pushes them out; the checkpoint for a few seconds.

A relay cannot make a client use a key it made itself: clients accept keys only with
their key records, proven in the witness-cosigned log.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from privproc.budget import RELAY_TIMEOUT
from privproc.fastpath import Answer, PostRoute, problem_answer
from privproc.httpfields import delay_seconds
from privproc.reqlog import RequestLog
from privproc.service import anonymous_session, problem, read_up_to
from privproc.upstream import Upstream, UpstreamError
from privproc.wire import ohttp, tiles
from privproc.wire.errors import MerkleError

log = logging.getLogger("privproc.relay")

PASSED_STATUSES = frozenset({200, 400, 401, 413, 415, 422, 429, 503})
FORWARDED_HEADERS = {"Content-Type": ohttp.MEDIA_TYPE_REQUEST}  # and nothing else


@dataclass
class RelayConfig:
    gateway: str
    keys_url: str | None = None
    max_body: int = 1 << 20
    max_response: int = 4 << 20  # a larger answer from the gateway is refused (502)
    timeout: float = RELAY_TIMEOUT
    keys_cache_seconds: float = 60.0
    log: str | None = None  # the transparency log's URL, proxied at /log/
    checkpoint_cache_seconds: float = 5.0
    cache_bytes: int = 32 << 20  # bound on all cached GET answers
    max_get_body: int = 4 << 20  # a proxied GET answer larger than this is refused
    log_interval: float = 60.0  # seconds between request summaries in the log

    @property
    def resolved_keys_url(self) -> str:
        return self.keys_url or urljoin(self.gateway, "/ohttp-keys")

    @property
    def key_bundle_url(self) -> str:
        return urljoin(self.gateway, "/privproc/keys")


@dataclass(frozen=True)
class _Cached:
    body: bytes
    media_type: str
    expires: float  # time.monotonic() value


class GetCache:
    """A byte-bounded LRU of proxied GET answers, each with its own expiry."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, _Cached] = OrderedDict()
        self._bytes = 0

    def get(self, key: str, now: float) -> _Cached | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item.expires <= now:
            self.drop(key)
            return None
        self._items.move_to_end(key)
        return item

    def put(self, key: str, item: _Cached) -> None:
        self.drop(key)
        if len(item.body) > self.max_bytes:
            return
        self._items[key] = item
        self._bytes += len(item.body)
        while self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old.body)

    def drop(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)


MAX_MEDIA_TYPE = 256


def _max_age(cache_control: str) -> float | None:
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and (seconds := delay_seconds(value)) is not None:
            return float(seconds)
    return None


_IMMUTABLE = 365 * 24 * 3600.0


def create_app(config: RelayConfig) -> PostRoute:
    """The relay: ``POST /`` as plain ASGI (:mod:`privproc.fastpath`), the rest Starlette."""
    session: aiohttp.ClientSession | None = None
    cache = GetCache(config.cache_bytes)
    requests = RequestLog(log, interval=config.log_interval)
    # POST / goes on the lean kept-alive client (privproc.upstream); GETs on aiohttp.
    gateway = Upstream(config.gateway, timeout=config.timeout, max_answer=config.max_response)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal session
        session = anonymous_session(config.timeout)
        gc.freeze()  # start-up objects stay: collections need not scan them per request
        try:
            yield
        finally:
            requests.flush()
            gateway.close()
            await session.close()

    async def relay(content_type: str, body: bytes) -> Answer:
        started = time.perf_counter()
        if content_type.split(";", maxsplit=1)[0].strip() != ohttp.MEDIA_TYPE_REQUEST:
            requests.record("refused: content type", 0.0)
            return problem_answer(415, f"content type must be {ohttp.MEDIA_TYPE_REQUEST}")
        try:
            answered = await gateway.post(gateway.target, body, FORWARDED_HEADERS)
        except UpstreamError as exc:
            if exc.why == "timed out":
                log.warning("gateway timed out after %.1fs", config.timeout)
                return problem_answer(504, "gateway timed out")
            if exc.why == "too large":
                log.warning("gateway answer over %d bytes refused", config.max_response)
                return problem_answer(502, "gateway answer too large")
            log.warning("gateway unreachable: %s", exc)
            return problem_answer(502, "gateway unreachable")
        status, answer = answered.status, answered.body
        media_type = answered.headers.get("content-type", "")
        requests.record(f"gateway {status}", (time.perf_counter() - started) * 1000,
                        f"in={len(body)} out={len(answer)}")
        if status == 422:  # the gateway rotated past the cached configuration
            cache.drop(config.resolved_keys_url)
            cache.drop(config.key_bundle_url)
        if status not in PASSED_STATUSES:
            return problem_answer(502, f"gateway answered {status}")
        return Answer(status, answer, media_type or None)

    async def proxied_get(url: str, cache_seconds: float, what: str) -> Response:
        """GET ``url`` (adding nothing), cached for at most ``cache_seconds``."""
        assert session is not None
        now = time.monotonic()
        item = cache.get(url, now)
        if item is None:
            try:
                async with session.get(url, allow_redirects=False) as resp:
                    body = await read_up_to(resp.content, config.max_get_body + 1)
                    if resp.status != 200:
                        return problem(502 if resp.status >= 500 else resp.status,
                                       f"{what} answered {resp.status}")
                    if len(body) > config.max_get_body:
                        return problem(502, f"{what} answer exceeds {config.max_get_body} bytes")
                    media_type = resp.headers.get("content-type", "application/octet-stream")
                    if not (media_type.isascii() and media_type.isprintable()
                            and len(media_type) <= MAX_MEDIA_TYPE):
                        # (it would fail the answer only once cached: every later one too)
                        return problem(502, f"{what} answered an unusable content type")
                    upstream_age = _max_age(resp.headers.get("cache-control", ""))
            except TimeoutError:
                return problem(504, f"{what} timed out")
            except aiohttp.ClientError:
                return problem(502, f"{what} unreachable")
            seconds = cache_seconds if upstream_age is None else min(cache_seconds,
                                                                      upstream_age)
            item = _Cached(body, media_type, now + seconds)
            if seconds > 0:
                cache.put(url, item)
        left = max(0, int(item.expires - now))
        return Response(item.body, media_type=item.media_type,
                        headers={"cache-control": f"max-age={left}"})

    async def keys(request: Request) -> Response:
        return await proxied_get(config.resolved_keys_url, config.keys_cache_seconds,
                                 "gateway key configuration")

    async def key_bundle(request: Request) -> Response:
        return await proxied_get(config.key_bundle_url, config.keys_cache_seconds,
                                 "gateway key bundle")

    async def log_data(request: Request) -> Response:
        if config.log is None:
            return problem(404, "this relay proxies no transparency log")
        path = request.path_params["rest"]
        if path == "checkpoint":
            seconds = config.checkpoint_cache_seconds
        else:
            try:
                tiles.parse_tile_path(path)
            except MerkleError:
                return problem(404, "the relay proxies only the log's checkpoint and tiles")
            seconds = _IMMUTABLE
        return await proxied_get(f"{config.log.rstrip('/')}/{path}", seconds,
                                 "transparency log")

    async def health(request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    app = Starlette(
        routes=[
            Route("/ohttp-keys", keys, methods=["GET"]),
            Route("/privproc/keys", key_bundle, methods=["GET"]),
            Route("/log/{rest:path}", log_data, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return PostRoute(app, "/", relay, max_body=config.max_body,
                     too_large=problem_answer(413, "encapsulated request too large"))
