"""What every service shell shares: listening, bounded body reads, problem answers, logs.

Services log content-free fields only (status, sizes, timings); never bodies, keys,
tokens or client addresses.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp
from starlette.requests import Request
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"


class BodyTooLarge(Exception):
    """The request body exceeds the service's cap."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, value: str) -> Listen:
        """``HOST:PORT`` (IPv6 as ``[::1]:PORT``)."""
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError(f"port must be 0..65535, got {number}")
        return cls(host.strip("[]"), number)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (before reading it all) anything over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
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
    doc = {"type": type_, "title": title, "status": status, **extra}
    return Response(json.dumps(doc), status_code=status, media_type=PROBLEM_JSON)


def anonymous_session(timeout: float) -> aiohttp.ClientSession:
    """An outbound HTTP session that adds nothing identifying and changes no body.

    No cookies, no default User-Agent/Accept/Accept-Encoding (only the headers a caller
    passes go out), no transparent decompression, pooled connections.
    """
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        auto_decompress=False,
        connector=aiohttp.TCPConnector(limit=256),
    )


def setup_logging(name: str, level: str = "INFO") -> logging.Logger:
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
    )
    return logging.getLogger(f"privproc.{name}")


def serve(app: Any, listen: Listen, log_level: str = "info") -> None:
    """Run an ASGI app on uvicorn with the fast loop and parser, no access log.

    The access log is off because it records client addresses and paths.
    """
    import uvicorn

    uvicorn.run(
        app,
        host=listen.host,
        port=listen.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=log_level,
        server_header=False,
        date_header=True,
    )
