"""Tasks in worker processes: a deadline stops the model, crashes are contained, the
first request finds a warm worker, workers see no inherited secret."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from privproc.client.node import TaskFailedError, open_task, seal_task
from privproc.node.app import NodeConfig, create_app
from privproc.node.cli import reduce_environment
from privproc.node.keys import NodeKeys
from privproc.node.worker import (
    WorkerPool,
    WorkerSpec,
    WorkerStartError,
    runtime_environment,
)
from privproc.wire import inner

from .asgi import call, running

MARKER = "MARKER-worker-0e4f"
LOAD = 0.5  # seconds the test runner takes to "load its model"
TICK = os.sysconf("SC_CLK_TCK")


def burn_pool(size: int = 1, load: float = LOAD) -> WorkerPool:
    return WorkerPool(WorkerSpec("tests.node.burn:burn_runner", {"load_seconds": load}), size)


def sealed_write(keys: NodeKeys, draft: str) -> tuple[bytes, bytes, Any]:
    return seal_task(keys.current.key.config, inner.Task.WRITE, {"draft": draft, "tone": "x"})


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not reaped, counts as alive)."""
    return Path(f"/proc/{pid}").exists()


def tree_cpu_seconds(root: int) -> float:
    """CPU time (user + system) of ``root`` and every live descendant, from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / TICK
    total, frontier = 0.0, [root]
    while frontier:
        pid = frontier.pop()
        total += times.get(pid, 0.0)
        frontier += [p for p, parent in parents.items() if parent == pid]
    return total


async def wait_ready(pool: WorkerPool, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while pool.gauges()["workers_ready"] < count:
        assert time.monotonic() < deadline, f"workers not ready: {pool.gauges()}"
        await asyncio.sleep(0.02)


def test_a_deadline_kills_the_model_and_frees_the_slot_only_once_it_stopped(
        keys: NodeKeys) -> None:
    pool = burn_pool()
    app = create_app(NodeConfig("n", deadline=0.5, concurrency=1), keys, executor=pool)

    async def scenario() -> None:
        async with running(app):
            [burner] = pool.pids
            sealed, nonce, ctx = sealed_write(keys, "burn")
            started = time.monotonic()
            status, _, body = await call(app, sealed)
            answered = time.monotonic() - started
            # The answer comes only once the worker running the model is gone.
            assert not alive(burner)
            after_answer = tree_cpu_seconds(os.getpid())
            assert status == 200 and 0.5 <= answered < 2.0
            with pytest.raises(TaskFailedError) as err:
                open_task(ctx, nonce, body)
            assert err.value.status is inner.Status.DEADLINE
            # No worker is free until the replacement has loaded: 503, Retry-After.
            status, headers, _ = await call(app, sealed_write(keys, "hi")[0])
            assert status == 503 and headers["retry-after"] == "1"
            # In the second after the answer the node's process tree used little CPU:
            # starting the replacement only (a model still running would use a whole
            # second of it).
            await asyncio.sleep(1.0)
            used = tree_cpu_seconds(os.getpid()) - after_answer
            assert used < 0.5, f"node process tree used {used:.2f} s of CPU in 1 s"
            await wait_ready(pool, 1)
            # Once the replacement is ready nothing of the node uses the CPU at all.
            before = tree_cpu_seconds(os.getpid())
            await asyncio.sleep(0.5)
            used = tree_cpu_seconds(os.getpid()) - before
            assert used < 0.1, f"node process tree used {used:.2f} s of CPU in 0.5 s"
            # The next request is served normally, by the fresh worker.
            sealed, nonce, ctx = sealed_write(keys, "hi")
            status, _, body = await call(app, sealed)
            [fresh] = pool.pids
            assert open_task(ctx, nonce, body) == ["ok", str(fresh)] and fresh != burner
            metrics = (await call(app, method="GET", path="/metrics"))[2].decode()
            assert "privproc_node_worker_restarts 1" in metrics

    asyncio.run(scenario())


def test_a_crashed_worker_answers_task_failed_and_is_replaced(
        keys: NodeKeys, caplog: pytest.LogCaptureFixture) -> None:
    pool = burn_pool(load=0.0)
    app = create_app(NodeConfig("n", concurrency=1), keys, executor=pool)

    async def scenario() -> None:
        async with running(app):
            [first] = pool.pids
            sealed, nonce, ctx = sealed_write(keys, "crash")
            with pytest.raises(TaskFailedError) as err:
                open_task(ctx, nonce, (await call(app, sealed))[2])
            assert err.value.status is inner.Status.TASK_FAILED
            assert not alive(first)
            await wait_ready(pool, 1)
            # A runner that raises (with the input in its message) keeps its worker.
            [second] = pool.pids
            sealed, nonce, ctx = sealed_write(keys, "raise")
            with pytest.raises(TaskFailedError) as err:
                open_task(ctx, nonce, (await call(app, sealed))[2])
            assert err.value.status is inner.Status.TASK_FAILED
            sealed, nonce, ctx = sealed_write(keys, "input")
            with pytest.raises(TaskFailedError, match="draft refused"):
                open_task(ctx, nonce, (await call(app, sealed))[2])
            assert pool.pids == [second]
            sealed, nonce, ctx = sealed_write(keys, MARKER)
            assert open_task(ctx, nonce, (await call(app, sealed))[2]) == ["ok", str(second)]

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    assert MARKER not in caplog.text and "boom" not in caplog.text


def test_workers_are_warm_before_the_node_serves_and_gone_after(keys: NodeKeys) -> None:
    pool = burn_pool(size=2)
    app = create_app(NodeConfig("n", concurrency=2), keys, executor=pool)

    async def scenario() -> list[int]:
        started = time.monotonic()
        async with running(app):
            assert time.monotonic() - started >= LOAD  # startup waited for the model
            pids = pool.pids
            assert len(pids) == 2
            sealed, nonce, ctx = sealed_write(keys, "hi")
            first = time.monotonic()
            _, _, body = await call(app, sealed)
            assert time.monotonic() - first < LOAD / 2  # the model was already loaded
            assert open_task(ctx, nonce, body)[0] == "ok"
        return pids

    pids = asyncio.run(scenario())
    assert pool.pids == [] and not any(alive(pid) for pid in pids)


def test_a_runner_that_cannot_load_stops_the_node_from_starting(keys: NodeKeys) -> None:
    pool = WorkerPool(WorkerSpec("tests.node.burn:broken_runner"), 2)
    with pytest.raises(WorkerStartError) as err:
        asyncio.run(pool.start())
    assert "RuntimeError" in str(err.value) and "SECRET" not in str(err.value)
    assert pool.pids == []


def test_workers_start_with_the_runtime_environment_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MARKER)
    monkeypatch.setenv("PRIVPROC_NODE_TOKEN", MARKER)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    pool = burn_pool(load=0.0)

    async def scenario() -> bytes:
        await pool.start()
        try:
            [pid] = pool.pids
            return Path(f"/proc/{pid}/environ").read_bytes()
        finally:
            await pool.close()

    environ = asyncio.run(scenario())
    assert MARKER.encode() not in environ
    assert b"LC_ALL=C.UTF-8" in environ.split(b"\0")


def test_the_node_reduces_its_environment_to_the_allowlist() -> None:
    env = {"PATH": "/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_CTYPE": "C", "TZ": "UTC",
           "OMP_NUM_THREADS": "2", "PRIVPROC_NODE_TOKEN": "t", "PRIVPROC_NODE_TOKEN_FILE": "f",
           "AWS_SECRET_ACCESS_KEY": MARKER, "PYTHONPATH": "/evil", "LD_PRELOAD": "/evil.so",
           "OMP_TOOL_LIBRARIES": "/evil.so", "HTTPS_PROXY": "http://evil", "PRIVPROC_X": "1"}
    assert reduce_environment(env) == 6
    assert sorted(env) == ["HOME", "LANG", "LC_CTYPE", "OMP_NUM_THREADS", "PATH",
                           "PRIVPROC_NODE_TOKEN", "PRIVPROC_NODE_TOKEN_FILE", "TZ"]
    # Workers get even less: not the node's own credentials.
    assert "PRIVPROC_NODE_TOKEN" not in runtime_environment(env)


NODE_SCRIPT = """
import asyncio, sys
sys.path[:0] = sys.argv[1:]
from privproc.node.worker import WorkerPool, WorkerSpec
from privproc.wire.inner import Task

async def main():
    pool = WorkerPool(WorkerSpec("tests.node.burn:burn_runner"), 1)
    await pool.start()
    running = asyncio.ensure_future(pool.run(Task.WRITE, {"draft": "burn"}, 600))
    while pool.gauges()["workers_busy"] < 1:  # the task has reached the worker
        await asyncio.sleep(0.01)
    print(pool.pids[0], flush=True)
    await running

asyncio.run(main())
"""


def test_a_busy_worker_dies_with_the_node() -> None:
    node = subprocess.Popen([sys.executable, "-c", NODE_SCRIPT, *sys.path],
                            stdout=subprocess.PIPE)
    try:
        assert node.stdout is not None
        worker = int(node.stdout.readline())
        assert alive(worker)
    finally:
        node.kill()  # SIGKILL: the node has no chance to stop its workers itself
        node.wait()
    deadline = time.monotonic() + 2
    try:
        while alive(worker):
            assert time.monotonic() < deadline, "a worker kept burning after the node died"
            time.sleep(0.02)
    finally:
        if alive(worker):
            os.kill(worker, signal.SIGKILL)
