"""Servers for tests, each on a port bound to 0 and read back: never a port picked, freed
and bound again (another process may take it in between).

- :func:`serving`: an ASGI app on uvicorn in a thread of this process.
- :func:`aiohttp_serving`: an aiohttp app on the running event loop.
- :func:`endless`: a hostile server whose answers do not end.
- :func:`not_http`: a hostile server that answers every connection with fixed bytes.
- :func:`dripping`: a hostile server that drips its answer a byte at a time.
- :func:`redirect_trap`: a hostile server that redirects everything to another one.
- :func:`start_service`: a ``privproc`` service as a child process of a :class:`Supervisor`,
  listening on ``127.0.0.1:0`` (:data:`ANY_PORT`); its URL is read from the
  ``listening on URL`` line that :func:`privproc.service.serve` prints once bound.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from privproc.up.supervisor import Service, Supervisor

HOST = "127.0.0.1"
ANY_PORT = f"{HOST}:0"


def listening_socket() -> socket.socket:
    """A socket listening on a port of loopback the kernel picked (for an app that must know
    its URL before it serves)."""
    return socket.create_server((HOST, 0))


@contextlib.contextmanager
def serving(app: Any, lifespan: str = "on", sock: socket.socket | None = None
            ) -> Iterator[str]:
    """Run ``app`` on uvicorn in a background thread (on ``sock`` if given); yield its base
    URL."""
    sock = sock or listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            if not thread.is_alive():
                raise RuntimeError("uvicorn exited before starting")
            threading.Event().wait(0.01)
        else:
            raise RuntimeError("uvicorn did not start within 5 s")
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.asynccontextmanager
async def aiohttp_serving(app: Any) -> AsyncIterator[str]:
    """An aiohttp ``web.Application`` on the running event loop; yields its base URL."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0).start()
    try:
        yield f"http://{HOST}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def endless() -> Iterator[str]:
    """A hostile server: every GET or POST is answered with 64 MiB (as good as endless
    for a client that should read a few), status 500 under ``/error/``, 200 elsewhere."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def answer(request: Request) -> StreamingResponse:
        async def chunks() -> Any:
            for _ in range(1024):
                yield b"x" * 65536
                await asyncio.sleep(0)  # (lets the server see the client leave)

        status = 500 if request.url.path.startswith("/error/") else 200
        return StreamingResponse(chunks(), status_code=status)

    with serving(Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])
                 ) as url:
        yield url


@contextlib.contextmanager
def _raw_server(answer: Callable[[socket.socket, threading.Event], None]
                ) -> Iterator[socket.socket]:
    """A listening socket whose connections are each handed to ``answer`` (with the event
    set when the server stops) on a thread, one at a time, and then closed."""
    sock = listening_socket()
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(2)
                conn.recv(65536)
                answer(conn, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock
    finally:
        stop.set()
        thread.join(5)
        sock.close()


@contextlib.contextmanager
def not_http(answer: bytes = b"HELLO\r\n\r\n") -> Iterator[str]:
    """A hostile server: every connection gets ``answer`` (by default not an HTTP status
    line) once its client has sent something, and is closed."""
    with _raw_server(lambda conn, _: conn.sendall(answer)) as sock:
        yield f"http://{HOST}:{sock.getsockname()[1]}"


@contextlib.contextmanager
def dripping(first: bytes, every: float) -> Iterator[int]:
    """A server that answers each connection with ``first``, then one byte every
    ``every`` seconds without end (as a hostile relay could)."""
    def drip(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(first)
        while not stop.wait(every):
            conn.sendall(b"x")

    with _raw_server(drip) as sock:
        yield sock.getsockname()[1]


@contextlib.contextmanager
def redirect_trap() -> Iterator[tuple[str, list[str]]]:
    """A hostile server answering every request with 302 to a second server: yields the
    first's URL and the paths the second was asked for (a client must ask it nothing)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    seen: list[str] = []

    async def redirect(request: Request) -> Response:
        return Response(b"", status_code=302,
                        headers={"location": elsewhere + request.url.path})

    async def other(request: Request) -> Response:
        seen.append(request.url.path)
        return Response(b"{}")

    methods = ["GET", "POST"]
    with serving(Starlette(routes=[Route("/{p:path}", other, methods=methods)])
                 ) as elsewhere, serving(Starlette(routes=[
                     Route("/{p:path}", redirect, methods=methods)])) as trap:
        yield trap, seen


def start_service(sup: Supervisor, name: str, args: list[str], *, timeout: float = 30.0,
                  env: dict[str, str] | None = None, cwd: Path | None = None) -> Service:
    """``privproc ARGS`` (with ``--listen`` on port 0, or on a port it had before) under
    ``sup``, once it is healthy; ``service.url`` is the address it bound."""
    return sup.start(name, args, timeout=timeout, env=env, cwd=cwd)


def start_services(sup: Supervisor, services: dict[str, list[str]], *,
                   timeout: float = 30.0) -> dict[str, Service]:
    """Several services that do not need each other, started side by side."""
    spawned = [sup.spawn(name, args) for name, args in services.items()]
    return {s.name: sup.ready(s, timeout) for s in spawned}


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])
