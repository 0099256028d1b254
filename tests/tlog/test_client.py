"""Client-side log verification: quorum, consistency, forks, offline proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from privproc.tlog.client import (
    CheckpointStore,
    CheckpointVerificationError,
    InclusionError,
    LogClient,
    LogForkError,
    LogPolicy,
    StaleCheckpointError,
    verify_inclusion_offline,
)
from privproc.tlog.sequencer import Sequencer
from privproc.tlog.storage import SqliteStorage
from privproc.wire import note
from privproc.wire.checkpoint import CosignatureSigner

from .helpers import LOG_SIGNER, ORIGIN, fetcher, release

W1 = CosignatureSigner("w1.example", hashlib.sha256(b"w1").digest())
W2 = CosignatureSigner("w2.example", hashlib.sha256(b"w2").digest())
W3 = CosignatureSigner("w3.example", hashlib.sha256(b"w3").digest())


def make_log(path: Path, records: list[bytes], cosigners: Sequence[CosignatureSigner] = ()
             ) -> tuple[SqliteStorage, Sequencer]:
    storage = SqliteStorage(path)
    seq = Sequencer(storage, LOG_SIGNER, ORIGIN)
    seq.integrate(records)
    published = note.add_signatures(seq.checkpoint, [w.at(1_800_000_000) for w in cosigners])
    storage.publish(seq.size, published)
    return storage, seq


def policy(quorum: int = 2) -> LogPolicy:
    return LogPolicy.from_keys(LOG_SIGNER.verifier_key,
                               [W1.verifier_key, W2.verifier_key, W3.verifier_key], quorum)


def test_quorum_of_witnesses_is_required(tmp_path: Path) -> None:
    storage, _ = make_log(tmp_path / "a.db", [release(0)], [W1])
    with pytest.raises(CheckpointVerificationError, match=r"quorum|cosign"):
        LogClient(fetcher(storage), policy(2)).update()
    storage2, _ = make_log(tmp_path / "b.db", [release(0)], [W1, W3])
    assert LogClient(fetcher(storage2), policy(2)).update().checkpoint.size == 1


def test_unknown_log_key_is_refused(tmp_path: Path) -> None:
    storage, _ = make_log(tmp_path / "a.db", [release(0)], [W1, W2])
    other = note.Ed25519Signer(ORIGIN, bytes(32))
    with pytest.raises(CheckpointVerificationError):
        LogClient(fetcher(storage), LogPolicy.from_keys(other.verifier_key)).update()


def test_fork_is_detected_with_both_checkpoints_as_evidence(tmp_path: Path) -> None:
    honest, _ = make_log(tmp_path / "a.db", [release(i) for i in range(10)], [W1, W2])
    records = [release(i) for i in range(5)] + [b"evil"] + [release(i) for i in range(6, 12)]
    forked, _ = make_log(tmp_path / "b.db", records, [W1, W2])
    store = CheckpointStore(tmp_path / "seen.checkpoint")
    first = LogClient(fetcher(honest), policy(), store).update()
    client = LogClient(fetcher(forked), policy(), store)
    with pytest.raises(LogForkError) as err:
        client.update()
    assert err.value.first == first.note
    assert err.value.second == fetcher(forked)("checkpoint")
    assert store.load() == first.note  # the forked checkpoint was not adopted


def test_same_size_different_root_is_a_fork(tmp_path: Path) -> None:
    a, _ = make_log(tmp_path / "a.db", [release(0), release(1)], [W1, W2])
    b, _ = make_log(tmp_path / "b.db", [release(0), release(2)], [W1, W2])
    store = CheckpointStore(None)
    LogClient(fetcher(a), policy(), store).update()
    with pytest.raises(LogForkError, match="not consistent"):
        LogClient(fetcher(b), policy(), store).update()


def test_older_consistent_checkpoint_keeps_the_newer_one(tmp_path: Path) -> None:
    storage, seq = make_log(tmp_path / "a.db", [release(i) for i in range(3)], [W1, W2])
    old_note = fetcher(storage)("checkpoint")
    store = CheckpointStore(None)
    client = LogClient(fetcher(storage), policy(), store)
    seq.integrate([release(i) for i in range(3, 40)])
    storage.publish(seq.size, note.add_signatures(seq.checkpoint, [W1.at(1), W2.at(1)]))
    assert client.update().checkpoint.size == 40
    assert client.accept(old_note).checkpoint.size == 40


def test_inclusion_proof_verifies_offline_and_fails_when_tampered(tmp_path: Path) -> None:
    storage, _ = make_log(tmp_path / "a.db", [release(i) for i in range(300)], [W1, W2])
    client = LogClient(fetcher(storage), policy())
    proof = client.prove(257, client.update())
    assert proof.record == release(257)
    assert verify_inclusion_offline(proof, policy()).checkpoint.size == 300
    bad = type(proof)(proof.index, release(258), proof.proof, proof.checkpoint)
    with pytest.raises(InclusionError):
        verify_inclusion_offline(bad, policy())
    with pytest.raises(InclusionError, match="outside"):
        client.entry(300, 300)


# --------------------------------------------------------------------------- freshness


def _cosigned(times: Sequence[tuple[CosignatureSigner, int]]) -> bytes:
    seq = Sequencer(SqliteStorage(Path(":memory:")), LOG_SIGNER, ORIGIN)
    seq.integrate([release(0)])
    return note.add_signatures(seq.checkpoint, [w.at(t) for w, t in times])


def test_a_checkpoint_is_as_recent_as_its_quorum_th_newest_witness() -> None:
    p = policy(2)
    # w1 cosigned long ago, w2 and w3 recently: a quorum of 2 had cosigned by 900
    verified = p.verify(_cosigned([(W1, 100), (W2, 900), (W3, 1000)]))
    assert p.witnessed_at(verified) == 900
    p.check_fresh(verified, now=1900, max_age=1000)
    with pytest.raises(StaleCheckpointError,
                       match=r"size 1 was last cosigned by a quorum of witnesses 1001 s ago "
                             r"\(1970-01-01T00:15:00Z\); at most 1000 s is accepted "
                             r"\(max_checkpoint_age\): whoever served it may be hiding"):
        p.check_fresh(verified, now=1901, max_age=1000)
    # one fresh witness does not make a quorum of two fresh
    old = p.verify(_cosigned([(W1, 100), (W2, 5000)]))
    assert p.witnessed_at(old) == 100
    with pytest.raises(StaleCheckpointError):
        p.check_fresh(old, now=5000, max_age=1000)
    # a witness a little ahead (clocks differ) counts; one dated past now + max_age does
    # not, or a witness with a clock far ahead would keep a replaced checkpoint "recent"
    one = policy(1)
    assert one.check_fresh(one.verify(_cosigned([(W1, 5005)])), now=5000, max_age=10) == 5005
    with pytest.raises(StaleCheckpointError, match="no quorum of witness cosignatures dated"):
        one.check_fresh(one.verify(_cosigned([(W1, 9000)])), now=5000, max_age=10)
    ahead = p.verify(_cosigned([(W1, 99_999), (W2, 4_500), (W3, 4_000)]))
    assert p.check_fresh(ahead, now=5000, max_age=1000) == 4000  # W1 ignored: W2, W3 count


def test_a_checkpoint_without_a_quorum_has_no_known_age() -> None:
    p = LogPolicy.from_keys(LOG_SIGNER.verifier_key, [W1.verifier_key], 0)
    verified = p.verify(_cosigned([]))
    assert p.witnessed_at(verified) is None
    with pytest.raises(StaleCheckpointError, match="no quorum of witness cosignatures"):
        p.check_fresh(verified, now=0, max_age=10)


def test_a_log_answer_without_end_is_refused_unread() -> None:
    """Attack: whoever serves the log to a client (the relay) streams without end."""
    from privproc.tlog.client import MAX_FETCH, LogFetchError, http_fetcher

    from ..servers import endless

    with endless() as url, pytest.raises(LogFetchError,
                                         match=rf"checkpoint: answer over {MAX_FETCH} bytes"):
        http_fetcher(url)("checkpoint")


def test_a_log_answer_that_is_not_http_is_a_fetch_error() -> None:
    """Attack: a bad status line (http.client.BadStatusLine, no OSError) from whoever
    serves the log is a LogFetchError, not a raw exception (an audit would crash)."""
    from privproc.tlog.client import LogFetchError, http_fetcher

    from ..servers import not_http

    with not_http() as url, pytest.raises(LogFetchError, match="checkpoint"):
        http_fetcher(url, timeout=5)("checkpoint")


def test_a_redirect_from_whoever_serves_the_log_is_not_followed() -> None:
    """Attack: a relay answers the client's log read with 302 to a host of its choice
    (the operator's, say): the client would read the log from there, directly, with its
    own address. It refuses instead."""
    from privproc.tlog.client import LogFetchError, http_fetcher

    from ..servers import redirect_trap

    with redirect_trap() as (relay, seen), pytest.raises(LogFetchError, match="HTTP 302"):
        http_fetcher(relay + "/log", timeout=5)("checkpoint")
    assert seen == []


def test_a_log_answer_dripped_a_byte_at_a_time_is_cut_off_at_the_timeout() -> None:
    import time

    from privproc.tlog.client import LogFetchError, http_fetcher

    from ..servers import dripping

    with dripping(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n", 0.1) as port:
        started = time.monotonic()
        with pytest.raises(LogFetchError):
            http_fetcher(f"http://127.0.0.1:{port}", timeout=0.6)("checkpoint")
        assert time.monotonic() - started < 3
