"""The log service in process (uvicorn in a thread): publisher scopes on /add, /proofs."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from privproc.tlog.bundle import MEDIA_TYPE, LogBundle
from privproc.tlog.client import CheckpointVerificationError, LogPolicy
from privproc.tlog.log_app import LogConfig, create_app
from privproc.tlog.record import KeyRecord, RevocationRecord, entry_subject
from privproc.tlog.storage import SqliteStorage
from privproc.wire import note
from privproc.wire.checkpoint import parse_checkpoint

from ..servers import serving
from .helpers import LOG_SIGNER, ORIGIN, release

RELEASES = note.Ed25519Signer("releases.test", hashlib.sha256(b"releases").digest())
GATEWAY = note.Ed25519Signer("gw.example", hashlib.sha256(b"gateway").digest())
ISSUER = note.Ed25519Signer("issuer.example", hashlib.sha256(b"issuer").digest())
STRANGER = note.Ed25519Signer("gw.example", hashlib.sha256(b"stranger").digest())
POLICY = LogPolicy.from_keys(LOG_SIGNER.verifier_key)
MAX_SUBJECTS = 4


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str

    def json(self) -> object:
        return json.loads(self.body)


def http(url: str, data: bytes | None = None) -> Answer:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return Answer(resp.status, resp.read(), resp.headers.get("content-type", ""))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read(), exc.headers.get("content-type", ""))


def key_record(owner: str, n: int, purpose: str = "ohttp-gateway") -> bytes:
    return KeyRecord(purpose, owner, bytes([n]) * 40, 1_700_000_000, 1_800_000_000).encode()


def revocation(i: int) -> bytes:
    measurement = hashlib.sha384(f"m{i}".encode()).digest()  # release(i)'s measurement
    return RevocationRecord(measurement, "cve-2024-1", 1_700_000_500).encode()


class LogServer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.added: list[bytes] = []

    def add(self, record: bytes, *signers: note.Signer) -> Answer:
        answer = http(f"{self.url}/add", note.sign_note(record, list(signers)))
        if answer.status == 200:
            self.added.append(record)
        return answer

    def published_size(self) -> int:
        text = note.parse_note(http(f"{self.url}/checkpoint").body).text
        return parse_checkpoint(text).size

    def wait_published(self, size: int) -> None:
        """Records are acknowledged when durable; the checkpoint is published just after."""
        deadline = time.monotonic() + 5
        while self.published_size() < size:
            assert time.monotonic() < deadline, f"no checkpoint of size {size} published"
            threading.Event().wait(0.005)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[LogServer]:
    config = LogConfig(
        origin=ORIGIN,
        signer=LOG_SIGNER,
        publishers=[RELEASES.verifier()],
        key_publishers=[GATEWAY.verifier(), ISSUER.verifier()],
        batch_wait=0.001,
        max_proof_subjects=MAX_SUBJECTS,
    )
    with serving(create_app(SqliteStorage(tmp_path / "log.db"), config)) as url:
        yield LogServer(url)


def test_key_publishers_add_only_their_own_key_records(log: LogServer) -> None:
    own = log.add(key_record("gw.example", 1), GATEWAY)
    assert own.status == 200, own.body
    assert own.json() == {"index": 0, "size": 1}
    assert log.add(key_record("issuer.example", 2, "privacypass-0002"), ISSUER).status == 200
    for record in (key_record("issuer.example", 3), key_record("other.example", 3),
                   release(0), revocation(0)):
        refused = log.add(record, GATEWAY)
        assert refused.status == 403, record
        assert refused.content_type.startswith("application/problem+json")
    assert log.add(release(0), ISSUER).status == 403
    # Same name as the gateway, another key: not a publisher at all.
    assert log.add(key_record("gw.example", 4), STRANGER).status == 403
    # Signed by the release publisher too, anything goes.
    assert log.add(release(5), GATEWAY, RELEASES).status == 200
    assert log.add(b"privproc-key/v1\nnot a key record\n", GATEWAY).status == 400
    assert len(log.added) == 3
    log.wait_published(3)
    assert json.loads(http(f"{log.url}/lookup/"
                           + hashlib.sha256(bytes([3]) * 40).hexdigest()).body) == {"indices": []}


def test_release_publisher_adds_every_kind(log: LogServer) -> None:
    records = [release(0), revocation(0), key_record("gw.example", 1),
               key_record("anyone.example", 2, "privacypass-0001")]
    for i, record in enumerate(records):
        answer = log.add(record, RELEASES)
        assert answer.status == 200, answer.body
        assert answer.json() == {"index": i, "size": i + 1}
    again = log.add(records[1], RELEASES)  # resubmitted: the same index
    assert again.json() == {"index": 1, "size": 4}
    malformed = log.add(b"privproc-release/v1\nmeasurement 00\n", RELEASES)
    assert malformed.status == 400
    assert log.add(b"hello\n", RELEASES).status == 400


def test_lookup_by_key_digest_and_measurement(log: LogServer) -> None:
    for record in (release(0), key_record("gw.example", 1), revocation(0)):
        assert log.add(record, RELEASES).status == 200
    digest = hashlib.sha256(bytes([1]) * 40).hexdigest()
    assert http(f"{log.url}/lookup/{digest}").json() == {"indices": [1]}
    measurement = hashlib.sha384(b"m0").hexdigest()
    assert http(f"{log.url}/lookup/{measurement}").json() == {"indices": [0, 2]}
    assert http(f"{log.url}/lookup/zz").status == 400


def test_proofs_bundle_verifies_with_exactly_the_requested_subjects(log: LogServer) -> None:
    records = [release(i) for i in range(6)] + [revocation(2), key_record("gw.example", 1),
                                                key_record("gw.example", 2), revocation(4)]
    for record in records:
        assert log.add(record, RELEASES).status == 200
    log.wait_published(len(records))
    wanted = [hashlib.sha384(b"m2").digest(), hashlib.sha256(bytes([1]) * 40).digest(),
              hashlib.sha384(b"m5").digest()]
    query = "&".join(f"subject={s.hex()}" for s in wanted)
    answer = http(f"{log.url}/proofs?{query}")
    assert answer.status == 200, answer.body
    assert answer.content_type == MEDIA_TYPE
    bundle = LogBundle.decode(answer.body)
    assert bundle.verify(POLICY).checkpoint.size == len(records)
    expected = [(i, r) for i, r in enumerate(records) if entry_subject(r) in wanted]
    assert [(e.index, e.record) for e in bundle.entries] == expected
    assert [i for i, _ in expected] == [2, 5, 6, 7]
    # A subject the log never saw: a bundle with no entries, under the same checkpoint.
    empty = LogBundle.decode(http(f"{log.url}/proofs?subject={'00' * 32}").body)
    assert empty.entries == () and empty.verify(POLICY).checkpoint.size == len(records)


def test_proofs_cover_only_published_records(log: LogServer) -> None:
    assert log.add(release(0), RELEASES).status == 200
    log.wait_published(1)
    subject = hashlib.sha384(b"m0").hexdigest()
    bundle = LogBundle.decode(http(f"{log.url}/proofs?subject={subject}").body)
    assert [e.index for e in bundle.entries] == [0]
    assert bundle.verify(POLICY).checkpoint.size == 1


def test_proofs_refuses_bad_queries(log: LogServer) -> None:
    subject = "ab" * 32
    for query in ("", "?", "?other=ab", "?subject=zz", "?subject=abc", "?subject=",
                  "?subject=%20ab", "?subject=ab%20cd", "?subject=ab%0A",
                  f"?subject={subject}&subject=xyz",
                  "?" + "&".join([f"subject={subject}"] * (MAX_SUBJECTS + 1))):
        answer = http(f"{log.url}/proofs{query}")
        assert answer.status == 400, query
        assert answer.content_type.startswith("application/problem+json")
    at_limit = "?" + "&".join([f"subject={subject}"] * MAX_SUBJECTS)
    assert http(f"{log.url}/proofs{at_limit}").status == 200
    assert http(f"{log.url}/proofs?subject={subject.upper()}").status == 200


# --------------------------------------------------------------------------- recosigning


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 10 s"
        threading.Event().wait(0.01)


def test_an_unchanged_checkpoint_is_cosigned_again_with_a_newer_time(tmp_path: Path) -> None:
    """Clients judge how recent a checkpoint is by its cosignature times
    (``max_checkpoint_age``), so a log that gets no new records still gets new ones."""
    from privproc.tlog.log_app import WitnessEndpoint
    from privproc.tlog.witness_app import WitnessConfig
    from privproc.tlog.witness_app import create_app as create_witness
    from privproc.tlog.witness_store import MemoryWitnessStore
    from privproc.wire.checkpoint import CosignatureSigner, CosignatureVerifier

    witness_key = CosignatureSigner("w.example", hashlib.sha256(b"w").digest())
    clock = [1_700_000_000.0]
    witness = WitnessConfig(witness_key, {ORIGIN: [LOG_SIGNER.verifier()]},
                            MemoryWitnessStore(), clock=lambda: clock[0])
    policy = LogPolicy.from_keys(LOG_SIGNER.verifier_key, [witness_key.verifier_key], 1)

    def cosigned_at(url: str) -> int | None:
        try:
            verified = policy.verify(http(url + "/checkpoint").body)
        except CheckpointVerificationError:
            return None  # the first checkpoint, until the witness has cosigned it
        return policy.witnessed_at(verified)

    with serving(create_witness(witness)) as witness_url:
        config = LogConfig(origin=ORIGIN, signer=LOG_SIGNER, publishers=[RELEASES.verifier()],
                           witnesses=[WitnessEndpoint(witness_url, CosignatureVerifier.from_key(
                               witness_key.verifier_key))], quorum=1, batch_wait=0.001,
                           recosign_interval=0.05)
        with serving(create_app(SqliteStorage(tmp_path / "log.db"), config)) as url:
            wait_for(lambda: cosigned_at(url) == 1_700_000_000)
            size = parse_checkpoint(note.parse_note(http(url + "/checkpoint").body).text).size
            clock[0] += 500  # nothing logged meanwhile
            wait_for(lambda: cosigned_at(url) == 1_700_000_500)
            again = parse_checkpoint(note.parse_note(http(url + "/checkpoint").body).text)
            assert again.size == size  # the same tree, a newer witnessed time
