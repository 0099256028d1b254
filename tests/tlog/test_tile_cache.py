"""Tiles a relay serves wrong are never cached, and never pass for a log fork.

Clients read the log's tiles through a relay that may be hostile. A tile of the wrong
length or content makes a proof fail: that is an error of what was served (a
LogFetchError), not evidence that two signed checkpoints conflict (LogForkError), and
once the relay serves the right tiles again everything verifies: nothing bad is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from privproc.tlog.client import (
    CheckpointStore,
    InclusionError,
    LogClient,
    LogClientError,
    LogFetchError,
    LogForkError,
    LogPolicy,
    LogReader,
)
from privproc.tlog.sequencer import Sequencer
from privproc.tlog.storage import SqliteStorage
from privproc.tlog.view import LogView
from privproc.wire import note
from privproc.wire.checkpoint import CosignatureSigner, parse_checkpoint
from privproc.wire.errors import MerkleError

from .helpers import LOG_SIGNER, ORIGIN, fetcher, release

W1 = CosignatureSigner("w1.example", hashlib.sha256(b"tile w1").digest())
POLICY = LogPolicy.from_keys(LOG_SIGNER.verifier_key, [W1.verifier_key], 1)


class Log:
    """A log whose every checkpoint (kept by size) carries W1's cosignature."""

    def __init__(self, path: Path) -> None:
        self.storage = SqliteStorage(path)
        self.seq = Sequencer(self.storage, LOG_SIGNER, ORIGIN)
        self.notes: dict[int, bytes] = {}

    def grow_to(self, size: int) -> bytes:
        self.seq.integrate([release(i) for i in range(self.seq.size, size)])
        signed = note.add_signatures(self.seq.checkpoint, [W1.at(1_800_000_000)])
        self.storage.publish(self.seq.size, signed)
        self.notes[size] = signed
        return signed


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    lg = Log(tmp_path / "log.db")
    for size in (10, 16, 40, 300):
        lg.grow_to(size)
    yield lg
    lg.storage.close()


Tamper = Callable[[bytes], bytes]


class Relay:
    """Serves the log; ``tamper[path]`` changes that path's answer ``times`` times."""

    def __init__(self, log: Log) -> None:
        self.honest = fetcher(log.storage)
        self.tamper: dict[str, tuple[Tamper, int]] = {}
        self.paths: list[str] = []

    def serve_bad(self, path: str, tamper: Tamper, times: int = 1) -> None:
        self.tamper[path] = (tamper, times)

    def __call__(self, path: str) -> bytes:
        self.paths.append(path)
        data: bytes = self.honest(path)
        if path in self.tamper:
            change, times = self.tamper[path]
            if times > 0:
                self.tamper[path] = (change, times - 1)
                data = change(data)
        return data


def truncated(data: bytes) -> bytes:
    return data[:-1]


def lengthened(data: bytes) -> bytes:
    return data + bytes(32)


def every_byte_flipped(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


def hash_flipped(n: int) -> Tamper:
    def change(data: bytes) -> bytes:
        out = bytearray(data)
        out[n * 32] ^= 0x01
        return bytes(out)
    return change


BAD_TILES = [
    pytest.param(truncated, id="short"),
    pytest.param(lengthened, id="long"),
    pytest.param(every_byte_flipped, id="wrong-content"),
]


# --------------------------------------------------------------------------- LogView


@pytest.mark.parametrize("tamper", BAD_TILES)
@pytest.mark.parametrize("old_size", [10, 16])  # 16: a power of two, proved from its root
def test_a_bad_tile_is_no_fork_and_is_not_kept(log: Log, tamper: Tamper, old_size: int
                                               ) -> None:
    """An older genuine checkpoint (stapled to a key bundle) is proved consistent from the
    tiles: one bad tile fails that proof as a fetch error, and once the relay is honest
    the same checkpoint is accepted."""
    relay = Relay(log)
    view = LogView(relay, POLICY)
    assert view.accept(log.notes[40]).checkpoint.size == 40
    relay.serve_bad("tile/0/000.p/40", tamper)
    with pytest.raises(LogFetchError) as err:
        view.accept(log.notes[old_size])
    assert not isinstance(err.value, LogForkError)
    assert "tile" in str(err.value)
    assert view.size == 40 and view.checkpoint_note == log.notes[40]
    relay.paths.clear()
    assert view.accept(log.notes[old_size]).checkpoint.size == old_size
    assert "tile/0/000.p/40" in relay.paths  # fetched again: the bad copy was not kept
    assert view.size == 40


def test_tiles_are_cached_once_a_proof_verified(log: Log) -> None:
    relay = Relay(log)
    view = LogView(relay, POLICY)
    view.accept(log.notes[40])
    view.accept(log.notes[10])
    relay.paths.clear()
    view.accept(log.notes[10])
    assert relay.paths == []  # verified tiles are kept


def test_a_bad_tile_when_syncing_forward_with_corrupt_entries_is_no_fork(log: Log) -> None:
    """Corrupt entries make the view ask the tiles whether the log forked; bad tiles too
    must not answer yes."""
    relay = Relay(log)
    view = LogView(relay, POLICY)
    view.accept(log.notes[10])
    relay.serve_bad("tile/entries/000.p/40", lambda d: d[:-1] + bytes([d[-1] ^ 1]))
    relay.serve_bad("tile/0/000.p/40", every_byte_flipped)
    with pytest.raises(LogFetchError) as err:
        view.accept(log.notes[40])
    assert not isinstance(err.value, LogForkError)
    assert view.accept(log.notes[40]).checkpoint.size == 40


def test_a_genuine_fork_is_still_found(log: Log, tmp_path: Path) -> None:
    forked = Log(tmp_path / "forked.db")
    forked.seq.integrate([release(i) for i in range(5)] + [b"evil"])
    forked.grow_to(40)
    try:
        view = LogView(Relay(forked), POLICY)
        view.accept(forked.notes[40])
        with pytest.raises(LogForkError) as err:
            view.accept(log.notes[10])
        assert (err.value.first, err.value.second) == (forked.notes[40], log.notes[10])
        with pytest.raises(LogForkError):  # a power of two, proved from its root
            view.accept(log.notes[16])
    finally:
        forked.storage.close()


# --------------------------------------------------------------------------- LogClient


@pytest.mark.parametrize("tamper", BAD_TILES)
def test_a_client_update_through_a_bad_tile_is_no_fork(log: Log, tamper: Tamper) -> None:
    relay = Relay(log)
    store = CheckpointStore(None)
    client = LogClient(relay, POLICY, store)
    assert client.accept(log.notes[10]).checkpoint.size == 10
    relay.serve_bad("tile/0/000.p/40", tamper)
    with pytest.raises(LogFetchError) as err:
        client.accept(log.notes[40])
    assert not isinstance(err.value, LogForkError)
    assert store.load() == log.notes[10]
    assert client.accept(log.notes[40]).checkpoint.size == 40
    assert store.load() == log.notes[40]


def test_a_bad_hash_in_a_cached_tile_is_fetched_again(log: Log) -> None:
    """A proof uses some hashes of a tile; a bad one that it did not use stays in the
    cached tile. When a later proof needs that hash, the tile is fetched again."""
    relay = Relay(log)
    reader = LogReader(relay)
    cp300 = parse_checkpoint(note.parse_note(log.notes[300]).text)
    relay.serve_bad("tile/0/001.p/44", hash_flipped(1))  # leaf 257's own hash
    assert reader.prove_in(257, cp300, log.notes[300]).index == 257  # does not need it
    relay.paths.clear()
    assert reader.prove_in(256, cp300, log.notes[300]).index == 256  # needs it
    assert "tile/0/001.p/44" in relay.paths


def test_check_consistent_tells_bad_tiles_from_conflicting_trees(log: Log) -> None:
    relay = Relay(log)
    reader = LogReader(relay)
    cp40 = parse_checkpoint(note.parse_note(log.notes[40]).text)
    cp10 = parse_checkpoint(note.parse_note(log.notes[10]).text)
    relay.serve_bad("tile/0/000.p/40", every_byte_flipped)
    with pytest.raises(LogFetchError, match="do not match"):
        reader.check_consistent(10, cp10.root_hash, 40, cp40.root_hash)
    with pytest.raises(MerkleError, match="begins with a tree of size 10 whose root hash"):
        reader.check_consistent(10, bytes(32), 40, cp40.root_hash)
    with pytest.raises(MerkleError, match="different root"):
        reader.check_consistent(40, bytes(32), 40, cp40.root_hash)


# --------------------------------------------------------------------------- inclusion


@pytest.mark.parametrize("tamper", BAD_TILES)
def test_a_bad_tile_does_not_keep_failing_inclusion_proofs(log: Log, tamper: Tamper) -> None:
    relay = Relay(log)
    reader = LogReader(relay)
    cp300 = parse_checkpoint(note.parse_note(log.notes[300]).text)
    relay.serve_bad("tile/0/001.p/44", tamper)
    with pytest.raises(InclusionError):
        reader.prove_in(257, cp300, log.notes[300])
    assert reader.prove_in(257, cp300, log.notes[300]).index == 257
    assert isinstance(InclusionError("x"), LogClientError)
