"""State stores for the witness: durable SQLite, and in-memory for tests.

Both implement :class:`~privproc.tlog.witness.WitnessStateStore`: per origin, the size
and root hash of the latest cosigned checkpoint, changed only by an atomic
compare-and-set. Both also keep a history of cosigned states: one row per
``(origin, size)``, recording the root hash and the time it was *first* cosigned
(re-cosigning the same checkpoint adds no row, so replaying a checkpoint cannot grow the
database).

:class:`SqliteWitnessStore` runs SQLite in WAL mode with ``synchronous=FULL``, so a
compare-and-set that returned True is on disk; it takes the write lock with
``BEGIN IMMEDIATE`` before reading the current state, which makes the check and the
update one transaction even across processes sharing the file. Sizes are stored as
decimal text, since tree sizes go up to 2**64-1 and SQLite integers stop at 2**63-1.
Every call is blocking (an fsync on commit); the HTTP service calls it from a thread pool.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from .witness import HistoryEntry, State, WitnessStoreError, check_transition

__all__ = ["MemoryWitnessStore", "SqliteWitnessStore"]

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS latest (origin TEXT PRIMARY KEY, size TEXT NOT NULL,"
    " root BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS history (origin TEXT NOT NULL, size TEXT NOT NULL,"
    " root BLOB NOT NULL, timestamp INTEGER, PRIMARY KEY (origin, size))",
)


def _state(origin: str, size: object, root: object) -> State:
    """A stored row as a :data:`State`, refusing anything malformed."""
    if (
        not isinstance(size, str)
        or not (size.isascii() and size.isdigit())
        or not isinstance(root, bytes)
    ):
        raise WitnessStoreError(f"{origin!r}: malformed stored state (size={size!r:.40})")
    return int(size), root


class MemoryWitnessStore:
    """An in-memory :class:`~privproc.tlog.witness.WitnessStateStore` (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, State] = {}
        self._history: dict[tuple[str, int], HistoryEntry] = {}

    def get(self, origin: str) -> State | None:
        with self._lock:
            return self._latest.get(origin)

    def compare_and_set(
        self,
        origin: str,
        expected_old: State | None,
        new: State,
        *,
        timestamp: int | None = None,
    ) -> bool:
        check_transition(origin, expected_old, new)
        with self._lock:
            if self._latest.get(origin) != expected_old:
                return False
            self._latest[origin] = (new[0], bytes(new[1]))
            key = (origin, new[0])
            if key not in self._history:
                self._history[key] = HistoryEntry(origin, new[0], bytes(new[1]), timestamp)
            return True

    def history(self, origin: str) -> list[HistoryEntry]:
        """The cosigned states of ``origin``, smallest size first."""
        with self._lock:
            return sorted(
                (e for (o, _), e in self._history.items() if o == origin), key=lambda e: e.size
            )

    def close(self) -> None:
        """Nothing to release (for symmetry with :class:`SqliteWitnessStore`)."""


class SqliteWitnessStore:
    """A durable :class:`~privproc.tlog.witness.WitnessStateStore` in one SQLite file.

    Thread-safe: each thread gets its own connection; writers are serialized by SQLite's
    write lock (``BEGIN IMMEDIATE``, waiting up to ``busy_timeout`` seconds for it).
    """

    def __init__(self, path: Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA:
                    conn.execute(statement)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        except sqlite3.Error as exc:
            self.close()
            raise WitnessStoreError(f"cannot set up witness database {self.path}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self._busy_timeout,
                )
            except sqlite3.Error as exc:
                raise WitnessStoreError(f"cannot open witness database {self.path}: {exc}") from exc
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
                if mode is None or str(mode[0]).lower() != "wal":
                    raise WitnessStoreError(
                        f"{self.path}: expected SQLite journal_mode=wal, got {mode!r}"
                    )
                conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                conn.close()
                raise WitnessStoreError(f"cannot open witness database {self.path}: {exc}") from exc
            except WitnessStoreError:
                conn.close()
                raise
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def get(self, origin: str) -> State | None:
        row = self._connection().execute(
            "SELECT size, root FROM latest WHERE origin = ?", (origin,)
        ).fetchone()
        return None if row is None else _state(origin, row[0], row[1])

    def compare_and_set(
        self,
        origin: str,
        expected_old: State | None,
        new: State,
        *,
        timestamp: int | None = None,
    ) -> bool:
        check_transition(origin, expected_old, new)
        size, root = new[0], bytes(new[1])
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT size, root FROM latest WHERE origin = ?", (origin,)
            ).fetchone()
            current = None if row is None else _state(origin, row[0], row[1])
            if current != expected_old:
                conn.rollback()
                return False
            conn.execute(
                "INSERT INTO latest (origin, size, root) VALUES (?, ?, ?) "
                "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root",
                (origin, str(size), root),
            )
            conn.execute(
                "INSERT OR IGNORE INTO history (origin, size, root, timestamp) "
                "VALUES (?, ?, ?, ?)",
                (origin, str(size), root, timestamp),
            )
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return True

    def history(self, origin: str) -> list[HistoryEntry]:
        """The cosigned states of ``origin``, smallest size first."""
        rows = self._connection().execute(
            "SELECT size, root, timestamp FROM history WHERE origin = ?", (origin,)
        ).fetchall()
        entries = [
            HistoryEntry(origin, *_state(origin, size, root), None if ts is None else int(ts))
            for size, root, ts in rows
        ]
        return sorted(entries, key=lambda e: e.size)

    def close(self) -> None:
        """Close every thread's connection. The store must not be used afterwards."""
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
