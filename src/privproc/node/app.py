"""The processing node: the only place a user's messages exist in plaintext.

``POST /process`` takes an ``application/privproc-request`` sealed to one of the node's
attested keys, runs the task, and answers an ``application/privproc-response`` sealed
to the client. Nothing is written to disk; logs carry only the task, sizes, timings and
status; plaintext buffers are overwritten after use where Python allows; errors returned
or logged never contain request data. ``GET /evidence`` serves the current evidence
bundle (with ``?nonce=HEX``, fresh evidence binding that nonce).

Limits: maximum sealed request size (413), a per-request deadline (a sealed error, never
a partial answer; the model is stopped, queueing counts in it), bounded concurrency with
a bounded queue (tasks beyond ``concurrency`` wait, up to ``queue`` of them; beyond that,
or when no worker is free, 503 with ``Retry-After``). A failed key rotation takes the
node out of service (503 everywhere, ``/healthz`` included) and destroys its keys.

This module is the Starlette shell: routes, body reading, the key rotation loop and the
executor's lifetime. Every decision is :class:`~privproc.node.core.NodeCore`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from privproc.service import BodyTooLarge, read_body

from .core import (
    Answer,
    NodeConfig,
    NodeCore,
    Opened,
    TaskExecutor,
    TaskInputError,
    TaskRunner,
)
from .keys import NodeKeys

__all__ = ["NodeConfig", "NodeCore", "TaskExecutor", "TaskInputError", "TaskRunner",
           "create_app"]

log = logging.getLogger("privproc.node")


def _response(answer: Answer) -> Response:
    return Response(answer.body, status_code=answer.status, media_type=answer.media_type,
                    headers=dict(answer.headers))


async def rotation_loop(core: NodeCore, on_rotate: Callable[[], None] | None = None,
                        on_fail: Callable[[], None] | None = None) -> None:
    """Rotate the key when due and destroy expired ones, until the node fails closed."""
    while core.failed is None:
        # Wake at the rotation time and at least every second, so a previous key is
        # destroyed on time and a clock that jumps is noticed.
        await asyncio.sleep(min(1.0, max(0.05, core.seconds_to_rotation())))
        try:
            if core.rotation_due():
                key = await asyncio.to_thread(core.rotate)
                if key is not None and on_rotate is not None:
                    on_rotate()
            core.expire()
        except Exception as exc:  # noqa: BLE001 - a loop that dies would keep a stale key
            core.fail_closed(f"key rotation loop failed ({type(exc).__name__})")
    if on_fail is not None:
        on_fail()


def create_app(config: NodeConfig, keys: NodeKeys, runner: TaskRunner | None = None,
               on_rotate: Callable[[], None] | None = None,
               background: Callable[[], Coroutine[Any, Any, None]] | None = None, *,
               executor: TaskExecutor | None = None) -> Starlette:
    """The node's ASGI app. Tasks run on ``executor`` (the node's command line passes a
    :class:`~privproc.node.worker.WorkerPool`, started before the app serves); a plain
    ``runner`` runs in-process on threads instead (tests, benchmarks: it cannot be
    stopped at the deadline). ``background`` (e.g. registration) runs while the node
    serves and is cancelled if it fails closed."""
    if executor is None:
        if runner is None:
            raise TypeError("create_app needs a runner or an executor")
        from .worker import ThreadExecutor

        executor = ThreadExecutor(runner, config.concurrency)
    core = NodeCore(config, keys, executor)
    tasks: list[asyncio.Task[None]] = []

    def stop_background() -> None:
        for task in tasks[1:]:
            task.cancel()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await executor.start()  # warm: the model is loaded before the first request
        tasks.append(asyncio.create_task(rotation_loop(core, on_rotate, stop_background)))
        if background is not None:
            tasks.append(asyncio.create_task(background()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            tasks.clear()
            await executor.close()

    async def process(request: Request) -> Response:
        refused = core.check_media_type(request.headers.get("content-type", ""))
        if refused is not None:
            return _response(refused)
        try:
            body = await read_body(request, config.max_request)
        except BodyTooLarge:
            return _response(core.too_large())
        opened: Opened | Answer = core.open(body)
        if isinstance(opened, Answer):
            return _response(opened)
        return _response(await core.run(opened))

    async def evidence(request: Request) -> Response:
        nonce_hex = request.query_params.get("nonce")
        if nonce_hex is None:
            return _response(core.evidence(None))
        return _response(await asyncio.to_thread(core.evidence, nonce_hex))

    async def health(request: Request) -> Response:
        return _response(core.health())

    async def metrics(request: Request) -> Response:
        return _response(core.metrics())

    app = Starlette(routes=[
        Route("/process", process, methods=["POST"]),
        Route("/evidence", evidence, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
    ], lifespan=lifespan)
    app.state.core = core
    return app
