"""Sequencer and storage: the same suite against SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from privproc.tlog.client import LogClient, LogPolicy
from privproc.tlog.record import decode_record
from privproc.tlog.sequencer import Sequencer, read_public
from privproc.tlog.storage import StorageError
from privproc.wire import merkle, note, tiles
from privproc.wire.checkpoint import parse_checkpoint

from .conftest import StorageFactory
from .helpers import LOG_SIGNER, ORIGIN, fetcher, release


def test_batches_build_the_rfc9162_tree_and_tiles(storage_factory: StorageFactory) -> None:
    storage = storage_factory()
    seq = Sequencer(storage, LOG_SIGNER, ORIGIN)
    records = [release(i) for i in range(700)]
    for start, end in ((0, 1), (1, 255), (255, 256), (256, 300), (300, 700)):
        first, _ = seq.integrate(records[start:end])
        assert first == start
    leaf_hashes = [merkle.leaf_hash(r) for r in records]
    assert seq.range.root() == merkle.root_from_leaf_hashes(leaf_hashes)
    state = storage.state()
    assert state is not None and state.size == 700
    cp = parse_checkpoint(note.open_note(state.checkpoint, [LOG_SIGNER.verifier()])[0].text)
    assert (cp.origin, cp.size, cp.root_hash) == (ORIGIN, 700, seq.range.root())
    # Every tile is what the hashes say, full and partial, and narrower prefixes are served.
    for tile in tiles.tiles_for_size(700):
        data = read_public(storage, tiles.tile_path(*tile))
        assert data is not None and len(data) == 32 * tile.width
    assert read_public(storage, "tile/0/000") == b"".join(leaf_hashes[:256])
    assert read_public(storage, "tile/0/002.p/5") == b"".join(leaf_hashes[512:517])
    assert read_public(storage, "tile/0/002.p/188") == b"".join(leaf_hashes[512:700])
    assert read_public(storage, "tile/0/002.p/189") is None  # wider than the tree
    assert read_public(storage, "tile/0/003.p/1") is None
    bundle = read_public(storage, "tile/entries/001")
    assert bundle is not None and tiles.decode_entry_bundle(bundle, 256) == records[256:512]
    short = read_public(storage, "tile/entries/002.p/3")
    assert short is not None and tiles.decode_entry_bundle(short, 3) == records[512:515]
    assert storage.find_leaf(leaf_hashes[42]) == 42
    assert storage.find_subject(decode_record(records[7]).measurement) == [7]


def test_reopening_restores_the_tree(storage_factory: StorageFactory) -> None:
    seq = Sequencer(storage_factory(), LOG_SIGNER, ORIGIN)
    seq.integrate([release(i) for i in range(300)])
    again = Sequencer(storage_factory(), LOG_SIGNER, ORIGIN)
    assert again.size == 300 and again.range.root() == seq.range.root()
    again.integrate([release(300)])
    assert again.size == 301


def test_second_writer_is_refused(storage_factory: StorageFactory) -> None:
    a = Sequencer(storage_factory(), LOG_SIGNER, ORIGIN)
    b = Sequencer(storage_factory(), LOG_SIGNER, ORIGIN)
    a.integrate([release(0)])
    with pytest.raises(StorageError, match="another sequencer"):
        b.integrate([release(1)])


def test_origin_mismatch_is_refused(storage_factory: StorageFactory) -> None:
    Sequencer(storage_factory(), LOG_SIGNER, ORIGIN)
    other = note.Ed25519Signer("other.example", bytes(32))
    with pytest.raises(StorageError, match="origin"):
        Sequencer(storage_factory(), other, "other.example")


def test_client_proves_inclusion_and_consistency(storage_factory: StorageFactory) -> None:
    storage = storage_factory()
    seq = Sequencer(storage, LOG_SIGNER, ORIGIN)
    seq.integrate([release(i) for i in range(10)])
    storage.publish(10, seq.checkpoint)
    policy = LogPolicy.from_keys(LOG_SIGNER.verifier_key)
    client = LogClient(fetcher(storage), policy)
    trusted = client.update()
    assert trusted.checkpoint.size == 10
    proof = client.prove(7, trusted)
    assert proof.record == release(7)
    seq.integrate([release(i) for i in range(10, 1000)])
    storage.publish(1000, seq.checkpoint)
    assert client.update().checkpoint.size == 1000
    assert client.prove(999, client.update()).record == release(999)
