"""The node's admission: ``concurrency`` tasks run, ``queue`` more wait inside the deadline,
beyond that 503 with Retry-After. NodeCore with a fake monotonic clock and gated fake
executors: no sockets, no real sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from privproc.client.node import TaskFailedError, open_task, seal_task
from privproc.node.core import QUEUE_PER_WORKER, Answer, NodeConfig, NodeCore, Outcome
from privproc.node.keys import NodeKeys
from privproc.wire import inner, ohttp


class Mono:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class GatedExecutor:
    """Each task waits for its gate; ``timeouts`` records the budget each was given."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Event] = []
        self.timeouts: list[float] = []
        self.running = 0
        self.peak = 0

    async def start(self) -> None:
        return None

    async def run(self, task: inner.Task, payload: dict[str, Any], timeout: float) -> Outcome:
        gate = asyncio.Event()
        self.gates.append(gate)
        self.timeouts.append(timeout)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await gate.wait()
        finally:
            self.running -= 1
        return Outcome.ok([payload["draft"]])

    async def close(self) -> None:
        return None

    def healthy(self) -> bool:
        return True

    def gauges(self) -> dict[str, int]:
        return {}


def sealed(keys: NodeKeys, draft: str = "x"
           ) -> tuple[bytes, bytes, ohttp.ClientResponseContext]:
    return seal_task(keys.current.key.config, inner.Task.WRITE, {"draft": draft})


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def make(keys: NodeKeys, mono: Mono, **config: Any) -> tuple[NodeCore, GatedExecutor]:
    executor = GatedExecutor()
    return NodeCore(NodeConfig("n", monotonic=mono, **config), keys, executor), executor


def test_the_default_queue_is_a_multiple_of_concurrency() -> None:
    assert NodeConfig("n", concurrency=3).queue == QUEUE_PER_WORKER * 3
    assert NodeConfig("n", concurrency=3, queue=0).queue == 0
    with pytest.raises(ValueError):
        NodeConfig("n", queue=-1)


def test_tasks_beyond_concurrency_wait_and_beyond_the_queue_get_503(keys: NodeKeys) -> None:
    mono = Mono()
    core, executor = make(keys, mono, concurrency=2, queue=3)

    async def scenario() -> list[Answer]:
        requests = [sealed(keys, f"d{i}") for i in range(6)]
        tasks = [asyncio.create_task(core.process(inner.MEDIA_TYPE_REQUEST, r[0]))
                 for r in requests]
        await settle()
        # two run, three wait, the sixth is refused at once
        assert executor.running == 2 and core.queue_depth() == 3
        refused = tasks[5]
        assert refused.done()
        while len(executor.gates) < 5 or any(not g.is_set() for g in executor.gates):
            for gate in executor.gates:
                gate.set()
            await settle()
        answers = [await t for t in tasks]
        for (_, nonce, ctx), answer in zip(requests[:5], answers[:5], strict=True):
            assert open_task(ctx, nonce, answer.body)
        return answers

    answers = asyncio.run(scenario())
    assert [a.status for a in answers] == [200] * 5 + [503]
    assert ("retry-after", "1") in answers[5].headers and not answers[5].sealed
    assert executor.peak == 2  # never more than concurrency at once
    assert core.running == 0 and core.queue_depth() == 0
    assert core.admission == {"queued": 3, "full": 1}


def test_queue_wait_counts_in_the_deadline(keys: NodeKeys) -> None:
    mono = Mono()
    core, executor = make(keys, mono, concurrency=1, queue=2, deadline=10.0)

    async def scenario() -> tuple[Answer, Answer, Answer]:
        first = asyncio.create_task(core.process(inner.MEDIA_TYPE_REQUEST, sealed(keys)[0]))
        await settle()
        second_req = sealed(keys)
        second = asyncio.create_task(core.process(inner.MEDIA_TYPE_REQUEST, second_req[0]))
        await settle()
        third_req = sealed(keys)
        mono.now += 3.0  # the second has waited 3 s when the third arrives
        third = asyncio.create_task(core.process(inner.MEDIA_TYPE_REQUEST, third_req[0]))
        await settle()
        mono.now += 4.0  # the first finishes: the second waited 7 s of its 10
        executor.gates[0].set()
        await settle()
        assert executor.timeouts[1] == pytest.approx(3.0)
        mono.now += 5.0  # the second takes 5 s: the third has waited 9 s
        executor.gates[1].set()
        await settle()
        assert executor.timeouts[2] == pytest.approx(1.0)
        executor.gates[2].set()
        return await first, await second, await third

    answers = asyncio.run(scenario())
    assert [a.status for a in answers] == [200, 200, 200]


def test_a_task_whose_budget_ran_out_in_the_queue_is_a_sealed_deadline(
        keys: NodeKeys) -> None:
    mono = Mono()
    core, executor = make(keys, mono, concurrency=1, queue=1, deadline=10.0)

    async def scenario() -> Answer:
        first = asyncio.create_task(core.process(inner.MEDIA_TYPE_REQUEST, sealed(keys)[0]))
        await settle()
        second = asyncio.create_task(core.process(inner.MEDIA_TYPE_REQUEST, request[0]))
        await settle()
        mono.now += 11.0  # handed the slot only after its deadline
        executor.gates[0].set()
        answer = await second
        await first
        return answer

    request = sealed(keys)
    answer = asyncio.run(scenario())
    _, nonce, ctx = request
    with pytest.raises(TaskFailedError) as err:
        open_task(ctx, nonce, answer.body)
    assert err.value.status is inner.Status.DEADLINE
    assert len(executor.gates) == 1  # it never ran
    assert core.running == 0


def test_a_waiter_that_times_out_leaves_the_queue(keys: NodeKeys) -> None:
    mono = Mono()
    core, executor = make(keys, mono, concurrency=1, queue=1, deadline=0.0)

    async def scenario() -> Answer:
        first = asyncio.create_task(core.process(inner.MEDIA_TYPE_REQUEST, sealed(keys)[0]))
        await settle()
        # a zero budget: the wait ends at once (no real time passes)
        second = await core.process(inner.MEDIA_TYPE_REQUEST, request[0])
        assert core.queue_depth() == 0
        executor.gates[0].set()
        await first
        return second

    request = sealed(keys)
    second = asyncio.run(scenario())
    with pytest.raises(TaskFailedError) as err:
        open_task(request[2], request[1], second.body)
    assert err.value.status is inner.Status.DEADLINE
    assert core.running == 0 and core.queue_depth() == 0


def test_a_cancelled_waiter_frees_its_place_and_slots_pass_on(keys: NodeKeys) -> None:
    mono = Mono()
    core, executor = make(keys, mono, concurrency=1, queue=2)

    async def scenario() -> Answer:
        first = asyncio.create_task(core.process(inner.MEDIA_TYPE_REQUEST, sealed(keys)[0]))
        await settle()
        gone = asyncio.create_task(core.process(inner.MEDIA_TYPE_REQUEST, sealed(keys)[0]))
        await settle()
        last = asyncio.create_task(core.process(inner.MEDIA_TYPE_REQUEST, sealed(keys)[0]))
        await settle()
        gone.cancel()  # the client of the second went away
        await settle()
        assert core.queue_depth() == 1
        executor.gates[0].set()
        await settle()
        executor.gates[1].set()
        await first
        return await last

    assert asyncio.run(scenario()).status == 200
    assert core.running == 0 and core.queue_depth() == 0


def test_the_queue_option(capsys: pytest.CaptureFixture[str]) -> None:
    from privproc.cli import build_parser

    parser = build_parser()
    base = ["node", "serve", "--listen", "127.0.0.1:0", "--state", "/s"]
    assert parser.parse_args(base).queue is None  # NodeConfig: 4 x concurrency
    assert parser.parse_args([*base, "--queue", "0"]).queue == 0
    assert parser.parse_args([*base, "--queue", "12"]).queue == 12
    for bad in ("-1", "many"):
        with pytest.raises(SystemExit):
            parser.parse_args([*base, "--queue", bad])
    assert "--queue" in capsys.readouterr().err
