"""The processing node: the only place a user's messages exist in plaintext.

``POST /process`` takes an ``application/privproc-request`` sealed to one of the node's
attested keys, runs the task, and answers an ``application/privproc-response`` sealed
to the client. Nothing is written to disk; logs carry only the task, sizes, timings and
status; plaintext buffers are overwritten after use where Python allows (the request
bytes are copied into a bytearray that is zeroed); errors returned or logged never
contain request data. ``GET /evidence`` serves the current evidence bundle (with
``?nonce=HEX``, fresh evidence binding that nonce).

Limits: maximum sealed request size (413), a per-request deadline (a sealed error, never
a partial answer), bounded concurrency (503 with ``Retry-After`` when full).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from privproc.service import BodyTooLarge, problem, read_body
from privproc.wire import inner, ohttp
from privproc.wire.errors import OHTTPError, UnknownKeyError

from .keys import NodeKeys

log = logging.getLogger("privproc.node")


class TaskRunner(Protocol):
    def run(self, task: inner.Task, payload: dict[str, Any]) -> list[str]: ...


class TaskInputError(Exception):
    """The task's input is invalid (the message must not contain the input)."""


@dataclass
class NodeConfig:
    node_id: str
    max_request: int = 256 * 1024
    deadline: float = 120.0
    concurrency: int = 2
    rotate_every: int = 3600
    clock: Callable[[], float] = field(default=time.time)


def _wipe(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))


def create_app(config: NodeConfig, keys: NodeKeys, runner: TaskRunner,
               on_rotate: Callable[[], None] | None = None,
               background: Callable[[], Coroutine[Any, Any, None]] | None = None) -> Starlette:
    pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="task")
    slots = asyncio.Semaphore(config.concurrency)
    stats = {"ok": 0, "refused": 0, "failed": 0}

    async def rotation_loop() -> None:
        while True:
            await asyncio.sleep(max(1.0, config.rotate_every - (
                config.clock() - keys.current.created)))
            if config.clock() - keys.current.created >= config.rotate_every:
                key = await asyncio.to_thread(keys.rotate, int(config.clock()))
                log.info("rotated: key_id=%d", key.key_id)
                if on_rotate is not None:
                    on_rotate()
            keys.destroy_expired(int(config.clock()))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(rotation_loop())]
        if background is not None:
            tasks.append(asyncio.create_task(background()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def sealed(ctx: ohttp.ServerResponseContext, status: inner.Status,
               payload: dict[str, Any]) -> Response:
        plain = bytearray(inner.InnerResponse(status, payload).encode())
        try:
            body = ctx.encapsulate_response(bytes(plain))
        finally:
            _wipe(plain)
        return Response(body, media_type=inner.MEDIA_TYPE_RESPONSE)

    async def process(request: Request) -> Response:
        started = time.perf_counter()
        if request.headers.get("content-type", "").split(";")[0].strip() != (
            inner.MEDIA_TYPE_REQUEST
        ):
            return problem(415, f"content type must be {inner.MEDIA_TYPE_REQUEST}")
        try:
            body = await read_body(request, config.max_request)
        except BodyTooLarge:
            stats["refused"] += 1
            return problem(413, f"sealed request larger than {config.max_request} bytes")
        try:
            plain_bytes, ctx = keys.accepted(int(config.clock())).decapsulate_request(
                body, request_label=inner.REQUEST_LABEL, response_label=inner.RESPONSE_LABEL)
        except UnknownKeyError:
            stats["refused"] += 1
            log.info("refused: unknown or destroyed key, size=%d", len(body))
            return problem(422, "key unknown or destroyed")
        except OHTTPError:
            stats["refused"] += 1
            log.info("refused: does not open, size=%d", len(body))
            return Response(status_code=400)
        plain = bytearray(plain_bytes)
        del plain_bytes
        try:
            try:
                req = inner.InnerRequest.decode(bytes(plain))
            except inner.InnerFormatError:
                stats["refused"] += 1
                return sealed(ctx, inner.Status.BAD_REQUEST, {"error": "malformed request"})
            nonce = req.nonce.hex()
            if slots.locked():
                stats["refused"] += 1
                return Response(b"node busy\n", status_code=503, headers={"retry-after": "1"},
                                media_type="text/plain")
            async with slots:
                loop = asyncio.get_running_loop()
                try:
                    result = await asyncio.wait_for(
                        loop.run_in_executor(pool, runner.run, req.task, req.payload),
                        config.deadline)
                except TimeoutError:
                    stats["failed"] += 1
                    log.info("failed: task=%s deadline", req.task.name)
                    return sealed(ctx, inner.Status.DEADLINE,
                                  {"error": "deadline exceeded", "nonce": nonce})
                except TaskInputError as exc:
                    stats["refused"] += 1
                    return sealed(ctx, inner.Status.BAD_REQUEST,
                                  {"error": str(exc), "nonce": nonce})
                except Exception as exc:  # noqa: BLE001 - a crashed task answers cleanly
                    stats["failed"] += 1
                    log.info("failed: task=%s error=%s", req.task.name, type(exc).__name__)
                    return sealed(ctx, inner.Status.TASK_FAILED,
                                  {"error": "task failed", "nonce": nonce})
            stats["ok"] += 1
            log.info("ok: task=%s in=%d out_items=%d ms=%.0f", req.task.name, len(body),
                     len(result), (time.perf_counter() - started) * 1000)
            return sealed(ctx, inner.Status.OK, {"result": result, "nonce": nonce})
        finally:
            _wipe(plain)

    async def evidence(request: Request) -> Response:
        nonce_hex = request.query_params.get("nonce")
        if nonce_hex is None:
            return Response(keys.current.bundle, media_type="application/privproc-evidence")
        try:
            nonce = bytes.fromhex(nonce_hex)
        except ValueError:
            return problem(400, "nonce must be hex")
        if len(nonce) != 32:
            return problem(400, f"nonce must be 32 bytes, got {len(nonce)}")
        bundle = await asyncio.to_thread(keys.fresh_bundle, nonce)
        return Response(bundle, media_type="application/privproc-evidence")

    async def health(request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    async def metrics(request: Request) -> Response:
        text = "".join(f"privproc_node_requests_{k} {v}\n" for k, v in stats.items())
        return Response(text.encode(), media_type="text/plain")

    return Starlette(routes=[
        Route("/process", process, methods=["POST"]),
        Route("/evidence", evidence, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
    ], lifespan=lifespan)
