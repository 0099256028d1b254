"""Anti-replay for encapsulated requests (RFC 9458 section 6.5).

A request is accepted once: the gateway remembers the client's encapsulated key share
(``enc``, fresh for every request) for as long as the request's ``Date`` could still be
accepted, and refuses requests whose ``Date`` is outside the window. Memory is bounded by
the request rate times the window. Times are passed in; nothing here reads a clock.

Three stores with one judgement: :class:`ReplayGuard` in memory (tests, embedded use),
:class:`SqliteReplayGuard` in the gateway's state directory (one replica; survives a
restart, so a request seen before a crash is still refused after it), and
:class:`RedisReplayGuard` shared by replicas.
"""

from __future__ import annotations

import enum
import hashlib
import re
import sqlite3
import threading
from collections import deque
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from privproc.errors import PrivprocError


class Verdict(enum.Enum):
    FRESH = "fresh"
    REPLAYED = "replayed"
    BAD_DATE = "bad-date"


_IMF_FIXDATE = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    rb" (\d{4}) (\d\d):(\d\d):(\d\d) GMT")
_MONTHS = {m: i for i, m in enumerate(
    (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
     b"Dec"), start=1)}


def parse_http_date(value: bytes) -> float | None:
    """An HTTP ``Date`` value as seconds since the epoch, or None if malformed. The
    preferred form (RFC 9110 IMF-fixdate, what clients send) is read directly; the
    obsolete ones through :mod:`email.utils`."""
    fixed = _IMF_FIXDATE.fullmatch(value)
    if fixed is not None:
        day, month, year, hour, minute, second = fixed.groups()
        try:
            return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute),
                            int(second), tzinfo=UTC).timestamp()
        except ValueError:  # 31 Feb, 25:00, a leap second
            return None
    try:
        return parsedate_to_datetime(value.decode("ascii")).timestamp()
    except (ValueError, TypeError, UnicodeDecodeError):
        return None


class _Window:
    """What every store judges the same way: a ``Date`` within ``window`` seconds of now."""

    def __init__(self, window_seconds: float) -> None:
        if window_seconds <= 0:
            raise ValueError(f"replay window must be > 0 seconds, got {window_seconds}")
        self.window = window_seconds

    def _bad_date(self, request_date: float | None, now: float) -> bool:
        return request_date is None or abs(now - request_date) > self.window


class ReplayGuard(_Window):
    """Remembers recent request identifiers (their SHA-256: an encapsulated key share is
    1,120 bytes with the hybrid KEM); refuses repeats and stale dates."""

    def __init__(self, window_seconds: float = 60.0) -> None:
        super().__init__(window_seconds)
        self._seen: set[bytes] = set()
        self._expiry: deque[tuple[float, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            self._seen.discard(self._expiry.popleft()[1])

    def check(self, request_id: bytes, request_date: float | None, now: float) -> Verdict:
        """Judge one request and remember it if fresh."""
        self._expire(now)
        if self._bad_date(request_date, now):
            return Verdict.BAD_DATE
        key = hashlib.sha256(request_id).digest()
        if key in self._seen:
            return Verdict.REPLAYED
        self._seen.add(key)
        # A request dated d is acceptable until d + window; remember it that long, and
        # never less than the window from now so that clock skew cannot shorten it.
        self._expiry.append((now + 2 * self.window, key))
        return Verdict.FRESH


class ReplayStoreUnavailable(PrivprocError):
    """The shared replay store cannot be reached: the request is refused, not admitted."""


class SqliteReplayGuard(_Window):
    """The same judgement, remembered in SQLite (``replay.db`` in the gateway's state) so
    that it survives a restart of the gateway.

    Only ``sha256(enc)`` is stored, with the time until which it is remembered (twice the
    window from first sight, as in memory). Rows past that time are deleted every
    ``prune_every`` checks and whenever a window has passed since the last deletion: the
    table holds at most the request rate times twice the window (plus one pruning
    interval). WAL with ``synchronous=NORMAL``: every record is in the operating system's
    hands before the request is admitted, so a killed gateway loses none; a power loss may
    lose the last ones (the double-spend store, ``synchronous=FULL``, still refuses a
    replayed token).
    """

    def __init__(self, path: Path, window_seconds: float = 60.0, *,
                 prune_every: int = 1000) -> None:
        super().__init__(window_seconds)
        self._prune_every = prune_every
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                         timeout=5)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS seen (id BLOB PRIMARY KEY,"
                               " until REAL NOT NULL) WITHOUT ROWID")
        except sqlite3.Error as exc:
            raise ReplayStoreUnavailable(f"replay database {path}: {exc}") from None
        self._checks = 0
        self._pruned_at: float | None = None

    def __len__(self) -> int:
        with self._lock:
            count: int = self._conn.execute("SELECT count(*) FROM seen").fetchone()[0]
            return count

    def check(self, request_id: bytes, request_date: float | None, now: float) -> Verdict:
        if self._bad_date(request_date, now):
            return Verdict.BAD_DATE
        key = hashlib.sha256(request_id).digest()
        with self._lock:
            try:
                # A row whose time has passed (not yet pruned) counts as absent.
                cur = self._conn.execute(
                    "INSERT INTO seen (id, until) VALUES (?, ?) ON CONFLICT (id) DO UPDATE"
                    " SET until = excluded.until WHERE seen.until <= ?",
                    (key, now + 2 * self.window, now))
                fresh = cur.rowcount == 1
                self._checks += 1
                if (self._checks % self._prune_every == 0 or self._pruned_at is None
                        or now - self._pruned_at >= self.window):
                    self._conn.execute("DELETE FROM seen WHERE until <= ?", (now,))
                    self._pruned_at = now
            except sqlite3.Error as exc:
                raise ReplayStoreUnavailable(f"replay database error: {exc}") from None
        return Verdict.FRESH if fresh else Verdict.REPLAYED

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class RedisReplayGuard(_Window):
    """The same judgement, shared by every gateway replica through Redis.

    ``SET <prefix><sha256(enc)> 1 NX PX <twice the window>``: the first replica to see a request
    records it, every later sighting (on any replica) is a replay. Only a hash of the
    encapsulated key share is stored, for twice the window.
    """

    def __init__(self, url: str, window_seconds: float = 60.0,
                 prefix: str = "privproc:replay:") -> None:
        import redis

        super().__init__(window_seconds)
        self._redis_error = redis.RedisError
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = prefix.encode()

    def check(self, request_id: bytes, request_date: float | None, now: float) -> Verdict:
        if self._bad_date(request_date, now):
            return Verdict.BAD_DATE
        key = self._prefix + hashlib.sha256(request_id).digest()
        try:
            first = self._client.set(key, b"1", nx=True, px=int(2000 * self.window))
        except self._redis_error as exc:
            raise ReplayStoreUnavailable(f"redis replay store: {exc}") from None
        return Verdict.FRESH if first else Verdict.REPLAYED

    def close(self) -> None:
        self._client.close()
