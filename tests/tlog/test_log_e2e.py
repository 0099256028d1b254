"""The log and a witness as real processes: adds, cosigning, crash safety, refusals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from privproc.tlog.client import (
    CheckpointVerificationError,
    LogClient,
    LogPolicy,
    http_fetcher,
)
from privproc.tlog.keys import create_signer, load_or_create_signer
from privproc.tlog.storage import PostgresStorage
from privproc.up.supervisor import Supervisor
from privproc.wire import note

from ..servers import ANY_PORT, start_service
from .conftest import PG_DSN, _postgres_available
from .helpers import release

pytestmark = pytest.mark.slow
LOG_ORIGIN = "log.test"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privproc.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def vkey_from_log(service_log: str, prefix: str) -> str:
    line = next(ln for ln in service_log.splitlines() if ln.startswith(prefix))
    return line.split(": ", 1)[1].strip()


def wait_published(stack: LogStack, size: int, timeout: float = 10.0) -> None:
    """Records are acknowledged once durable; the cosigned checkpoint follows shortly."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if LogClient(http_fetcher(stack.url), stack.policy).update().checkpoint.size >= size:
                return
        except CheckpointVerificationError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no cosigned checkpoint of size {size} after {timeout}s")


class LogStack:
    """A witness and a log (each on a port of its own, bound to 0). The log's key is made
    here, as its first start would make it, so the witness can be told it up front."""

    def __init__(self, tmp: Path, sup: Supervisor, db: str | None = None) -> None:
        self.tmp, self.sup, self.db = tmp, sup, db
        self.schema = f"e2e_{uuid.uuid4().hex[:10]}"
        self.publisher = create_signer(tmp / "pub.key", "releases.test")
        self.log_vkey = load_or_create_signer(tmp / "log" / "log.key", LOG_ORIGIN).verifier_key
        witness = start_service(sup, "witness", [
            "witness", "serve", "--listen", ANY_PORT, "--state", str(tmp / "witness"),
            "--log-vkey", self.log_vkey])
        self.witness_url = witness.url
        self.witness_vkey = vkey_from_log(witness.log_text(), "witness vkey")
        self.url = ""
        self.start_log()
        assert vkey_from_log(sup.services["log"].log_text(), "log vkey") == self.log_vkey

    def start_log(self, name: str = "log") -> None:
        args = ["log", "serve", "--listen", ANY_PORT, "--state", str(self.tmp / "log"),
                "--origin", LOG_ORIGIN, "--publisher", self.publisher.verifier_key,
                "--batch-wait", "0.005",
                "--witness", f"{self.witness_url}={self.witness_vkey}", "--quorum", "1"]
        if self.db:
            args += ["--db", self.db, "--db-schema", self.schema]
        self.url = start_service(self.sup, name, args).url

    @property
    def policy(self) -> LogPolicy:
        return LogPolicy.from_keys(self.log_vkey, [self.witness_vkey], 1)

    def signed(self, record: bytes) -> bytes:
        return note.sign_note(record, [self.publisher])


@pytest.fixture(params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    db = None
    if request.param == "postgres":
        problem = _postgres_available()
        if problem is not None:
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL required in CI: {problem}")
            pytest.skip(f"PostgreSQL not reachable: {problem}")
        db = PG_DSN
    with Supervisor(tmp_path / "logs") as sup:
        stack = LogStack(tmp_path, sup, db)
        yield stack
    if db:
        for schema in (stack.schema, "fork_" + stack.schema):
            cleanup = PostgresStorage(PG_DSN, schema)
            cleanup.drop()
            cleanup.close()


def test_release_add_cosign_and_audit_through_the_cli(stack: LogStack) -> None:
    out = cli(
        "release",
        "add",
        "--log",
        stack.url,
        "--key",
        str(stack.tmp / "pub.key"),
        "--measurement",
        "ab" * 48,
        "--model-digest",
        "cd" * 32,
        "--version",
        "2.0.0",
        "--source",
        "git:feedface",
    )
    assert out.returncode == 0, out.stderr
    assert "at index 0" in out.stdout
    wait_published(stack, 1)
    client = LogClient(http_fetcher(stack.url), stack.policy)
    trusted = client.update()
    assert b"version 2.0.0" in client.prove(0, trusted).record
    audit = cli(
        "log",
        "audit",
        "--log",
        stack.url,
        "--vkey",
        stack.log_vkey,
        "--witness-vkey",
        stack.witness_vkey,
        "--quorum",
        "1",
    )
    assert audit.returncode == 0, audit.stderr
    assert "version=2.0.0" in audit.stdout and "audit OK" in audit.stdout
    assert "audited 1/1 entries" in audit.stderr


def test_anonymous_or_foreign_writes_are_refused(stack: LogStack) -> None:
    async def run() -> list[int]:
        stranger = note.Ed25519Signer("releases.test", bytes(32))
        bodies = [
            release(1),
            note.sign_note(release(1), [stranger]),
            stack.signed(b"not a record\n"),
        ]
        async with aiohttp.ClientSession() as s:
            statuses = []
            for body in bodies:
                async with s.post(stack.url + "/add", data=body) as resp:
                    statuses.append(resp.status)
            return statuses

    assert asyncio.run(run()) == [403, 403, 400]


def test_kill_9_during_appends_loses_no_acknowledged_record(stack: LogStack) -> None:
    acked: dict[int, bytes] = {}
    seen_checkpoints: list[bytes] = []

    async def writer(s: aiohttp.ClientSession, worker: int) -> None:
        i = 0
        while True:
            record = release(worker * 100_000 + i)
            i += 1
            try:
                async with s.post(stack.url + "/add", data=stack.signed(record)) as resp:
                    if resp.status == 200:
                        acked[json.loads(await resp.read())["index"]] = record
            except (aiohttp.ClientError, ConnectionError):
                return

    async def watcher(s: aiohttp.ClientSession) -> None:
        while True:
            try:
                async with s.get(stack.url + "/checkpoint") as resp:
                    seen_checkpoints.append(await resp.read())
            except (aiohttp.ClientError, ConnectionError):
                return
            await asyncio.sleep(0.02)

    async def run() -> None:
        async with aiohttp.ClientSession() as s:
            tasks = [asyncio.create_task(writer(s, w)) for w in range(8)]
            tasks.append(asyncio.create_task(watcher(s)))

            async def under_way() -> None:  # appends acknowledged, checkpoints seen: crash
                while len(acked) < 40 or len(seen_checkpoints) < 5:
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(under_way(), 30)
            stack.sup.services["log"].process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)

    asyncio.run(run())
    stack.sup.services["log"].process.wait()
    assert len(acked) > 20, "the writers should have been acknowledged before the kill"
    stack.sup.stop("log")
    stack.start_log()
    # After the restart the log re-publishes its durable tree once the witness cosigns.
    wait_published(stack, max(acked) + 1)
    client = LogClient(http_fetcher(stack.url), stack.policy)
    trusted = client.update()
    assert trusted.checkpoint.size >= max(acked) + 1
    for index, record in acked.items():
        assert client.entry(index, trusted.checkpoint.size) == record
    # Every checkpoint the log signed before the crash (cosigned or not yet) must be a
    # prefix of the tree after the restart; accept() raises LogForkError otherwise.
    log_only = LogClient(http_fetcher(stack.url), LogPolicy.from_keys(stack.log_vkey))
    log_only.update()
    for old in seen_checkpoints:
        log_only.accept(old)
    assert len(seen_checkpoints) > 3


def test_witness_refuses_a_log_that_rewrote_its_history(stack: LogStack) -> None:
    async def add(records: list[bytes]) -> None:
        async with aiohttp.ClientSession() as s:
            for r in records:
                async with s.post(stack.url + "/add", data=stack.signed(r)) as resp:
                    assert resp.status == 200

    asyncio.run(add([release(i) for i in range(5)]))
    wait_published(stack, 5)
    # The operator wipes the log's storage (keeping its key) and writes another history.
    stack.sup.stop("log")
    if stack.db is None:
        (stack.tmp / "log" / "log.db").unlink()
        for extra in ("log.db-wal", "log.db-shm"):
            (stack.tmp / "log" / extra).unlink(missing_ok=True)
    else:
        stack.schema = "fork_" + stack.schema
    stack.start_log()
    asyncio.run(add([release(100 + i) for i in range(7)]))
    with pytest.raises(CheckpointVerificationError):
        LogClient(http_fetcher(stack.url), stack.policy).update()
    witness_log = stack.sup.services["witness"].log_text()
    assert "status=422" in witness_log or "422" in witness_log
