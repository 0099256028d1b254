"""The gateway's core, driven with bytes, a fake clock and in-memory stores (no sockets)."""

from __future__ import annotations

import asyncio
import json
import uuid
from email.utils import formatdate

import pytest

from privproc.client.ohttp import seal_request
from privproc.gateway.core import (
    MAX_RETRY_AFTER,
    GatewayCore,
    ListNodes,
    Opened,
    OuterAnswer,
    ToNode,
    ToUpstream,
)
from privproc.gateway.replay import RedisReplayGuard, ReplayGuard, Verdict
from privproc.wire import bhttp, hpke, inner, ohttp
from tests.issuer.test_issuer_units import REDIS, redis_or_skip

NOW = 1_800_000_000.0
KEY = ohttp.GatewayKey.create(1, hpke.KeyPair.generate())
NODE = "n" + "0" * 31


def core(**kwargs: object) -> GatewayCore:
    return GatewayCore(keys=lambda: ohttp.GatewayKeys([KEY]), replay=ReplayGuard(60),
                       directory=True, **kwargs)  # type: ignore[arg-type]


def sealed(path: str = "/v1/nodes", method: str = "GET", now: float = NOW,
           content: bytes = b"") -> tuple[bytes, ohttp.ClientResponseContext]:
    return seal_request(KEY.config, method, path, authority="gw", now=now, content=content,
                        headers=[(b"content-type", inner.MEDIA_TYPE_REQUEST.encode())])


def opened(c: GatewayCore, body: bytes) -> Opened:
    result = c.open(ohttp.MEDIA_TYPE_REQUEST, body, NOW)
    assert isinstance(result, Opened)
    return result


def test_open_refuses_what_does_not_open_without_saying_why() -> None:
    c = core()
    body, _ = sealed()
    assert c.open("text/plain", body, NOW) == OuterAnswer(
        415, f"content type must be {ohttp.MEDIA_TYPE_REQUEST}")
    other = ohttp.GatewayKey.create(9, hpke.KeyPair.generate())
    foreign, _ = seal_request(other.config, "GET", "/", authority="gw", now=NOW)
    answer = c.open(ohttp.MEDIA_TYPE_REQUEST, foreign, NOW)
    assert isinstance(answer, OuterAnswer) and answer.status == 422
    flipped = bytearray(body)
    flipped[-1] ^= 1
    answer = c.open(ohttp.MEDIA_TYPE_REQUEST, bytes(flipped), NOW)
    assert isinstance(answer, OuterAnswer) and answer.status == 400 and answer.bare


def test_a_malformed_inner_request_gets_a_sealed_400() -> None:
    plain_ctx = ohttp.encapsulate_request(KEY.config, b"\x07garbage")
    result = opened(core(), plain_ctx[0])
    assert result.inner is None and result.answer is not None
    assert result.answer.status == 400


def test_admit_checks_the_date_and_replays() -> None:
    c = core()
    body, _ = sealed(now=NOW - 3600)
    answer = asyncio.run(c.admit(opened(c, body), NOW))
    assert isinstance(answer, bhttp.Response) and answer.status == 400
    assert b"date" in answer.content
    body, _ = sealed()
    assert asyncio.run(c.admit(opened(c, body), NOW)) is None
    replay = asyncio.run(c.admit(opened(c, body), NOW + 1))
    assert isinstance(replay, OuterAnswer) and replay.status == 400


@pytest.mark.parametrize("path", [
    "/v1/nodes/node-0/process", "/v1/nodes/n0000\n2026 forged log line/process",
    "/v1/nodes/../../admin/process", "/v1/nodes/" + "N" * 32 + "/process",
    "/v1/nodes/" + NODE + "/evil",
])
def test_only_node_ids_of_the_derived_form_are_routed(path: str) -> None:
    c = core()
    request = bhttp.Request(b"POST", b"https", b"gw", path.encode(), (), b"x")
    route = c.route(request, NOW)
    assert isinstance(route, bhttp.Response) and route.status == 404


def test_routes() -> None:
    c = core()
    assert isinstance(c.route(bhttp.Request(b"GET", b"https", b"gw", b"/v1/nodes"), NOW),
                      ListNodes)
    ct = bhttp.Field(b"content-type", inner.MEDIA_TYPE_REQUEST.encode())
    to_node = c.route(bhttp.Request(b"POST", b"https", b"gw",
                                    f"/v1/nodes/{NODE}/process".encode(), (ct,), b"sealed"),
                      NOW)
    assert to_node == ToNode(NODE, b"sealed", inner.MEDIA_TYPE_REQUEST)
    up = c.route(bhttp.Request(b"POST", b"https", b"gw", b"/echo",
                               (bhttp.Field(b"connection", b"close"), ct), b"x"), NOW)
    assert isinstance(up, ToUpstream) and up.headers == (
        ("content-type", inner.MEDIA_TYPE_REQUEST),)
    bad = c.route(bhttp.Request(b"GET", b"https", b"gw", b"*"), NOW)
    assert isinstance(bad, bhttp.Response) and bad.status == 400


def test_only_a_sealed_response_of_plausible_size_passes_back_from_a_node() -> None:
    c = core(max_node_answer=1000)
    ok = c.node_answer(200, inner.MEDIA_TYPE_RESPONSE, b"s" * 64, "", NOW)
    assert ok.status == 200 and ok.content == b"s" * 64
    for ctype, body in ((inner.MEDIA_TYPE_RESPONSE, b"s" * 31),
                        (inner.MEDIA_TYPE_RESPONSE, b"s" * 1001),
                        ("text/html", b"<html>internal admin page</html>" * 3),
                        ("", b"s" * 64)):
        answer = c.node_answer(200, ctype, body, "", NOW)
        assert answer.status == 502 and body not in answer.content
    secret = b'{"internal": "what a port scan would read"}'
    for status in (400, 413, 415, 422):  # the node's refusal, in the gateway's words
        answer = c.node_answer(status, "application/json", secret, "", NOW)
        assert answer.status == status and secret not in answer.content
    assert c.node_answer(405, "text/plain", secret, "", NOW).status == 502
    assert c.node_answer(500, "text/plain", secret, "", NOW).status == 502
    for huge in ("999999", "9" * 5000):  # (int() refuses over 4,300 digits)
        busy = c.node_answer(503, "text/plain", secret, huge, NOW)
        assert busy.status == 503 and (b"retry-after", str(MAX_RETRY_AFTER).encode()) in [
            (f.name, f.value) for f in busy.headers]
    weird = c.node_answer(503, "text/plain", b"", "Tue, 01 Jan\r\nX-Evil: 1", NOW)
    assert (b"retry-after", b"1") in [(f.name, f.value) for f in weird.headers]


@pytest.mark.parametrize("retry_after", ["\xb2", "1\xb9", "\u0663", "-5", " 5", "5.0", ""])
def test_a_node_cannot_break_the_gateway_with_its_retry_after(retry_after: str) -> None:
    """A hostile node's Retry-After (read as latin-1: superscript digits pass
    ``str.isdigit`` but not ``int``) gets the default, never an exception."""
    busy = core().node_answer(503, "text/plain", b"", retry_after, NOW)
    assert busy.status == 503
    assert (b"retry-after", b"1") in [(f.name, f.value) for f in busy.headers]


def test_sealed_answers_open_for_the_client() -> None:
    c = core()
    body, ctx = sealed()
    o = opened(c, body)
    answer = bhttp.Response(200, (), json.dumps({"ok": True}).encode())
    assert bhttp.decode_response(ctx.decapsulate_response(c.seal(o, answer))) == answer


def test_the_replay_guard_is_shared_through_redis() -> None:
    redis_or_skip()
    prefix = f"privproc:test-replay:{uuid.uuid4().hex}:"
    first = RedisReplayGuard(REDIS, 60, prefix)
    second = RedisReplayGuard(REDIS, 60, prefix)  # another gateway replica
    date = NOW - 5
    assert first.check(b"enc-1", date, NOW) is Verdict.FRESH
    assert second.check(b"enc-1", date, NOW) is Verdict.REPLAYED
    assert second.check(b"enc-2", date, NOW) is Verdict.FRESH
    assert first.check(b"enc-3", NOW - 600, NOW) is Verdict.BAD_DATE
    first.close()
    second.close()
    # and a restarted replica still remembers
    third = RedisReplayGuard(REDIS, 60, prefix)
    assert third.check(b"enc-1", date, NOW) is Verdict.REPLAYED
    assert formatdate(NOW)  # the Date format the client sends parses back (see replay.py)
