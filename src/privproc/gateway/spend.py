"""The double-spend store for Privacy Pass tokens, shared by all gateway replicas.

``spend(token_id, expires_at, now)`` records a token and says whether it was the first
spend; ``await spend_async(...)`` does the same without blocking the event loop (the
gateway's path). Records live until the issuing key's end of life, after which the token
is refused by the key check anyway. An unreachable store raises
:class:`SpendStoreUnavailable`, which the gateway answers with 503: it never admits a
token it could not record.

**Group commit.** Both stores hand spends to one writer thread, which takes everything
queued so far as a batch: SQLite inserts the batch in one transaction (one fsync, WAL
with ``synchronous=FULL``), Redis sends it as one pipeline. No spend is acknowledged
before its batch is durable (SQLite: committed; Redis: answered), a batch that fails
fails every spend in it, and two spends of one token in one batch are decided in order
inside it (the second is refused). A batch is whatever queued while the previous one
was being written, the spends of an event loop's iteration coming as one: one spend
alone is written at once.

**Overlap.** ``await reserve_async(...)`` returns once the spend is *decided* (SQLite:
by a look-up of the committed records when the writer is idle, as it is for a lone
request, else by its batch's inserts, before the commit's fsync; Redis: answered) with a
future of its *durable* outcome, so the gateway can forward the request while the spend
is made durable (the fsync, about half a millisecond here, then costs no latency) and
release the answer only once it is. A token spent already, or earlier in the same
batch, is decided "not first" and refused before anything is forwarded, so a replayed
token costs a node no work. A batch written after an earlier one sees its inserts only
once that one is committed (one writer, one batch at a time): a second copy of a token
whose first spend failed to commit is then a first spend.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import math
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from privproc.errors import PrivprocError

_T = TypeVar("_T")

CLOCK_SKEW_MARGIN = 60  # seconds a spend record outlives its key in Redis
MAX_BATCH = 1024  # spends written in one transaction or pipeline at most
PURGE_EVERY = 1000  # SQLite: expired records are deleted once per this many spends


class SpendStoreUnavailable(PrivprocError):
    """The store could not be reached or written."""


class SpendStore(Protocol):
    def spend(self, token_id: bytes, expires_at: int, now: float) -> bool:
        """Record ``token_id``; True for its first spend. Blocks until durable."""
        ...

    async def spend_async(self, token_id: bytes, expires_at: int, now: float) -> bool:
        """:meth:`spend` for a coroutine: the event loop goes on while it is written."""
        ...

    async def reserve_async(self, token_id: bytes, expires_at: int, now: float
                            ) -> asyncio.Future[bool]:
        """Start the spend; the future's result is :meth:`spend`'s, once durable (see
        the module: a token already spent is refused before this returns)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Spend:
    token_id: bytes
    expires_at: int
    now: float


class _Waiter:
    """Where one spend's outcome goes: a thread's future or an event loop's future (and,
    for :meth:`GroupCommitter.submit`, the loop's future of the decision before the
    commit)."""

    __slots__ = ("decided", "future", "loop", "spend")

    def __init__(self, spend: Spend,
                 future: concurrent.futures.Future[bool] | asyncio.Future[bool],
                 loop: asyncio.AbstractEventLoop | None,
                 decided: asyncio.Future[bool] | None = None) -> None:
        self.spend = spend
        self.future = future
        self.loop = loop
        self.decided = decided


# write(batch, decided): records the batch durably and returns one bool per spend; calls
# decided(results) once they are known and before they are durable (or not at all).
Write = Callable[[list[Spend], Callable[[list[bool]], None]], list[bool]]


def _settle(pairs: Sequence[tuple[_Waiter, bool | None]], error: str) -> None:
    """Set each future: its result, or (None) a :class:`SpendStoreUnavailable`; a
    decision not announced before is announced with it."""
    for waiter, result in pairs:
        for future in (waiter.decided, waiter.future):
            if future is None or future.done():  # announced, or its request cancelled
                continue
            if result is None:
                future.set_exception(SpendStoreUnavailable(error))
            else:
                future.set_result(result)


def _announce(pairs: Sequence[tuple[_Waiter, bool]]) -> None:
    for waiter, result in pairs:
        if waiter.decided is not None and not waiter.decided.done():
            waiter.decided.set_result(result)


def _decided(first: bool) -> asyncio.Future[bool]:
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    future.set_result(first)
    return future


class GroupCommitter:
    """One writer thread that writes queued spends in batches with ``write``.

    ``write(batch, decided)`` returns one bool per spend (first spend or not), in order,
    once the whole batch is durable, or raises :class:`SpendStoreUnavailable` (then every
    spend of the batch fails); it may call ``decided(results)`` before the batch is
    durable. Each loop's waiters are woken with one call per batch and phase.
    """

    def __init__(self, write: Write, name: str, max_batch: int = MAX_BATCH) -> None:
        self._write = write
        self._name = name
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[list[_Waiter] | None] = queue.SimpleQueue()
        # An event loop's spends of its current iteration, put as one item once it ends
        self._held: dict[asyncio.AbstractEventLoop, list[_Waiter]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._outstanding = 0  # spends put and not yet settled
        self.batches = 0  # batches written (or failed), for tests and benchmarks
        self.largest = 0  # the largest batch so far

    def _admit_locked(self) -> None:
        """Count one more spend outstanding, starting the writer if need be (with the
        lock held; raises once closed)."""
        if self._closed:
            raise SpendStoreUnavailable("the spend store is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._outstanding += 1

    def _put(self, waiter: _Waiter) -> None:
        with self._lock:
            self._admit_locked()
            self._queue.put([waiter])

    def _hold(self, waiter: _Waiter, loop: asyncio.AbstractEventLoop) -> None:
        """Put a loop's spend once the loop's current iteration is over, with every other
        spend of that iteration: the tasks that ran together are one batch (and one
        fsync) instead of as many as the writer happens to wake for (64 redemptions at
        once: 3 spends per fsync before, 64 now, and 1.5x the redemptions per CPU
        second). A spend starts at most one iteration's work later; its task could not
        resume before that iteration ends anyway."""
        with self._lock:
            self._admit_locked()
            held = self._held.setdefault(loop, [])
            held.append(waiter)
            if len(held) >= self.max_batch:
                self._queue.put(self._held.pop(loop))
            elif len(held) == 1:
                loop.call_soon(self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            held = self._held.pop(loop, None)
            if held:
                self._queue.put(held)

    def idle(self) -> bool:
        """Nothing queued or being written: every spend put so far is settled."""
        with self._lock:
            return self._outstanding == 0

    def spend(self, spend: Spend) -> bool:
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self._put(_Waiter(spend, future, None))
        return future.result()

    async def spend_async(self, spend: Spend) -> bool:
        return await self.submit_outcome(spend)

    def submit(self, spend: Spend) -> tuple[asyncio.Future[bool], asyncio.Future[bool]]:
        """Queue ``spend``; the running loop's futures of its decision (before the
        commit) and of its durable outcome."""
        loop = asyncio.get_running_loop()
        decided: asyncio.Future[bool] = loop.create_future()
        future: asyncio.Future[bool] = loop.create_future()
        self._hold(_Waiter(spend, future, loop, decided), loop)
        return decided, future

    def submit_outcome(self, spend: Spend) -> asyncio.Future[bool]:
        """Queue ``spend``; the running loop's future of its durable outcome only (for a
        spend already decided by a look-up: one wake-up of the loop, not two)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._hold(_Waiter(spend, future, loop), loop)
        return future

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                for held in self._held.values():
                    self._queue.put(held)
                self._held.clear()
                self._queue.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch = first
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch += item
            outcome: list[bool] | str
            try:
                outcome = self._write([w.spend for w in batch],
                                      functools.partial(self._announce_decisions, batch))
                if len(outcome) != len(batch):
                    outcome = "the spend store answered for the wrong number of tokens"
            except SpendStoreUnavailable as exc:
                outcome = str(exc)
            except Exception as exc:  # noqa: BLE001 - no waiter may hang on a bug
                outcome = f"spend store failure ({type(exc).__name__})"
            self.batches += 1
            self.largest = max(self.largest, len(batch))
            with self._lock:
                self._outstanding -= len(batch)
            self._wake(batch, outcome)

    @staticmethod
    def _announce_decisions(batch: list[_Waiter], results: list[bool]) -> None:
        """Announce each decision to the loops that asked for it (one call per loop)."""
        _per_loop([(w, r) for w, r in zip(batch, results, strict=True)
                   if w.decided is not None], _announce)

    @staticmethod
    def _wake(batch: list[_Waiter], outcome: list[bool] | str) -> None:
        error = outcome if isinstance(outcome, str) else ""
        results: Sequence[bool | None] = (
            [None] * len(batch) if isinstance(outcome, str) else outcome)
        pairs = list(zip(batch, results, strict=True))
        for waiter, result in pairs:
            if waiter.loop is None:
                _settle([(waiter, result)], error)
        _per_loop(pairs, _settle, error)


def _per_loop(pairs: Sequence[tuple[_Waiter, _T]],
              callback: Callable[..., object], *args: object) -> None:
    """Hand the pairs whose waiter belongs to an event loop to that loop, each loop's
    group with one thread-safe call: ``callback(group, *args)``."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Waiter, _T]]] = {}
    for waiter, result in pairs:
        if waiter.loop is not None:
            by_loop.setdefault(waiter.loop, []).append((waiter, result))
    for loop, group in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits now
            loop.call_soon_threadsafe(callback, group, *args)


class _GroupCommitStore:
    """What both stores share: spends go through one :class:`GroupCommitter` writing
    with the store's ``_write``."""

    _writer: GroupCommitter

    @property
    def writer(self) -> GroupCommitter:
        return self._writer

    def spend(self, token_id: bytes, expires_at: int, now: float) -> bool:
        return self._writer.spend(Spend(token_id, expires_at, now))

    async def spend_async(self, token_id: bytes, expires_at: int, now: float) -> bool:
        return await self._writer.spend_async(Spend(token_id, expires_at, now))


class SqliteSpendStore(_GroupCommitStore):
    """Spends in one SQLite file (one gateway replica), written with group commit."""

    def __init__(self, path: Path, max_batch: int = MAX_BATCH) -> None:
        try:
            self._conn = sqlite3.connect(path, isolation_level=None,
                                         check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # every commit is fsynced
            self._conn.execute("CREATE TABLE IF NOT EXISTS spent (token_id BLOB PRIMARY KEY,"
                               " expires_at INTEGER NOT NULL)")
            # Look-ups (reserve_async, when the writer is idle) on a connection of their
            # own: in WAL mode a read neither waits for the writer nor makes it wait.
            self._reader = sqlite3.connect(path, isolation_level=None,
                                           check_same_thread=False, timeout=30)
        except sqlite3.Error as exc:
            raise SpendStoreUnavailable(f"spend database error: {exc}") from None
        self._spends = 0
        self._writer = GroupCommitter(self._write, "spend-writer", max_batch)

    def _write(self, batch: list[Spend], decided: Callable[[list[bool]], None]
               ) -> list[bool]:
        """Insert ``batch`` in one transaction (runs on the writer thread only); the
        decisions are announced between the inserts and the commit."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            first = [conn.execute(
                "INSERT OR IGNORE INTO spent (token_id, expires_at) VALUES (?, ?)",
                (s.token_id, s.expires_at)).rowcount == 1 for s in batch]
            decided(first)
            before, self._spends = self._spends, self._spends + len(batch)
            if before // PURGE_EVERY != self._spends // PURGE_EVERY:
                oldest_now = min(s.now for s in batch)
                conn.execute("DELETE FROM spent WHERE expires_at < ?", (int(oldest_now),))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise SpendStoreUnavailable(f"spend database error: {exc}") from None
        return first

    async def reserve_async(self, token_id: bytes, expires_at: int, now: float
                            ) -> asyncio.Future[bool]:
        if self._writer.idle():
            # Every spend so far is committed: a look-up decides at once, with no wait
            # for the writer (what a lone request would otherwise wait for). Only this
            # event loop puts spends, so none can come between the look-up and the put.
            try:
                # fetchall: the statement runs to its end, so no read snapshot stays open
                spent = bool(self._reader.execute("SELECT 1 FROM spent WHERE token_id = ?",
                                                  (token_id,)).fetchall())
            except sqlite3.Error as exc:
                raise SpendStoreUnavailable(f"spend database error: {exc}") from None
            if spent:
                return _decided(False)
            return self._writer.submit_outcome(Spend(token_id, expires_at, now))
        # Under load the batch decides (its inserts, before its commit is durable).
        decided, durable = self._writer.submit(Spend(token_id, expires_at, now))
        if not await decided:  # raises if the batch failed before its inserts were done
            return _decided(False)
        return durable

    def close(self) -> None:
        self._writer.close()
        self._conn.close()
        self._reader.close()


class RedisSpendStore(_GroupCommitStore):
    """``SET key 1 NX EX ttl``: atomic across replicas (the TTL runs to the key's end);
    a batch of spends goes as one pipeline (one round trip)."""

    def __init__(self, url: str, prefix: str = "privproc:spent:",
                 max_batch: int = MAX_BATCH) -> None:
        import redis

        self._redis_error = redis.RedisError
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = prefix.encode()
        self._writer = GroupCommitter(self._write, "spend-writer", max_batch)

    def _write(self, batch: list[Spend], decided: Callable[[list[bool]], None]
               ) -> list[bool]:
        """One pipeline: decided once answered, and then also durable."""
        pipe = self._client.pipeline(transaction=False)
        for s in batch:
            # Round up, and keep the record a little past the key's end of life, so that
            # a replica whose clock is behind still finds it (a longer record is harmless:
            # the key check refuses the token from then on anyway).
            ttl = max(1, math.ceil(s.expires_at - s.now)) + CLOCK_SKEW_MARGIN
            pipe.set(self._prefix + s.token_id, b"1", nx=True, ex=ttl)
        try:
            replies = pipe.execute(raise_on_error=True)
        except self._redis_error as exc:
            raise SpendStoreUnavailable(f"redis spend store: {exc}") from None
        return [bool(r) for r in replies]

    async def reserve_async(self, token_id: bytes, expires_at: int, now: float
                            ) -> asyncio.Future[bool]:
        return _decided(await self.spend_async(token_id, expires_at, now))

    def close(self) -> None:
        self._writer.close()
        self._client.close()
