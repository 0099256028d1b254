"""Per-account token quotas: how many tokens an account may get per period.

The issuer stores, per account and period, only a count: nothing about the blinded
messages it signed, so nothing that links an issued token to where it is spent.
:class:`SqliteQuota` serves one issuer; :class:`RedisQuota` many replicas (an atomic
Lua script, the key expiring with its period).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from privproc.errors import PrivprocError

DEFAULT_LIMIT = 200
DEFAULT_PERIOD = 24 * 3600


class QuotaUnavailable(PrivprocError):
    """The quota store cannot be reached: the issuer refuses rather than over-issue."""


@dataclass(frozen=True)
class QuotaDecision:
    granted: bool
    remaining: int
    retry_after: int  # seconds until the period ends (when refused)


class QuotaStore(Protocol):
    def take(self, account: str, count: int, limit: int, period: int, now: float
             ) -> QuotaDecision: ...

    def used(self, account: str, period: int, now: float) -> int: ...

    def close(self) -> None: ...


def _window(period: int, now: float) -> tuple[int, int]:
    start = int(now) // period * period
    return start, start + period - int(now)


class SqliteQuota:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                     timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS quota (account TEXT NOT NULL, window INTEGER NOT NULL,"
            " used INTEGER NOT NULL, PRIMARY KEY (account, window))"
        )

    def take(self, account: str, count: int, limit: int, period: int, now: float
             ) -> QuotaDecision:
        window, retry = _window(period, now)
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                row = self._conn.execute(
                    "SELECT used FROM quota WHERE account = ? AND window = ?", (account, window)
                ).fetchone()
                used = int(row[0]) if row else 0
                if used + count > limit:
                    self._conn.execute("ROLLBACK")
                    return QuotaDecision(False, limit - used, retry)
                self._conn.execute(
                    "INSERT INTO quota (account, window, used) VALUES (?, ?, ?) "
                    "ON CONFLICT (account, window) DO UPDATE SET used = used + excluded.used",
                    (account, window, count),
                )
                self._conn.execute("DELETE FROM quota WHERE window < ?", (window,))
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise QuotaUnavailable(f"quota database error: {exc}") from None
        return QuotaDecision(True, limit - used - count, retry)

    def used(self, account: str, period: int, now: float) -> int:
        window, _ = _window(period, now)
        with self._lock:
            row = self._conn.execute(
                "SELECT used FROM quota WHERE account = ? AND window = ?", (account, window)
            ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()


_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local count = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if used + count > limit then
  return {0, limit - used}
end
used = redis.call('INCRBY', KEYS[1], count)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, limit - used}
"""


class RedisQuota:
    def __init__(self, url: str, prefix: str = "privproc:quota:") -> None:
        import redis

        self._redis_error = redis.RedisError
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._script = self._client.register_script(_TAKE)
        self._prefix = prefix

    def _key(self, account: str, window: int) -> str:
        return f"{self._prefix}{window}:{account}"

    def take(self, account: str, count: int, limit: int, period: int, now: float
             ) -> QuotaDecision:
        window, retry = _window(period, now)
        try:
            granted, remaining = self._script(keys=[self._key(account, window)],
                                              args=[count, limit, period + 60])
        except self._redis_error as exc:
            raise QuotaUnavailable(f"redis quota store: {exc}") from None
        return QuotaDecision(bool(granted), int(remaining), retry)

    def used(self, account: str, period: int, now: float) -> int:
        window, _ = _window(period, now)
        try:
            value = self._client.get(self._key(account, window))
        except self._redis_error as exc:
            raise QuotaUnavailable(f"redis quota store: {exc}") from None
        return int(value) if value else 0

    def close(self) -> None:
        self._client.close()
