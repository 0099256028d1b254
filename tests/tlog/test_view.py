"""LogView: a client's replayed copy of the log: sync, index, persist, accept, forks."""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from privproc.tlog.client import (
    CheckpointVerificationError,
    LogFetchError,
    LogForkError,
    LogPolicy,
)
from privproc.tlog.record import KeyRecord, RevocationRecord
from privproc.tlog.sequencer import Sequencer
from privproc.tlog.storage import SqliteStorage
from privproc.tlog.view import KeyEntry, LogView, LogViewStateError, Revocation
from privproc.wire import hpke, merkle, note, ohttp, tiles
from privproc.wire.checkpoint import CosignatureSigner

from .conftest import StorageFactory
from .helpers import LOG_SIGNER, ORIGIN, fetcher, release

W1 = CosignatureSigner("w1.example", hashlib.sha256(b"w1").digest())
POLICY = LogPolicy.from_keys(LOG_SIGNER.verifier_key, [W1.verifier_key], 1)
NOW = 1_750_000_000


def measurement(i: int) -> bytes:
    return hashlib.sha384(f"m{i}".encode()).digest()  # release(i)'s measurement


def key_record(owner: str, n: int, purpose: str = "ohttp-gateway") -> bytes:
    return KeyRecord(purpose, owner, bytes([n]) * 40, 1_700_000_000, 1_800_000_000).encode()


def revocation(i: int, reason: str = "cve-2024-1") -> bytes:
    return RevocationRecord(measurement(i), reason, 1_700_000_500).encode()


class Log:
    """A log in SQLite whose published checkpoints carry W1's cosignature."""

    def __init__(self, path: Path, records: list[bytes]) -> None:
        self.storage = SqliteStorage(path)
        self.seq = Sequencer(self.storage, LOG_SIGNER, ORIGIN)
        self.note = self.add(records)

    def add(self, records: list[bytes]) -> bytes:
        self.seq.integrate(records)
        self.note = note.add_signatures(self.seq.checkpoint, [W1.at(1_800_000_000)])
        self.storage.publish(self.seq.size, self.note)
        return self.note


class Fetcher:
    """Serves a log (switchable), records every path, and can corrupt entry bundles."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.paths: list[str] = []
        self.corrupt: Callable[[bytes], bytes] | None = None

    def __call__(self, path: str) -> bytes:
        self.paths.append(path)
        data: bytes = fetcher(self.log.storage)(path)
        if self.corrupt is not None and path.startswith("tile/entries/"):
            data = self.corrupt(data)
        return data

    def take(self) -> list[str]:
        paths, self.paths = self.paths, []
        return paths


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    records = [
        release(0),                          # 0
        key_record("gw.example", 1),         # 1
        release(1),                          # 2
        revocation(0),                       # 3
        key_record("issuer.example", 2, "privacypass-0002"),  # 4
        b"not a privproc record \x00\xff",   # 5: a foreign entry
        b"privproc-release/v1\nbroken\n",    # 6: right header, malformed
        key_record("gw.example", 3),         # 7
        release(0),                          # 8: a second release of measurement 0
        revocation(0, "again"),              # 9: a second revocation: the first one counts
    ]
    lg = Log(tmp_path / "log.db", records)
    yield lg
    lg.storage.close()


def test_first_sync_replays_everything_and_indexes(log: Log) -> None:
    fetch = Fetcher(log)
    progress: list[tuple[int, int]] = []
    view = LogView(fetch, POLICY, progress=lambda done, total: progress.append((done, total)))
    assert view.size == 0 and view.checkpoint_note is None
    trusted = view.sync()
    assert trusted.checkpoint.size == 10 and trusted.note == log.note
    assert fetch.take() == ["checkpoint", "tile/entries/000.p/10"]
    assert progress == [(10, 10)]
    assert view.size == 10 and view.checkpoint_note == log.note
    assert view.releases(measurement(0)) == [0, 8]
    assert view.releases(measurement(1)) == [2]
    assert view.releases(measurement(2)) == []
    assert view.revocation(measurement(0)) == Revocation(3, "cve-2024-1", 1_700_000_500)
    assert view.revocation(measurement(1)) is None
    gw = view.keys("ohttp-gateway", "gw.example")
    assert [k.index for k in gw] == [1, 7]
    assert gw[0] == KeyEntry(1, "ohttp-gateway", "gw.example",
                             hashlib.sha256(bytes([1]) * 40).digest(), 1_700_000_000,
                             1_800_000_000)
    assert gw[0].valid_at(NOW) and not gw[0].valid_at(1_800_000_000)
    assert [k.index for k in view.keys("privacypass-0002", "issuer.example")] == [4]
    assert view.keys("ohttp-gateway", "issuer.example") == []
    assert [k.index for k in view.key(hashlib.sha256(bytes([3]) * 40).digest())] == [7]
    assert view.key(bytes(32)) == []


def test_sync_on_both_storages(storage_factory: StorageFactory) -> None:
    storage = storage_factory()
    seq = Sequencer(storage, LOG_SIGNER, ORIGIN)
    seq.integrate([release(i) for i in range(5)] + [revocation(2)])
    storage.publish(seq.size, note.add_signatures(seq.checkpoint, [W1.at(1)]))
    view = LogView(fetcher(storage), POLICY)
    assert view.sync().checkpoint.size == 6
    assert view.revocation(measurement(2)) is not None and view.releases(measurement(4)) == [4]


def test_incremental_sync_fetches_only_new_entry_bundles(log: Log) -> None:
    fetch = Fetcher(log)
    view = LogView(fetch, POLICY)
    view.sync()
    fetch.take()
    assert view.sync().checkpoint.size == 10  # nothing new: only the checkpoint
    assert fetch.take() == ["checkpoint"]
    log.add([release(10), revocation(1), key_record("gw.example", 4)])
    assert view.sync().checkpoint.size == 13
    assert fetch.take() == ["checkpoint", "tile/entries/000.p/13"]  # no tiles either
    assert view.releases(measurement(10)) == [10]
    assert view.revocation(measurement(1)) == Revocation(11, "cve-2024-1", 1_700_000_500)
    assert [k.index for k in view.keys("ohttp-gateway", "gw.example")] == [1, 7, 12]


def test_more_than_one_entry_bundle(tmp_path: Path) -> None:
    lg = Log(tmp_path / "log.db", [release(i) for i in range(300)])
    fetch = Fetcher(lg)
    progress: list[tuple[int, int]] = []
    view = LogView(fetch, POLICY, progress=lambda d, t: progress.append((d, t)))
    view.sync()
    assert fetch.take() == ["checkpoint", "tile/entries/000", "tile/entries/001.p/44"]
    assert progress == [(256, 300), (300, 300)]
    assert view.releases(measurement(299)) == [299]
    assert view.releases(measurement(255)) == [255]
    lg.add([release(i) for i in range(300, 550)] + [revocation(256)])
    view.sync()
    assert fetch.take() == ["checkpoint", "tile/entries/001", "tile/entries/002.p/39"]
    assert view.size == 551
    assert view.revocation(measurement(256)) == Revocation(550, "cve-2024-1", 1_700_000_500)
    assert view.releases(measurement(512)) == [512]
    # Exactly on a bundle boundary: the next sync starts a fresh bundle.
    lg.add([release(i) for i in range(551, 768)])
    view.sync()
    assert fetch.take() == ["checkpoint", "tile/entries/002"]
    lg.add([release(768)])
    view.sync()
    assert fetch.take() == ["checkpoint", "tile/entries/003.p/1"]
    assert view.size == 769
    lg.storage.close()


def test_state_persists_and_a_reloaded_view_continues(log: Log, tmp_path: Path) -> None:
    state = tmp_path / "state" / "view.json"
    first = LogView(Fetcher(log), POLICY, state)
    first.sync()
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    doc = json.loads(state.read_bytes())
    assert doc["version"] == 2 and doc["checkpoint"] == log.note.decode()

    fetch = Fetcher(log)
    again = LogView(fetch, POLICY, state)
    assert fetch.take() == []  # loading fetches nothing
    assert again.size == 10 and again.checkpoint_note == log.note
    for m in (measurement(0), measurement(1)):
        assert again.releases(m) == first.releases(m)
        assert again.revocation(m) == first.revocation(m)
    assert again.keys("ohttp-gateway", "gw.example") == first.keys("ohttp-gateway", "gw.example")
    assert again.keys("privacypass-0002", "issuer.example") == first.keys(
        "privacypass-0002", "issuer.example")

    log.add([release(20), revocation(20)])
    assert again.sync().checkpoint.size == 12
    assert fetch.take() == ["checkpoint", "tile/entries/000.p/12"]
    third = LogView(Fetcher(log), POLICY, state)
    assert third.size == 12
    assert third.releases(measurement(20)) == [10]
    assert third.revocation(measurement(20)) == Revocation(11, "cve-2024-1", 1_700_000_500)
    assert stat.S_IMODE(state.stat().st_mode) == 0o600


def test_accept_same_larger_and_smaller_checkpoints(log: Log) -> None:
    fetch = Fetcher(log)
    view = LogView(fetch, POLICY)
    old_note = log.note
    view.sync()
    fetch.take()
    # Same size, same root: nothing fetched.
    assert view.accept(old_note).checkpoint.size == 10
    assert fetch.take() == []
    # Larger (stapled from elsewhere): replayed.
    newer = log.add([release(i) for i in range(10, 40)])
    trusted = view.accept(newer)
    assert trusted.checkpoint.size == 40 and view.checkpoint_note == newer
    assert fetch.take() == ["tile/entries/000.p/40"]
    assert view.releases(measurement(39)) == [39]
    # Smaller: a consistency proof from the tiles; the view stays where it is.
    trusted = view.accept(old_note)
    assert trusted.checkpoint.size == 10 and trusted.note == old_note
    paths = fetch.take()
    assert paths and all(p.startswith("tile/") and not p.startswith("tile/entries") for p in paths)
    assert view.size == 40 and view.checkpoint_note == newer
    # A checkpoint the policy refuses is refused before anything else.
    with pytest.raises(CheckpointVerificationError):
        view.accept(log.seq.checkpoint)  # log-signed only, no witness
    with pytest.raises(CheckpointVerificationError):
        LogView(Fetcher(log), POLICY).accept(log.seq.checkpoint)


def test_sync_of_a_log_with_no_witness_quorum_is_refused(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "log.db")
    seq = Sequencer(storage, LOG_SIGNER, ORIGIN)
    seq.integrate([release(0)])
    storage.publish(seq.size, seq.checkpoint)
    view = LogView(fetcher(storage), POLICY)
    with pytest.raises(CheckpointVerificationError):
        view.sync()
    assert view.size == 0
    storage.close()


# --------------------------------------------------------------------------- forks


@pytest.fixture
def fork(tmp_path: Path) -> Iterator[tuple[Log, Log, Log]]:
    """Three logs under the same key: honest (10), forked at 5 (12), forked at 5 (8)."""
    honest = Log(tmp_path / "honest.db", [release(i) for i in range(10)])
    evil = [*(release(i) for i in range(5)), revocation(99)]
    longer = Log(tmp_path / "longer.db", [*evil, *(release(i) for i in range(6, 12))])
    shorter = Log(tmp_path / "shorter.db", [*evil, release(6), release(7)])
    yield honest, longer, shorter
    for lg in (honest, longer, shorter):
        lg.storage.close()


def test_fork_found_when_syncing_forward(fork: tuple[Log, Log, Log], tmp_path: Path) -> None:
    honest, longer, _ = fork
    state = tmp_path / "view.json"
    fetch = Fetcher(honest)
    view = LogView(fetch, POLICY, state)
    view.sync()
    kept = state.read_bytes()
    fetch.log = longer
    with pytest.raises(LogForkError) as err:
        view.sync()
    assert err.value.first == honest.note
    assert err.value.second == longer.note
    assert view.size == 10 and view.checkpoint_note == honest.note
    assert view.revocation(measurement(99)) is None
    assert state.read_bytes() == kept
    # The same forked checkpoint stapled from elsewhere is refused alike.
    with pytest.raises(LogForkError) as err:
        view.accept(longer.note)
    assert (err.value.first, err.value.second) == (honest.note, longer.note)


def test_fork_of_the_same_size_is_found(tmp_path: Path) -> None:
    a = Log(tmp_path / "a.db", [release(0), release(1)])
    b = Log(tmp_path / "b.db", [release(0), release(2)])
    fetch = Fetcher(a)
    view = LogView(fetch, POLICY)
    view.sync()
    fetch.log = b
    fetch.take()
    with pytest.raises(LogForkError, match="same size") as err:
        view.sync()
    assert (err.value.first, err.value.second) == (a.note, b.note)
    assert fetch.take() == ["checkpoint"]
    a.storage.close()
    b.storage.close()


def test_fork_found_when_accepting_an_older_checkpoint(fork: tuple[Log, Log, Log]) -> None:
    honest, _, shorter = fork
    view = LogView(Fetcher(honest), POLICY)
    view.sync()
    with pytest.raises(LogForkError) as err:
        view.accept(shorter.note)
    assert err.value.first == honest.note
    assert err.value.second == shorter.note
    assert view.size == 10 and view.checkpoint_note == honest.note


def test_fork_found_after_reloading_the_state(fork: tuple[Log, Log, Log], tmp_path: Path
                                              ) -> None:
    honest, longer, _ = fork
    state = tmp_path / "view.json"
    LogView(Fetcher(honest), POLICY, state).sync()
    with pytest.raises(LogForkError):
        LogView(Fetcher(longer), POLICY, state).sync()


# --------------------------------------------------------------------------- corrupt copies


def _flip(position: int) -> Callable[[bytes], bytes]:
    def corrupt(data: bytes) -> bytes:
        changed = bytearray(data)
        changed[position % len(changed)] ^= 0x01
        return bytes(changed)
    return corrupt


def _entry_offsets(bundle: bytes) -> list[int]:
    """Where each entry's two-byte length starts."""
    offsets, pos = [], 0
    while pos < len(bundle):
        offsets.append(pos)
        pos += 2 + int.from_bytes(bundle[pos:pos + 2], "big")
    return offsets


def test_corrupt_entries_on_first_sync_are_a_fetch_error(log: Log) -> None:
    bundle = fetcher(log.storage)("tile/entries/000.p/10")
    offsets = _entry_offsets(bundle)
    positions = [0, 1, 2, 50, len(bundle) - 1, offsets[3], offsets[3] + 1, offsets[3] + 7]
    for position in positions:
        fetch = Fetcher(log)
        fetch.corrupt = _flip(position)
        view = LogView(fetch, POLICY)
        with pytest.raises(LogFetchError):
            view.sync()
        assert view.size == 0 and view.checkpoint_note is None
    fetch.corrupt = lambda data: data[:-1]
    with pytest.raises(LogFetchError):
        view.sync()
    fetch.corrupt = None
    assert view.sync().checkpoint.size == 10


def test_corrupt_new_entries_with_a_genuine_checkpoint_are_not_a_fork(log: Log,
                                                                      tmp_path: Path) -> None:
    state = tmp_path / "view.json"
    fetch = Fetcher(log)
    view = LogView(fetch, POLICY, state)
    view.sync()
    kept = state.read_bytes()
    log.add([release(i) for i in range(10, 20)] + [revocation(12)])
    bundle = fetcher(log.storage)("tile/entries/000.p/21")
    offsets = _entry_offsets(bundle)
    new = offsets[10:]  # the entries the view has not seen
    positions = [new[0], new[0] + 1, new[0] + 2, new[0] + 40, new[5], new[5] + 1,
                 new[-1] + 1, len(bundle) - 1]
    for position in positions:
        fetch.corrupt = _flip(position)
        with pytest.raises(LogFetchError) as err:
            view.sync()
        assert not isinstance(err.value, LogForkError)
        assert view.size == 10 and view.checkpoint_note != log.note
        assert view.revocation(measurement(12)) is None
        assert state.read_bytes() == kept
    for cut in (lambda d: d[:-1], lambda d: d + b"\x00", lambda d: d[:new[3]]):
        fetch.corrupt = cut
        with pytest.raises(LogFetchError):
            view.sync()
    fetch.corrupt = None
    assert view.sync().checkpoint.size == 21
    assert view.revocation(measurement(12)) is not None


# --------------------------------------------------------------------------- state file


def test_tampered_or_malformed_state_is_refused(log: Log, tmp_path: Path) -> None:
    state = tmp_path / "view.json"
    view = LogView(Fetcher(log), POLICY, state)
    view.sync()
    good = json.loads(state.read_bytes())

    def write(doc: object) -> None:
        state.write_text(json.dumps(doc))

    # A range that is not the checkpoint's tree: one leaf fewer, or another leaf.
    entries = tiles.decode_entry_bundle(fetcher(log.storage)("tile/entries/000.p/10"), 10)
    shorter = merkle.CompactRange()
    shorter.extend(merkle.leaf_hash(e) for e in entries[:9])
    other = merkle.CompactRange()
    other.extend([merkle.leaf_hash(release(i)) for i in range(10)])
    for rng in (shorter, other):
        write({**good, "range": rng.to_bytes().hex()})
        with pytest.raises(LogViewStateError, match="does not match"):
            LogView(Fetcher(log), POLICY, state)
    for doc in (
        {**good, "version": 3},
        {k: v for k, v in good.items() if k != "keys"},
        {**good, "range": "zz"},
        {**good, "checkpoint": 5},
        {**good, "keys": [[1, 2, 3]]},
        {**good, "revoked": []},
        {**good, "releases": {"00": 5}},
        [good],
    ):
        write(doc)
        with pytest.raises(LogViewStateError):
            LogView(Fetcher(log), POLICY, state)
    state.write_bytes(b"{not json")
    with pytest.raises(LogViewStateError):
        LogView(Fetcher(log), POLICY, state)
    write(good)
    assert LogView(Fetcher(log), POLICY, state).size == 10


# --------------------------------------------------------------------------- gateway KEMs


def _gateway_key(kem_id: int, n: int) -> bytes:
    config = ohttp.GatewayKey.create(n, hpke.KeyPair.generate(kem_id=kem_id)).config
    return KeyRecord("ohttp-gateway", "gw.example", config.encode(), 1_700_000_000,
                     1_800_000_000).encode()


def test_gateway_keys_are_indexed_with_their_kem(tmp_path: Path) -> None:
    lg = Log(tmp_path / "log.db", [_gateway_key(hpke.KEM_X25519_SHA256, 1),
                                   _gateway_key(hpke.KEM_MLKEM768_X25519, 2),
                                   key_record("gw.example", 3),  # not a key configuration
                                   key_record("issuer.example", 4, "privacypass-0002")])
    view = LogView(Fetcher(lg), POLICY)
    view.sync()
    gw = view.keys("ohttp-gateway", "gw.example")
    assert [(k.kem_id, k.post_quantum, k.kem_name) for k in gw] == [
        (0x0020, False, "X25519"), (0x647A, True, "MLKEM768-X25519"), (None, False, "no KEM")]
    assert [k.kem_id for k in view.keys("privacypass-0002", "issuer.example")] == [None]
    lg.storage.close()


def _as_version_1(state: Path) -> None:
    doc = json.loads(state.read_bytes())
    doc["version"] = 1
    doc["keys"] = [k[:6] for k in doc["keys"]]
    state.write_text(json.dumps(doc))


def test_a_version_1_state_is_reindexed_from_the_first_entry(tmp_path: Path) -> None:
    """A state written before the view kept KEMs: loaded (the fork check keeps its
    memory), and re-indexed at the next checkpoint, so the hybrid key is known."""
    lg = Log(tmp_path / "log.db", [release(0), _gateway_key(hpke.KEM_MLKEM768_X25519, 1)])
    state = tmp_path / "view.json"
    LogView(Fetcher(lg), POLICY, state).sync()
    _as_version_1(state)
    fetch = Fetcher(lg)
    old = LogView(fetch, POLICY, state)
    assert [k.kem_id for k in old.keys("ohttp-gateway", "gw.example")] == [None]
    old.accept(lg.note)  # the same checkpoint: replayed from entry 0 all the same
    assert fetch.take() == ["tile/entries/000.p/2"]
    assert [k.post_quantum for k in old.keys("ohttp-gateway", "gw.example")] == [True]
    assert old.releases(measurement(0)) == [0]  # indexed once, not twice
    assert json.loads(state.read_bytes())["version"] == 2
    old.accept(lg.note)
    assert fetch.take() == []  # done once
    lg.add([release(1)])
    again = LogView(Fetcher(lg), POLICY, state)
    again.sync()
    assert again.releases(measurement(0)) == [0] and again.releases(measurement(1)) == [2]
    assert [k.post_quantum for k in again.keys("ohttp-gateway", "gw.example")] == [True]
    lg.storage.close()


def test_a_fork_is_found_while_reindexing_a_version_1_state(
        fork: tuple[Log, Log, Log], tmp_path: Path) -> None:
    honest, longer, _ = fork
    state = tmp_path / "view.json"
    LogView(Fetcher(honest), POLICY, state).sync()
    _as_version_1(state)
    kept = state.read_bytes()
    view = LogView(Fetcher(longer), POLICY, state)
    with pytest.raises(LogForkError, match="do not hash to the tree kept before") as err:
        view.sync()
    assert (err.value.first, err.value.second) == (honest.note, longer.note)
    assert state.read_bytes() == kept and view.size == 10


def test_a_version_1_state_of_an_empty_log_is_reindexed(tmp_path: Path) -> None:
    lg = Log(tmp_path / "log.db", [])
    state = tmp_path / "view.json"
    LogView(Fetcher(lg), POLICY, state).sync()
    _as_version_1(state)
    lg.add([_gateway_key(hpke.KEM_MLKEM768_X25519, 1)])
    view = LogView(Fetcher(lg), POLICY, state)
    assert view.sync().checkpoint.size == 1
    assert [k.post_quantum for k in view.keys("ohttp-gateway", "gw.example")] == [True]
    lg.storage.close()


def test_a_checkpoint_beyond_what_a_client_replays_is_refused_before_any_download(
        log: Log) -> None:
    """Attack: a log (its checkpoint cosigned: witnesses check consistency, not entries)
    claims millions of entries: a client would download and keep them all before it could
    check the root. It refuses without fetching an entry."""
    import base64

    from privproc.tlog.view import MAX_REPLAY

    fetch = Fetcher(log)
    view = LogView(fetch, POLICY)
    view.sync()
    fetch.take()
    size = view.size + MAX_REPLAY + 1
    text = f"{ORIGIN}\n{size}\n{base64.b64encode(bytes(32)).decode()}\n".encode()
    huge = note.add_signatures(note.sign_note(text, [LOG_SIGNER]), [W1.at(1_800_000_000)])
    with pytest.raises(LogFetchError, match=rf"{MAX_REPLAY + 1} entries .* at most "
                                            rf"{MAX_REPLAY}"):
        view.accept(huge)
    assert fetch.take() == [] and view.size == 10
