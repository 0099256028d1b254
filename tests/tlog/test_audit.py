from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from privproc.tlog.audit import AuditError, SeenCheckpoints, audit
from privproc.tlog.client import LogPolicy
from privproc.tlog.sequencer import Sequencer
from privproc.tlog.storage import SqliteStorage

from .helpers import LOG_SIGNER, ORIGIN, fetcher, release

POLICY = LogPolicy.from_keys(LOG_SIGNER.verifier_key)


def build(path: Path, n: int, extra: Sequence[bytes] = ()) -> tuple[SqliteStorage, Sequencer]:
    storage = SqliteStorage(path)
    seq = Sequencer(storage, LOG_SIGNER, ORIGIN)
    seq.integrate([release(i) for i in range(n)] + list(extra))
    storage.publish(seq.size, seq.checkpoint)
    return storage, seq


def test_audit_rehashes_everything_and_lists_releases(tmp_path: Path) -> None:
    storage, seq = build(tmp_path / "log.db", 600, [b"not a release"])
    seen = SeenCheckpoints(tmp_path / "seen.json")
    progress: list[tuple[int, int]] = []
    report = audit(fetcher(storage), POLICY, seen, lambda d, t: progress.append((d, t)))
    assert report.checkpoint.size == 601
    assert [i for i, _ in report.releases] == list(range(600))
    assert report.other_entries == 1
    assert report.tiles_checked == 4  # 0/000, 0/001, 0/002.p/89, 1/000.p/2
    assert progress[-1] == (601, 601)
    # A second audit after growth checks the earlier checkpoint against the rebuild.
    seq.integrate([release(i) for i in range(600, 700)])
    storage.publish(seq.size, seq.checkpoint)
    report = audit(fetcher(storage), POLICY, SeenCheckpoints(tmp_path / "seen.json"))
    assert report.checkpoints_checked == 1


def test_tampered_tile_fails_the_audit(tmp_path: Path) -> None:
    storage, _ = build(tmp_path / "log.db", 300)
    conn = storage._connection()
    data = bytearray(storage.read_tile(0, 1) or b"")
    data[5] ^= 1
    conn.execute("UPDATE tiles SET data = ? WHERE level = 0 AND idx = 1", (bytes(data),))
    with pytest.raises(AuditError, match=r"tile tile/0/001\.p/44 does not match"):
        audit(fetcher(storage), POLICY, SeenCheckpoints(None))


def test_tampered_entry_fails_the_audit(tmp_path: Path) -> None:
    storage, _ = build(tmp_path / "log.db", 10)
    conn = storage._connection()
    bundle = (storage.read_bundle(0) or b"").replace(b"version 1.0.3", b"version 6.6.6")
    conn.execute("UPDATE bundles SET data = ? WHERE idx = 0", (bundle,))
    with pytest.raises(AuditError, match="does not match"):
        audit(fetcher(storage), POLICY, SeenCheckpoints(None))


def test_fork_against_an_earlier_checkpoint_fails_the_audit(tmp_path: Path) -> None:
    honest, _ = build(tmp_path / "a.db", 20)
    seen = SeenCheckpoints(tmp_path / "seen.json")
    audit(fetcher(honest), POLICY, seen)
    forked, _ = build(tmp_path / "b.db", 10, [b"evil"] + [release(i) for i in range(11, 30)])
    with pytest.raises(AuditError, match="forked"):
        audit(fetcher(forked), POLICY, SeenCheckpoints(tmp_path / "seen.json"))
    shorter, _ = build(tmp_path / "c.db", 5)
    with pytest.raises(AuditError, match="rolled back"):
        audit(fetcher(shorter), POLICY, SeenCheckpoints(tmp_path / "seen.json"))
