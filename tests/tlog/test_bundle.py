"""Log bundles: strict JSON, building from a log in storage, verifying under a policy."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privproc.tlog.bundle import (
    FORMAT_VERSION,
    MAX_BUNDLE_SIZE,
    MAX_ENTRIES,
    BundleFormatError,
    LogBundle,
    ProvenEntry,
    build_bundle,
)
from privproc.tlog.client import (
    CheckpointVerificationError,
    InclusionError,
    LogPolicy,
    LogReader,
    verify_inclusion_offline,
)
from privproc.tlog.record import KeyRecord, RevocationRecord
from privproc.tlog.sequencer import Sequencer
from privproc.tlog.storage import LogStorage, SqliteStorage
from privproc.wire import note
from privproc.wire.checkpoint import CosignatureSigner, parse_checkpoint

from .conftest import StorageFactory
from .helpers import LOG_SIGNER, ORIGIN, fetcher, release

W1 = CosignatureSigner("w1.example", hashlib.sha256(b"w1").digest())
W2 = CosignatureSigner("w2.example", hashlib.sha256(b"w2").digest())
HASH = "ab" * 32


def policy(quorum: int = 1) -> LogPolicy:
    return LogPolicy.from_keys(LOG_SIGNER.verifier_key, [W1.verifier_key, W2.verifier_key],
                               quorum)


def key_record(i: int) -> bytes:
    return KeyRecord("ohttp-gateway", "gw.example", bytes([i]) * 40, 1_700_000_000,
                     1_800_000_000).encode()


def revocation(i: int) -> bytes:
    return RevocationRecord(hashlib.sha384(f"m{i}".encode()).digest(), "cve-2024-1",
                            1_700_000_100).encode()


def populate(storage: LogStorage, records: list[bytes],
             cosigners: tuple[CosignatureSigner, ...] = (W1,)) -> bytes:
    """Integrate ``records`` and publish the checkpoint with ``cosigners``; its note."""
    seq = Sequencer(storage, LOG_SIGNER, ORIGIN)
    seq.integrate(records)
    published = note.add_signatures(seq.checkpoint, [w.at(1_800_000_000) for w in cosigners])
    storage.publish(seq.size, published)
    return published


def bundle_of(storage: LogStorage, indices: list[int]) -> LogBundle:
    state = storage.state()
    assert state is not None
    checkpoint = parse_checkpoint(note.parse_note(state.published).text)
    return build_bundle(LogReader(fetcher(storage)), checkpoint, state.published, indices)


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteStorage]:
    """300 records (two entry bundles): releases, a key record at 5, a revocation at 260."""
    records = [release(i) for i in range(300)]
    records[5] = key_record(5)
    records[260] = revocation(3)
    storage = SqliteStorage(tmp_path_factory.mktemp("bundle") / "log.db")
    populate(storage, records)
    yield storage
    storage.close()


@pytest.fixture(scope="module")
def sample(big_log: SqliteStorage) -> LogBundle:
    return bundle_of(big_log, [0, 5, 7, 255, 256, 260, 299])


def doc_of(bundle: LogBundle) -> dict[str, Any]:
    return json.loads(bundle.encode())  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- format


def test_round_trip(sample: LogBundle) -> None:
    data = sample.encode()
    again = LogBundle.decode(data)
    assert again == sample
    assert again.encode() == data
    assert LogBundle.from_json(sample.to_json()) == sample
    doc = json.loads(data)
    assert set(doc) == {"version", "checkpoint", "entries"}
    assert doc["version"] == FORMAT_VERSION
    assert [e["index"] for e in doc["entries"]] == [0, 5, 7, 255, 256, 260, 299]
    assert all(len(h) == 64 for e in doc["entries"] for h in e["proof"])
    empty = LogBundle(sample.checkpoint)
    assert LogBundle.decode(empty.encode()) == empty


def _mutations(base: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    def entry(**changes: Any) -> dict[str, Any]:
        doc = json.loads(json.dumps(base))
        doc["entries"][0].update(changes)
        return doc  # type: ignore[no-any-return]

    yield "not an object", [base]
    yield "unknown key", {**base, "extra": 1}
    yield "missing key", {k: v for k, v in base.items() if k != "entries"}
    yield "version 2", {**base, "version": 2}
    yield "version true", {**base, "version": True}
    yield "version 1.0", {**base, "version": 1.0}
    yield "version string", {**base, "version": "1"}
    yield "checkpoint not a string", {**base, "checkpoint": ["x"]}
    yield "checkpoint lone surrogate", {**base, "checkpoint": "\ud800"}
    yield "entries not a list", {**base, "entries": {}}
    yield "entry not an object", {**base, "entries": [[0, "x", []]]}
    yield "entry unknown key", entry(extra=None)
    yield "bool index", entry(index=True)
    yield "negative index", entry(index=-1)
    yield "float index", entry(index=1.0)
    yield "string index", entry(index="1")
    yield "record not a string", entry(record=None)
    yield "record bytes as list", entry(record=[1, 2])
    yield "record lone surrogate", entry(record="privproc\udc00")
    yield "proof not a list", entry(proof=HASH)
    yield "proof too long", entry(proof=[HASH] * 65)
    yield "proof hash not a string", entry(proof=[1])
    yield "proof hash short", entry(proof=[HASH[:-2]])
    yield "proof hash long", entry(proof=[HASH + "ab"])
    yield "proof hash non-hex", entry(proof=["zz" * 32])
    yield "proof hash uppercase", entry(proof=[HASH.upper()])
    yield "proof hash with spaces", entry(proof=["ab " * 21 + "a"])
    yield "proof hash with trailing newline", entry(proof=[HASH[:-1] + "\n"])
    yield "too many entries", {**base, "entries": [base["entries"][0]] * (MAX_ENTRIES + 1)}


def test_strict_decoding(sample: LogBundle) -> None:
    base = doc_of(sample)
    for what, doc in _mutations(base):
        with pytest.raises(BundleFormatError):
            LogBundle.from_json(doc)
            pytest.fail(f"accepted: {what}")
        with pytest.raises(BundleFormatError):
            LogBundle.decode(json.dumps(doc).encode())
            pytest.fail(f"accepted: {what}")


def test_limits_and_non_json() -> None:
    entry = {"index": 0, "record": "x", "proof": [HASH]}
    at_limit = {"version": 1, "checkpoint": "c", "entries": [entry] * MAX_ENTRIES}
    assert len(LogBundle.decode(json.dumps(at_limit).encode()).entries) == MAX_ENTRIES
    oversized = json.dumps({"version": 1, "checkpoint": "c" * MAX_BUNDLE_SIZE,
                            "entries": []}).encode()
    with pytest.raises(BundleFormatError, match="limit"):
        LogBundle.decode(oversized)
    for data in (b"", b"{", b"\xff\xfe\x00", b"[" * 100_000 + b"]" * 100_000, b"null",
                 b'"\\ud800"', b"NaN"):
        with pytest.raises(BundleFormatError):
            LogBundle.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_decode_of_arbitrary_bytes_raises_only_format_errors(data: bytes) -> None:
    with contextlib.suppress(BundleFormatError):
        LogBundle.decode(data)


_TEXT = st.one_of(
    st.text(max_size=20),
    # Lone surrogates survive json.dumps/json.loads as \udxxx escapes.
    st.text(st.characters(categories=["Cs", "Ll", "Nd"]), min_size=1, max_size=8),
    st.sampled_from([HASH, HASH.upper(), "1"]),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["version", "checkpoint", "entries", "index", "record", "proof", "hash"]),
    st.one_of(_TEXT, _JSON),
)
def test_decode_of_mutated_documents_raises_only_format_errors(field: str, value: Any) -> None:
    doc: dict[str, Any] = {"version": 1, "checkpoint": "c",
                           "entries": [{"index": 0, "record": "r", "proof": [HASH]}]}
    if field in ("version", "checkpoint", "entries"):
        doc[field] = value
    elif field == "hash":
        doc["entries"][0]["proof"] = [value]
    else:
        doc["entries"][0][field] = value
    try:
        bundle = LogBundle.decode(json.dumps(doc).encode())
    except BundleFormatError:
        return
    assert LogBundle.decode(bundle.encode()) == bundle


# --------------------------------------------------------------------------- building


def test_build_and_verify(storage_factory: StorageFactory) -> None:
    storage = storage_factory()
    records = [release(0), key_record(1), revocation(0), release(3)]
    published = populate(storage, records)
    bundle = bundle_of(storage, [3, 1, 1, 2, 0, 4, 99])  # unsorted, duplicated, outside
    assert bundle.checkpoint == published
    assert [e.index for e in bundle.entries] == [0, 1, 2, 3]
    assert [e.record for e in bundle.entries] == records
    verified = bundle.verify(policy(1))
    assert verified.checkpoint.size == 4
    assert len(verified.cosignatures) == 1
    assert bundle.verify(LogPolicy.from_keys(LOG_SIGNER.verifier_key)).checkpoint.size == 4
    for proof in bundle.proofs():
        assert verify_inclusion_offline(proof, policy(1)).checkpoint.size == 4
    # The decoded form verifies alike.
    assert LogBundle.decode(bundle.encode()).verify(policy(1)).checkpoint.size == 4


def test_bundle_across_entry_bundles_verifies(sample: LogBundle) -> None:
    assert sample.verify(policy(1)).checkpoint.size == 300
    assert sample.entries[1].record == key_record(5)
    assert sample.entries[5].record == revocation(3)
    assert sample.entries[6].record == release(299)


def test_build_refuses_more_than_max_entries(big_log: SqliteStorage) -> None:
    assert len(bundle_of(big_log, list(range(MAX_ENTRIES))).entries) == MAX_ENTRIES
    with pytest.raises(InclusionError, match="more than"):
        bundle_of(big_log, list(range(MAX_ENTRIES + 1)))


def test_every_single_byte_change_is_refused(sample: LogBundle) -> None:
    pol = policy(1)
    refused = 0
    for n in (1, 3, 5):  # a key record, the last of bundle 0, a revocation in bundle 1
        entry = sample.entries[n]
        variants: list[ProvenEntry] = []
        for pos in range(len(entry.record)):
            changed = bytearray(entry.record)
            changed[pos] ^= 0x01 if pos % 2 else 0x80
            variants.append(replace(entry, record=bytes(changed)))
        for h in range(len(entry.proof)):
            for pos in range(32):
                proof = [bytearray(x) for x in entry.proof]
                proof[h][pos] ^= 0x01
                variants.append(replace(entry, proof=tuple(bytes(x) for x in proof)))
        variants += [
            replace(entry, index=entry.index + 1),
            replace(entry, record=entry.record + b"\n"),
            replace(entry, record=entry.record[:-1]),
            replace(entry, proof=entry.proof[:-1]),
            replace(entry, proof=(*entry.proof, entry.proof[0])),
        ]
        for variant in variants:
            entries = list(sample.entries)
            entries[n] = variant
            with pytest.raises(InclusionError, match=f"index {variant.index}"):
                LogBundle(sample.checkpoint, tuple(entries)).verify(pol)
            refused += 1
    assert refused > 3 * (150 + 8 * 32)


def test_checkpoint_of_another_key_or_without_quorum_is_refused(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "log.db")
    populate(storage, [release(0), release(1)], cosigners=())
    bundle = bundle_of(storage, [0, 1])
    assert bundle.verify(policy(0)).checkpoint.size == 2
    with pytest.raises(CheckpointVerificationError):
        bundle.verify(policy(1))  # no witness cosigned it

    other_signer = note.Ed25519Signer(ORIGIN, hashlib.sha256(b"another log").digest())
    other = SqliteStorage(tmp_path / "other.db")
    seq = Sequencer(other, other_signer, ORIGIN)
    seq.integrate([release(0), release(1)])
    other.publish(seq.size, note.add_signatures(seq.checkpoint, [W1.at(1_800_000_000)]))
    forged = bundle_of(other, [0, 1])
    with pytest.raises(CheckpointVerificationError):
        forged.verify(policy(1))
    # Its proofs are sound, but stapling them to the genuine checkpoint does not help.
    genuine = fetcher(storage)("checkpoint")
    assert LogBundle(genuine, forged.entries).verify(policy(0)).checkpoint.size == 2
    evil = [replace(forged.entries[0], record=release(7))]
    with pytest.raises(InclusionError):
        LogBundle(genuine, tuple(evil)).verify(policy(0))
    storage.close()
    other.close()


def test_tampered_checkpoint_is_refused(sample: LogBundle) -> None:
    text = sample.checkpoint.decode()
    lines = text.split("\n")
    lines[1] = str(int(lines[1]) + 1)  # the size line
    with pytest.raises(CheckpointVerificationError):
        LogBundle("\n".join(lines).encode(), sample.entries).verify(policy(1))
