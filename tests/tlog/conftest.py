"""Both storage backends, so every storage test runs against SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from privproc.tlog.storage import LogStorage, PostgresStorage, SqliteStorage

PG_DSN = os.environ.get("PRIVPROC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres_available() -> str | None:
    import psycopg

    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


StorageFactory = Callable[[], LogStorage]


@pytest.fixture(params=["sqlite", "postgres"])
def storage_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageFactory]:
    """A factory: each call opens the same log again (as a restart would)."""
    opened: list[LogStorage] = []
    if request.param == "sqlite":
        def factory() -> LogStorage:
            s = SqliteStorage(tmp_path / "log.db")
            opened.append(s)
            return s
        yield factory
    else:
        problem = _postgres_available()
        if problem is not None:
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL at {PG_DSN} is required in CI: {problem}")
            pytest.skip(f"PostgreSQL at {PG_DSN} not reachable: {problem}")
        schema = f"t_{uuid.uuid4().hex[:12]}"

        def pg_factory() -> LogStorage:
            s = PostgresStorage(PG_DSN, schema)
            opened.append(s)
            return s
        yield pg_factory
        cleanup = PostgresStorage(PG_DSN, schema)
        cleanup.drop()
        cleanup.close()
    for s in opened:
        s.close()
