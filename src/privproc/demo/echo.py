"""A tiny origin for demos and tests: answers with what it saw of the request, as JSON.

It reports the peer address and every header it received, which is how the tests show
that the origin never learns the client's address or its outer headers. ``?sleep=SECONDS``
delays the answer and ``?size=BYTES`` answers that many bytes instead (streamed; at most
1 GiB): both let tests and benchmarks play a slow or an over-generous upstream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

_CHUNK = b"x" * (1 << 16)
_MAX_SIZE = 1 << 30


async def _bytes(size: int) -> AsyncIterator[bytes]:
    while size > 0:
        yield _CHUNK[:size]
        size -= len(_CHUNK)


async def _echo(request: Request) -> Response:
    body = await request.body()
    delay = request.query_params.get("sleep")
    if delay is not None:  # lets tests exercise timeouts downstream
        await asyncio.sleep(min(float(delay), 60.0))
    size = request.query_params.get("size", "")
    if size.isascii() and size.isdigit():
        return StreamingResponse(_bytes(min(int(size), _MAX_SIZE)),
                                 media_type="application/octet-stream")
    seen = {
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
        "client": request.client.host if request.client else None,
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
        "body": body.decode("utf-8", errors="replace"),
    }
    return Response(json.dumps(seen), media_type="application/json")


async def _health(request: Request) -> Response:
    return Response(b"ok\n", media_type="text/plain")


def create_app() -> Starlette:
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(
        routes=[
            Route("/healthz", _health, methods=["GET"]),
            Route("/{path:path}", _echo, methods=methods),
        ]
    )
