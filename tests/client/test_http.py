"""The client's kept-alive connections to the relay: reused, dropped before the server
would drop them, sent again only when a kept-alive connection was closed under it."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from privproc.client.http import AnswerTooLarge, ConnectionPool

from ..servers import dripping


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.bodies.append(body)
        answer = self.server.answer or body[::-1]
        self.send_response(200)
        self.send_header("content-type", "application/test")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        if self.server.drop_after_answer:
            self.close_connection = True  # closed without saying so: as an idle timeout

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.bodies: list[bytes] = []
        self.connections = 0
        self.answer = b""
        self.drop_after_answer = False

    def get_request(self) -> tuple[socket.socket, object]:
        self.connections += 1
        return super().get_request()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


@contextmanager
def serving() -> Iterator[Server]:
    server = Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_share_one_kept_alive_connection() -> None:
    with serving() as server:
        pool = ConnectionPool(server.url)
        for i in range(5):
            status, fields, body = pool.request("POST", server.url, b"abc%d" % i, timeout=5)
            assert (status, fields["content-type"], body) == (200, "application/test",
                                                              b"%dcba" % i)
        assert pool.opened == 1 and server.connections == 1
        pool.close()


def test_an_idle_connection_is_dropped_before_the_server_would() -> None:
    clock = Clock()
    with serving() as server:
        pool = ConnectionPool(server.url, max_idle=4.0, monotonic=clock)
        pool.request("POST", server.url, b"x", timeout=5)
        clock.now += 3.9
        pool.request("POST", server.url, b"y", timeout=5)
        assert pool.opened == 1
        clock.now += 4.0
        pool.request("POST", server.url, b"z", timeout=5)
        assert pool.opened == 2 and server.connections == 2


def test_a_request_on_a_connection_closed_under_it_goes_once_on_a_new_one() -> None:
    with serving() as server:
        server.drop_after_answer = True
        pool = ConnectionPool(server.url)
        pool.request("POST", server.url, b"first", timeout=5)
        status, _, body = pool.request("POST", server.url, b"second", timeout=5)
        assert (status, body) == (200, b"dnoces")
        assert server.bodies == [b"first", b"second"]  # the server read each once
        assert pool.opened == 2


def test_a_new_connection_that_fails_is_an_error_not_a_retry() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"  # bound, not listening
        pool = ConnectionPool(url)
        with pytest.raises(ConnectionRefusedError):
            pool.request("POST", url, b"x", timeout=5)
        assert pool.opened == 1


def test_an_answer_over_the_bound_is_refused() -> None:
    with serving() as server:
        server.answer = b"a" * 101
        pool = ConnectionPool(server.url, max_answer=100)
        with pytest.raises(AnswerTooLarge, match="over 100 bytes"):
            pool.request("POST", server.url, b"x", timeout=5)
        server.answer = b"a" * 100
        assert pool.request("POST", server.url, b"x", timeout=5)[2] == b"a" * 100


@pytest.mark.parametrize("url", ["ftp://relay.test/", "relay.test", "http:///x"])
def test_only_http_urls(url: str) -> None:
    with pytest.raises(ValueError, match="expected an http or https URL"):
        ConnectionPool(url)


def test_the_async_client_reads_a_relay_answer_up_to_its_bound() -> None:
    """Attack: a relay that answers a sealed request, or the key list, without end."""
    import asyncio

    from privproc.client.http import AnswerTooLarge
    from privproc.client.ohttp import AsyncOHTTPClient

    from ..servers import endless

    async def ask(url: str) -> None:
        async with AsyncOHTTPClient(url + "/", authority="a.example") as client:
            with pytest.raises(AnswerTooLarge, match="answer over 8388608 bytes"):
                await client.post_sealed(b"sealed")
            with pytest.raises(AnswerTooLarge):
                await client.key_config()

    with endless() as url:
        asyncio.run(ask(url))


@pytest.mark.parametrize("first", [
    b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n",  # a body that drips
    b"HTTP/1.1 200 OK\r\nx-a: ",  # a header that drips
])
def test_the_timeout_bounds_the_whole_answer_not_each_read(first: bytes) -> None:
    """Attack: a relay drips its answer a byte every 0.1 s, each read well within the
    socket timeout: the exchange still ends at its timeout, as TimeoutError."""
    with dripping(first, 0.1) as port:
        pool = ConnectionPool(f"http://127.0.0.1:{port}/")
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="no complete answer"):
            pool.request("GET", f"http://127.0.0.1:{port}/", timeout=0.6)
        assert time.monotonic() - started < 3
