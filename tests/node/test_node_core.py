"""NodeCore driven directly with bytes, a fake clock and fake executors: no sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from typing import Any

import pytest

from privproc.attest.evidence import EvidenceParts
from privproc.attest.simulated import SimulatedIdentity, SimulatedPlatform
from privproc.client.node import open_task, seal_task
from privproc.node.app import create_app
from privproc.node.core import (
    MAX_DEPTH,
    Answer,
    NodeConfig,
    NodeCore,
    Opened,
    Outcome,
    check_payload,
)
from privproc.node.keys import NodeKeys
from privproc.node.runner import EchoRunner
from privproc.node.worker import ThreadExecutor
from privproc.wire import inner, ohttp

from .asgi import call, running

MARKER = "MARKER-core-5d2a"
NONCE = bytes(range(16))
T0 = 1_800_000_000


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeExecutor:
    def __init__(self, outcome: Outcome | None = None) -> None:
        self.outcome = outcome or Outcome.ok(["fine"])
        self.calls: list[tuple[inner.Task, dict[str, Any], float]] = []
        self.closed = False

    async def start(self) -> None:
        return None

    async def run(self, task: inner.Task, payload: dict[str, Any], timeout: float) -> Outcome:
        self.calls.append((task, payload, timeout))
        return self.outcome

    async def close(self) -> None:
        self.closed = True

    def healthy(self) -> bool:
        return True

    def gauges(self) -> dict[str, int]:
        return {"fake_workers": 1}


class FlakyPlatform:
    """A platform provider that works once (the node's first key) and then fails."""

    def __init__(self, inner_provider: SimulatedPlatform, fail_from: int = 2) -> None:
        self.inner = inner_provider
        self.calls = 0
        self.fail_from = fail_from

    @property
    def platform(self) -> str:
        return self.inner.platform

    def get_evidence(self, report_data: bytes) -> EvidenceParts:
        self.calls += 1
        if self.calls >= self.fail_from:
            raise OSError("attestation device gone")
        return self.inner.get_evidence(report_data)


@pytest.fixture(scope="module")
def identity() -> SimulatedIdentity:
    return SimulatedIdentity.generate(rsa_bits=2048)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(identity: SimulatedIdentity) -> NodeKeys:
    k = NodeKeys(SimulatedPlatform(identity, bytes(48), gpu=False), lifetime=100, grace=10)
    k.rotate(T0)
    return k


def core_with(keys: NodeKeys, clock: Clock, executor: Any = None, **config: Any) -> NodeCore:
    return NodeCore(NodeConfig("n", clock=clock, rotate_every=100, **config), keys,
                    executor or FakeExecutor())


def plaintext(body: bytes, *, task: int = 2, version: int = 1, nonce: bytes = NONCE) -> bytes:
    return bytes([version, task]) + nonce + struct.pack("!I", len(body)) + body


def seal(keys: NodeKeys, plain: bytes) -> tuple[bytes, ohttp.ClientResponseContext]:
    return ohttp.encapsulate_request(keys.current.key.config, plain,
                                     request_label=inner.REQUEST_LABEL,
                                     response_label=inner.RESPONSE_LABEL)


def opened_answer(ctx: ohttp.ClientResponseContext, answer: Answer) -> inner.InnerResponse:
    assert answer.status == 200 and answer.sealed
    return inner.InnerResponse.decode(ctx.decapsulate_response(answer.body))


def process(core: NodeCore, body: bytes) -> Answer:
    return asyncio.run(core.process(inner.MEDIA_TYPE_REQUEST, body))


def test_a_request_opens_runs_and_is_sealed(keys: NodeKeys, clock: Clock) -> None:
    executor = FakeExecutor()
    core = core_with(keys, clock, executor, deadline=7.0)
    sealed, nonce, ctx = seal_task(keys.current.key.config, inner.Task.WRITE,
                                   {"draft": MARKER, "tone": "funny"})
    opened = core.open(sealed)
    assert isinstance(opened, Opened)
    assert opened.task is inner.Task.WRITE and opened.nonce == nonce
    assert MARKER not in repr(opened)
    answer = asyncio.run(core.run(opened))
    assert open_task(ctx, nonce, answer.body) == ["fine"]
    assert executor.calls == [(inner.Task.WRITE, {"draft": MARKER, "tone": "funny"}, 7.0)]
    assert core.stats == {"ok": 1, "refused": 0, "failed": 0}


def test_unsealed_refusals(keys: NodeKeys, clock: Clock) -> None:
    core = core_with(keys, clock, max_request=4096)
    sealed, _, _ = seal_task(keys.current.key.config, inner.Task.WRITE, {"draft": "x"})
    assert asyncio.run(core.process("text/plain", sealed)).status == 415
    assert process(core, bytes([sealed[0] ^ 1]) + sealed[1:]).status == 422
    assert process(core, sealed[:30]).status == 400
    tampered = bytearray(sealed)
    tampered[-3] ^= 1
    assert process(core, bytes(tampered)).status == 400
    assert process(core, b"\0" * 5000).status == 413


# Hostile plaintexts, each sealed to the node: all get a sealed BAD_REQUEST, none reaches
# the runner, nothing raises.
DEEP = 100_000
HOSTILE = {
    "nested lists 100000 deep": b'{"draft":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "nested objects 100000 deep": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "nested just past the limit": (b'{"draft":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
                                   + b"}"),
    "an integer of 100000 digits": b'{"draft":' + b"7" * DEEP + b"}",
    "invalid UTF-8": b'{"draft":"\xff\xfe\xc3(","tone":"funny"}',
    "a lone surrogate": b'{"draft":"\\ud800","tone":"funny"}',
    "a lone surrogate in a key": b'{"\\udfff":1}',
    "not JSON": b"{draft: " + MARKER.encode(),
    "a JSON array": b"[1,2,3]",
    "a JSON string": b'"' + MARKER.encode() + b'"',
    "empty": b"",
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_json_gets_a_sealed_bad_request(keys: NodeKeys, clock: Clock,
                                               caplog: pytest.LogCaptureFixture,
                                               body: bytes) -> None:
    executor = FakeExecutor()
    core = core_with(keys, clock, executor, max_request=1 << 20)
    sealed, ctx = seal(keys, plaintext(body))
    response = opened_answer(ctx, process(core, sealed))
    assert response.status is inner.Status.BAD_REQUEST
    assert response.payload["nonce"] == NONCE.hex()
    assert MARKER not in json.dumps(response.payload) and MARKER not in caplog.text
    assert executor.calls == []


FRAMES = {
    "too short": b"\x01\x02\x03",
    "unknown version": plaintext(b"{}", version=2),
    "unknown task": plaintext(b"{}", task=9),
    "length mismatch": plaintext(b'{"draft":"x"}')[:-1],
}


@pytest.mark.parametrize("plain", FRAMES.values(), ids=FRAMES.keys())
def test_malformed_frames_get_a_sealed_bad_request(keys: NodeKeys, clock: Clock,
                                                   plain: bytes) -> None:
    core = core_with(keys, clock)
    sealed, ctx = seal(keys, plain)
    assert opened_answer(ctx, process(core, sealed)).status is inner.Status.BAD_REQUEST


WRONG_TYPES = {
    "draft is a number": (2, {"draft": 5, "tone": "funny"}),
    "draft is infinite": (2, {"draft": float("inf"), "tone": "funny"}),
    "messages is a string": (1, {"messages": MARKER}),
    "a message is a number": (1, {"messages": [1]}),
    "sender is a list": (1, {"messages": [{"sender": [MARKER], "time": "t", "text": "x"}]}),
    "no messages": (1, {}),
}


@pytest.mark.parametrize(("task", "payload"), WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_wrong_types_get_a_sealed_bad_request_from_the_runner(
        keys: NodeKeys, clock: Clock, task: int, payload: dict[str, Any]) -> None:
    core = core_with(keys, clock, ThreadExecutor(EchoRunner(), 1))
    sealed, ctx = seal(keys, plaintext(json.dumps(payload).encode(), task=task))
    response = opened_answer(ctx, process(core, sealed))
    assert response.status is inner.Status.BAD_REQUEST
    assert MARKER not in response.payload["error"]


def test_deep_nesting_through_the_app_is_sealed_never_a_500(keys: NodeKeys) -> None:
    app = create_app(NodeConfig("n", max_request=1 << 20), keys, EchoRunner())
    sealed, ctx = seal(keys, plaintext(HOSTILE["nested lists 100000 deep"]))
    status, headers, body = asyncio.run(call(app, sealed))
    assert status == 200 and headers["content-type"] == inner.MEDIA_TYPE_RESPONSE
    response = inner.InnerResponse.decode(ctx.decapsulate_response(body))
    assert response.status is inner.Status.BAD_REQUEST


def test_check_payload_walks_without_recursion() -> None:
    deep: Any = "x"
    for _ in range(200_000):
        deep = [deep]
    assert check_payload({"a": deep}) == f"input nested deeper than {MAX_DEPTH} levels"
    assert check_payload({"messages": [{"sender": "a", "time": "t", "text": "x"}]}) is None


OUTCOMES = {
    "deadline": (Outcome.deadline(), inner.Status.DEADLINE, "deadline exceeded"),
    "failed": (Outcome.failed("RuntimeError"), inner.Status.TASK_FAILED, "task failed"),
    "input": (Outcome.input_error("draft too long"), inner.Status.BAD_REQUEST,
              "draft too long"),
    "result not valid Unicode": (Outcome.ok(["\ud800"]), inner.Status.TASK_FAILED,
                                 "task failed"),
    "result too large": (Outcome.ok(["x" * (inner.MAX_JSON + 1)]), inner.Status.TASK_FAILED,
                         "task failed"),
}


@pytest.mark.parametrize(("outcome", "status", "error"), OUTCOMES.values(), ids=OUTCOMES.keys())
def test_outcomes_are_sealed_with_the_nonce(keys: NodeKeys, clock: Clock, outcome: Outcome,
                                            status: inner.Status, error: str) -> None:
    core = core_with(keys, clock, FakeExecutor(outcome))
    sealed, nonce, ctx = seal_task(keys.current.key.config, inner.Task.WRITE, {"draft": "x"})
    response = opened_answer(ctx, process(core, sealed))
    assert (response.status, response.payload) == (status, {"error": error,
                                                            "nonce": nonce.hex()})


def test_no_free_worker_is_503_with_retry_after(keys: NodeKeys, clock: Clock) -> None:
    core = core_with(keys, clock, FakeExecutor(Outcome.busy()))
    sealed, _, _ = seal_task(keys.current.key.config, inner.Task.WRITE, {"draft": "x"})
    answer = process(core, sealed)
    assert answer.status == 503 and ("retry-after", "1") in answer.headers
    assert not answer.sealed


def test_rotation_on_the_fake_clock_and_the_previous_key_s_grace(keys: NodeKeys,
                                                                clock: Clock) -> None:
    core = core_with(keys, clock)
    old = keys.current.key.config
    assert not core.rotation_due() and core.seconds_to_rotation() == 100
    clock.now += 100
    assert core.rotation_due()
    new = core.rotate()
    assert new is not None and new.key.config.key_id != old.key_id
    sealed, nonce, ctx = seal_task(old, inner.Task.WRITE, {"draft": "x"})
    assert open_task(ctx, nonce, process(core, sealed).body) == ["fine"]  # in its grace
    clock.now += 10
    assert core.expire() == [old.key_id]
    assert process(core, seal_task(old, inner.Task.WRITE, {"draft": "x"})[0]).status == 422


def test_a_failed_rotation_destroys_every_key_and_stops_serving(
        identity: SimulatedIdentity, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    provider = FlakyPlatform(SimulatedPlatform(identity, bytes(48), gpu=False))
    keys = NodeKeys(provider, lifetime=100, grace=10)
    keys.rotate(T0)  # the first call: the key the node starts with
    core = core_with(keys, clock)
    config = keys.current.key.config
    sealed, nonce, ctx = seal_task(config, inner.Task.WRITE, {"draft": "x"})
    assert open_task(ctx, nonce, process(core, sealed).body) == ["fine"]
    clock.now += 100
    with caplog.at_level(logging.ERROR):
        assert core.rotate() is None  # the second call fails
    assert core.failed is not None and "OSError" in core.failed
    assert keys.held() == [] and config.key_id in keys.destroyed
    again, _, _ = seal_task(config, inner.Task.WRITE, {"draft": "x"})
    assert process(core, again).status == 503
    assert core.health().status == 503
    assert core.evidence(None).status == 503
    assert b"privproc_node_out_of_service 1" in core.metrics().body
    assert core.rotate() is None and provider.calls == 2  # never tries again in place
    assert "out of service" in caplog.text


def test_a_key_is_never_used_past_its_expiry(keys: NodeKeys, clock: Clock) -> None:
    core = core_with(keys, clock)
    sealed, _, _ = seal_task(keys.current.key.config, inner.Task.WRITE, {"draft": "x"})
    clock.now = keys.current.expiry  # the rotation never happened (a stalled loop)
    assert process(core, sealed).status == 503
    assert core.failed is not None and keys.held() == []


def test_the_app_fails_closed_when_rotation_fails(identity: SimulatedIdentity) -> None:
    provider = FlakyPlatform(SimulatedPlatform(identity, bytes(48), gpu=False))
    keys = NodeKeys(provider, lifetime=100, grace=10)
    keys.rotate(T0)
    clock = Clock(T0 + 100)  # the rotation is due as the node starts
    executor = FakeExecutor()
    background_cancelled = asyncio.Event()

    async def background() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            background_cancelled.set()

    app = create_app(NodeConfig("n", rotate_every=100, clock=clock), keys,
                     background=background, executor=executor)
    sealed, _, _ = seal_task(keys.current.key.config, inner.Task.WRITE, {"draft": "x"})

    async def scenario() -> tuple[int, int, int]:
        async with running(app):
            await asyncio.wait_for(background_cancelled.wait(), 5)
            process_status = (await call(app, sealed))[0]
            health = (await call(app, method="GET", path="/healthz"))[0]
            evidence = (await call(app, method="GET", path="/evidence"))[0]
        return process_status, health, evidence

    assert asyncio.run(scenario()) == (503, 503, 503)
    assert provider.calls == 2 and keys.held() == []
    assert executor.calls == [] and executor.closed
