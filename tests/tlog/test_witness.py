"""The C2SP tlog witness: request parsing, every status, state stores, key file, HTTP."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import socket
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from privproc.tlog import witness_cli
from privproc.tlog.witness import (
    CONTENT_TYPE_SIZE,
    MAX_ATTEMPTS,
    AddCheckpointError,
    State,
    Witness,
    WitnessResponse,
    WitnessStoreError,
    parse_add_checkpoint,
)
from privproc.tlog.witness_app import (
    KEY_FILE,
    VKEY_FILE,
    WitnessConfig,
    WitnessKeyError,
    create_app,
    load_or_create_witness_key,
)
from privproc.tlog.witness_client import (
    CosignResult,
    WitnessError,
    format_add_checkpoint,
    request_cosignature,
)
from privproc.tlog.witness_store import MemoryWitnessStore, SqliteWitnessStore
from privproc.wire import merkle
from privproc.wire.checkpoint import (
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    open_checkpoint,
    parse_checkpoint,
)
from privproc.wire.note import Ed25519Signer, Verifier, parse_note, sign_note

from ..servers import aiohttp_serving, serving

ORIGIN = "example.com/privproc-log"
NOW = 1_700_000_000

LOG = Ed25519Signer(ORIGIN, bytes(range(32)))
LOG_NEXT = Ed25519Signer(ORIGIN, bytes(range(1, 33)))  # a rotated key for the same log
OTHER = Ed25519Signer("example.com/other-log", bytes(range(2, 34)))
STRANGER = Ed25519Signer(ORIGIN, bytes(range(3, 35)))  # same name, untrusted key
WITNESS = CosignatureSigner("witness.example/w1", bytes(range(4, 36)))


class Tree:
    """An in-memory tree: every complete-subtree hash, and the root at every size."""

    def __init__(self, size: int, salt: bytes = b"") -> None:
        cr = merkle.CompactRange()
        self.hashes: dict[tuple[int, int], bytes] = {}
        self.roots = [merkle.EMPTY_ROOT]
        for i in range(size):
            for level, index, h in cr.append(merkle.leaf_hash(salt + b"leaf %d" % i)):
                self.hashes[(level, index)] = h
            self.roots.append(cr.root())

    def root(self, size: int) -> bytes:
        return self.roots[size]

    def proof(self, old: int, new: int) -> list[bytes]:
        if old == 0:
            return []
        return merkle.consistency_proof(old, new, lambda lvl, idx: self.hashes[(lvl, idx)])


TREE = Tree(64)
FORK = Tree(64, salt=b"fork ")


def note_for(
    size: int,
    root: bytes | None = None,
    *,
    signers: tuple[Ed25519Signer, ...] = (LOG,),
    origin: str = ORIGIN,
) -> bytes:
    text = Checkpoint(origin, size, TREE.root(size) if root is None else root).to_text()
    return sign_note(text, signers)


def raw_body(old: int, proof: list[bytes], note: bytes) -> bytes:
    """An add-checkpoint body without the client's checks (to send invalid requests)."""
    lines = [b"old %d\n" % old, *(base64.b64encode(h) + b"\n" for h in proof), b"\n"]
    return b"".join(lines) + note


def make_witness(store: MemoryWitnessStore | SqliteWitnessStore | None = None) -> Witness:
    logs: dict[str, list[Verifier]] = {
        ORIGIN: [LOG.verifier(), LOG_NEXT.verifier()],
        OTHER.name: [OTHER.verifier()],
    }
    return Witness(WITNESS, logs, MemoryWitnessStore() if store is None else store)


def add(w: Witness, old: int, size: int, *, tree: Tree = TREE, now: int = NOW) -> WitnessResponse:
    body = raw_body(old, tree.proof(old, size), note_for(size, tree.root(size)))
    return w.add_checkpoint(body, now)


def assert_size_conflict(resp: WitnessResponse, size: int) -> None:
    assert resp.status == 409
    assert resp.content_type == CONTENT_TYPE_SIZE
    assert resp.body == b"%d\n" % size


# --------------------------------------------------------------------------- parsing

SPEC_EXAMPLE = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5"
    "/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
).encode()


def test_parses_the_spec_example() -> None:
    req = parse_add_checkpoint(SPEC_EXAMPLE)
    assert req.old_size == 20852014
    assert len(req.proof) == 4 and all(len(h) == 32 for h in req.proof)
    assert req.proof[0] == base64.b64decode("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=")
    cp = parse_checkpoint(parse_note(req.checkpoint_note).text)
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)


H = base64.b64encode(bytes(32)).decode()
NOTE = note_for(1).decode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "old size line: expected a line ending in a newline"),
        ("old 1", "old size line: expected a line ending in a newline"),
        ("old 01\n\n" + NOTE, "without leading zeroes"),
        ("old 00\n\n" + NOTE, "without leading zeroes"),
        ("old  1\n\n" + NOTE, "one space"),
        ("old -1\n\n" + NOTE, "old <size>"),
        ("old +1\n\n" + NOTE, "old <size>"),
        ("old 1 \n\n" + NOTE, "old <size>"),
        ("Old 1\n\n" + NOTE, "old <size>"),
        ("old\n\n" + NOTE, "old <size>"),
        ("old 1\r\n\r\n" + NOTE, "old <size>"),
        ("old \u0661\n\n" + NOTE, "old <size>"),  # ARABIC-INDIC DIGIT ONE
        ("old 18446744073709551616\n\n" + NOTE, "below 2**64"),
        ("old 123456789012345678901\n\n" + NOTE, "old <size>"),
        (f"old 1\n{H}\n" + "\n".join([H] * 63) + "\n\n" + NOTE, "at most 63 lines"),
        (f"old 1\n{H[:-1]}\n\n" + NOTE, "expected 44 characters"),
        (f"old 1\n{H}=\n\n" + NOTE, "expected 44 characters"),
        (f"old 1\n{'A' * 43}B\n\n" + NOTE, "32-byte hash, got 33 bytes"),  # unpadded
        (f"old 1\n{'A' * 42}B=\n\n" + NOTE, "non-canonical base64"),  # non-zero trailing bits
        (f"old 1\n{'!' * 43}=\n\n" + NOTE, "invalid base64"),
        (f"old 1\n{H}\r\n\n" + NOTE, "expected 44 characters"),
        ("old 1\n" + NOTE, "expected 44 characters"),  # the note's origin as a proof line
        (f"old 1\n{H}\n", "expected an empty line"),
        ("old 1\n\n", "expected a signed note after the empty line"),
    ],
)
def test_malformed_bodies_are_rejected_precisely(body: str, message: str) -> None:
    with pytest.raises(AddCheckpointError, match=message.replace("*", r"\*")):
        parse_add_checkpoint(body.encode())
    resp = make_witness().add_checkpoint(body.encode(), NOW)
    assert resp.status == 400
    assert resp.body.startswith(b"malformed add-checkpoint request: ")


def test_63_proof_lines_are_accepted_by_the_parser() -> None:
    req = parse_add_checkpoint(("old 1\n" + "\n".join([H] * 63) + "\n\n" + NOTE).encode())
    assert len(req.proof) == 63


def test_a_malformed_checkpoint_is_400() -> None:
    w = make_witness()
    notes = [
        b"not a note\n",
        b"a\nb\n\n\xe2\x80\x94 x AAAA\n",
        sign_note(b"not\na\ncheckpoint\n", [LOG]),
    ]
    for note in notes:
        resp = w.add_checkpoint(b"old 0\n\n" + note, NOW)
        assert resp.status == 400, resp.body
        assert resp.body.startswith(b"malformed checkpoint: ")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    resp = make_witness().add_checkpoint(body, NOW)
    assert resp.status in {400, 403, 404}
    try:
        parse_add_checkpoint(body)
    except AddCheckpointError:
        assert resp.status == 400


def _bad_old_line() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.from_regex(rb"\Aold 0[0-9]{1,5}\Z"),  # leading zeroes
        st.from_regex(rb"\A(OLD|Old|olds|ol) [0-9]{1,5}\Z"),
        st.from_regex(rb"\Aold( {2,3}|\t)[0-9]{1,5}\Z"),
        st.from_regex(rb"\Aold [0-9]{0,5}[^0-9\n][0-9]{0,5}\Z"),
        st.from_regex(rb"\Aold [1-9][0-9]{20,25}\Z"),
    )


def _bad_proof_line() -> st.SearchStrategy[bytes]:
    good = st.binary(min_size=32, max_size=32).map(base64.b64encode)
    return st.one_of(
        st.binary(min_size=1, max_size=31).map(base64.b64encode),
        st.binary(min_size=33, max_size=48).map(base64.b64encode),
        good.map(lambda b: b[:-1]),
        good.map(lambda b: b + b"\r"),
        good.map(lambda b: b.rstrip(b"=") + b"A"),
        st.from_regex(rb"\A[^A-Za-z0-9+/=\n]{44}\Z"),
    )


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _bad_old_line().map(lambda line: line + b"\n\n" + NOTE.encode()),
        st.tuples(_bad_proof_line(), st.integers(0, 5)).map(
            lambda t: b"old 3\n" + (H.encode() + b"\n") * t[1] + t[0] + b"\n\n" + NOTE.encode()
        ),
        st.integers(64, 80).map(lambda n: b"old 3\n" + (H.encode() + b"\n") * n + b"\n"
                                + NOTE.encode()),
        st.integers(0, 5).map(lambda n: b"old 3\n" + (H.encode() + b"\n") * n),  # no blank line
    )
)
def test_malformed_framing_is_always_400(body: bytes) -> None:
    resp = make_witness().add_checkpoint(body, NOW)
    assert resp.status == 400, (body, resp.body)
    with pytest.raises(AddCheckpointError):
        parse_add_checkpoint(body)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, (1 << 64) - 1),
    st.lists(st.binary(min_size=32, max_size=32), max_size=63),
)
def test_format_and_parse_round_trip(old: int, proof: list[bytes]) -> None:
    note = note_for(5)
    req = parse_add_checkpoint(format_add_checkpoint(old, proof, note))
    assert (req.old_size, req.proof, req.checkpoint_note) == (old, proof, note)


@pytest.mark.parametrize(
    ("old", "proof", "note", "message"),
    [
        (-1, [], b"x\n", "expected 0..2\\*\\*64-1"),
        (1 << 64, [], b"x\n", "expected 0..2\\*\\*64-1"),
        (1, [bytes(32)] * 64, b"x\n", "at most 63"),
        (0, [bytes(32)], b"x\n", "expected none with old size 0"),
        (1, [bytes(31)], b"x\n", "hash 1: expected 32 bytes, got 31 bytes"),
        (1, [], b"x", "ending in a newline"),
    ],
)
def test_format_add_checkpoint_refuses_bad_requests(
    old: int, proof: list[bytes], note: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        format_add_checkpoint(old, proof, note)


# --------------------------------------------------------------------------- statuses


def test_first_checkpoint_with_old_size_zero_is_cosigned() -> None:
    w = make_witness()
    resp = add(w, 0, 5)
    assert resp.status == 200, resp.body
    assert resp.body.startswith("\u2014 witness.example/w1 ".encode())
    assert resp.body.endswith(b"\n") and resp.body.count(b"\n") == 1
    assert w.store.get(ORIGIN) == (5, TREE.root(5))
    assert (resp.origin, resp.old_size, resp.size) == (ORIGIN, 0, 5)


def test_the_cosignature_verifies_and_meets_a_quorum() -> None:
    w = make_witness()
    note = note_for(7)
    resp = w.add_checkpoint(format_add_checkpoint(0, [], note), NOW)
    assert resp.status == 200
    cosigned = note + resp.body
    verifier = CosignatureVerifier.from_key(WITNESS.verifier_key)
    parsed = parse_note(cosigned)
    assert verifier.verify_timestamped(parsed.text, parsed.signatures[-1].signature) == NOW
    verified = open_checkpoint(cosigned, LOG.verifier(), witnesses=[verifier], quorum=1,
                               origin=ORIGIN)
    assert verified.checkpoint.size == 7
    assert [(c.name, c.timestamp) for c in verified.cosignatures] == [(WITNESS.name, NOW)]


def test_growth_with_a_valid_consistency_proof_is_cosigned() -> None:
    w = make_witness()
    sizes = [1, 2, 3, 4, 7, 8, 9, 16, 17, 31, 32, 33, 63, 64]
    old = 0
    for size in sizes:
        resp = add(w, old, size, now=NOW + size)
        assert resp.status == 200, (old, size, resp.body)
        assert w.store.get(ORIGIN) == (size, TREE.root(size))
        old = size


def test_either_trusted_log_key_is_accepted() -> None:
    w = make_witness()
    assert w.add_checkpoint(raw_body(0, [], note_for(3, signers=(LOG_NEXT,))), NOW).status == 200
    both = note_for(5, signers=(LOG, LOG_NEXT))
    assert w.add_checkpoint(raw_body(3, TREE.proof(3, 5), both), NOW).status == 200
    extra = note_for(6, signers=(Ed25519Signer("someone.else", bytes(32)), LOG))
    assert w.add_checkpoint(raw_body(5, TREE.proof(5, 6), extra), NOW).status == 200


def test_unknown_origin_is_404() -> None:
    w = make_witness()
    stranger = Ed25519Signer("example.net/unknown", bytes(range(5, 37)))
    note = note_for(3, origin="example.net/unknown", signers=(stranger,))
    resp = w.add_checkpoint(raw_body(0, [], note), NOW)
    assert resp.status == 404
    assert resp.origin is None  # an unknown origin is never logged
    assert w.store.get("example.net/unknown") is None


def test_no_trusted_signature_is_403() -> None:
    w = make_witness()
    resp = w.add_checkpoint(raw_body(0, [], note_for(3, signers=(STRANGER,))), NOW)
    assert resp.status == 403
    assert b"no signature from a known key" in resp.body
    # The other log's key does not count for this origin.
    resp = w.add_checkpoint(raw_body(0, [], note_for(3, signers=(OTHER,))), NOW)
    assert resp.status == 403
    assert w.store.get(ORIGIN) is None


def test_an_invalid_signature_from_a_trusted_key_is_403() -> None:
    w = make_witness()
    note = bytearray(note_for(3))
    note[-10:-2] = b"AAAAAAAA" if note[-10:-2] != b"AAAAAAAA" else b"BBBBBBBB"
    resp = w.add_checkpoint(raw_body(0, [], bytes(note)), NOW)
    assert resp.status == 403, resp.body
    # A valid signature next to an invalid one from another trusted key: fail closed.
    good = note_for(3)
    forged_line = parse_note(note_for(4, signers=(LOG_NEXT,))).signatures[0].to_line().encode()
    resp = w.add_checkpoint(raw_body(0, [], good + forged_line), NOW)
    assert resp.status == 403
    assert b"invalid signature from known key" in resp.body


def test_old_size_greater_than_checkpoint_size_is_400() -> None:
    w = make_witness()
    resp = w.add_checkpoint(raw_body(6, [], note_for(5)), NOW)
    assert resp.status == 400
    assert b"old size 6 is greater than the checkpoint size 5" in resp.body


def test_old_size_other_than_the_stored_size_is_409_with_the_size() -> None:
    w = make_witness()
    assert_size_conflict(add(w, 3, 5), 0)  # never cosigned: the stored size is 0
    assert add(w, 0, 10).status == 200
    assert_size_conflict(add(w, 0, 12), 10)
    assert_size_conflict(add(w, 9, 12), 10)
    assert_size_conflict(add(w, 11, 12), 10)
    assert w.store.get(ORIGIN) == (10, TREE.root(10))
    assert add(w, 10, 12).status == 200


def test_same_size_with_a_different_root_is_409() -> None:
    w = make_witness()
    assert add(w, 0, 10).status == 200
    resp = w.add_checkpoint(raw_body(10, [], note_for(10, FORK.root(10))), NOW)
    assert resp.status == 409
    assert resp.content_type.startswith("text/plain")
    assert b"root hash differs" in resp.body
    assert w.store.get(ORIGIN) == (10, TREE.root(10))


def test_the_same_checkpoint_is_cosigned_again() -> None:
    store = MemoryWitnessStore()
    w = make_witness(store)
    assert add(w, 0, 10, now=NOW).status == 200
    again = add(w, 10, 10, now=NOW + 60)
    assert again.status == 200
    assert parse_note(note_for(10) + again.body).signatures[-1].signature[:8] == (
        (NOW + 60).to_bytes(8, "big")
    )
    assert [(e.size, e.timestamp) for e in store.history(ORIGIN)] == [(10, NOW)]
    # Equal sizes need an empty proof.
    resp = w.add_checkpoint(raw_body(10, [TREE.root(10)], note_for(10)), NOW)
    assert resp.status == 422


def test_a_bad_consistency_proof_is_422() -> None:
    w = make_witness()
    assert add(w, 0, 10).status == 200
    proof = TREE.proof(10, 20)
    tampered = [proof[0], bytes(32), *proof[2:]]
    for bad in (tampered, proof[:-1], [*proof, bytes(32)], []):
        resp = w.add_checkpoint(raw_body(10, bad, note_for(20)), NOW)
        assert resp.status == 422, bad
        assert resp.body.startswith(b"consistency proof does not verify: ")
    assert w.store.get(ORIGIN) == (10, TREE.root(10))


def test_a_non_empty_proof_with_old_size_zero_is_422() -> None:
    w = make_witness()
    resp = w.add_checkpoint(raw_body(0, [TREE.root(1)], note_for(5)), NOW)
    assert resp.status == 422
    assert b"must be empty when the old size is 0" in resp.body
    assert w.store.get(ORIGIN) is None


def test_an_inconsistent_tree_is_refused() -> None:
    w = make_witness()
    assert add(w, 0, 10).status == 200
    # A fork's checkpoint with the fork's own (internally valid) proof.
    assert add(w, 10, 20, tree=FORK).status == 422
    # The real tree's proof does not make the fork's root consistent either.
    resp = w.add_checkpoint(raw_body(10, TREE.proof(10, 20), note_for(20, FORK.root(20))), NOW)
    assert resp.status == 422
    assert w.store.get(ORIGIN) == (10, TREE.root(10))


def test_a_rollback_is_never_cosigned() -> None:
    w = make_witness()
    assert add(w, 0, 20).status == 200
    older = note_for(12)
    assert w.add_checkpoint(raw_body(20, [], older), NOW).status == 400
    assert_size_conflict(w.add_checkpoint(raw_body(12, [], older), NOW), 20)
    assert_size_conflict(w.add_checkpoint(raw_body(0, [], older), NOW), 20)
    assert_size_conflict(w.add_checkpoint(raw_body(5, TREE.proof(5, 12), older), NOW), 20)
    assert w.store.get(ORIGIN) == (20, TREE.root(20))


def test_empty_tree_checkpoints() -> None:
    w = make_witness()
    assert w.add_checkpoint(raw_body(0, [], note_for(0, bytes(32))), NOW).status == 422
    assert w.add_checkpoint(raw_body(0, [], note_for(0)), NOW).status == 200
    assert w.store.get(ORIGIN) == (0, merkle.EMPTY_ROOT)
    assert add(w, 0, 4).status == 200  # nothing to prove from the empty tree


def test_origins_are_kept_apart() -> None:
    w = make_witness()
    assert add(w, 0, 10).status == 200
    other = sign_note(Checkpoint(OTHER.name, 3, TREE.root(3)).to_text(), [OTHER])
    assert w.add_checkpoint(raw_body(0, [], other), NOW).status == 200
    assert w.store.get(OTHER.name) == (3, TREE.root(3))
    assert w.store.get(ORIGIN) == (10, TREE.root(10))


def test_witness_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="at least one verifier"):
        Witness(WITNESS, {ORIGIN: []}, MemoryWitnessStore())
    with pytest.raises(ValueError, match="log origin ''"):
        Witness(WITNESS, {"": [LOG.verifier()]}, MemoryWitnessStore())
    with pytest.raises(ValueError, match="distinct verifier keys"):
        Witness(WITNESS, {ORIGIN: [LOG.verifier(), LOG.verifier()]}, MemoryWitnessStore())
    with pytest.raises(ValueError, match="now_unix"):
        make_witness().add_checkpoint(b"", -1)


# --------------------------------------------------------------------------- stores and races


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[
        MemoryWitnessStore | SqliteWitnessStore]:
    s = MemoryWitnessStore() if request.param == "memory" else SqliteWitnessStore(
        tmp_path / "witness.db")
    yield s
    s.close()


def test_store_compare_and_set(store: MemoryWitnessStore | SqliteWitnessStore) -> None:
    a, b = (3, TREE.root(3)), (5, TREE.root(5))
    assert store.get(ORIGIN) is None
    assert not store.compare_and_set(ORIGIN, a, b)
    assert store.compare_and_set(ORIGIN, None, a, timestamp=1)
    assert not store.compare_and_set(ORIGIN, None, b)
    assert store.compare_and_set(ORIGIN, a, b, timestamp=2)
    assert store.compare_and_set(ORIGIN, b, b, timestamp=3)
    assert store.get(ORIGIN) == b
    assert [(e.size, e.root_hash, e.timestamp) for e in store.history(ORIGIN)] == [
        (3, a[1], 1), (5, b[1], 2)]
    with pytest.raises(WitnessStoreError, match="roll back from size 5 to 3"):
        store.compare_and_set(ORIGIN, b, a)
    with pytest.raises(WitnessStoreError, match="replace the root hash at the same size 5"):
        store.compare_and_set(ORIGIN, b, (5, FORK.root(5)))
    with pytest.raises(WitnessStoreError, match="32 bytes"):
        store.compare_and_set(ORIGIN, b, (6, b"short"))
    big = ((1 << 64) - 1, TREE.root(6))
    assert store.compare_and_set(ORIGIN, b, big)
    assert store.get(ORIGIN) == big


def test_sqlite_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "witness.db"
    s = SqliteWitnessStore(path)
    w = make_witness(s)
    assert add(w, 0, 10, now=NOW).status == 200
    assert add(w, 10, 17, now=NOW + 1).status == 200
    s.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s = SqliteWitnessStore(path)
    try:
        w = make_witness(s)
        assert s.get(ORIGIN) == (17, TREE.root(17))
        assert_size_conflict(add(w, 0, 20), 17)
        assert add(w, 17, 20, now=NOW + 2).status == 200
        assert [(e.size, e.timestamp) for e in s.history(ORIGIN)] == [
            (10, NOW), (17, NOW + 1), (20, NOW + 2)]
    finally:
        s.close()


def test_sqlite_store_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "witness.db"
    path.write_bytes(b"this is not an SQLite database, not even close" * 100)
    with pytest.raises(WitnessStoreError, match="witness database"):
        SqliteWitnessStore(path)
    with pytest.raises(WitnessStoreError, match="cannot open witness database"):
        SqliteWitnessStore(tmp_path / "missing" / "witness.db")


def test_concurrent_compare_and_set_has_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "witness.db"
    s = SqliteWitnessStore(path)
    s.compare_and_set(ORIGIN, None, (5, TREE.root(5)))
    results: dict[int, bool] = {}
    barrier = threading.Barrier(8)

    def attempt(size: int) -> None:
        barrier.wait()
        results[size] = s.compare_and_set(ORIGIN, (5, TREE.root(5)), (size, TREE.root(size)))

    threads = [threading.Thread(target=attempt, args=(size,)) for size in range(10, 18)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [size for size, won in results.items() if won]
    assert len(winners) == 1
    assert s.get(ORIGIN) == (winners[0], TREE.root(winners[0]))
    s.close()


class RecordingStore(SqliteWitnessStore):
    """Records every state change, to prove that sizes only ever grew."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.changes: list[int] = []
        self._changes_lock = threading.Lock()

    def compare_and_set(self, origin: str, expected_old: State | None, new: State, *,
                        timestamp: int | None = None) -> bool:
        with self._changes_lock:  # keeps the recorded order equal to the commit order
            won = super().compare_and_set(origin, expected_old, new, timestamp=timestamp)
            if won:
                self.changes.append(new[0])
            return won


def test_concurrent_requests_cannot_roll_back(tmp_path: Path) -> None:
    s = RecordingStore(tmp_path / "witness.db")
    w = make_witness(s)
    assert add(w, 0, 8).status == 200
    # Every request claims the witness is at 8; a request that loses must not store.
    bodies = {size: raw_body(8, TREE.proof(8, size), note_for(size)) for size in range(9, 41)}
    answers: dict[int, WitnessResponse] = {}
    barrier = threading.Barrier(len(bodies))

    def submit(size: int) -> None:
        barrier.wait()
        answers[size] = w.add_checkpoint(bodies[size], NOW)

    threads = [threading.Thread(target=submit, args=(size,)) for size in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [size for size, a in answers.items() if a.status == 200]
    assert len(won) == 1
    for size, a in answers.items():
        if size != won[0]:
            assert_size_conflict(a, won[0])
    assert s.changes == [8, won[0]]
    assert s.get(ORIGIN) == (won[0], TREE.root(won[0]))
    s.close()


class RacingStore(MemoryWitnessStore):
    """Lets a competing request commit between the witness's read and its write."""

    def __init__(self, competitor: State) -> None:
        super().__init__()
        self.competitor: State | None = competitor
        self.attempts = 0

    def compare_and_set(self, origin: str, expected_old: State | None, new: State, *,
                        timestamp: int | None = None) -> bool:
        self.attempts += 1
        if self.competitor is not None:
            competitor, self.competitor = self.competitor, None
            assert super().compare_and_set(origin, expected_old, competitor)
        return super().compare_and_set(origin, expected_old, new, timestamp=timestamp)


def test_a_request_that_loses_the_race_gets_409_with_the_current_size() -> None:
    store = RacingStore((30, TREE.root(30)))
    w = make_witness(store)
    assert_size_conflict(add(w, 0, 10), 30)
    assert store.get(ORIGIN) == (30, TREE.root(30))


def test_a_request_that_loses_the_race_is_evaluated_again() -> None:
    store = RacingStore((0, merkle.EMPTY_ROOT))  # the competitor cosigned the empty tree
    w = make_witness(store)
    assert add(w, 0, 10).status == 200  # still valid from the state that won
    assert store.attempts == 2
    assert store.get(ORIGIN) == (10, TREE.root(10))


class AlwaysLosingStore(MemoryWitnessStore):
    def compare_and_set(self, origin: str, expected_old: State | None, new: State, *,
                        timestamp: int | None = None) -> bool:
        self.attempts = getattr(self, "attempts", 0) + 1
        return False


def test_repeatedly_losing_the_race_ends_in_409() -> None:
    store = AlwaysLosingStore()
    resp = add(make_witness(store), 0, 10)
    assert_size_conflict(resp, 0)
    assert store.attempts == MAX_ATTEMPTS


# --------------------------------------------------------------------------- key file


def test_witness_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    signer = load_or_create_witness_key(state, "witness.example/w1")
    assert os.stat(state / KEY_FILE).st_mode & 0o777 == 0o600
    assert os.stat(state).st_mode & 0o777 == 0o700
    assert (state / KEY_FILE).read_text() == signer.signer_key + "\n"
    assert (state / VKEY_FILE).read_text() == signer.verifier_key + "\n"
    assert CosignatureVerifier.from_key(signer.verifier_key) == signer.verifier()
    again = load_or_create_witness_key(state, "witness.example/w1")
    assert again.signer_key == signer.signer_key
    assert [p.name for p in state.iterdir() if p.name.endswith(".tmp")] == []


def test_witness_key_uses_the_seed_source(tmp_path: Path) -> None:
    signer = load_or_create_witness_key(tmp_path, "w", rand=lambda n: bytes(range(4, 4 + n)))
    assert signer.public_key == CosignatureSigner("w", bytes(range(4, 36))).public_key
    with pytest.raises(WitnessKeyError, match="seed source returned 3 bytes"):
        load_or_create_witness_key(tmp_path / "x", "w", rand=lambda n: b"abc")


def test_witness_key_errors(tmp_path: Path) -> None:
    load_or_create_witness_key(tmp_path, "witness.example/w1")
    with pytest.raises(WitnessKeyError, match=r"holds the key of witness 'witness\.example/w1'"):
        load_or_create_witness_key(tmp_path, "witness.example/w2")
    (tmp_path / KEY_FILE).chmod(0o644)
    with pytest.raises(WitnessKeyError, match="accessible by others"):
        load_or_create_witness_key(tmp_path, "witness.example/w1")
    (tmp_path / KEY_FILE).chmod(0o600)
    (tmp_path / KEY_FILE).write_text(LOG.signer_key + "\n")  # an Ed25519 (0x01) key
    with pytest.raises(WitnessKeyError, match="malformed witness key") as info:
        load_or_create_witness_key(tmp_path, ORIGIN)
    assert LOG.signer_key not in str(info.value)
    with pytest.raises(WitnessKeyError, match="witness name"):
        load_or_create_witness_key(tmp_path / "y", "has space")


# --------------------------------------------------------------------------- CLI


def test_cli_parser_and_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    witness_cli.configure_parser(parser)
    args = parser.parse_args(["--listen", "127.0.0.1:0", "--state", str(tmp_path),
                              "--log-vkey", LOG.verifier().verifier_key,
                              "--log-vkey", LOG_NEXT.verifier().verifier_key,
                              "--log-vkey", OTHER.verifier().verifier_key])
    assert args.name == witness_cli.DEFAULT_NAME
    served: list[object] = []

    def fake_serve(app: object, listen: object, log_level: str = "info",
                   limits: object = None) -> None:
        served.append(listen)

    monkeypatch.setattr("privproc.service.serve", fake_serve)
    assert witness_cli.run(args) == 0
    out = capsys.readouterr().out
    vkey = (tmp_path / VKEY_FILE).read_text().strip()
    assert f"witness vkey: {vkey}\n" in out
    assert vkey.startswith(witness_cli.DEFAULT_NAME + "+")
    assert (tmp_path / witness_cli.DB_FILE).exists()
    assert len(served) == 1
    assert witness_cli._logs(args.logs).keys() == {ORIGIN, OTHER.name}
    assert len(witness_cli._logs(args.logs)[ORIGIN]) == 2

    (tmp_path / KEY_FILE).chmod(0o640)
    assert witness_cli.run(args) == 1
    assert "accessible by others" in capsys.readouterr().err


def test_cli_parser_errors(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    witness_cli.configure_parser(parser)
    for argv in (
        ["--listen", "nope", "--state", "s", "--log-vkey", LOG.verifier().verifier_key],
        ["--listen", "127.0.0.1:1", "--state", "s", "--log-vkey", "garbage"],
        ["--listen", "127.0.0.1:1", "--state", "s", "--log-vkey", WITNESS.verifier_key],
        ["--listen", "127.0.0.1:1", "--state", "s"],
        ["--listen", "127.0.0.1:1", "--state", "s", "--name", "a+b",
         "--log-vkey", LOG.verifier().verifier_key],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    assert "log verifier key" in capsys.readouterr().err


# --------------------------------------------------------------------------- HTTP end to end


def test_end_to_end_over_http(tmp_path: Path) -> None:
    signer = load_or_create_witness_key(tmp_path, "witness.example/e2e")
    store = SqliteWitnessStore(tmp_path / "witness.db")
    config = WitnessConfig(signer=signer, logs={ORIGIN: [LOG.verifier()]}, store=store,
                           max_body=64 * 1024, clock=lambda: NOW + 0.9)
    verifier = CosignatureVerifier.from_key((tmp_path / VKEY_FILE).read_text().strip())

    async def scenario(url: str) -> None:
        async with aiohttp.ClientSession() as session:
            # First contact: nothing to prove.
            r = await request_cosignature(session, url, note_for(10), 0, [])
            assert r.signatures is not None and r.conflict_size is None
            opened = open_checkpoint(note_for(10) + r.signatures, LOG.verifier(),
                                     witnesses=[verifier], quorum=1)
            assert opened.cosignatures[0].timestamp == NOW
            # The log forgot the witness's size: 409 tells it, then it proves consistency.
            r = await request_cosignature(session, url, note_for(25), 0, [])
            assert r == CosignResult(conflict_size=10)
            r = await request_cosignature(session, url, note_for(25), 10, TREE.proof(10, 25))
            assert r.signatures is not None
            # Refusals become precise errors.
            with pytest.raises(WitnessError, match="422 \\(consistency proof rejected\\)"):
                await request_cosignature(session, url, note_for(30), 25, TREE.proof(24, 30))
            with pytest.raises(WitnessError, match="409 conflict without a size"):
                await request_cosignature(session, url, note_for(25, FORK.root(25)), 25, [])
            with pytest.raises(WitnessError, match="403"):
                await request_cosignature(session, url, note_for(30, signers=(STRANGER,)), 25,
                                          TREE.proof(25, 30))
            unknown = sign_note(Checkpoint("nowhere", 1, TREE.root(1)).to_text(), [OTHER])
            with pytest.raises(WitnessError, match="404 \\(unknown log origin\\)"):
                await request_cosignature(session, url, unknown, 0, [])
            # The 409 content type is exactly text/x.tlog.size.
            async with session.post(url + "/add-checkpoint",
                                    data=format_add_checkpoint(0, [], note_for(30))) as resp:
                assert resp.status == 409
                assert resp.headers["content-type"] == "text/x.tlog.size"
                assert await resp.read() == b"25\n"
            async with session.post(url + "/add-checkpoint", data=b"x" * (64 * 1024 + 1)) as resp:
                assert resp.status == 413
            quoted = urllib.parse.quote(ORIGIN, safe="")
            async with session.get(f"{url}/checkpoint/{quoted}") as resp:
                assert resp.status == 200
                root = base64.b64encode(TREE.root(25)).decode()
                assert await resp.text() == f"25\n{root}\n"
            async with session.get(f"{url}/checkpoint/nowhere") as resp:
                assert resp.status == 404
            async with session.get(f"{url}/healthz") as resp:
                assert resp.status == 200 and await resp.read() == b"ok\n"

    try:
        with serving(create_app(config), lifespan="off") as url:
            asyncio.run(scenario(url))
        assert store.get(ORIGIN) == (25, TREE.root(25))
    finally:
        store.close()


def test_client_reports_malformed_answers_and_transport_errors() -> None:
    answers: dict[str, tuple[int, str, bytes]] = {
        "/ok-empty": (200, "text/plain", b""),
        "/ok-garbage": (200, "text/plain", b"not a signature line\n"),
        "/size-garbage": (409, "text/x.tlog.size", b"007\n"),
        "/huge": (200, "text/plain", b"x" * (70 * 1024)),
        "/teapot": (418, "text/plain", b"I'm a teapot\x00\n"),
    }

    async def handler(request: web.Request) -> web.Response:
        prefix = request.path.removesuffix("/add-checkpoint")
        status, ctype, body = answers[prefix]
        return web.Response(status=status, body=body, headers={"content-type": ctype})

    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/{name}/add-checkpoint", handler)
        async with aiohttp_serving(app) as base, aiohttp.ClientSession() as session:
            note = note_for(3)
            for path, message in [
                ("/ok-empty", "200 with an empty body"),
                ("/ok-garbage", "200 with malformed signature lines"),
                ("/size-garbage", "409 with a malformed text/x.tlog.size body"),
                ("/huge", "exceeds 65536 bytes"),
                ("/teapot", "418 \\(unexpected status\\): I'm a teapot"),
            ]:
                with pytest.raises(WitnessError, match=message):
                    await request_cosignature(session, base + path, note, 0, [])
            with socket.socket() as s:  # bound and held, not listening: refused
                s.bind(("127.0.0.1", 0))
                closed = s.getsockname()[1]
                with pytest.raises(WitnessError, match="transport error"):
                    await request_cosignature(session, f"http://127.0.0.1:{closed}",
                                              note, 0, [])

    asyncio.run(scenario())
