"""The read deadlines of :mod:`privproc.connguard` on a fake loop and transport: time is
injected, nothing sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, cast

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from privproc.connguard import GuardedHttpToolsProtocol, guarded_protocol

HEADERS = 2.0
BODY = 3.0


class Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self._when = when
        self.callback = callback
        self.cancelled = False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self.cancelled = True


class Task:
    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        pass


class FakeLoop:
    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        self.timers.append(handle)
        return handle

    def create_task(self, coro: Coroutine[Any, Any, Any], **_: Any) -> Task:
        coro.close()  # the app is not what is tested here
        return Task()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for handle in sorted(self.timers, key=Handle.when):
            if not handle.cancelled and handle.when() <= self.now:
                self.timers.remove(handle)
                handle.callback()


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


async def app(scope: Any, receive: Any, send: Any) -> None:
    pass


def connection() -> tuple[GuardedHttpToolsProtocol, FakeLoop, FakeTransport]:
    loop = FakeLoop()
    config = Config(app, log_level="warning")
    config.load()
    cls = guarded_protocol(HEADERS, BODY)
    protocol = cls(config, ServerState(), {}, _loop=cast(asyncio.AbstractEventLoop, loop))
    transport = FakeTransport()
    protocol.connection_made(cast(asyncio.Transport, transport))
    return protocol, loop, transport


def test_a_connection_that_never_completes_its_headers_gets_408_and_is_closed() -> None:
    protocol, loop, transport = connection()
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\n")
    loop.advance(HEADERS - 0.1)
    assert not transport.closed
    loop.advance(0.1)
    assert transport.closed and transport.written.startswith(b"HTTP/1.1 408 ")


def test_a_silent_connection_is_closed_too() -> None:
    _, loop, transport = connection()
    loop.advance(HEADERS)
    assert transport.closed


def test_a_body_deadline_is_moved_by_each_read_and_closes_a_stall() -> None:
    protocol, loop, transport = connection()
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12")
    for _ in range(5):  # a slow but live body: 2 s between reads, under the 3 s bound
        loop.advance(2.0)
        assert not transport.closed
        protocol.data_received(b"3")
    loop.advance(BODY)
    assert transport.closed
    assert not transport.written.startswith(b"HTTP/1.1 408")  # a response may be under way


def test_time_while_the_server_paused_reading_does_not_count() -> None:
    protocol, loop, transport = connection()
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12")
    protocol.flow.pause_reading()
    loop.advance(BODY * 3)
    assert not transport.closed
    protocol.flow.resume_reading()
    loop.advance(BODY * 2)
    assert transport.closed


def test_a_complete_request_disarms_and_the_next_one_has_its_own_deadline() -> None:
    protocol, loop, transport = connection()
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    loop.advance(HEADERS * 5)
    assert not transport.closed  # the app's time is not the client's
    protocol.data_received(b"GET / HTTP/1.1\r\n")
    loop.advance(HEADERS)
    assert transport.closed


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="> 0"):
        guarded_protocol(0, 1)


def test_a_head_over_the_bound_is_refused_once_and_nothing_more_is_parsed() -> None:
    protocol, _, transport = connection()
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    for _ in range(4):
        protocol.data_received(b"X-A: " + b"a" * 4000 + b"\r\n")
    assert not transport.closed  # 16,058 bytes so far
    protocol.data_received(b"X-B: " + b"b" * 400 + b"\r\n")
    assert transport.closed and transport.written.startswith(b"HTTP/1.1 431 ")
    written = transport.written
    protocol.data_received(b"\r\n")  # the end of the head, too late: no request starts
    assert transport.written == written and protocol.cycle is None


def test_a_target_over_the_bound_gets_414() -> None:
    protocol, _, transport = connection()
    protocol.data_received(b"GET /?")
    for _ in range(5):
        protocol.data_received(b"a" * 4096)
    assert transport.closed and transport.written.startswith(b"HTTP/1.1 414 ")


def test_a_body_in_the_same_reads_as_its_head_does_not_count_as_head() -> None:
    protocol, _, transport = connection()
    body = b"x" * 100_000
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"
                           + body)
    protocol.data_received(body)
    assert not transport.closed and transport.written == b""


def test_pipelined_requests_with_bodies_are_not_counted_as_head() -> None:
    """A read holding a request with a 20 KB body and the start of the next pipelined one:
    only reads that stay inside one head count (it was refused before, unanswered)."""
    protocol, _, transport = connection()
    first = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + b"x" * 20000
    second = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    protocol.data_received(first + second[:20])
    protocol.data_received(second[20:])
    many = b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n" * 2000  # 60 KB of tiny pipelined requests
    protocol.data_received(many[:30_001])
    protocol.data_received(many[30_001:])
    assert not transport.closed and transport.written == b""
