"""What every service shell shares: binding (port 0 included) and saying where it listens."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from privproc.service import LISTENING, Listen, bind, bound_url

from .servers import ANY_PORT, HOST, port_of


def test_port_0_binds_a_port_the_kernel_picked_and_the_url_names_it() -> None:
    with bind(Listen.parse(ANY_PORT)) as sock:
        port = sock.getsockname()[1]
        assert port != 0
        assert bound_url(sock) == f"http://{HOST}:{port}"
        with socket.create_connection((HOST, port), timeout=5):
            pass  # listening: the connection is queued until the server accepts


def test_a_port_in_use_is_a_clear_error() -> None:
    with bind(Listen.parse(ANY_PORT)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"cannot listen on {HOST}:{port}: "):
            bind(Listen(HOST, port))


def test_an_ipv6_url_has_its_brackets() -> None:
    try:
        sock = bind(Listen.parse("[::1]:0"))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with sock:
        assert bound_url(sock) == f"http://[::1]:{sock.getsockname()[1]}"


@pytest.mark.slow
def test_a_service_started_on_port_0_prints_the_url_it_serves_at() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "privproc.cli", "echo", "serve", "--listen",
                             ANY_PORT], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith(f"{LISTENING} http://{HOST}:"), line
        port = port_of(line.split()[-1])
        assert port != 0
        with socket.create_connection((HOST, port), timeout=5):
            pass
    finally:
        proc.terminate()
        proc.wait(10)


def test_listen_refuses_a_port_that_only_looks_like_digits() -> None:
    for bad in ("h:\xb2", "h:", ":80", "h:8 0", "h:+80"):
        with pytest.raises(ValueError, match="expected HOST:PORT"):
            Listen.parse(bad)
