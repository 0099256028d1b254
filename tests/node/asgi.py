"""Driving an ASGI app in-process for the node's tests: requests and the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from privproc.wire import inner


async def call(app: Any, body: bytes = b"", *, method: str = "POST", path: str = "/process",
               query: bytes = b"", content_type: str = inner.MEDIA_TYPE_REQUEST,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request through the app; (status, headers, body). ``headers`` replaces
    the default (a Content-Type of ``content_type``)."""
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": query,
             "headers": ([(k.lower().encode(), v.encode()) for k, v in headers.items()]
                         if headers is not None
                         else [(b"content-type", content_type.encode())]),
             "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1),
             "root_path": ""}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    answered = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], answered, body_out


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[None]:
    """The app's lifespan: startup on entry (workers warm), shutdown on exit."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await to_app.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                    "state": {}}, to_app.get, from_app.put))
    message = await from_app.get()
    if message["type"] != "lifespan.startup.complete":
        await task
        raise RuntimeError(f"startup failed: {message}")
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await from_app.get()
        await task

