"""The SDK under load, with fake nodes behind a fake relay: busy nodes stay verified and
the call moves on with a bounded, jittered backoff; nodes are chosen uniformly at random;
a node that does not answer within ``per_node_timeout`` is hedged; the directory refresh
spreads load over every node it lists. Injected clock, sleep and waits: no real waits."""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from collections import Counter
from types import SimpleNamespace
from typing import Any, cast

import pytest

from privproc.client.errors import (
    NodeBusyError,
    NoVerifiedNodeError,
    RelayRefusedError,
    RelayUnreachableError,
    TransportError,
)
from privproc.client.sdk import (
    HEDGE_FACTOR,
    HEDGE_SAMPLES,
    MAX_BACKOFF,
    MAX_GONE,
    MIN_HEDGE_SECONDS,
    NODE_RECOVERY_INTERVAL,
    UNAVAILABLE_RETRY_SECONDS,
    NodeList,
    PrivateProcessingClient,
    _Latencies,
)
from privproc.client.sdk import _wait_any as sdk_wait_any
from privproc.client.transparency import VerifiedNode
from privproc.wire import bhttp, hpke, inner, ohttp

from .test_transparency import NOW, trust

CHAT = [{"sender": "Ana", "time": "2026-01-01T10:00", "text": "lunch at noon?"}]


class FakeNode:
    def __init__(self, node_id: str, key_id: int, behaviour: str = "ok") -> None:
        self.node_id = node_id
        self.key = ohttp.GatewayKey.create(key_id, hpke.KeyPair.generate())
        self.behaviour = behaviour  # "ok", "busy", "hang", "broken"
        self.verified = cast(VerifiedNode, SimpleNamespace(
            node_id=node_id, key_config=self.key.config, evidence=node_id.encode(),
            claims=SimpleNamespace(expiry=NOW + 3600, measurement=b"m"),
            release=SimpleNamespace(index=0),
            expiry=NOW + 3600, measurement=b"m"))

    def answer(self, sealed: bytes) -> bhttp.Response:
        if self.behaviour == "busy":
            return bhttp.Response(status=503, headers=(bhttp.Field(b"retry-after", b"1"),),
                                  content=b"")
        if self.behaviour == "broken":
            return bhttp.Response(status=502, headers=(), content=b"")
        if self.behaviour == "gone":  # the gateway no longer lists it
            return bhttp.Response(status=404, headers=(), content=b"")
        plain, ctx = ohttp.GatewayKeys([self.key]).decapsulate_request(
            sealed, request_label=inner.REQUEST_LABEL, response_label=inner.RESPONSE_LABEL)
        request = inner.InnerRequest.decode(plain)
        body = inner.InnerResponse(inner.Status.OK, {"result": [self.node_id],
                                                     "nonce": request.nonce.hex()}).encode()
        return bhttp.Response(status=200, headers=(), content=ctx.encapsulate_response(body))


class FakeRelay:
    """Routes ``/v1/nodes/ID/process`` to fake nodes; records what was sent, one token
    per request."""

    def __init__(self, nodes: list[FakeNode]) -> None:
        self.nodes = {n.node_id: n for n in nodes}
        self.sent: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.refreshes: list[int] = []  # directory refreshes the client asked for

    def request(self, method: str, path: str, *, headers: Any = (), content: bytes = b"",
                spent: list[Any] | None = None, timeout: float | None = None,
                token: Any = None) -> bhttp.Response:
        node_id = path.split("/")[3]
        with self.lock:
            self.sent.append((node_id, content))
        if spent is not None:
            spent.append(object() if token is None else token)  # one token per request
        return self.nodes[node_id].answer(content)


class Time:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def client_for(nodes: list[FakeNode], **kwargs: Any
               ) -> tuple[PrivateProcessingClient, FakeRelay, Time]:
    client = PrivateProcessingClient(trust(), clock=lambda: NOW, **kwargs)
    relay = FakeRelay(nodes)
    clock = Time()
    client.ohttp = cast(Any, relay)
    client.view = cast(Any, SimpleNamespace(revocation=lambda m: None))
    client._gateway_key = lambda: cast(Any, None)  # type: ignore[method-assign]
    client._receipt = lambda node, gateway, spent: cast(Any, node.node_id)  # type: ignore[method-assign]
    client._verified = {n.node_id: n.verified for n in nodes}
    client._monotonic = clock.monotonic
    client._sleep = clock.sleep
    def spawn(node_id: str, send: Any, inline: bool = False
              ) -> concurrent.futures.Future[Any]:
        # Runs at once; a hung node's answer never comes (its token is spent all the same).
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        result = send()
        if relay.nodes[node_id].behaviour != "hang":
            future.set_result(result)
        return future

    def wait_any(futures: set[concurrent.futures.Future[Any]], timeout: float
                 ) -> set[concurrent.futures.Future[Any]]:
        done = {f for f in futures if f.done()}
        if not done:
            clock.now += timeout  # the wait ran out
        return done

    client._spawn = spawn  # type: ignore[method-assign]
    client._wait_any = wait_any
    client._refresh_nodes_soon = lambda: relay.refreshes.append(1)  # type: ignore[method-assign]
    return client, relay, clock


def test_a_busy_node_stays_verified_and_another_answers() -> None:
    busy, fine = FakeNode("busy", 1, "busy"), FakeNode("fine", 2)
    client, _relay, clock = client_for([busy, fine])
    for _ in range(20):
        assert client.summarize(CHAT).output == ["fine"]
    assert set(client._verified) == {"busy", "fine"}  # 503 is not a failure
    assert not clock.slept  # another node was free: no backoff


def test_all_busy_backs_off_with_jitter_within_the_budget_then_gives_up() -> None:
    nodes = [FakeNode("a", 1, "busy"), FakeNode("b", 2, "busy")]
    client, relay, clock = client_for(nodes, timeout=3.0)
    with pytest.raises((NodeBusyError, TransportError)):
        client.summarize(CHAT)
    assert clock.slept and all(0 < s <= MAX_BACKOFF for s in clock.slept)
    assert sum(clock.slept) <= 3.0  # never past the call's budget
    assert set(client._verified) == {"a", "b"}
    assert len({content for _, content in relay.sent}) == len(relay.sent)


def test_busy_then_free_succeeds_after_a_backoff() -> None:
    nodes = [FakeNode("a", 1, "busy"), FakeNode("b", 2, "busy")]
    client, _relay, clock = client_for(nodes)
    original = clock.sleep

    def sleep_and_free(seconds: float) -> None:
        original(seconds)
        nodes[1].behaviour = "ok"

    client._sleep = sleep_and_free
    assert client.summarize(CHAT).output == ["b"]
    assert len(clock.slept) == 1 and 0.25 <= clock.slept[0] <= MAX_BACKOFF


def test_nodes_are_chosen_uniformly_at_random_not_sticky() -> None:
    nodes = [FakeNode("a", 1), FakeNode("b", 2)]
    client, relay, _ = client_for(nodes)
    for _ in range(400):
        client.summarize(CHAT)
    share = Counter(node_id for node_id, _ in relay.sent)
    assert 140 <= share["a"] <= 260 and share["a"] + share["b"] == 400


def test_a_hung_node_is_hedged_after_the_per_node_timeout() -> None:
    hung, fine = FakeNode("hung", 1, "hang"), FakeNode("fine", 2)
    client, relay, clock = client_for([hung, fine], per_node_timeout=2.0, timeout=90.0)
    outputs = [client.summarize(CHAT).output for _ in range(10)]
    assert outputs == [["fine"]] * 10
    hedged = [node_id for node_id, _ in relay.sent].count("hung")
    assert hedged <= 1  # once hedged away from, the hung node is avoided
    assert len(relay.sent) == 10 + hedged  # each hedge is one more request (one token)
    assert clock.now == pytest.approx(2.0 * hedged)  # moved on after 2 s
    assert len({content for _, content in relay.sent}) == len(relay.sent)  # never resent


def test_the_first_call_to_a_hung_node_is_hedged_and_its_answer_clears_the_mark() -> None:
    hung, fine = FakeNode("hung", 1, "hang"), FakeNode("fine", 2)
    client, relay, clock = client_for([hung, fine], per_node_timeout=2.0)
    client._choose = lambda choices: next(  # type: ignore[method-assign]
        (n for n in choices if n.node_id == "hung"), choices[0])
    assert client.summarize(CHAT).output == ["fine"]
    assert [node_id for node_id, _ in relay.sent] == ["hung", "fine"]
    assert clock.now == pytest.approx(2.0) and "hung" in client._slow
    late: concurrent.futures.Future[Any] = concurrent.futures.Future()
    late.set_result(bhttp.Response(status=200, headers=(), content=b""))
    client._answered("hung", late)  # the node answered after all: no longer avoided
    assert "hung" not in client._slow


def test_a_node_listed_again_after_a_gateway_restart_is_tried_again() -> None:
    """A restarted gateway lists its nodes again as they register: a call that got 404
    asks the directory and sends to the same node once it is listed again. A directory
    that keeps listing a node the gateway does not know stops the call after MAX_GONE."""
    node = FakeNode("a", 1, "gone")
    client, relay, _ = client_for([node])
    listings: list[int] = []
    registers_again = [True]

    def directory() -> list[Any]:
        listings.append(1)
        if len(listings) == 2 and registers_again[0]:
            node.behaviour = "ok"  # it has registered again by now
        client._verified = {node.node_id: node.verified}
        return [node.verified]

    client.verified_nodes = directory  # type: ignore[method-assign]
    assert client.summarize(CHAT).output == ["a"]
    assert [node_id for node_id, _ in relay.sent] == ["a", "a", "a"]
    node.behaviour = "gone"
    registers_again[0] = False
    relay.sent.clear()
    with pytest.raises(TransportError, match="no longer listed"):
        client.summarize(CHAT)
    assert len(relay.sent) == 1 + MAX_GONE  # bounded: each attempt costs a token


def test_the_hedge_comes_sooner_once_answer_times_are_known() -> None:
    """A node stopped (SIGSTOP) under a fast workload costs a call about a second, not
    per_node_timeout: the hedge delay follows the answer times seen so far."""
    a, b = FakeNode("a", 1), FakeNode("b", 2)
    client, _relay, clock = client_for([a, b], per_node_timeout=30.0)
    client._choose = lambda choices: next(  # type: ignore[method-assign]
        (n for n in choices if n.node_id == "a"), choices[0])
    a.behaviour = "hang"
    assert client.summarize(CHAT).output == ["b"]
    assert clock.now == pytest.approx(30.0)  # nothing known yet: per_node_timeout
    a.behaviour = "ok"
    client._slow.clear()
    for _ in range(HEDGE_SAMPLES):
        client.summarize(CHAT)  # answers come at once here
    a.behaviour = "hang"
    started = clock.now
    assert client.summarize(CHAT).output == ["b"]
    assert clock.now - started == pytest.approx(MIN_HEDGE_SECONDS)
    assert client.write("see you at noon", "funny").output == ["b"]  # no writes known yet
    assert clock.now - started == pytest.approx(MIN_HEDGE_SECONDS + 30.0)


def test_the_hedge_delay_follows_the_p95_of_recent_answers() -> None:
    times = _Latencies()
    for _ in range(HEDGE_SAMPLES - 1):
        times.add(5.0)
    assert times.hedge_after(30.0) == 30.0  # too few answers known
    times.add(5.0)
    assert times.hedge_after(30.0) == pytest.approx(HEDGE_FACTOR * 5.0)
    for _ in range(200):
        times.add(0.01)
    assert times.hedge_after(30.0) == MIN_HEDGE_SECONDS  # never sooner than this
    for _ in range(20):
        times.add(60.0)  # slow answers now: the p95 follows, per_node_timeout caps it
    assert times.hedge_after(30.0) == 30.0


def test_a_node_the_directory_no_longer_lists_is_dropped_without_failing_the_call() -> None:
    """A restarted node comes back under a new id: clients still holding the old one get
    404 from the gateway. That call goes on with another node and the directory is asked
    again; the call fails only if no node is left."""
    gone, other, fine = FakeNode("gone", 1, "gone"), FakeNode("other", 2, "gone"), \
        FakeNode("fine", 3)
    client, relay, _ = client_for([gone, other, fine])
    order = ["gone", "other", "fine"]
    client._choose = lambda choices: min(  # type: ignore[method-assign]
        choices, key=lambda n: order.index(n.node_id))
    assert client.summarize(CHAT).output == ["fine"]  # two 404s are not two failures
    assert [node_id for node_id, _ in relay.sent] == ["gone", "other", "fine"]
    assert set(client._verified) == {"fine"} and len(relay.refreshes) == 2
    fine.behaviour = "gone"  # none left: the call asks the directory itself, and fails

    def directory() -> list[Any]:
        raise NoVerifiedNodeError({"fine": "not offered"})

    client.verified_nodes = directory  # type: ignore[method-assign]
    with pytest.raises(NoVerifiedNodeError):
        client.summarize(CHAT)


def test_a_call_whose_nodes_all_hang_ends_at_its_budget() -> None:
    nodes = [FakeNode("a", 1, "hang"), FakeNode("b", 2, "hang")]
    client, relay, clock = client_for(nodes, per_node_timeout=2.0, timeout=10.0)
    with pytest.raises(TransportError):
        client.summarize(CHAT)
    assert clock.now == pytest.approx(10.0)
    assert len(relay.sent) == 2  # one attempt and one hedge, no more


def test_a_broken_node_is_dropped_and_the_call_moves_on() -> None:
    broken, fine = FakeNode("broken", 1, "broken"), FakeNode("fine", 2)
    client, _relay, _ = client_for([broken, fine])
    for _ in range(10):
        assert client.summarize(CHAT).output == ["fine"]
    assert set(client._verified) == {"fine"}


def test_the_directory_refresh_spreads_load_and_drops_unlisted_nodes() -> None:
    a, b = FakeNode("a", 1), FakeNode("b", 2)
    client, relay, _ = client_for([a, b])
    client._verified = {"a": a.verified}  # b was not listed when the client last looked
    offered = {"a": a, "b": b}
    client.candidates = lambda: NodeList(  # type: ignore[method-assign]
        [(n, n.encode()) for n in offered], {})
    client.verify_node = (  # type: ignore[method-assign]
        lambda node_id, bundle, releases=None: offered[node_id].verified)
    client._refresh_nodes()
    assert set(client._verified) == {"a", "b"}  # a node that came back takes load again
    for _ in range(100):
        client.summarize(CHAT)
    share = Counter(node_id for node_id, _ in relay.sent)
    assert share["a"] > 20 and share["b"] > 20
    del offered["a"]
    client._refresh_nodes()
    assert set(client._verified) == {"b"}


def test_the_background_runs_each_job_on_its_own_jittered_schedule() -> None:
    client, _, clock = client_for([FakeNode("a", 1)])
    client.tokens = cast(Any, object())  # a wallet: the token check is scheduled
    ran: list[tuple[str, float]] = []
    client.refresh = lambda tokens=True: ran.append(("refresh", clock.now))  # type: ignore[method-assign,misc]
    client._refresh_nodes = lambda: ran.append(("nodes", clock.now))  # type: ignore[method-assign]
    client._refill_tokens = lambda: ran.append(("tokens", clock.now))  # type: ignore[method-assign]

    class Stop:
        """Each wait moves the fake clock; the loop stops after 10 simulated minutes."""

        def wait(self, timeout: float) -> bool:
            clock.now += timeout
            return clock.now > 600

    client._stop = cast(Any, Stop())
    client._background(300.0, 0.5)
    count = Counter(name for name, _ in ran)
    assert 1 <= count["refresh"] <= 5  # every 150 to 450 s (the first sooner)
    assert 6 <= count["nodes"] <= 20  # every 30 to 90 s
    assert 70 <= count["tokens"] <= 250  # every 2.5 to 7.5 s: a local look
    tokens = [t for name, t in ran if name == "tokens"]
    gaps = [b - a for a, b in itertools.pairwise(tokens)]
    assert all(2.5 <= g <= 7.5 for g in gaps) and len(set(gaps)) > 1  # jittered


def test_after_a_node_is_dropped_the_directory_is_asked_often_for_a_while() -> None:
    """A killed node comes back under a new id within seconds: the background asks the
    directory every ~5 s for a minute after a drop (not only every ~60 s), so load
    returns to it soon; then the usual schedule again."""
    client, _, clock = client_for([FakeNode("a", 1)])
    ran: list[float] = []
    client.refresh = lambda tokens=True: None  # type: ignore[method-assign,misc]
    client._refresh_nodes = lambda: ran.append(clock.now)  # type: ignore[method-assign]

    class Stop:
        def wait(self, timeout: float) -> bool:
            clock.now += timeout
            return clock.now > 300

    client._stop = cast(Any, Stop())
    client._recovering_until = 60.0  # a node was dropped at 0
    client._background(300.0, 0.5)
    early = [t for t in ran if t <= 60 + NODE_RECOVERY_INTERVAL * 1.5]
    late = [t for t in ran if t > 60 + NODE_RECOVERY_INTERVAL * 1.5]
    assert 60 / (NODE_RECOVERY_INTERVAL * 1.5) <= len(early) <= 60 / (NODE_RECOVERY_INTERVAL / 2)
    gaps = [b - a for a, b in itertools.pairwise(late)]
    assert gaps and all(gap >= 30 for gap in gaps)  # back to every 30 to 90 s


def test_a_dropped_node_wakes_the_background_at_once() -> None:
    client, _, _ = client_for([FakeNode("a", 1)])
    client._thread = cast(Any, object())  # as if start() had run
    woken: list[int] = []
    client._stop = cast(Any, SimpleNamespace(poke=lambda: woken.append(1)))
    client._node_dropped()
    assert woken == [1] and client._recovering_until > 0


class FlakyRelay(FakeRelay):
    """Down (``error``) for the first ``failures`` requests, then a working relay."""

    def __init__(self, nodes: list[FakeNode], failures: int, error: Exception) -> None:
        super().__init__(nodes)
        self.failures = failures
        self.error = error
        self.lost: list[bytes] = []  # what was sent while the relay was down

    def request(self, method: str, path: str, **kwargs: Any) -> bhttp.Response:
        if self.failures > 0:
            self.failures -= 1
            self.lost.append(kwargs.get("content", b""))
            raise self.error
        return super().request(method, path, **kwargs)


def _flaky_client(failures: int, error: Exception
                  ) -> tuple[PrivateProcessingClient, FlakyRelay, Time]:
    node = FakeNode("n1", 1)
    client, _, clock = client_for([node])
    relay = FlakyRelay([node], failures, error)
    client.ohttp = cast(Any, relay)

    def spawn(node_id: str, send: Any, inline: bool = False
              ) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(send())
        except Exception as exc:  # noqa: BLE001 - the attempt's failure, as a thread's
            future.set_exception(exc)
        return future

    client._spawn = spawn  # type: ignore[method-assign]
    return client, relay, clock


@pytest.mark.parametrize("error", [
    RelayUnreachableError("cannot reach relay"),
    RelayRefusedError(502, "gateway unreachable"),
    RelayRefusedError(503, "busy"),
])
def test_a_restarting_relay_or_gateway_is_waited_for(error: Exception) -> None:
    client, relay, clock = _flaky_client(3, error)
    assert relay.failures == 3
    result = client.summarize(CHAT, 1)
    assert result.output == ["n1"] and relay.failures == 0
    assert len(clock.slept) == 3 and all(0 < s <= MAX_BACKOFF for s in clock.slept)
    assert clock.slept[2] > clock.slept[0] / 2  # doubling (jittered within 0.5..1)
    assert client._verified  # the node was not blamed
    sealed = [*relay.lost, *(content for _, content in relay.sent)]
    assert len(sealed) == 4 and len(set(sealed)) == 4  # a new sealed request each time


def test_an_unavailable_relay_is_given_up_on_after_the_window() -> None:
    client, relay, clock = _flaky_client(10_000, RelayUnreachableError("cannot reach relay"))
    with pytest.raises(RelayUnreachableError):
        client.summarize(CHAT, 1)
    assert clock.now <= UNAVAILABLE_RETRY_SECONDS
    assert relay.failures > 10_000 - 40  # bounded number of attempts (tokens)


def test_a_refusal_is_not_retried() -> None:
    client, relay, clock = _flaky_client(1, RelayRefusedError(401, "token refused"))
    with pytest.raises(RelayRefusedError):
        client.summarize(CHAT, 1)
    assert clock.slept == [] and relay.failures == 0


def test_an_empty_directory_after_a_gateway_restart_is_asked_again() -> None:
    node = FakeNode("n1", 1)
    client, _, clock = client_for([node])
    client._verified = {}
    empty = [2]

    def verified_nodes() -> list[VerifiedNode]:
        if empty[0] > 0:  # the gateway restarted: its nodes have not renewed yet
            empty[0] -= 1
            raise NoVerifiedNodeError({})
        client._verified = {node.node_id: node.verified}
        return [node.verified]

    client.verified_nodes = verified_nodes  # type: ignore[method-assign]
    assert client.summarize(CHAT, 1).output == ["n1"]
    assert len(clock.slept) == 2 and empty == [0]


def test_a_directory_of_refused_nodes_is_final() -> None:
    client, _, clock = client_for([FakeNode("n1", 1)])
    client._verified = {}

    def verified_nodes() -> list[VerifiedNode]:
        raise NoVerifiedNodeError({"n1": "measurement not logged"})

    client.verified_nodes = verified_nodes  # type: ignore[method-assign]
    with pytest.raises(NoVerifiedNodeError):
        client.summarize(CHAT, 1)
    assert clock.slept == []


def test_a_call_with_no_node_to_hedge_with_sends_on_its_own_thread() -> None:
    one = FakeNode("one", 1)
    client, relay, _ = client_for([one])
    del client._spawn  # the real one: threads, not the harness's synchronous stand-in
    threads: list[int] = []
    real_request = relay.request

    def request(*args: Any, **kwargs: Any) -> bhttp.Response:
        threads.append(threading.get_ident())
        return real_request(*args, **kwargs)

    relay.request = request  # type: ignore[method-assign]
    client._wait_any = sdk_wait_any
    assert client.summarize(CHAT).output == ["one"]
    assert threads == [threading.get_ident()]  # no other node: inline
    two = FakeNode("two", 2)
    client._verified["two"] = two.verified
    relay.nodes["two"] = two
    client.summarize(CHAT)
    assert threads[1] != threading.get_ident()  # another node to hedge with: a thread


NESTED = b"[" * 100_000  # json.loads raises RecursionError, not ValueError


def test_a_node_directory_nested_without_end_is_a_transport_error() -> None:
    """Attack: the gateway (through OHTTP) answers the node list with deeply nested JSON:
    the directory is malformed (TransportError), not an unexpected failure."""
    client, _, _ = client_for([FakeNode("n1", 1)])

    class NestedDirectory:
        def request(self, method: str, path: str, **kwargs: Any) -> bhttp.Response:
            return bhttp.Response(status=200, content=NESTED)

    client.ohttp = cast(Any, NestedDirectory())
    with pytest.raises(TransportError, match="node directory answer is malformed"):
        client.candidates()


def test_a_relay_refusal_with_a_body_nested_without_end_is_still_a_refusal() -> None:
    """Attack: the relay's 503 carries deeply nested JSON: the call still sees the 503
    (which it retries), not an unexpected failure."""
    from privproc.client.ohttp import open_response

    with pytest.raises(RelayRefusedError) as refused:
        open_response(cast(Any, None), 503, "application/problem+json", NESTED)
    assert refused.value.status == 503


def test_a_gateway_answering_so_that_each_call_retries_drains_at_most_the_call_budget(
        ) -> None:
    """Attack: a gateway that answers each of a call's requests with what the call retries
    (not listed, then busy, then not listed...): each retry cost a token (about 20 for one
    call, with the directory reads), and an empty wallet then fetches from the issuer
    inside the request. One call spends at most MAX_CALL_TOKENS."""
    from privproc.client.sdk import MAX_CALL_TOKENS

    class Alternating(FakeNode):
        answers = 0

        def answer(self, sealed: bytes) -> bhttp.Response:
            Alternating.answers += 1
            self.behaviour = "gone" if Alternating.answers % 2 else "busy"
            return super().answer(sealed)

    nodes = [Alternating("n1", 1), Alternating("n2", 2)]
    client, relay, _ = client_for(nodes)
    relay_nodes = dict(relay.nodes)
    client._nodes = lambda: [n.verified for n in relay_nodes.values()]  # type: ignore[method-assign]
    client.timeout = 3600.0  # (the budget in tokens, not the time, stops it)
    with pytest.raises(TransportError, match=rf"spent {MAX_CALL_TOKENS} tokens without an "
                                             rf"answer"):
        client.summarize(CHAT)
    assert len(relay.sent) == MAX_CALL_TOKENS  # (14 before, and as many directory reads)


def test_a_relay_failing_after_the_token_is_sealed_in_costs_one_token_not_one_per_retry(
        ) -> None:
    """Attack: a relay answers 502 to each sealed request (the call retries while it
    looks like a restart): each retry cost a fresh token, which the gateway never saw.
    The retry carries the failed try's token again."""
    client, relay, _ = _flaky_client(0, RelayRefusedError(502, "unused"))
    node = relay.nodes["n1"]
    carried: list[object] = []

    class Failing(FakeRelay):
        failures = 5

        def request(self, method: str, path: str, **kwargs: Any) -> bhttp.Response:
            spent, token = kwargs.get("spent"), kwargs.get("token")
            token = object() if token is None else token
            carried.append(token)
            if spent is not None:
                spent.append(token)
            if Failing.failures:
                Failing.failures -= 1
                raise RelayRefusedError(502, "gateway unreachable")
            return node.answer(kwargs["content"])

    client.ohttp = cast(Any, Failing([node]))
    assert client.summarize(CHAT).output == ["n1"]
    assert len(carried) == 6 and len({id(t) for t in carried}) == 1
