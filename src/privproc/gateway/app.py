"""The Oblivious Gateway: opens OHTTP requests, asks the upstream origin, seals the answer.

``GET /ohttp-keys`` serves the current key configuration. ``POST /gateway`` takes a
``message/ohttp-req``. Errors follow RFC 9458: 415 for a wrong media type, 413 for an
oversized body, 422 with the ``ohttp-key`` problem for a key identifier or suite it does
not hold, and a bare 400 for anything that does not open (no detail on why). Once a
request is open, every answer (including the gateway's own errors: stale date, replay,
unreachable upstream) goes back encapsulated, so only the client can read it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
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
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from privproc.attest.errors import AttestationError
from privproc.attest.evidence import decode_bundle
from privproc.attest.sev_snp import parse_report
from privproc.service import BodyTooLarge, anonymous_session, problem, read_body
from privproc.tlog.bundle import MEDIA_TYPE as BUNDLE_MEDIA_TYPE
from privproc.tlog.publish import RecordPublisher
from privproc.wire import bhttp, ohttp
from privproc.wire.errors import BinaryHttpError, DecryptError, UnknownKeyError

from . import keystore
from .directory import NodeEntry, NodeRegistry, RegistryUnavailable, window_subset
from .redeem import Redeemer, RedemptionConfig
from .replay import ReplayGuard, Verdict, parse_http_date
from .transparency import Stapler, StapleUnavailable, TransparencyConfig, key_subject

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
    directory: DirectoryConfig | None = None
    transparency: TransparencyConfig | None = None
    key_lifetime: float = keystore.DEFAULT_LIFETIME_SECONDS
    key_grace: float = keystore.DEFAULT_GRACE_SECONDS
    clock: Callable[[], float] = field(default=time.time)


@dataclass
class DirectoryConfig:
    registry: NodeRegistry
    ttl: float = 30.0  # a node silent this long is dropped
    window: float = 60.0  # GET /v1/nodes answers the same to everyone within a window
    subset: int = 8
    node_token: str | None = None  # bearer secret nodes register with


class KeyCache:
    """The key state, re-read whenever ``rotate-keys`` has replaced the file."""

    def __init__(self, state_dir: Path, clock: Callable[[], float],
                 lifetime: float = keystore.DEFAULT_LIFETIME_SECONDS) -> None:
        self._dir = state_dir
        self._clock = clock
        self._mtime = -1
        self._state = keystore.load_or_create(state_dir, clock(), lifetime=lifetime)
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

    @property
    def state(self) -> keystore.KeyState:
        self._refresh()
        return self._state


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


def inner_media_type(inner: bhttp.Request) -> str:
    value = next((f.value for f in inner.headers if f.name == b"content-type"), b"")
    return value.decode("latin-1") or "application/octet-stream"


def node_measurement(bundle: bytes) -> bytes | None:
    """The launch measurement a node's evidence claims (unverified: clients verify)."""
    try:
        return parse_report(decode_bundle(bundle).evidence.cpu_report).measurement
    except AttestationError:
        return None


def create_app(config: GatewayConfig) -> Starlette:
    keys = KeyCache(config.state_dir, config.clock, config.key_lifetime)
    replay = ReplayGuard(config.replay_window)
    redeemer = Redeemer(config.redemption) if config.redemption is not None else None
    upstream = config.upstream.rstrip("/")
    session: aiohttp.ClientSession | None = None
    transparency = config.transparency
    stapler = Stapler(transparency) if transparency is not None else None

    def key_subjects() -> set[bytes]:
        subjects = {key_subject(keys.state.current.gateway_key.config.encode())}
        if redeemer is not None:
            subjects |= {key_subject(k.token_key)
                         for k in redeemer.keys.get().accepted(config.clock()).values()}
        return subjects

    async def keep_keys_logged(t: TransparencyConfig, stapler: Stapler) -> None:
        """Renew the key before its not-after, log its record, keep the staple fresh."""
        assert session is not None
        publisher = RecordPublisher(t.log_url, t.signer) if t.signer is not None else None
        while True:
            now = config.clock()
            renewed = await asyncio.to_thread(keystore.renew_if_due, config.state_dir, now,
                                              config.key_grace, config.key_lifetime)
            if renewed is not None:
                log.info("key renewed before its not-after: key_id=%d",
                         renewed.current.key_id)
            failures = []
            if publisher is not None:
                state = keys.state
                records = [k.key_record(t.owner).encode() for k in state.keys
                           if k.retire_at is None or k.retire_at > now]
                failures = await publisher.publish_all(session, records)
                for exc in failures:
                    log.warning("key record not logged yet (retrying): %s", exc)
            try:
                await stapler.bundle(session, key_subjects(), now)
            except StapleUnavailable as exc:
                log.warning("key bundle unavailable: %s", exc)
            await asyncio.sleep(min(t.refresh, 2.0) if failures else t.refresh)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal session
        session = anonymous_session(config.upstream_timeout)
        task = (asyncio.create_task(keep_keys_logged(transparency, stapler))
                if transparency is not None and stapler is not None else None)
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            await session.close()

    async def key_bundle(request: Request) -> Response:
        if stapler is None or transparency is None or session is None:
            return problem(404, "this gateway staples no log bundle (it runs without --log)")
        try:
            bundle = await stapler.bundle(session, key_subjects(), config.clock())
        except StapleUnavailable as exc:
            return problem(503, f"key records not available yet: {exc}")
        return Response(bundle.encode(), media_type=BUNDLE_MEDIA_TYPE,
                        headers={"cache-control": f"max-age={int(transparency.refresh)}"})

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

    directory = config.directory

    def _json_response(status: int, doc: object) -> bhttp.Response:
        return bhttp.Response(
            status=status,
            headers=(bhttp.Field(b"content-type", b"application/json"),),
            content=json.dumps(doc).encode(),
        )

    async def node_list(chosen: list[NodeEntry], now: float) -> bhttp.Response:
        """The nodes, with a log bundle of their releases so clients need not ask the log."""
        doc: dict[str, object] = {"nodes": [n.to_json() for n in chosen], "log": None}
        measurements = {m for n in chosen if (m := node_measurement(n.bundle)) is not None}
        if stapler is not None and session is not None and measurements:
            try:
                doc["log"] = (await stapler.bundle(session, measurements, now)).to_json()
            except StapleUnavailable:
                return _inner_problem(503, "release proofs unavailable", "about:blank", now)
        return _json_response(200, doc)

    async def node_route(inner: bhttp.Request) -> bhttp.Response:
        assert directory is not None and session is not None
        now = config.clock()
        parts = inner.path.decode("latin-1").split("?")[0].strip("/").split("/")
        is_list = parts == ["v1", "nodes"] and inner.method == b"GET"
        is_process = (len(parts) == 4 and parts[:2] == ["v1", "nodes"]
                      and parts[3] == "process" and inner.method == b"POST")
        if not (is_list or is_process):
            return _inner_problem(404, "no such directory resource", "about:blank", now)
        try:
            if is_list:
                nodes = await run_in_threadpool(directory.registry.live, now, directory.ttl)
                chosen = window_subset(nodes, now, directory.window, directory.subset)
                return await node_list(chosen, now)
            node = await run_in_threadpool(directory.registry.get, parts[2], now,
                                           directory.ttl)
        except RegistryUnavailable:
            return _inner_problem(503, "node directory unavailable", "about:blank", now)
        if node is None:
            return _inner_problem(404, "no such registered node", "about:blank", now)
        try:
            async with session.post(
                node.url.rstrip("/") + "/process", data=inner.content,
                headers={"Content-Type": inner_media_type(inner)},
            ) as resp:
                content = await resp.read()
                headers = tuple(
                    bhttp.Field(n.lower(), v) for n, v in resp.raw_headers
                    if n.lower() in (b"content-type", b"retry-after")
                )
                return bhttp.Response(status=resp.status, headers=headers, content=content)
        except TimeoutError:
            return _inner_problem(504, "node timed out", "about:blank", config.clock())
        except aiohttp.ClientError:
            return _inner_problem(502, "node unreachable", "about:blank", config.clock())

    async def register(request: Request) -> Response:
        if directory is None:
            return problem(404, "this gateway has no node directory")
        if directory.node_token is not None and request.headers.get(
                "authorization", "") != f"Bearer {directory.node_token}":
            return problem(401, "node registration needs the node token")
        try:
            doc = json.loads(await read_body(request, 1 << 20))
            entry = NodeEntry(str(doc["node_id"]), str(doc["url"]),
                              base64.b64decode(doc["bundle"], validate=True), config.clock())
        except (BodyTooLarge, ValueError, KeyError, TypeError, binascii.Error):
            return problem(400, "registration must be JSON {node_id, url, bundle}")
        if not entry.url.startswith(("http://", "https://")) or not entry.node_id:
            return problem(400, "registration needs a node_id and an http(s) url")
        try:
            await run_in_threadpool(directory.registry.register, entry, directory.ttl)
        except RegistryUnavailable:
            return problem(503, "node directory unavailable")
        log.info("node registered: %s", entry.node_id)
        return Response(b'{"ok": true}', media_type="application/json")

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
        if directory is not None and inner.path.startswith(b"/v1/nodes"):
            answer = await node_route(inner)
        else:
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
            Route("/privproc/keys", key_bundle, methods=["GET"]),
            Route("/gateway", gateway, methods=["POST"]),
            Route("/nodes/register", register, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
