"""The relay's GET proxy: key bundle and log checkpoint/tiles, cached, and nothing else."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from privproc.relay import app as relay_app
from privproc.relay.app import GetCache, RelayConfig, _Cached, _max_age, create_app

from ..servers import serving

TILE = bytes(range(256)) * 32  # a full level-0 tile: 8 KiB
BIG = bytes(range(251)) * 4200  # about 1 MiB: many reads from the upstream connection


ODD_TYPES = {"/log/tile/0/003": "text/plain\u20ac".encode(), "/log/tile/0/004": b"a\xff",
             "/log/tile/0/005": b"a\x01b"}


@dataclass
class Upstream:
    """A fake gateway and log: fixed answers, and a count of every request it saw."""

    hits: Counter[str] = field(default_factory=Counter)
    headers: list[dict[str, str]] = field(default_factory=list)
    keys_max_age: str = "max-age=30"
    checkpoint: bytes = b"log.test.example\n1\nAAAA\n\n- sig\n"
    gateway_status: int = 200

    def app(self) -> Starlette:
        answers: dict[str, tuple[int, bytes, dict[str, str]]] = {
            "/log/checkpoint": (200, self.checkpoint, {"cache-control": "no-store"}),
            "/log/tile/0/000": (200, TILE, {"cache-control": "public, max-age=31536000"}),
            "/log/tile/entries/000": (200, BIG, {"cache-control": "max-age=31536000"}),
            "/log/tile/entries/001": (200, BIG * 3, {}),
            "/log/tile/0/001": (404, b"no such tile", {}),
            "/log/tile/0/002": (500, b"boom", {}),
            "/log/add": (200, b"would be bad", {}),
            "/x": (200, b"would be bad", {}),
            "/ohttp-keys": (200, b"\x00\x01keyconfig", {"cache-control": "max-age=3600"}),
        }

        async def handler(request: Request) -> Response:
            path = request.url.path
            self.hits[f"{request.method} {path}"] += 1
            self.headers.append(dict(request.headers))
            if path == "/privproc/keys":
                return Response(b'{"version":1}', media_type="application/json",
                                headers={"cache-control": self.keys_max_age})
            if path == "/gateway":
                return Response(b"res", status_code=self.gateway_status,
                                media_type="message/ohttp-res")
            if path in ODD_TYPES:  # raw bytes, which Starlette would not encode
                odd = Response(b"tile")
                odd.raw_headers = [(b"content-type", ODD_TYPES[path]), (b"content-length", b"4")]
                return odd
            status, body, headers = answers.get(path, (404, b"unknown", {}))
            return Response(body, status_code=status, headers=headers,
                            media_type="application/octet-stream")

        return Starlette(routes=[Route("/{rest:path}", handler, methods=["GET", "POST"])])


class Clock:
    """Stands in for the relay module's ``time``: a monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.perf_counter = time.perf_counter

    def monotonic(self) -> float:
        return self.now


@dataclass
class Stack:
    upstream: Upstream
    relay: str
    clock: Clock

    def get(self, path: str, headers: dict[str, str] | None = None
            ) -> tuple[int, bytes, Any]:
        request = urllib.request.Request(self.relay + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Upstream, str]]:
    fake = Upstream()
    with serving(fake.app()) as url:
        yield fake, url


@pytest.fixture
def stack(upstream: tuple[Upstream, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A fresh relay (empty cache) in front of the shared fake, whose counts start at 0."""
    fake, url = upstream
    fake.hits.clear()
    fake.headers.clear()
    fake.keys_max_age, fake.gateway_status = Upstream.keys_max_age, Upstream.gateway_status
    clock = Clock()
    monkeypatch.setattr(relay_app, "time", clock)
    config = RelayConfig(gateway=f"{url}/gateway", log=f"{url}/log/", timeout=5,
                         max_get_body=2 << 20)
    with serving(create_app(config)) as relay:
        yield Stack(fake, relay, clock)


def test_checkpoint_is_proxied_and_cached_briefly(stack: Stack) -> None:
    status, body, headers = stack.get("/log/checkpoint")
    assert (status, body) == (200, stack.upstream.checkpoint)
    assert headers["cache-control"] == "max-age=5"
    stack.clock.now += 4.5
    assert stack.get("/log/checkpoint")[1] == stack.upstream.checkpoint
    assert stack.upstream.hits["GET /log/checkpoint"] == 1
    stack.clock.now += 1
    assert stack.get("/log/checkpoint")[0] == 200
    assert stack.upstream.hits["GET /log/checkpoint"] == 2


def test_tiles_are_proxied_and_served_from_cache(stack: Stack) -> None:
    for _ in range(3):
        status, body, headers = stack.get("/log/tile/0/000")
        assert (status, body) == (200, TILE)
        assert int(headers["cache-control"].removeprefix("max-age=")) > 300 * 24 * 3600
        stack.clock.now += 24 * 3600
    assert stack.upstream.hits["GET /log/tile/0/000"] == 1


def test_large_answers_arrive_whole(stack: Stack) -> None:
    status, body, _ = stack.get("/log/tile/entries/000")
    assert status == 200 and len(body) == len(BIG) and body == BIG
    assert stack.get("/log/tile/entries/000")[1] == BIG
    assert stack.upstream.hits["GET /log/tile/entries/000"] == 1
    status, body, _ = stack.get("/log/tile/entries/001")  # over max_get_body
    assert status == 502 and b"exceeds" in body


def test_upstream_errors_are_not_cached(stack: Stack) -> None:
    for _ in range(2):
        assert stack.get("/log/tile/0/001")[0] == 404
        assert stack.get("/log/tile/0/002")[0] == 502
    assert stack.upstream.hits["GET /log/tile/0/001"] == 2
    assert stack.upstream.hits["GET /log/tile/0/002"] == 2


def test_other_log_paths_are_refused_without_reaching_upstream(stack: Stack) -> None:
    for path in ("/log/add", "/log/../x", "/log/%2e%2e/x", "/log/tile/../add",
                 "/log/tile/../../x", "/log/tile/%2e%2e/%2e%2e/x", "/log/lookup/00",
                 "/log/proofs?subject=00", "/log/checkpoint/", "/log//checkpoint",
                 "/log/tile/0/000.p/0", "/log/tile/0/x", "/log/", "/log/tile/entries",
                 "/log/healthz"):
        assert stack.get(path)[0] == 404, path
    assert sum(stack.upstream.hits.values()) == 0


def test_post_to_log_paths_is_not_proxied(stack: Stack) -> None:
    request = urllib.request.Request(stack.relay + "/log/add", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 405
    assert sum(stack.upstream.hits.values()) == 0


def test_key_bundle_is_proxied_and_cached_per_max_age(stack: Stack) -> None:
    status, body, headers = stack.get("/privproc/keys")
    assert (status, body) == (200, b'{"version":1}')
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "max-age=30"  # the upstream's, under the relay's 60
    stack.clock.now += 29
    assert stack.get("/privproc/keys")[2]["cache-control"] == "max-age=1"
    assert stack.upstream.hits["GET /privproc/keys"] == 1
    stack.clock.now += 1
    stack.get("/privproc/keys")
    assert stack.upstream.hits["GET /privproc/keys"] == 2
    # A longer upstream max-age is capped at the relay's keys_cache_seconds (60).
    stack.upstream.keys_max_age = "public, max-age=3600"
    stack.clock.now += 31
    assert stack.get("/privproc/keys")[2]["cache-control"] == "max-age=60"
    stack.clock.now += 59
    stack.get("/privproc/keys")
    assert stack.upstream.hits["GET /privproc/keys"] == 3
    stack.clock.now += 1
    stack.get("/privproc/keys")
    assert stack.upstream.hits["GET /privproc/keys"] == 4
    # max-age=0 (or no-store with max-age=0): never cached.
    stack.upstream.keys_max_age = "no-store, max-age=0"
    stack.clock.now += 61
    stack.get("/privproc/keys")
    stack.get("/privproc/keys")
    assert stack.upstream.hits["GET /privproc/keys"] == 6


def test_proxied_requests_carry_nothing_of_the_client(stack: Stack) -> None:
    stack.get("/privproc/keys", {"User-Agent": "secret-agent", "Cookie": "id=42",
                                 "X-Forwarded-For": "10.1.2.3", "Authorization": "Bearer x"})
    stack.get("/log/checkpoint", {"User-Agent": "secret-agent", "Cookie": "id=42"})
    assert len(stack.upstream.headers) == 2
    for headers in stack.upstream.headers:
        assert set(headers) <= {"host", "content-length"}, headers


def test_gateway_key_rotation_drops_the_cached_key_bundle(stack: Stack) -> None:
    stack.get("/privproc/keys")
    stack.get("/ohttp-keys")
    stack.upstream.gateway_status = 422
    request = urllib.request.Request(stack.relay + "/", data=b"req", method="POST",
                                     headers={"Content-Type": "message/ohttp-req"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 422
    stack.get("/privproc/keys")
    stack.get("/ohttp-keys")
    assert stack.upstream.hits["GET /privproc/keys"] == 2
    assert stack.upstream.hits["GET /ohttp-keys"] == 2


def test_no_log_configured() -> None:
    with serving(create_app(RelayConfig(gateway="http://127.0.0.1:9/gateway"))) as relay:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(relay + "/log/checkpoint", timeout=10)
        assert err.value.code == 404


# --------------------------------------------------------------------------- GetCache


def item(size: int, expires: float = 100.0) -> _Cached:
    return _Cached(b"x" * size, "application/octet-stream", expires)


def test_cache_evicts_least_recently_used_by_bytes() -> None:
    cache = GetCache(100)
    cache.put("a", item(40))
    cache.put("b", item(40))
    assert cache.get("a", 0) is not None  # a is now the most recent
    cache.put("c", item(40))  # 120 > 100: b, the least recently used, goes
    assert cache.get("b", 0) is None
    assert cache.get("a", 0) is not None and cache.get("c", 0) is not None
    cache.put("d", item(100))  # exactly the bound: everything else goes
    assert [k for k in "abcd" if cache.get(k, 0) is not None] == ["d"]
    cache.put("e", item(101))  # larger than the bound: not kept, evicts nothing
    assert cache.get("e", 0) is None and cache.get("d", 0) is not None
    cache.put("d", item(10))  # replacing an entry frees its old bytes
    cache.put("f", item(90))
    assert cache.get("d", 0) is not None and cache.get("f", 0) is not None
    assert cache._bytes == 100


def test_cache_expiry_and_drop() -> None:
    cache = GetCache(1000)
    cache.put("a", item(10, expires=5.0))
    assert cache.get("a", 4.9) is not None
    assert cache.get("a", 5.0) is None  # expired entries are dropped
    assert cache._bytes == 0
    cache.put("b", item(10))
    cache.drop("b")
    cache.drop("b")
    assert cache.get("b", 0) is None and cache._bytes == 0


@pytest.mark.parametrize("path", sorted(ODD_TYPES))
def test_an_answer_with_an_unusable_content_type_is_a_502_and_not_cached(
        stack: Stack, path: str) -> None:
    """Attack: the log (or the gateway) labels an answer with bytes that are no media type:
    the relay used to cache it and then fail every request for it with a 500 (a tile
    is cached for a year)."""
    for _ in range(2):
        assert stack.get(path)[0] == 502  # (aiohttp itself refuses a control character)
    assert stack.upstream.hits[f"GET {path}"] >= 2  # asked again each time: not cached


def test_max_age_parsing() -> None:
    assert _max_age("public, max-age=31536000, immutable") == 31536000
    assert _max_age("MAX-AGE=5") == 5
    assert _max_age("no-store") is None
    assert _max_age("") is None
    assert _max_age("max-age=-1") is None
    assert _max_age('max-age="5"') is None
    assert _max_age("s-maxage=5") is None
    # a hostile gateway's field (read as latin-1): superscripts pass str.isdigit, not float
    for value in ("max-age=\xb2", "max-age=1\xb3", "max-age=\u0663", "max-age=+5"):
        assert _max_age(value) is None
    assert _max_age("max-age=" + "9" * 5000) == 2**31  # RFC 9111 section 1.2.2
