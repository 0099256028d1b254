"""The node's ASGI app in-process: crashes, deadlines, busy, key handling."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from privproc.client.node import TaskFailedError, open_task, seal_task
from privproc.node.app import NodeConfig, TaskInputError, create_app
from privproc.node.keys import NodeKeys
from privproc.wire import inner

from .asgi import call

MARKER = "MARKER-app-91c3"


class Runner:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.release = threading.Event()
        self.started = threading.Event()  # a task is running (and, if slow, waiting)

    def run(self, task: inner.Task, payload: dict[str, Any]) -> list[str]:
        if self.behaviour == "crash":
            raise RuntimeError(f"boom {payload}")  # the node must not pass this on
        if self.behaviour == "input":
            raise TaskInputError("draft too long")
        self.started.set()
        if self.behaviour == "slow":
            self.release.wait(5)
        return ["ok"]


def sealed_request(keys: NodeKeys) -> tuple[bytes, bytes, Any]:
    return seal_task(keys.current.key.config, inner.Task.WRITE,
                     {"draft": MARKER, "tone": "funny"})


def test_crashed_task_answers_a_clean_sealed_error(keys: NodeKeys,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(NodeConfig("n"), keys, Runner("crash"))
    sealed, nonce, ctx = sealed_request(keys)
    status, _, body = asyncio.run(call(app, sealed))
    assert status == 200
    with pytest.raises(TaskFailedError) as err:
        open_task(ctx, nonce, body)
    assert err.value.status is inner.Status.TASK_FAILED
    assert MARKER not in str(err.value)
    assert MARKER not in caplog.text


def test_invalid_input_is_a_sealed_bad_request(keys: NodeKeys) -> None:
    app = create_app(NodeConfig("n"), keys, Runner("input"))
    sealed, nonce, ctx = sealed_request(keys)
    _, _, body = asyncio.run(call(app, sealed))
    with pytest.raises(TaskFailedError, match="draft too long"):
        open_task(ctx, nonce, body)


def test_deadline_gives_an_error_never_a_partial_answer(keys: NodeKeys) -> None:
    runner = Runner("slow")
    app = create_app(NodeConfig("n", deadline=0.05), keys, runner)
    sealed, nonce, ctx = sealed_request(keys)
    _, _, body = asyncio.run(call(app, sealed))
    runner.release.set()
    with pytest.raises(TaskFailedError) as err:
        open_task(ctx, nonce, body)
    assert err.value.status is inner.Status.DEADLINE


def test_full_node_answers_503_with_retry_after(keys: NodeKeys) -> None:
    runner = Runner("slow")
    app = create_app(NodeConfig("n", concurrency=1, queue=0), keys, runner)

    async def both() -> list[tuple[int, dict[str, str], bytes]]:
        first = asyncio.create_task(call(app, sealed_request(keys)[0]))
        assert await asyncio.to_thread(runner.started.wait, 5)  # it holds the one worker
        second = await call(app, sealed_request(keys)[0])
        runner.release.set()
        return [await first, second]

    (s1, _, _), (s2, h2, _) = asyncio.run(both())
    assert s1 == 200
    assert s2 == 503 and h2["retry-after"] == "1"


def test_fresh_evidence_binds_a_client_nonce(keys: NodeKeys) -> None:
    from privproc.attest.evidence import decode_bundle

    bundle = decode_bundle(keys.fresh_bundle(b"\x07" * 32))
    assert bundle.nonce == b"\x07" * 32
    assert bundle.key_config == keys.current.key.config.encode()


def test_rotation_while_a_request_is_in_flight(keys: NodeKeys) -> None:
    runner = Runner("slow")
    app = create_app(NodeConfig("n"), keys, runner)
    sealed, nonce, ctx = sealed_request(keys)
    old_id = keys.current.key_id
    old_config = keys.current.key.config

    async def flight() -> tuple[int, dict[str, str], bytes]:
        pending = asyncio.create_task(call(app, sealed))
        assert await asyncio.to_thread(runner.started.wait, 5)  # opened, now running
        await asyncio.to_thread(keys.rotate, int(time.time()))
        runner.release.set()
        return await pending

    status, _, body = asyncio.run(flight())
    assert keys.current.key_id != old_id
    assert status == 200 and open_task(ctx, nonce, body) == ["ok"]
    # A request sealed to the previous key still opens during its grace period.
    sealed2 = seal_task(
        old_config, inner.Task.WRITE,
        {"draft": "x", "tone": "funny"})
    assert asyncio.run(call(app, sealed2[0]))[0] == 200
