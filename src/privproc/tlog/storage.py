"""Durable storage for the log: SQLite (default) and PostgreSQL, behind one interface.

The sequencer is the only writer. One :meth:`LogStorage.write_batch` call is one
transaction that stores the new entry bundles and hash tiles, the lookup indexes and the
new log-signed checkpoint, and moves the tree size from ``old_size`` to ``new_size`` only
if the stored size is still ``old_size`` (so a second writer can never interleave). A
record is acknowledged only after that transaction has committed (SQLite: WAL with
``synchronous=FULL``; PostgreSQL: a normal commit).

Tiles are stored at their latest width: a partial tile is overwritten as it fills, and a
request for a narrower partial tile is served from the prefix of the stored one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from privproc.errors import PrivprocError

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL,"
    " checkpoint {blob} NOT NULL, published {blob} NOT NULL, published_size BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tiles (level INTEGER NOT NULL, idx BIGINT NOT NULL,"
    " data {blob} NOT NULL, PRIMARY KEY (level, idx))",
    "CREATE TABLE IF NOT EXISTS bundles (idx BIGINT PRIMARY KEY, data {blob} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS leaves (leaf_hash {blob} PRIMARY KEY, idx BIGINT NOT NULL)"
    "{without_rowid}",
    # Indexes record subjects (a release's or revocation's measurement, a key's SHA-256);
    # the table keeps its first name so that logs created before key records still open.
    "CREATE TABLE IF NOT EXISTS measurements (measurement {blob} NOT NULL, idx BIGINT NOT NULL,"
    " PRIMARY KEY (measurement, idx)){without_rowid}",
    "CREATE TABLE IF NOT EXISTS checkpoints (size BIGINT PRIMARY KEY, note {blob} NOT NULL)",
]


class StorageError(PrivprocError):
    """The log storage failed, or another writer changed it underneath."""


@dataclass(frozen=True)
class LogState:
    size: int
    checkpoint: bytes  # the latest log-signed checkpoint note
    published: bytes  # the latest checkpoint note published with its cosignatures
    published_size: int


@dataclass
class Batch:
    """Everything one integration writes, in one transaction."""

    old_size: int
    new_size: int
    checkpoint: bytes
    tiles: dict[tuple[int, int], bytes] = field(default_factory=dict)
    bundles: dict[int, bytes] = field(default_factory=dict)
    leaves: list[tuple[bytes, int]] = field(default_factory=list)
    subjects: list[tuple[bytes, int]] = field(default_factory=list)


class LogStorage(Protocol):
    def state(self) -> LogState | None: ...

    def initialize(self, checkpoint: bytes) -> None: ...

    def write_batch(self, batch: Batch) -> None: ...

    def publish(self, size: int, note: bytes) -> None: ...

    def read_tile(self, level: int, index: int) -> bytes | None: ...

    def read_bundle(self, index: int) -> bytes | None: ...

    def find_leaf(self, leaf_hash: bytes) -> int | None: ...

    def find_subject(self, subject: bytes) -> list[int]: ...

    def checkpoints(self) -> list[tuple[int, bytes]]: ...

    def close(self) -> None: ...


class _SqlStorage:
    """The SQL shared by both backends; subclasses supply connections and placeholders."""

    placeholder = "?"
    upsert_tile = (
        "INSERT INTO tiles (level, idx, data) VALUES (?, ?, ?) "
        "ON CONFLICT (level, idx) DO UPDATE SET data = excluded.data"
    )

    @contextmanager
    def _write(self) -> Iterator[Any]:
        raise NotImplementedError

    @contextmanager
    def _read(self) -> Iterator[Any]:
        raise NotImplementedError

    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def state(self) -> LogState | None:
        with self._read() as cur:
            cur.execute("SELECT size, checkpoint, published, published_size FROM meta WHERE id = 1")
            row = cur.fetchone()
        if row is None:
            return None
        return LogState(int(row[0]), bytes(row[1]), bytes(row[2]), int(row[3]))

    def initialize(self, checkpoint: bytes) -> None:
        with self._write() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO meta (id, size, checkpoint, published, published_size) "
                    "VALUES (1, 0, ?, ?, 0)"
                ),
                (checkpoint, checkpoint),
            )
            cur.execute(
                self._q("INSERT INTO checkpoints (size, note) VALUES (0, ?)"), (checkpoint,)
            )

    def write_batch(self, batch: Batch) -> None:
        with self._write() as cur:
            cur.execute(
                self._q("UPDATE meta SET size = ?, checkpoint = ? WHERE id = 1 AND size = ?"),
                (batch.new_size, batch.checkpoint, batch.old_size),
            )
            if cur.rowcount != 1:
                raise StorageError(
                    f"log size is no longer {batch.old_size}: another sequencer wrote to this log"
                )
            cur.executemany(
                self._q(self.upsert_tile),
                [(lvl, idx, data) for (lvl, idx), data in batch.tiles.items()],
            )
            cur.executemany(
                self._q(
                    "INSERT INTO bundles (idx, data) VALUES (?, ?) "
                    "ON CONFLICT (idx) DO UPDATE SET data = excluded.data"
                ),
                list(batch.bundles.items()),
            )
            cur.executemany(
                self._q("INSERT INTO leaves (leaf_hash, idx) VALUES (?, ?) ON CONFLICT DO NOTHING"),
                batch.leaves,
            )
            cur.executemany(
                self._q("INSERT INTO measurements (measurement, idx) VALUES (?, ?)"),
                batch.subjects,
            )
            cur.execute(
                self._q(
                    "INSERT INTO checkpoints (size, note) VALUES (?, ?) "
                    "ON CONFLICT (size) DO UPDATE SET note = excluded.note"
                ),
                (batch.new_size, batch.checkpoint),
            )

    def publish(self, size: int, note: bytes) -> None:
        with self._write() as cur:
            cur.execute(
                self._q(
                    "UPDATE meta SET published = ?, published_size = ? "
                    "WHERE id = 1 AND published_size <= ?"
                ),
                (note, size, size),
            )

    def read_tile(self, level: int, index: int) -> bytes | None:
        with self._read() as cur:
            cur.execute(
                self._q("SELECT data FROM tiles WHERE level = ? AND idx = ?"), (level, index)
            )
            row = cur.fetchone()
        return None if row is None else bytes(row[0])

    def read_bundle(self, index: int) -> bytes | None:
        with self._read() as cur:
            cur.execute(self._q("SELECT data FROM bundles WHERE idx = ?"), (index,))
            row = cur.fetchone()
        return None if row is None else bytes(row[0])

    def find_leaf(self, leaf_hash: bytes) -> int | None:
        with self._read() as cur:
            cur.execute(self._q("SELECT idx FROM leaves WHERE leaf_hash = ?"), (leaf_hash,))
            row = cur.fetchone()
        return None if row is None else int(row[0])

    def find_subject(self, subject: bytes) -> list[int]:
        with self._read() as cur:
            cur.execute(
                self._q("SELECT idx FROM measurements WHERE measurement = ? ORDER BY idx"),
                (subject,),
            )
            return [int(r[0]) for r in cur.fetchall()]

    def checkpoints(self) -> list[tuple[int, bytes]]:
        with self._read() as cur:
            cur.execute("SELECT size, note FROM checkpoints ORDER BY size")
            return [(int(r[0]), bytes(r[1])) for r in cur.fetchall()]


class SqliteStorage(_SqlStorage):
    """SQLite in WAL mode with ``synchronous=FULL``: a commit is on disk when it returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        with self._write() as cur:
            for statement in SCHEMA:
                cur.execute(statement.format(blob="BLOB", without_rowid=" WITHOUT ROWID"))

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: index inserts stay in memory
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        with self._write_lock:
            conn = self._connection()
            cur = conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        yield self._connection().cursor()

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


class PostgresStorage(_SqlStorage):
    """PostgreSQL through psycopg 3; ``schema`` isolates several logs in one database."""

    placeholder = "%s"

    def __init__(self, dsn: str, schema: str = "privproc_log") -> None:
        import psycopg

        if not schema.isidentifier():
            raise StorageError(f"schema must be an identifier, got {schema!r}")
        self._psycopg = psycopg
        self._dsn = dsn
        self._schema = schema
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        try:
            self._writer = psycopg.connect(dsn, autocommit=False)
            self._reader = psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from None
        with self._writer.cursor() as cur:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        self._writer.commit()
        for conn in (self._writer, self._reader):
            conn.execute(f'SET search_path TO "{schema}"')
        self._writer.commit()
        with self._write() as cur:
            for statement in SCHEMA:
                cur.execute(statement.format(blob="BYTEA", without_rowid=""))

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with self._write_lock:
            try:
                with self._writer.cursor() as cur:
                    yield cur
            except BaseException:
                self._writer.rollback()
                raise
            self._writer.commit()

    @contextmanager
    def _read(self) -> Iterator[Any]:
        with self._read_lock, self._reader.cursor() as cur:
            yield cur

    def drop(self) -> None:
        """Remove the schema and everything in it (tests)."""
        with self._write() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{self._schema}" CASCADE')

    def close(self) -> None:
        self._writer.close()
        self._reader.close()


def open_storage(
    state_dir: Path, db_url: str | None = None, schema: str = "privproc_log"
) -> LogStorage:
    """SQLite in ``state_dir/log.db`` unless a ``postgresql://`` URL is given."""
    if db_url is None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return SqliteStorage(state_dir / "log.db")
    if not db_url.startswith(("postgresql://", "postgres://")):
        raise StorageError(f"--db must be a postgresql:// URL, got {db_url.split(':')[0]}://...")
    return PostgresStorage(db_url, schema)


def tile_rows(tiles: Sequence[tuple[int, int, bytes]]) -> dict[tuple[int, int], bytes]:
    return {(level, index): data for level, index, data in tiles}
