from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privproc.cli import main
from privproc.tlog import cli as tlog_cli
from privproc.tlog.audit import (
    AuditError,
    SeenCheckpoints,
    Surplus,
    audit,
    most_concurrent,
    surplus_keys,
)
from privproc.tlog.cli import audit_output
from privproc.tlog.client import LogPolicy
from privproc.tlog.record import KeyRecord, RevocationRecord
from privproc.tlog.sequencer import Sequencer
from privproc.tlog.storage import SqliteStorage

from .helpers import LOG_SIGNER, ORIGIN, fetcher, release

POLICY = LogPolicy.from_keys(LOG_SIGNER.verifier_key)
DAY = 86400
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
ISSUER = "issuer.example.com"


def key(n: int, start: int, end: int, owner: str = ISSUER,
        purpose: str = "privacypass-0002") -> KeyRecord:
    return KeyRecord(purpose, owner, hashlib.sha256(b"key %d" % n).digest(), start, end)


def keys(*intervals: tuple[int, int]) -> list[tuple[int, KeyRecord]]:
    """Indexed key records, one distinct key per interval."""
    return [(i, key(i, a, b)) for i, (a, b) in enumerate(intervals)]


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


# ------------------------------------------------------------------ the sweep


def test_most_concurrent_counts_overlapping_keys() -> None:
    assert most_concurrent([]) == (0, 0, ())
    assert most_concurrent(keys((10, 20))) == (1, 10, (0,))
    assert most_concurrent(keys((10, 20), (15, 30))) == (2, 15, (0, 1))
    assert most_concurrent(keys((10, 20), (15, 30), (19, 40))) == (3, 19, (0, 1, 2))
    # The maximum is reported at its first instant, with the records valid then.
    assert most_concurrent(keys((0, 5), (10, 20), (12, 30), (40, 50), (41, 60))) == (
        2, 12, (1, 2))
    # Nested intervals and listing order do not matter.
    assert most_concurrent(keys((100, 200), (0, 1000), (150, 160), (10, 20)))[:2] == (3, 150)


def test_touching_intervals_do_not_overlap() -> None:
    # [0, 10) and [10, 20): the first is no longer valid when the second begins.
    assert most_concurrent(keys((0, 10), (10, 20), (20, 30))) == (1, 0, (0,))
    assert most_concurrent(keys((10, 20), (0, 10)))[0] == 1
    assert most_concurrent(keys((0, 10), (5, 15), (10, 20))) == (2, 5, (0, 1))
    # Three starting together, one ending as they start.
    assert most_concurrent(keys((0, 10), (10, 11), (10, 12), (10, 13)))[:2] == (3, 10)
    # A one-second overlap is an overlap.
    assert most_concurrent(keys((0, 11), (10, 20), (10, 30))) == (3, 10, (0, 1, 2))


def test_records_of_the_same_key_count_once() -> None:
    same = key(1, 0, 100)
    again = KeyRecord(same.purpose, same.owner, same.key, 50, 200)
    assert most_concurrent([(0, same), (1, again)]) == (1, 0, (0,))
    assert most_concurrent([(0, same), (1, again), (2, key(2, 60, 70))]) == (
        2, 60, (0, 1, 2))
    assert surplus_keys([(0, same), (1, same), (2, same)], 1) == []


def test_surplus_keys_flags_only_groups_over_the_limit() -> None:
    assert surplus_keys([], 2) == []
    two = keys((0, 100), (50, 150))
    assert surplus_keys(two, 2) == []
    assert surplus_keys(two, 1) == [Surplus("privacypass-0002", ISSUER, 2, 1, 50, (0, 1))]
    three = keys((0, 100), (50, 150), (60, 70))
    assert surplus_keys(three, 2) == [Surplus("privacypass-0002", ISSUER, 3, 2, 60, (0, 1, 2))]
    assert surplus_keys(three, 3) == []


def test_owners_and_purposes_are_counted_separately() -> None:
    spread = [
        (0, key(0, 0, 100)),
        (1, key(1, 0, 100)),
        (2, key(2, 0, 100, owner="other.example.com")),
        (3, key(3, 0, 100, purpose="privacypass-0001")),
        (4, key(4, 0, 100, purpose="ohttp-gateway", owner="gw.example.com")),
        (5, key(5, 0, 100, purpose="ohttp-gateway", owner="gw.example.com")),
    ]
    assert surplus_keys(spread, 2) == []
    # The same key bytes under another owner are another owner's key.
    crowded = [*spread, (6, key(6, 10, 20, owner="other.example.com")),
               (7, key(7, 10, 20, owner="other.example.com")),
               (8, key(0, 10, 20, owner="other.example.com"))]
    assert surplus_keys(crowded, 2) == [
        Surplus("privacypass-0002", "other.example.com", 4, 2, 10, (2, 6, 7, 8))]
    assert [s.owner for s in surplus_keys(crowded, 1)] == [
        "gw.example.com", ISSUER, "other.example.com"]


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20), st.integers(1, 10)),
                max_size=12))
def test_sweep_matches_counting_at_every_instant(spec: list[tuple[int, int, int]]) -> None:
    indexed = [(i, key(k, start, start + length)) for i, (k, start, length) in enumerate(spec)]

    def valid(t: int) -> list[tuple[int, KeyRecord]]:
        return [(i, r) for i, r in indexed if r.valid_at(t)]

    counts = {t: len({r.key for _, r in valid(t)}) for t in range(0, 32)}
    best = max(counts.values())
    count, at, indices = most_concurrent(indexed)
    assert count == best
    if best:
        assert at == min(t for t, c in counts.items() if c == best)
        assert indices == tuple(i for i, _ in valid(at))


# ------------------------------------------------------------------ audits with key records


def published(path: Path, entries: Sequence[bytes]) -> SqliteStorage:
    storage = SqliteStorage(path)
    seq = Sequencer(storage, LOG_SIGNER, ORIGIN)
    seq.integrate(list(entries))
    storage.publish(seq.size, seq.checkpoint)
    return storage


def test_audit_lists_keys_and_revocations_and_marks_revoked_releases(tmp_path: Path) -> None:
    revoked = hashlib.sha384(b"m1").digest()
    gateway = KeyRecord("ohttp-gateway", "gw.example.com", b"\x01config", T0, T0 + 30 * DAY)
    current = key(1, T0, T0 + 30 * DAY)
    following = key(2, T0 + 20 * DAY, T0 + 50 * DAY)
    storage = published(tmp_path / "log.db", [
        release(0), release(1), gateway.encode(), current.encode(), b"not a record",
        RevocationRecord(revoked, "CVE-2026-1234", T0 + DAY).encode(), following.encode(),
        release(2),
    ])
    report = audit(fetcher(storage), POLICY, SeenCheckpoints(None))
    assert [i for i, _ in report.releases] == [0, 1, 7]
    assert report.keys == [(2, gateway), (3, current), (6, following)]
    assert report.revocations == [(5, RevocationRecord(revoked, "CVE-2026-1234", T0 + DAY))]
    assert report.other_entries == 1
    assert report.revoked() == {revoked: 5}
    assert report.surplus() == []
    assert gateway.key_sha256 == hashlib.sha256(b"\x01config").digest()

    code, out, err = audit_output(fetcher(storage), POLICY, SeenCheckpoints(None))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"log {ORIGIN}: size 8, root ")
    assert lines[2].startswith("  #0 version=1.0.0 ") and "REVOKED" not in lines[2]
    assert lines[3].startswith(f"  #1 version=1.0.1 measurement={revoked.hex()} ")
    assert lines[3].endswith(" 2023-11-14T22:13:21Z REVOKED at #5")
    assert lines[4].startswith("  #7 version=1.0.2 ") and "REVOKED" not in lines[4]
    assert lines[5:] == [
        f"  #2 key purpose=ohttp-gateway owner=gw.example.com kem=UNKNOWN "
        f"sha256={gateway.key_sha256.hex()[:16]}... "
        "valid 2026-01-01T00:00:00Z to 2026-01-31T00:00:00Z",
        f"  #3 key purpose=privacypass-0002 owner={ISSUER} "
        f"sha256={current.key_sha256.hex()[:16]}... "
        "valid 2026-01-01T00:00:00Z to 2026-01-31T00:00:00Z",
        f"  #6 key purpose=privacypass-0002 owner={ISSUER} "
        f"sha256={following.key_sha256.hex()[:16]}... "
        "valid 2026-01-21T00:00:00Z to 2026-02-20T00:00:00Z",
        f"  #5 revocation measurement={revoked.hex()} reason=CVE-2026-1234 "
        "2026-01-02T00:00:00Z",
        "  (1 entries are not privproc records)",
        "audit OK",
    ]


def three_issuer_keys(first_end: int) -> list[bytes]:
    return [
        release(0),
        key(1, T0, first_end).encode(),
        key(2, T0 + 20 * DAY, T0 + 50 * DAY).encode(),
        key(3, T0 + 25 * DAY, T0 + 55 * DAY).encode(),
        key(4, T0, T0 + 90 * DAY, purpose="privacypass-0001").encode(),
    ]


def test_three_concurrently_valid_issuer_keys_fail_the_audit(tmp_path: Path) -> None:
    storage = published(tmp_path / "log.db", three_issuer_keys(T0 + 30 * DAY))
    report = audit(fetcher(storage), POLICY, SeenCheckpoints(None))
    assert report.surplus() == [Surplus("privacypass-0002", ISSUER, 3, 2, T0 + 25 * DAY,
                                        (1, 2, 3))]
    assert report.surplus(3) == []

    code, out, err = audit_output(fetcher(storage), POLICY, SeenCheckpoints(None))
    assert code == 1
    assert "audit OK" not in out
    assert out.splitlines()[-1] == (
        f"SURPLUS KEYS: purpose=privacypass-0002 owner={ISSUER}: 3 keys valid at once, "
        "2 allowed, at 2026-01-26T00:00:00Z: records #1, #2, #3")
    assert err == ("privproc log audit: AUDIT FAILED: 1 purpose(s) with more concurrently "
                   "valid keys than allowed\n")
    assert audit_output(fetcher(storage), POLICY, SeenCheckpoints(None), 3)[0] == 0


def test_a_key_expired_before_the_others_start_is_not_surplus(tmp_path: Path) -> None:
    # The first key ends the instant the third begins: never three valid at once.
    storage = published(tmp_path / "log.db", three_issuer_keys(T0 + 25 * DAY))
    report = audit(fetcher(storage), POLICY, SeenCheckpoints(None))
    assert len(report.keys) == 4 and report.surplus() == []
    code, out, err = audit_output(fetcher(storage), POLICY, SeenCheckpoints(None))
    assert (code, err) == (0, "")
    assert "SURPLUS" not in out and out.endswith("audit OK\n")


def test_audit_output_reports_a_failed_audit(tmp_path: Path) -> None:
    storage = published(tmp_path / "log.db", [release(0)])
    storage._connection().execute("UPDATE bundles SET data = ? WHERE idx = 0",
                                  (b"\x00\x04evil",))
    code, out, err = audit_output(fetcher(storage), POLICY, SeenCheckpoints(None))
    assert (code, out) == (1, "")
    assert err.startswith("privproc log audit: AUDIT FAILED: ")


@pytest.mark.parametrize("command", [["audit"], ["log", "audit"]])
def test_audit_command_exits_1_on_surplus_keys(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    storage = published(tmp_path / "log.db", three_issuer_keys(T0 + 30 * DAY))
    monkeypatch.setattr(tlog_cli, "http_fetcher", lambda url: fetcher(storage))
    argv = [*command, "--log", "http://log.invalid", "--vkey", LOG_SIGNER.verifier_key]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert f"SURPLUS KEYS: purpose=privacypass-0002 owner={ISSUER}: 3 keys" in out
    assert "AUDIT FAILED: 1 purpose(s) with more concurrently valid keys than allowed" in err
    assert "audit OK" not in out
    assert main([*argv, "--max-keys", "3"]) == 0
    out, err = capsys.readouterr()
    assert "SURPLUS" not in out and "audit OK" in out
    assert main([*argv, "--max-keys", "0"]) == 2


def test_audit_names_each_gateway_keys_kem(tmp_path: Path) -> None:
    from privproc.wire import hpke, ohttp

    hybrid = ohttp.GatewayKey.create(1, hpke.KeyPair.generate(kem_id=hpke.DEFAULT_KEM)).config
    classic = ohttp.GatewayKey.create(2, hpke.KeyPair.generate()).config
    records = [KeyRecord("ohttp-gateway", "gw.example.com", c.encode(), T0, T0 + DAY)
               for c in (hybrid, classic)]
    assert len(records[0].encode()) < 4096  # a 1,233-byte key configuration fits a record
    storage = published(tmp_path / "log.db", [r.encode() for r in records])
    code, out, _ = audit_output(fetcher(storage), POLICY, SeenCheckpoints(None))
    assert code == 0
    assert "  #0 key purpose=ohttp-gateway owner=gw.example.com kem=MLKEM768-X25519 " in out
    assert "  #1 key purpose=ohttp-gateway owner=gw.example.com kem=X25519 " in out


def test_a_checkpoint_cosigned_again_is_kept_once(tmp_path: Path) -> None:
    """The log has an unchanged checkpoint cosigned again every few minutes: an auditor
    run from cron keeps one note per tree, not one per run."""
    from privproc.wire import note
    from privproc.wire.checkpoint import CosignatureSigner

    witness = CosignatureSigner("w.example", hashlib.sha256(b"w").digest())
    storage, seq = build(tmp_path / "log.db", 3)
    for at in (1_000, 2_000, 3_000):
        storage.publish(seq.size, note.add_signatures(seq.checkpoint, [witness.at(at)]))
        audit(fetcher(storage), POLICY, SeenCheckpoints(tmp_path / "seen.json"))
    assert len(SeenCheckpoints(tmp_path / "seen.json").notes) == 1
    seq.integrate([release(9)])
    storage.publish(seq.size, seq.checkpoint)
    report = audit(fetcher(storage), POLICY, SeenCheckpoints(tmp_path / "seen.json"))
    assert report.checkpoints_checked == 1
    assert len(SeenCheckpoints(tmp_path / "seen.json").notes) == 2


def test_the_audit_fails_once_the_checkpoint_is_older_than_clients_accept(
        tmp_path: Path) -> None:
    """An operator's cron audit notices the witnesses (or the log's re-cosigning) have
    stopped before every client refuses the log."""
    from privproc.wire import note
    from privproc.wire.checkpoint import CosignatureSigner

    witness = CosignatureSigner("w.example", hashlib.sha256(b"w").digest())
    policy = LogPolicy.from_keys(LOG_SIGNER.verifier_key, [witness.verifier_key], 1)
    storage, seq = build(tmp_path / "log.db", 2)
    storage.publish(seq.size, note.add_signatures(seq.checkpoint, [witness.at(T0)]))
    code, out, err = audit_output(fetcher(storage), policy, SeenCheckpoints(None),
                                  now=T0 + DAY, max_age=DAY)
    assert code == 0, err
    assert (f"cosigned by a quorum of witnesses at 2026-01-01T00:00:00Z ({DAY} s ago; "
            f"clients accept up to {DAY} s)") in out
    code, out, err = audit_output(fetcher(storage), policy, SeenCheckpoints(None),
                                  now=T0 + DAY + 1, max_age=DAY)
    assert code == 1 and "audit OK" not in out
    assert err.startswith(
        f"privproc log audit: AUDIT FAILED: the checkpoint of size 2 was last cosigned by a "
        f"quorum of witnesses {DAY + 1} s ago (2026-01-01T00:00:00Z); at most {DAY} s is "
        "accepted (max_checkpoint_age)")
    assert err.endswith("; clients refuse it: are the witnesses and the log's re-cosigning "
                        "running?\n")


def test_the_audit_ignores_cosignatures_dated_in_the_future_as_clients_do(
        tmp_path: Path) -> None:
    """A witness whose clock runs far ahead (or that lies) cosigned the checkpoint with a
    date in the future: clients do not count it, so the audit must not either, or it
    would call a checkpoint fresh that every client refuses."""
    from privproc.wire import note
    from privproc.wire.checkpoint import CosignatureSigner

    witness = CosignatureSigner("w.example", hashlib.sha256(b"w").digest())
    policy = LogPolicy.from_keys(LOG_SIGNER.verifier_key, [witness.verifier_key], 1)
    storage, seq = build(tmp_path / "log.db", 2)
    storage.publish(seq.size, note.add_signatures(seq.checkpoint, [witness.at(T0 + 30 * DAY)]))
    code, out, err = audit_output(fetcher(storage), policy, SeenCheckpoints(None),
                                  now=T0, max_age=DAY)
    assert code == 1 and "audit OK" not in out
    assert err.startswith("privproc log audit: AUDIT FAILED: the checkpoint of size 2 carries "
                          "no quorum of witness cosignatures dated before this client's clock")
    assert err.endswith("; clients refuse it: are the witnesses and the log's re-cosigning "
                        "running?\n")
    # next to another witness's honest (old) cosignature, that one is what counts
    honest = CosignatureSigner("h.example", hashlib.sha256(b"h").digest())
    policy = LogPolicy.from_keys(LOG_SIGNER.verifier_key,
                                 [witness.verifier_key, honest.verifier_key], 1)
    storage.publish(seq.size, note.add_signatures(
        seq.checkpoint, [honest.at(T0 - DAY - 5), witness.at(T0 + 30 * DAY)]))
    code, out, err = audit_output(fetcher(storage), policy, SeenCheckpoints(None),
                                  now=T0, max_age=DAY)
    assert code == 1 and f"was last cosigned by a quorum of witnesses {DAY + 5} s ago" in err
