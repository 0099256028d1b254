"""The gateway's logic, sans-IO: open, admit, route, seal.

:class:`GatewayCore` takes bytes and plain values and returns decisions; the Starlette
shell (:mod:`privproc.gateway.app`) does the reading, the forwarding and the writing.
Tests drive the core directly with bytes, a fake clock, fake stores and keys.

- :meth:`GatewayCore.open` decapsulates an OHTTP request (RFC 9458 errors: 415, 422 with
  the ``ohttp-key`` problem, a bare 400 for anything that does not open) and decodes the
  inner Binary HTTP request (a malformed one gets a sealed 400).
- :meth:`GatewayCore.admit` checks the inner ``Date`` and the replay store, then checks
  the Privacy Pass token and starts its spend (refusals are sealed, except a replay: the
  replayed bytes were already answered once); :meth:`GatewayCore.settle` waits for the
  spend to be durable before the answer may leave (the spend is written while the
  request is forwarded).
- :meth:`GatewayCore.route` says where the request goes: the upstream origin, the node
  list, one registered node (by an id of the safe form only), or a local answer.
- :meth:`GatewayCore.node_answer` passes back only what a node may say: a sealed
  ``application/privproc-response`` of a plausible size, 503 with a small Retry-After,
  or the gateway's own problem for the node's refusals; anything else is a 502.
- :meth:`GatewayCore.seal` encapsulates the answer for the client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Protocol

from privproc.httpfields import delay_seconds
from privproc.wire import bhttp, inner, ohttp
from privproc.wire.errors import BinaryHttpError, DecryptError, UnknownKeyError

from .redeem import Redeemer
from .registrar import NODE_ID
from .replay import ReplayStoreUnavailable, Verdict, parse_http_date

PROBLEM_OHTTP_KEY = "https://iana.org/assignments/http-problem-types#ohttp-key"
PROBLEM_DATE = "https://iana.org/assignments/http-problem-types#date"
# The smallest sealed node answer: a 16-byte response nonce and a 16-byte AEAD tag.
MIN_SEALED_ANSWER = 32
MAX_RETRY_AFTER = 60

# What an HTTP/1.1 field value may hold (RFC 9110 section 5.5): HTAB, SP, VCHAR, obs-text.
_FIELD_VALUE_BYTES = bytes([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])

# Connection-specific fields (RFC 9110 section 7.6.1) never cross the gateway.
HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
        b"trailer", b"upgrade", b"proxy-authorization", b"proxy-authenticate", b"host",
        b"content-length",
    }
)


class ReplayJudge(Protocol):
    def check(self, request_id: bytes, request_date: float | None, now: float) -> Verdict: ...


@dataclass(frozen=True)
class OuterAnswer:
    """An answer outside the encapsulation (the request did not open, or is a replay)."""

    status: int
    title: str = ""
    problem_type: str = "about:blank"
    bare: bool = False  # no body at all (RFC 9458: nothing hints at why it did not open)
    log: str = ""


@dataclass
class Opened:
    ctx: ohttp.ServerResponseContext
    size: int
    inner: bhttp.Request | None = None
    answer: bhttp.Response | None = None  # a sealed refusal, when ``inner`` is None
    refused: str = ""  # why admit() refused it (content-free, for the log)
    spending: asyncio.Future[bool] | None = None  # the token's spend, being written


@dataclass(frozen=True)
class ToUpstream:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    content: bytes


@dataclass(frozen=True)
class ToNode:
    node_id: str
    content: bytes
    content_type: str


@dataclass(frozen=True)
class ListNodes:
    pass


Route = ToUpstream | ToNode | ListNodes | bhttp.Response


def inner_problem(status: int, title: str, now: float, type_: str = "about:blank",
                  headers: tuple[bhttp.Field, ...] = ()) -> bhttp.Response:
    body = json.dumps({"type": type_, "title": title, "status": status}).encode()
    return bhttp.Response(
        status=status,
        headers=(bhttp.Field(b"content-type", b"application/problem+json"),
                 bhttp.Field(b"date", formatdate(now, usegmt=True).encode()), *headers),
        content=body,
    )


def json_answer(doc: object) -> bhttp.Response:
    return bhttp.Response(status=200,
                          headers=(bhttp.Field(b"content-type", b"application/json"),),
                          content=json.dumps(doc).encode())


@dataclass
class GatewayCore:
    keys: Callable[[], ohttp.GatewayKeys]
    replay: ReplayJudge
    redeemer: Redeemer | None = None
    directory: bool = False
    max_node_answer: int = 4 << 20
    stats: dict[str, int] = field(default_factory=lambda: {"ok": 0, "refused": 0})

    def open(self, content_type: str, body: bytes, now: float) -> Opened | OuterAnswer:
        if content_type.split(";", maxsplit=1)[0].strip() != ohttp.MEDIA_TYPE_REQUEST:
            return OuterAnswer(415, f"content type must be {ohttp.MEDIA_TYPE_REQUEST}")
        try:
            plain, ctx = self.keys().decapsulate_request(body)
        except UnknownKeyError:
            return OuterAnswer(422, "key identifier unknown", PROBLEM_OHTTP_KEY,
                               log="unknown key id")
        except DecryptError:
            return OuterAnswer(400, bare=True, log="does not open")
        try:
            return Opened(ctx, len(body), inner=bhttp.decode_request(plain))
        except BinaryHttpError:
            return Opened(ctx, len(body), answer=inner_problem(
                400, "malformed binary HTTP request", now))

    async def admit(self, opened: Opened, now: float) -> bhttp.Response | OuterAnswer | None:
        """Date, replay and token; None admits (and strips the token from ``opened``)."""
        assert opened.inner is not None
        date = next((f.value for f in opened.inner.headers if f.name == b"date"), None)
        try:
            verdict = self.replay.check(opened.ctx.enc,
                                        parse_http_date(date) if date else None, now)
        except ReplayStoreUnavailable:
            opened.refused = "replay store unavailable"
            return inner_problem(503, "replay store unavailable", now)
        if verdict is Verdict.BAD_DATE:
            opened.refused = "date missing or not current"
            return inner_problem(400, "date missing or not current", now, PROBLEM_DATE)
        if verdict is Verdict.REPLAYED:
            return OuterAnswer(400, "replayed request", log="replayed request")
        if self.redeemer is not None:
            forwarded, refusal, opened.spending = await self.redeemer.begin(opened.inner,
                                                                            now)
            if refusal is not None:
                opened.refused = refusal.reason
                return refusal.response
            opened.inner = forwarded
        return None

    async def settle(self, opened: Opened) -> bhttp.Response | None:
        """Once the answer is ready: None if the token's spend is durable, else the
        refusal to send instead of the answer (which must not leave the gateway)."""
        if self.redeemer is None or opened.spending is None:
            return None
        refusal = await self.redeemer.finish(opened.spending)
        if refusal is None:
            return None
        opened.refused = refusal.reason
        return refusal.response

    def route(self, request: bhttp.Request, now: float) -> Route:
        path = request.path.decode("latin-1")
        if self.directory and path.startswith("/v1/nodes"):
            parts = path.split("?")[0].strip("/").split("/")
            if parts == ["v1", "nodes"] and request.method == b"GET":
                return ListNodes()
            if (len(parts) == 4 and parts[:2] == ["v1", "nodes"] and parts[3] == "process"
                    and request.method == b"POST"):
                if not NODE_ID.fullmatch(parts[2]):
                    return inner_problem(404, "no such registered node", now)
                content_type = next((f.value for f in request.headers
                                     if f.name == b"content-type"), b"")
                return ToNode(parts[2], request.content, content_type.decode("latin-1"))
            return inner_problem(404, "no such directory resource", now)
        if not path.startswith("/"):
            return inner_problem(400, "request target must be a path", now)
        forwarded = [f for f in request.headers if f.name not in HOP_BY_HOP]
        if any(f.value.translate(None, _FIELD_VALUE_BYTES) for f in forwarded):
            # binary HTTP refuses only NUL, CR and LF; HTTP/1.1 carries none of these
            return inner_problem(400, "a header field value has a control character", now)
        headers = tuple((f.name.decode("latin-1"), f.value.decode("latin-1"))
                        for f in forwarded)
        return ToUpstream(request.method.decode("latin-1"), path, headers, request.content)

    def node_answer(self, status: int, content_type: str, body: bytes, retry_after: str,
                    now: float) -> bhttp.Response:
        """What of a node's answer reaches the client (sealed by :meth:`seal`)."""
        media = content_type.split(";", maxsplit=1)[0].strip()
        if status == 200:
            if media != inner.MEDIA_TYPE_RESPONSE or not (
                    MIN_SEALED_ANSWER <= len(body) <= self.max_node_answer):
                return inner_problem(502, "node answered something that is not a sealed "
                                          "response", now)
            return bhttp.Response(status=200, headers=(
                bhttp.Field(b"content-type", inner.MEDIA_TYPE_RESPONSE.encode()),),
                content=body)
        if status == 503:
            wait = delay_seconds(retry_after)
            wait = 1 if wait is None else wait
            seconds = str(min(max(wait, 1), MAX_RETRY_AFTER)).encode()
            return inner_problem(503, "node busy", now,
                                 headers=(bhttp.Field(b"retry-after", seconds),))
        if status in (400, 413, 415, 422):
            return inner_problem(status, "node refused the sealed request", now)
        return inner_problem(502, "node answered unexpectedly", now)

    def seal(self, opened: Opened, answer: bhttp.Response) -> bytes:
        return opened.ctx.encapsulate_response(bhttp.encode_response(answer))
