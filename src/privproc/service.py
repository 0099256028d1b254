"""What every service shell shares: listening, bounded body reads, problem answers, logs.

Services log content-free fields only (status, sizes, timings); never bodies, keys,
tokens or client addresses.
"""

from __future__ import annotations

import logging
import socket
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp
from starlette.requests import Request
from starlette.responses import Response

from privproc.errors import PrivprocError
from privproc.fastpath import PROBLEM_JSON, problem_doc


class BodyTooLarge(PrivprocError):
    """The request body exceeds the service's cap."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, value: str) -> Listen:
        """``HOST:PORT`` (IPv6 as ``[::1]:PORT``)."""
        host, sep, port = value.rpartition(":")
        if not sep or not (port.isascii() and port.isdigit()) or not host:
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError(f"port must be 0..65535, got {number}")
        return cls(host.strip("[]"), number)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (before reading it all) anything over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if (declared is not None and declared.isascii() and declared.isdigit()
            and int(declared) > limit):
        raise BodyTooLarge(f"body of {declared} bytes exceeds the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"body exceeds the limit of {limit} bytes")
    return bytes(body)


async def read_up_to(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """An upstream answer's body, or its first ``limit`` bytes if it is longer (callers ask
    for one byte more than they accept, to tell a full answer from a cut one).

    ``StreamReader.read(n)`` returns what is buffered, possibly far less than ``n`` bytes,
    so one call would cut a large answer short.
    """
    body = bytearray()
    while len(body) < limit:
        chunk = await stream.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def problem(status: int, title: str, type_: str = "about:blank", **extra: Any) -> Response:
    """An RFC 9457 problem details answer."""
    return Response(problem_doc(status, title, type_, **extra), status_code=status,
                    media_type=PROBLEM_JSON)


def anonymous_session(timeout: float) -> aiohttp.ClientSession:
    """An outbound HTTP session that adds nothing identifying and changes no body.

    No cookies, no default User-Agent/Accept/Accept-Encoding (only the headers a caller
    passes go out), no transparent decompression, pooled connections kept alive for
    reuse (:data:`UPSTREAM_KEEPALIVE`: an idle one is dropped before the next privproc
    service would close it, so a request is never sent on a connection being closed).
    """
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        auto_decompress=False,
        connector=aiohttp.TCPConnector(limit=256, force_close=False,
                                       keepalive_timeout=UPSTREAM_KEEPALIVE),
    )


UPSTREAM_KEEPALIVE = 4.0
"""Seconds an outbound connection is kept idle for reuse: under the 5 s a privproc
service (uvicorn) keeps an idle client connection open."""


def setup_logging(name: str, level: str = "INFO") -> logging.Logger:
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
    )
    return logging.getLogger(f"privproc.{name}")


LISTENING = "listening on"
"""What :func:`serve` prints, with the URL it bound, before it serves: a service started
with port 0 (``--listen 127.0.0.1:0``) tells whoever started it where it listens."""


def bind(listen: Listen) -> socket.socket:
    """A listening TCP socket at ``listen``; port 0 binds one the kernel picks."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    try:
        return socket.create_server((listen.host, listen.port), family=family, backlog=2048)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {listen.host}:{listen.port}: "
                                 f"{exc.strerror or exc}") from None


def bound_url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket, with the port it actually got."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(frozen=True)
class Limits:
    """What one service's connections may hold (slowloris, connection floods).

    ``header_timeout``: seconds for a request's headers to be complete (from the
    connection's start, or the request's first byte on a kept-alive connection);
    ``body_timeout``: seconds a body may go without data; ``max_connections``: open
    connections (and requests in progress) beyond which requests are answered 503;
    ``keep_alive``: seconds an idle kept-alive connection stays open; ``max_head_bytes``:
    a request's line and header fields, beyond which it is answered 414 or 431.
    """

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 1000
    keep_alive: int = 5
    max_head_bytes: int = 16384


class _ClientGone:
    """The app, quiet about a client that went away (or was cut off by a read deadline)
    while its body was being read: nobody is left to answer, nothing is worth a traceback."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.requests import ClientDisconnect

        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            logging.getLogger("privproc.connections").info(
                "client disconnected before its request was read")


def serve(app: Any, listen: Listen | socket.socket, log_level: str = "info",
          limits: Limits | None = None) -> None:
    """Run an ASGI app on uvicorn with the fast loop and parser, no access log.

    ``listen`` is an address (port 0: any free port) or a socket from :func:`bind` (a
    service that must know its own URL before it serves binds first). Prints
    ``listening on URL`` once bound. Exits with status 3 if the app fails to start.
    The access log is off because it records client addresses and paths. ``limits``
    bounds what connections may hold (:class:`Limits`; read deadlines from
    :mod:`privproc.connguard`).
    """
    import uvicorn

    from privproc.connguard import guarded_protocol

    limits = limits or Limits()
    sock = listen if isinstance(listen, socket.socket) else bind(listen)
    print(f"{LISTENING} {bound_url(sock)}", flush=True)
    config = uvicorn.Config(
        _ClientGone(app),
        loop="uvloop",
        http=guarded_protocol(limits.header_timeout, limits.body_timeout,
                              limits.max_head_bytes),
        access_log=False,
        # No X-Forwarded-For/-Proto rewriting: no service takes a client's address from a
        # header (a relay adds none), and the middleware costs every request.
        proxy_headers=False,
        log_level=log_level,
        server_header=False,
        date_header=True,
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.keep_alive,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    if not server.started:
        sys.exit(3)  # as uvicorn.run: the app did not start
