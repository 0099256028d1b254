"""Read deadlines at real relay and gateway processes (slowloris): connections holding
partial headers or a stalled body are closed within the timeout, normal requests still
succeed meanwhile, and the options reach every service."""

from __future__ import annotations

import contextlib
import select
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from privproc.cli import build_parser
from privproc.service import Limits
from privproc.up.supervisor import Supervisor

from .servers import ANY_PORT, HOST, port_of, start_service

HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
HELD = 50
LIMITS = ["--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("connguard")
    with Supervisor(state / "logs") as sup:
        origin = start_service(sup, "origin", ["echo", "serve", "--listen", ANY_PORT])
        gateway = start_service(sup, "gateway", [
            "gateway", "serve", "--listen", ANY_PORT, "--upstream", origin.url, "--state",
            str(state / "gateway"), *LIMITS])
        relay = start_service(sup, "relay", [
            "relay", "serve", "--listen", ANY_PORT, "--gateway", gateway.url + "/gateway",
            *LIMITS])
        yield {"relay": relay.url, "gateway": gateway.url}


def _closed_within(sockets: list[socket.socket], seconds: float) -> tuple[int, list[bytes]]:
    """How many of ``sockets`` the server closed within ``seconds``, and what they got."""
    deadline = time.monotonic() + seconds
    open_ = {s.fileno(): s for s in sockets}
    got: dict[int, bytes] = {fd: b"" for fd in open_}
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(list(open_.values()), [], [],
                                       max(0.0, deadline - time.monotonic()))
        for s in readable:
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            got[s.fileno()] += data
            if not data:
                del open_[s.fileno()]
    return len(sockets) - len(open_), list(got.values())


@pytest.mark.slow
@pytest.mark.parametrize("party", ["relay", "gateway"])
def test_partial_headers_and_stalled_bodies_are_closed_while_others_are_served(
        services: dict[str, str], party: str) -> None:
    url = services[party]
    port = port_of(url)
    held = [socket.create_connection((HOST, port), timeout=5) for _ in range(HELD)]
    stalled = [socket.create_connection((HOST, port), timeout=5) for _ in range(10)]
    silent = [socket.create_connection((HOST, port), timeout=5) for _ in range(5)]
    try:
        for s in held:
            s.sendall(b"POST /gateway HTTP/1.1\r\nHost: x\r\nContent-Type: message/oh")
        for s in stalled:
            s.sendall(b"POST /gateway HTTP/1.1\r\nHost: x\r\nContent-Type: message/ohttp-req"
                      b"\r\nContent-Length: 1000\r\n\r\n0123456789")
        started = time.monotonic()
        # A normal request is answered while the partial ones are held.
        with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
            assert resp.status == 200
        assert time.monotonic() - started < HEADER_TIMEOUT
        closed, answers = _closed_within(held + silent, HEADER_TIMEOUT + 3)
        assert closed == HELD + 5
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
        closed, _ = _closed_within(stalled, BODY_TIMEOUT + 3)
        assert closed == len(stalled)
        assert time.monotonic() - started < max(HEADER_TIMEOUT, BODY_TIMEOUT) + 3
        with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
            assert resp.status == 200
    finally:
        for s in held + stalled + silent:
            s.close()


@pytest.mark.slow
def test_a_body_that_keeps_coming_is_not_cut_off(services: dict[str, str]) -> None:
    """The body deadline bounds the time between reads, not the whole body."""
    with socket.create_connection((HOST, port_of(services["gateway"])), timeout=5) as s:
        s.sendall(b"POST /nodes/register HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
        for byte in b"abcd":
            time.sleep(BODY_TIMEOUT / 2)  # a slow but live client (real socket timing)
            s.sendall(bytes([byte]))
        answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 ") and not answer.startswith(b"HTTP/1.1 408")


@pytest.mark.slow
@pytest.mark.parametrize("party", ["relay", "gateway"])
@pytest.mark.parametrize(("head", "status"), [
    (b"GET /?", b"414"),  # a request target that does not end
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: ", b"431"),  # a header that does not end
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"431"),  # header lines that do not end
])
def test_a_request_head_over_the_bound_is_refused_before_it_is_all_read(
        services: dict[str, str], party: str, head: bytes, status: bytes) -> None:
    """Attack: a client streams a request line or headers without end (the parser would
    keep it all, and the server re-joins the target on every read): the service answers
    414 or 431 once the head passes its bound (--max-head-bytes, 16 KiB) and closes, and
    serves others meanwhile."""
    filler = b"a" * 4096 if head.endswith((b"?", b": ")) else b"X-A: a\r\n" * 512
    with socket.create_connection((HOST, port_of(services[party])), timeout=5) as s:
        s.sendall(head)
        got = b""
        for _ in range(1024):  # up to 4 MiB
            try:
                s.sendall(filler)
            except (BrokenPipeError, ConnectionResetError):
                break
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                break
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(4096):
                got += chunk
    assert got.startswith(b"HTTP/1.1 " + status + b" "), got[:80]
    assert b"connection: close" in got.lower()
    with urllib.request.urlopen(services[party] + "/healthz", timeout=5) as resp:
        assert resp.status == 200


def test_a_large_but_bounded_head_is_served(services: dict[str, str]) -> None:
    request = urllib.request.Request(services["relay"] + "/healthz?" + "a" * 6000,
                                     headers={f"X-{i}": "b" * 900 for i in range(8)})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200


def test_every_service_takes_the_connection_options(tmp_path: Path) -> None:
    parser = build_parser()
    for argv in (["relay", "serve", "--gateway", "http://g/"],
                 ["gateway", "serve", "--upstream", "http://o/", "--state", str(tmp_path)],
                 ["echo", "serve"]):
        args = parser.parse_args([*argv, "--listen", ANY_PORT, "--header-timeout", "2.5",
                                  "--body-timeout", "4", "--max-connections", "7",
                                  "--max-head-bytes", "9000"])
        assert (args.header_timeout, args.body_timeout, args.max_connections,
                args.max_head_bytes) == (2.5, 4, 7, 9000)
        defaults = parser.parse_args([*argv, "--listen", ANY_PORT])
        assert defaults.header_timeout == Limits().header_timeout
        assert defaults.max_connections == Limits().max_connections
        assert defaults.max_head_bytes == Limits().max_head_bytes == 16384
