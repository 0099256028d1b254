"""Group commit in the double-spend stores: one writer, batches, durable acknowledgements.

Concurrent spends are written by one writer thread in batches (one SQLite transaction
with one fsync, or one Redis pipeline). These tests hold the writer inside a batch to
make the next batch's contents deterministic, then check what each spend is told: one
winner per token, nothing acknowledged before it is durable, and a failed batch failing
every spend in it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from privproc.gateway.spend import (
    RedisSpendStore,
    Spend,
    SpendStore,
    SpendStoreUnavailable,
    SqliteSpendStore,
)

from ..issuer.test_issuer_units import REDIS, redis_or_skip
from ..threads import on_threads

EOL = 10_000
NOW = 1_000.0


def ids(n: int, tag: str = "t") -> list[bytes]:
    return [f"{tag}-{i}-{uuid.uuid4().hex}".encode() for i in range(n)]


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SpendStore]:
    made: SpendStore
    if request.param == "sqlite":
        made = SqliteSpendStore(tmp_path / "spent.db")
    else:
        redis_or_skip()
        made = RedisSpendStore(REDIS, prefix=f"test:{uuid.uuid4().hex}:spent:")
    yield made
    made.close()


async def spend_all(store: SpendStore, token_ids: list[bytes]) -> list[bool | BaseException]:
    return await asyncio.gather(*(store.spend_async(t, EOL, NOW) for t in token_ids),
                                return_exceptions=True)


def test_concurrent_spends_of_one_token_admit_exactly_one(store: SpendStore) -> None:
    token = ids(1)[0]
    results = asyncio.run(spend_all(store, [token] * 64))
    assert results.count(True) == 1 and results.count(False) == 63


def test_concurrent_spends_from_threads_admit_exactly_one(store: SpendStore) -> None:
    token = ids(1)[0]
    results = on_threads(lambda: store.spend(token, EOL, NOW), 16)
    assert sorted(results) == [False] * 15 + [True]


def test_distinct_tokens_all_admitted_once(store: SpendStore) -> None:
    tokens = ids(300)
    assert asyncio.run(spend_all(store, tokens)) == [True] * 300
    assert asyncio.run(spend_all(store, tokens)) == [False] * 300


class HeldConnection:
    """An SQLite connection whose first ``BEGIN`` waits for :attr:`release`, whose
    ``COMMIT`` fails in the batches listed in ``fail_commits`` (counted from 1), and, with
    ``gate_commits``, whose every ``COMMIT`` waits for :attr:`commit_gate` (saying so on
    :attr:`committing`)."""

    def __init__(self, conn: sqlite3.Connection, fail_commits: set[int],
                 gate_commits: bool = False) -> None:
        self._conn = conn
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_commits = fail_commits
        self.begins = 0
        self.committing = threading.Event()
        self.commit_gate = threading.Event()
        if not gate_commits:
            self.commit_gate.set()

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def close(self) -> None:
        self._conn.close()

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if sql.startswith("BEGIN"):
            self.begins += 1
            if self.begins == 1:
                self.entered.set()
                assert self.release.wait(10)
        if sql == "COMMIT":
            self.committing.set()
            assert self.commit_gate.wait(10)
            if self.begins in self.fail_commits:
                raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, params)


async def held_batch(store: SqliteSpendStore, conn: HeldConnection, first: bytes,
                     batch: list[bytes]) -> tuple[bool | BaseException,
                                                  list[bool | BaseException]]:
    """Spend ``first`` alone (its batch held open), queue ``batch`` behind it, then let
    the writer go: ``batch`` is written as one batch."""
    head = asyncio.ensure_future(store.spend_async(first, EOL, NOW))
    assert await asyncio.to_thread(conn.entered.wait, 10)
    rest = asyncio.ensure_future(spend_all(store, batch))
    deadline = time.monotonic() + 10
    # every spend of the batch handed to the writer (held ones are put a loop turn later)
    while store.writer._outstanding < 1 + len(batch) or store.writer._held:
        assert time.monotonic() < deadline, "the batch was not queued"
        await asyncio.sleep(0.001)
    conn.release.set()
    results = await asyncio.gather(head, rest, return_exceptions=True)
    head_result, rest_results = results
    assert isinstance(rest_results, list)
    return head_result, rest_results


def test_queued_spends_are_written_as_one_batch(tmp_path: Path) -> None:
    store = SqliteSpendStore(tmp_path / "spent.db")
    conn = HeldConnection(store._conn, fail_commits=set())
    store._conn = conn  # type: ignore[assignment]
    try:
        tokens = ids(100)
        batch = [*tokens, tokens[0], tokens[57]]  # a double spend inside the batch
        head, results = asyncio.run(held_batch(store, conn, b"head", batch))
        assert head is True
        assert results == [True] * 100 + [False, False]
        assert (store.writer.batches, store.writer.largest) == (2, 102)
    finally:
        store.close()


def test_failed_commit_fails_every_spend_of_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "spent.db"
    store = SqliteSpendStore(path)
    conn = HeldConnection(store._conn, fail_commits={2})
    store._conn = conn  # type: ignore[assignment]
    tokens = ids(40)
    try:
        head, results = asyncio.run(held_batch(store, conn, b"head", tokens))
        assert head is True  # its own batch committed
        assert len(results) == 40
        assert all(isinstance(r, SpendStoreUnavailable) for r in results)
        assert "disk I/O error" in str(results[0])
        # Nothing of the failed batch was kept, and the store goes on working.
        assert asyncio.run(spend_all(store, tokens)) == [True] * 40
        assert store.spend(b"head", EOL, NOW) is False
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM spent").fetchone() == (41,)


def test_a_spend_is_acknowledged_only_once_committed(tmp_path: Path) -> None:
    path = tmp_path / "spent.db"
    store = SqliteSpendStore(path)
    reader = sqlite3.connect(path)
    try:
        async def spend_and_look(token: bytes) -> bool:
            first = await store.spend_async(token, EOL, NOW)
            # Another connection sees the row the moment the spend is acknowledged.
            row = reader.execute("SELECT 1 FROM spent WHERE token_id = ?", (token,))
            return first and row.fetchone() is not None

        async def run() -> list[bool]:
            return await asyncio.gather(*(spend_and_look(t) for t in ids(200)))

        assert asyncio.run(run()) == [True] * 200
    finally:
        reader.close()
        store.close()


CRASH = """
import asyncio, os, sys
from pathlib import Path
from privproc.gateway.spend import SqliteSpendStore

async def main() -> None:
    store = SqliteSpendStore(Path(sys.argv[1]))
    tokens = [b"crash-%d" % i for i in range(int(sys.argv[2]))]
    results = await asyncio.gather(*(store.spend_async(t, 10_000, 1_000.0) for t in tokens))
    assert all(results)
    print("acknowledged", len(results), flush=True)
    os._exit(0)  # no close, no commit left to run: what a crash leaves behind

asyncio.run(main())
"""


def test_acknowledged_spends_survive_a_crash_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "spent.db"
    out = subprocess.run([sys.executable, "-c", CRASH, str(path), "300"], capture_output=True,
                         text=True, timeout=60, check=True)
    assert "acknowledged 300" in out.stdout
    reopened = SqliteSpendStore(path)
    try:
        tokens = [b"crash-%d" % i for i in range(300)]
        assert asyncio.run(spend_all(reopened, tokens)) == [False] * 300
    finally:
        reopened.close()


def test_closed_store_refuses_spends(tmp_path: Path) -> None:
    store = SqliteSpendStore(tmp_path / "spent.db")
    assert store.spend(b"a", EOL, NOW)
    store.close()
    with pytest.raises(SpendStoreUnavailable):
        store.spend(b"b", EOL, NOW)


def test_unreachable_redis_fails_every_spend_of_the_batch() -> None:
    store = RedisSpendStore("redis://127.0.0.1:1/0")
    try:
        results = asyncio.run(spend_all(store, ids(5)))
        assert all(isinstance(r, SpendStoreUnavailable) for r in results)
    finally:
        store.close()


def test_redis_pipeline_refuses_the_second_spend_of_a_token() -> None:
    redis_or_skip()
    prefix = f"test:{uuid.uuid4().hex}:spent:"
    store = RedisSpendStore(REDIS, prefix=prefix)
    tokens = ids(50)
    try:
        results = asyncio.run(spend_all(store, [*tokens, *tokens]))
        assert results == [True] * 50 + [False] * 50
        ttl = redis.Redis.from_url(REDIS).ttl(prefix.encode() + tokens[0])
        assert ttl >= EOL - NOW  # the record covers the key's remaining life
    finally:
        store.close()
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


# -- reserve: the spend decided before it is durable, made durable while forwarding -------


def test_reserve_decides_a_spent_token_before_it_returns(store: SpendStore) -> None:
    token = ids(1)[0]

    async def run() -> tuple[bool, bool, bool]:
        spending = await store.reserve_async(token, EOL, NOW)
        first = await spending
        again = await store.reserve_async(token, EOL, NOW)
        return first, again.done(), again.result()

    assert asyncio.run(run()) == (True, True, False)  # refused before forwarding


def gated(tmp_path: Path, fail_commits: set[int] | None = None
          ) -> tuple[SqliteSpendStore, HeldConnection]:
    """A store whose commits wait for ``conn.commit_gate``."""
    store = SqliteSpendStore(tmp_path / "spent.db")
    conn = HeldConnection(store._conn, fail_commits or set(), gate_commits=True)
    conn.release.set()
    store._conn = conn  # type: ignore[assignment]
    return store, conn


def test_a_reserved_spend_is_decided_before_its_commit_and_acknowledged_after(
        tmp_path: Path) -> None:
    store, conn = gated(tmp_path)
    try:
        async def run() -> bool:
            spending = await store.reserve_async(b"t", EOL, NOW)  # returns before the fsync
            assert await asyncio.to_thread(conn.committing.wait, 10)
            assert not spending.done()  # the request goes on; its answer waits for this
            conn.commit_gate.set()
            return await spending

        assert asyncio.run(run()) is True
    finally:
        store.close()


def test_copies_of_a_token_being_spent_are_refused_before_forwarding(tmp_path: Path) -> None:
    """Copies arriving while the first spend of their token is being committed: each is
    decided "not first" (so a node works once, however many copies come)."""
    store, conn = gated(tmp_path)
    token = ids(1)[0]
    try:
        async def run() -> tuple[bool, list[tuple[bool, bool]]]:
            first = await store.reserve_async(token, EOL, NOW)
            assert await asyncio.to_thread(conn.committing.wait, 10)
            copies = [asyncio.ensure_future(store.reserve_async(token, EOL, NOW))
                      for _ in range(16)]
            await asyncio.sleep(0)
            conn.commit_gate.set()
            decided = [await c for c in copies]
            return await first, [(d.done(), d.result()) for d in decided]

        first, copies = asyncio.run(run())
        assert first is True and copies == [(True, False)] * 16
    finally:
        store.close()


def test_a_failed_commit_fails_the_spend_and_keeps_nothing(tmp_path: Path) -> None:
    store, conn = gated(tmp_path, fail_commits={1})
    conn.commit_gate.set()
    try:
        async def run() -> BaseException | bool:
            spending = await store.reserve_async(b"t", EOL, NOW)  # decided: first
            try:
                return await spending
            except SpendStoreUnavailable as exc:
                return exc

        assert isinstance(asyncio.run(run()), SpendStoreUnavailable)  # never acknowledged
        assert asyncio.run(spend_all(store, [b"t"])) == [True]  # nothing was kept
    finally:
        store.close()


def test_the_spends_of_one_loop_iteration_are_one_batch(store: SpendStore) -> None:
    """64 requests redeemed at once: one transaction or pipeline (one fsync), not as
    many as the writer thread happens to wake for."""
    tokens = ids(64)

    async def reserve(token: bytes) -> asyncio.Future[bool]:
        time.sleep(0.0005)  # the token check, which lets the writer thread run meanwhile
        return await store.reserve_async(token, EOL, NOW)

    async def reserve_all() -> list[bool]:
        futures = await asyncio.gather(*(reserve(t) for t in tokens))
        return list(await asyncio.gather(*futures))

    writer = store.writer  # type: ignore[attr-defined]
    before = writer.batches
    assert asyncio.run(reserve_all()) == [True] * 64
    assert writer.batches - before == 1 and writer.largest == 64
    assert asyncio.run(reserve_all()) == [False] * 64  # the second time: all refused


def test_spends_held_for_the_loop_turn_are_written_on_close(tmp_path: Path) -> None:
    store = SqliteSpendStore(tmp_path / "spent.db")

    async def spend_then_close() -> list[bool]:
        futures = [store.writer.submit_outcome(Spend(t, EOL, NOW)) for t in ids(3)]
        store.close()  # before the loop turn ends: the held spends still go
        return list(await asyncio.gather(*futures))

    assert asyncio.run(spend_then_close()) == [True] * 3
    with sqlite3.connect(tmp_path / "spent.db") as db:
        assert db.execute("SELECT COUNT(*) FROM spent").fetchone() == (3,)
