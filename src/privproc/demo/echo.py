"""A tiny origin for demos and tests: answers with what it saw of the request, as JSON.

It reports the peer address and every header it received, which is how the tests show
that the origin never learns the client's address or its outer headers.
"""

from __future__ import annotations

import asyncio
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def _echo(request: Request) -> Response:
    body = await request.body()
    delay = request.query_params.get("sleep")
    if delay is not None:  # lets tests exercise timeouts downstream
        await asyncio.sleep(min(float(delay), 60.0))
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
