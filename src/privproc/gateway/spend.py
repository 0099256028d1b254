"""The double-spend store for Privacy Pass tokens, shared by all gateway replicas.

``spend(token_id, expires_at)`` records a token and says whether it was the first spend.
Records live until the issuing key's end of life, after which the token is refused by
the key check anyway. An unreachable store raises :class:`SpendStoreUnavailable`, which
the gateway answers with 503: it never admits a token it could not record.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

from privproc.errors import PrivprocError

CLOCK_SKEW_MARGIN = 60  # seconds a spend record outlives its key in Redis


class SpendStoreUnavailable(PrivprocError):
    """The store could not be reached or written."""


class SpendStore(Protocol):
    def spend(self, token_id: bytes, expires_at: int, now: float) -> bool: ...

    def close(self) -> None: ...


class SqliteSpendStore:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                     timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS spent (token_id BLOB PRIMARY KEY,"
                           " expires_at INTEGER NOT NULL)")
        self._spends = 0

    def spend(self, token_id: bytes, expires_at: int, now: float) -> bool:
        with self._lock:
            try:
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO spent (token_id, expires_at) VALUES (?, ?)",
                    (token_id, expires_at),
                )
                self._spends += 1
                if self._spends % 1000 == 0:
                    self._conn.execute("DELETE FROM spent WHERE expires_at < ?", (int(now),))
            except sqlite3.Error as exc:
                raise SpendStoreUnavailable(f"spend database error: {exc}") from None
            return cur.rowcount == 1

    def close(self) -> None:
        self._conn.close()


class RedisSpendStore:
    """``SET key 1 NX EX ttl``: atomic across replicas (the TTL runs to the key's end)."""

    def __init__(self, url: str, prefix: str = "privproc:spent:") -> None:
        import redis

        self._redis_error = redis.RedisError
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = prefix.encode()

    def spend(self, token_id: bytes, expires_at: int, now: float) -> bool:
        # Round up, and keep the record a little past the key's end of life, so that a
        # replica whose clock is behind still finds it (a longer record is harmless: the
        # key check refuses the token from then on anyway).
        ttl = max(1, math.ceil(expires_at - now)) + CLOCK_SKEW_MARGIN
        try:
            return bool(self._client.set(self._prefix + token_id, b"1", nx=True, ex=ttl))
        except self._redis_error as exc:
            raise SpendStoreUnavailable(f"redis spend store: {exc}") from None

    def close(self) -> None:
        self._client.close()
