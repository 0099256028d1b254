"""The Oblivious Gateway's service shell: reading, forwarding, answering.

The decisions are :class:`~privproc.gateway.core.GatewayCore`'s (open, admit, route,
seal) and :class:`~privproc.gateway.registrar.Registrar`'s (who may be listed); this
module does the I/O around them:

- ``GET /ohttp-keys``: the current key configuration (RFC 9458);
- ``GET /privproc/keys``: the log bundle of the gateway's and the issuer's key records
  (with ``--log``; :mod:`privproc.gateway.transparency`);
- ``POST /gateway``: an encapsulated request, answered encapsulated once it opens;
- ``POST /nodes/register`` (operator credential, attested and signed registrations) and
  ``GET /nodes/status`` (operator credential: how many nodes are listed);
- ``GET /healthz``.

Everything read from outside is bounded: request bodies (``max_body``), registrations,
and every answer from the upstream origin or a node (``max_upstream_body``; a larger one
is a 502), with ``upstream_timeout`` on each exchange. Logs carry statuses, sizes,
timings and node ids of the derived form only: never bodies, tokens, URLs or addresses.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
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

from privproc.attest.errors import AttestationError
from privproc.attest.evidence import decode_bundle
from privproc.attest.sev_snp import parse_report
from privproc.budget import GATEWAY_TIMEOUT
from privproc.client.errors import ClientError
from privproc.client.transparency import release_proofs
from privproc.fastpath import Answer, PostRoute, problem_answer
from privproc.keyring import FileCache
from privproc.reqlog import RequestLog
from privproc.service import BodyTooLarge, anonymous_session, problem, read_body, read_up_to
from privproc.tlog.bundle import MEDIA_TYPE as BUNDLE_MEDIA_TYPE
from privproc.tlog.client import InclusionProof, LogClientError, LogForkError, http_fetcher
from privproc.tlog.publish import RecordPublisher
from privproc.tlog.view import LogView
from privproc.upkeep import keep_running
from privproc.upstream import Upstream, UpstreamError
from privproc.wire import bhttp, ohttp
from privproc.wire.registration import MAX_REGISTRATION

from . import keystore
from .core import (
    HOP_BY_HOP,
    GatewayCore,
    ListNodes,
    Opened,
    OuterAnswer,
    ReplayJudge,
    ToNode,
    ToUpstream,
    inner_problem,
    json_answer,
)
from .directory import (
    MemoryRegistry,
    NodeEntry,
    NodeRegistry,
    RegistryFull,
    RegistryUnavailable,
    window_subset,
)
from .redeem import Redeemer, RedemptionConfig
from .registrar import Refused, Registrar, RegistrarConfig
from .replay import ReplayGuard
from .transparency import Stapler, StapleUnavailable, TransparencyConfig, key_subject

log = logging.getLogger("privproc.gateway")

MAX_LISTED_REMEMBERED = 4096
"""Node ids whose listing the gateway remembers, to log only a change of their bundle."""


@dataclass
class DirectoryConfig:
    registry: NodeRegistry
    registrar: RegistrarConfig
    ttl: float = 30.0  # a node silent this long is dropped
    window: float = 60.0  # GET /v1/nodes answers the same to everyone within a window
    subset: int = 8


@dataclass
class GatewayConfig:
    state_dir: Path
    upstream: str
    max_body: int = 1 << 20
    max_upstream_body: int = 4 << 20
    replay_window: float = 60.0
    upstream_timeout: float = GATEWAY_TIMEOUT
    redemption: RedemptionConfig | None = None
    directory: DirectoryConfig | None = None
    transparency: TransparencyConfig | None = None
    replay: ReplayJudge | None = None  # default: in memory (one replica)
    key_lifetime: float = keystore.DEFAULT_LIFETIME_SECONDS
    key_grace: float = keystore.DEFAULT_GRACE_SECONDS
    clock: Callable[[], float] = field(default=time.time)
    log_interval: float = 60.0  # seconds between request summaries in the log


class KeyCache:
    """The key state, re-read whenever ``rotate-keys`` (or a replica) has changed the file."""

    def __init__(self, state_dir: Path, clock: Callable[[], float],
                 lifetime: float = keystore.DEFAULT_LIFETIME_SECONDS) -> None:
        self._clock = clock
        keystore.load_or_create(state_dir, clock(), lifetime=lifetime)
        self._file = FileCache(state_dir / keystore.KEYS_FILE,
                               lambda: keystore.load(state_dir))
        self._published: tuple[keystore.KeyState, bytes] | None = None

    @property
    def state(self) -> keystore.KeyState:
        return self._file.get()

    def accepted(self) -> ohttp.GatewayKeys:
        return self.state.accepted(self._clock())

    def keys_body(self) -> bytes:
        state = self.state
        if self._published is None or self._published[0] is not state:
            self._published = (state, ohttp.encode_key_configs(state.published()))
            log.info("keys loaded: current key_id=%d, %d accepted", state.current.key_id,
                     len(state.keys))
        return self._published[1]


def node_measurement(bundle: bytes) -> bytes | None:
    """The launch measurement a node's evidence claims (unverified: clients verify)."""
    try:
        return parse_report(decode_bundle(bundle).evidence.cpu_report).measurement
    except AttestationError:
        return None


def _outer(answer: OuterAnswer) -> Answer:
    if answer.bare:
        return Answer(answer.status)
    return problem_answer(answer.status, answer.title, answer.problem_type)


class NodeConnections:
    """A kept-alive :class:`~privproc.upstream.Upstream` per node URL (a node restarted
    on another port is another URL: the least recently used beyond ``keep`` are closed)."""

    def __init__(self, timeout: float, max_answer: int, keep: int = 256) -> None:
        self.timeout = timeout
        self.max_answer = max_answer
        self.keep = keep
        self._by_url: OrderedDict[str, Upstream] = OrderedDict()

    def get(self, url: str) -> Upstream:
        upstream = self._by_url.get(url)
        if upstream is None:
            upstream = Upstream(url, timeout=self.timeout, max_answer=self.max_answer)
            self._by_url[url] = upstream
            while len(self._by_url) > self.keep:
                self._by_url.popitem(last=False)[1].close()
        else:
            self._by_url.move_to_end(url)
        return upstream

    def close(self) -> None:
        for upstream in self._by_url.values():
            upstream.close()
        self._by_url.clear()


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def create_app(config: GatewayConfig) -> PostRoute:
    """The gateway: ``POST /gateway`` as plain ASGI (:mod:`privproc.fastpath`), the rest
    Starlette."""
    keys = KeyCache(config.state_dir, config.clock, config.key_lifetime)
    redeemer = Redeemer(config.redemption) if config.redemption is not None else None
    directory = config.directory
    core = GatewayCore(keys=keys.accepted,
                       replay=(config.replay if config.replay is not None
                               else ReplayGuard(config.replay_window)),
                       redeemer=redeemer, directory=directory is not None,
                       max_node_answer=config.max_upstream_body)
    registrar = Registrar(directory.registrar) if directory is not None else None
    upstream = config.upstream.rstrip("/")
    transparency = config.transparency
    stapler = Stapler(transparency) if transparency is not None else None
    view = (LogView(http_fetcher(transparency.log_url), directory.registrar.trust.log,
                    config.state_dir / "log-view.json")
            if transparency is not None and directory is not None else None)
    # A registry in memory answers in microseconds: no thread hop (Redis still takes one).
    registry_in_memory = directory is not None and isinstance(directory.registry,
                                                              MemoryRegistry)
    session: aiohttp.ClientSession | None = None
    # node id -> digest of the bundle last logged, to log changes only; each restart of a
    # node brings a new id, so the oldest ids are forgotten past MAX_LISTED_REMEMBERED
    listed: dict[str, bytes] = {}
    requests = RequestLog(log, interval=config.log_interval)
    nodes = NodeConnections(config.upstream_timeout, config.max_upstream_body)

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

        async def step() -> float:
            assert session is not None
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
            return min(t.refresh, 2.0) if failures else t.refresh

        await keep_running("key upkeep", step, log)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal session
        session = anonymous_session(config.upstream_timeout)
        gc.freeze()  # start-up objects stay: collections need not scan them per request
        task = (asyncio.create_task(keep_keys_logged(transparency, stapler))
                if transparency is not None and stapler is not None else None)
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            requests.flush()
            nodes.close()
            await session.close()

    # -- public key material -----------------------------------------------------------

    async def ohttp_keys(request: Request) -> Response:
        return Response(keys.keys_body(), media_type=ohttp.MEDIA_TYPE_KEYS,
                        headers={"cache-control": "max-age=60"})

    async def key_bundle(request: Request) -> Response:
        if stapler is None or transparency is None or session is None:
            return problem(404, "this gateway staples no log bundle (it runs without --log)")
        try:
            bundle = await stapler.bundle(session, key_subjects(), config.clock())
        except StapleUnavailable as exc:
            return problem(503, f"key records not available yet: {exc}")
        return Response(bundle.encode(), media_type=BUNDLE_MEDIA_TYPE,
                        headers={"cache-control": f"max-age={int(transparency.refresh)}"})

    async def health(request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    # -- forwarding --------------------------------------------------------------------

    async def to_upstream(route: ToUpstream, now: float) -> bhttp.Response:
        """One bounded exchange with the origin (aiohttp: any method and header fields)."""
        assert session is not None
        try:
            async with session.request(route.method, upstream + route.path,
                                       headers=dict(route.headers),
                                       data=route.content or None,
                                       allow_redirects=False) as resp:
                if not 200 <= resp.status <= 599:  # what binary HTTP can carry as final
                    return inner_problem(502, f"upstream answered status {resp.status}", now)
                content = await read_up_to(resp.content, config.max_upstream_body + 1)
                if len(content) > config.max_upstream_body:
                    return inner_problem(502, "upstream too large", now)
                fields = ((name.lower(), value) for name, value in resp.raw_headers)
                return bhttp.Response(status=resp.status, content=content, headers=tuple(
                    bhttp.Field(n, v) for n, v in fields if n not in HOP_BY_HOP))
        except TimeoutError:
            return inner_problem(504, "upstream timed out", now)
        except aiohttp.ClientError:
            return inner_problem(502, "upstream unreachable", now)

    async def to_node(route: ToNode, now: float) -> bhttp.Response:
        assert directory is not None
        try:
            node = (directory.registry.get(route.node_id, now, directory.ttl)
                    if registry_in_memory else
                    await run_in_threadpool(directory.registry.get, route.node_id, now,
                                            directory.ttl))
        except RegistryUnavailable:
            return inner_problem(503, "node directory unavailable", now)
        if node is None:
            return inner_problem(404, "no such registered node", now)
        try:
            to = nodes.get(node.url)  # (``upstream`` is the origin's URL)
            answered = await to.post(to.path.rstrip("/") + "/process", route.content,
                                     {"Content-Type": route.content_type})
        except ValueError:  # not an http(s) URL: the registrar admits none
            return inner_problem(502, "node unreachable", now)
        except UpstreamError as exc:
            return inner_problem(504 if exc.why == "timed out" else 502, f"node {exc.why}",
                                 now)
        return core.node_answer(answered.status, answered.headers.get("content-type", ""),
                                answered.body, answered.headers.get("retry-after", ""), now)

    async def node_list(now: float) -> bhttp.Response:
        """The nodes, with a log bundle of their releases so clients need not ask the log."""
        assert directory is not None
        try:
            nodes = (directory.registry.live(now, directory.ttl) if registry_in_memory
                     else await run_in_threadpool(directory.registry.live, now,
                                                  directory.ttl))
        except RegistryUnavailable:
            return inner_problem(503, "node directory unavailable", now)
        chosen = window_subset(nodes, now, directory.window, directory.subset)
        doc: dict[str, object] = {"nodes": [n.to_json() for n in chosen], "log": None}
        measurements = {m for n in chosen if (m := node_measurement(n.bundle)) is not None}
        if stapler is not None and session is not None and measurements:
            try:
                doc["log"] = (await stapler.bundle(session, measurements, now)).to_json()
            except StapleUnavailable:
                return inner_problem(503, "release proofs unavailable", now)
        return json_answer(doc)

    async def gateway(content_type: str, body: bytes) -> Answer:
        started = time.perf_counter()
        now = config.clock()
        opened = core.open(content_type, body, now)
        if isinstance(opened, OuterAnswer):
            requests.record(f"refused: {opened.log or opened.title}", _ms(started),
                            f"size={len(body)}")
            return _outer(opened)
        try:
            answer = await answer_for(opened, now)
        except Exception as exc:  # noqa: BLE001 - answered sealed, not as an outer 500
            # Only the type is logged: an exception's text may carry request content.
            log.error("request failed inside the gateway (%s)", type(exc).__name__)
            answer = inner_problem(500, "gateway error", now)
        if isinstance(answer, OuterAnswer):
            requests.record(f"refused: {answer.log}", _ms(started))
            return _outer(answer)
        outcome = (f"refused: {opened.refused}" if opened.refused
                   else f"answered {answer.status}")
        requests.record(outcome, _ms(started), f"in={len(body)} out={len(answer.content)}")
        return Answer(200, core.seal(opened, answer), ohttp.MEDIA_TYPE_RESPONSE)

    async def answer_for(opened: Opened, now: float) -> bhttp.Response | OuterAnswer:
        if opened.inner is None:
            assert opened.answer is not None
            return opened.answer
        refusal = await core.admit(opened, now)
        if refusal is not None:
            return refusal
        answer = await route_answer(opened.inner, now)
        # The token's spend was written meanwhile; the answer leaves only once it is durable.
        refused = await core.settle(opened)
        return answer if refused is None else refused

    async def route_answer(request: bhttp.Request, now: float) -> bhttp.Response:
        route = core.route(request, now)
        if isinstance(route, bhttp.Response):
            return route
        if isinstance(route, ListNodes):
            return await node_list(now)
        if isinstance(route, ToNode):
            return await to_node(route, now)
        return await to_upstream(route, now)

    # -- the node directory (operator side) -------------------------------------------

    def _operator(request: Request) -> bool:
        assert directory is not None
        expected = f"Bearer {directory.registrar.operator_token}".encode()
        got = request.headers.get("authorization", "").encode("latin-1", "replace")
        return hmac.compare_digest(got, expected)

    async def releases_for(measurement: bytes, now: float) -> dict[bytes, InclusionProof]:
        assert stapler is not None and session is not None and directory is not None
        assert view is not None
        bundle = await stapler.bundle(session, {measurement}, now)
        if not bundle.entries:  # perhaps logged since the last fetch
            bundle = await stapler.bundle(session, {measurement}, now, force=True)
        return await asyncio.to_thread(release_proofs, bundle.to_json(),
                                       directory.registrar.trust, view, now)

    async def register(request: Request) -> Response:
        if directory is None or registrar is None:
            return problem(404, "this gateway has no node directory")
        if view is None:
            return problem(503, "this gateway cannot verify nodes without --log")
        try:
            body = await read_body(request, MAX_REGISTRATION)
        except BodyTooLarge:
            return problem(413, f"registration larger than {MAX_REGISTRATION} bytes")
        now = config.clock()
        admitted = registrar.admit(request.headers.get("authorization", ""), body, now)
        if isinstance(admitted, Refused):
            log.info("registration refused: %s", admitted.reason)
            return problem(admitted.status, admitted.reason)
        registration, measurement = admitted
        try:
            releases = await releases_for(measurement, now)
        except LogForkError:
            log.error("registration refused: the log forked")
            return problem(503, "the transparency log does not verify")
        except (StapleUnavailable, LogClientError, ClientError) as exc:
            log.warning("registration not verified: %s", type(exc).__name__)
            return problem(503, "cannot verify the node against the log now")
        entry = await asyncio.to_thread(registrar.verify, registration, releases, view, now)
        if isinstance(entry, Refused):
            log.info("registration refused: %s", entry.reason)
            return problem(entry.status, entry.reason)
        try:
            await run_in_threadpool(directory.registry.register, entry, directory.ttl)
        except RegistryFull as exc:
            log.warning("registration refused: %s", exc)
            return problem(503, "the node directory is full")
        except RegistryUnavailable:
            return problem(503, "node directory unavailable")
        digest = hashlib.sha256(entry.bundle).digest()
        if listed.get(entry.node_id) != digest:
            listed.pop(entry.node_id, None)
            listed[entry.node_id] = digest  # (the newest last)
            while len(listed) > MAX_LISTED_REMEMBERED:
                del listed[next(iter(listed))]
            log.info("node listed: %s", entry.node_id)
        return Response(json.dumps({"node_id": entry.node_id}).encode(),
                        media_type="application/json")

    async def status(request: Request) -> Response:
        if directory is None:
            return problem(404, "this gateway has no node directory")
        if not _operator(request):
            return problem(401, "the node status needs the operator credential")
        try:
            nodes = await run_in_threadpool(directory.registry.live, config.clock(),
                                            directory.ttl)
        except RegistryUnavailable:
            return problem(503, "node directory unavailable")
        return Response(json.dumps({"nodes": [n.node_id for n in nodes]}).encode(),
                        media_type="application/json")

    app = Starlette(
        routes=[
            Route("/ohttp-keys", ohttp_keys, methods=["GET"]),
            Route("/privproc/keys", key_bundle, methods=["GET"]),
            Route("/nodes/register", register, methods=["POST"]),
            Route("/nodes/status", status, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return PostRoute(app, "/gateway", gateway, max_body=config.max_body,
                     too_large=problem_answer(413, "encapsulated request too large"))


__all__ = ["DirectoryConfig", "GatewayConfig", "KeyCache", "NodeEntry", "create_app"]
