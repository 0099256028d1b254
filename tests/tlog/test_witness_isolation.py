"""One faulty or hostile witness cannot stop the log from publishing checkpoints.

The log asks every witness for a cosignature and publishes once a quorum of valid ones is
in. A witness's answer is checked against that witness's own key only: a bogus line under
its own key, or a line that claims another witness's or the log's name and key, is dropped
(with a warning naming the witness) instead of spoiling the whole note.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from privproc.tlog.log_app import LogConfig, LogService, WitnessEndpoint
from privproc.tlog.storage import SqliteStorage
from privproc.wire import note
from privproc.wire.checkpoint import CosignatureSigner, open_checkpoint, parse_checkpoint
from privproc.wire.note import NoteSignature

from ..servers import aiohttp_serving
from .helpers import LOG_SIGNER, ORIGIN, release

W1 = CosignatureSigner("w1.example", hashlib.sha256(b"iso w1").digest())
W2 = CosignatureSigner("w2.example", hashlib.sha256(b"iso w2").digest())
W3 = CosignatureSigner("w3.example", hashlib.sha256(b"iso w3").digest())
WITNESSES = {"w1": W1, "w2": W2, "w3": W3}
PUBLISHER = note.Ed25519Signer("publisher.example", hashlib.sha256(b"iso pub").digest())
NOW = 1_750_000_000
BOGUS = bytes(range(4)) * 19  # 76 bytes: the size of a cosignature, but no valid one

Answer = Callable[[bytes], bytes]
"""What a fake witness answers (200) to a checkpoint note: signature lines."""


def _checkpoint_of(body: bytes) -> bytes:
    """The checkpoint note in an add-checkpoint body (after the blank line)."""
    return body.split(b"\n\n", 1)[1]


def honest(signer: CosignatureSigner) -> Answer:
    def answer(checkpoint_note: bytes) -> bytes:
        signed = note.add_signatures(checkpoint_note, [signer.at(NOW)])
        return signed[len(checkpoint_note):]
    return answer


def line(name: str, key_hash: int, signature: bytes = BOGUS) -> bytes:
    return NoteSignature(name, key_hash, signature).to_line().encode()


def bogus_own(signer: CosignatureSigner) -> Answer:
    return lambda _: line(signer.name, signer.key_hash)


def impersonating(name: str, key_hash: int) -> Answer:
    return lambda _: line(name, key_hash)


def both(*answers: Answer) -> Answer:
    return lambda cp: b"".join(a(cp) for a in answers)


def publish(tmp_path: Path, answers: dict[str, Answer], quorum: int = 2
            ) -> tuple[bytes, bytes]:
    """Run one cosign-and-publish round of a log of one record with three witnesses that
    answer as told; return the log-signed checkpoint and what was published."""

    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        return web.Response(body=answers[name](_checkpoint_of(body)),
                            content_type="text/plain")

    tmp_path.mkdir(parents=True, exist_ok=True)
    storage = SqliteStorage(tmp_path / "log.db")

    async def scenario() -> tuple[bytes, bytes]:
        app = web.Application()
        app.router.add_post("/{name}/add-checkpoint", handler)
        async with aiohttp_serving(app) as base, aiohttp.ClientSession() as session:
            config = LogConfig(
                origin=ORIGIN, signer=LOG_SIGNER, publishers=[PUBLISHER.verifier()],
                witnesses=[WitnessEndpoint(f"{base}/{name}", w.verifier())
                           for name, w in WITNESSES.items()],
                quorum=quorum)
            service = LogService(storage, config)
            try:
                service.sequencer.integrate([release(0)])
                await service.cosign_and_publish(session)
            finally:
                service._writer.shutdown(wait=True)
            state = storage.state()
            assert state is not None
            return state.checkpoint, state.published

    try:
        return asyncio.run(scenario())
    finally:
        storage.close()


def cosigners(published: bytes) -> list[str]:
    opened = open_checkpoint(published, LOG_SIGNER.verifier(),
                             witnesses=[w.verifier() for w in WITNESSES.values()],
                             quorum=2, origin=ORIGIN)
    assert opened.checkpoint.size == 1
    return sorted(c.name for c in opened.cosignatures)


@pytest.mark.parametrize("bad", [
    pytest.param(bogus_own(W3), id="bogus-line-under-its-own-key"),
    pytest.param(impersonating(W1.name, W1.key_hash), id="impersonates-another-witness"),
    pytest.param(impersonating(LOG_SIGNER.name, LOG_SIGNER.key_hash), id="impersonates-log"),
    pytest.param(both(impersonating(W2.name, W2.key_hash), bogus_own(W3)), id="several-lines"),
])
def test_one_bad_witness_does_not_stop_publication(tmp_path: Path, bad: Answer,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="privproc.log")
    checkpoint, published = publish(tmp_path, {"w1": honest(W1), "w2": honest(W2), "w3": bad})
    assert published.startswith(checkpoint)  # this checkpoint, not the empty tree's
    assert cosigners(published) == ["w1.example", "w2.example"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("/w3" in m and "dropped" in m for m in warnings), warnings
    assert not any("/w1" in m or "/w2" in m for m in warnings), warnings
    assert not any("AAECAw" in m for m in warnings)  # no line content is echoed


def test_a_valid_cosignature_is_kept_next_to_the_lines_dropped(tmp_path: Path) -> None:
    answer = both(impersonating(LOG_SIGNER.name, LOG_SIGNER.key_hash), honest(W3),
                  bogus_own(W3), impersonating(W1.name, W1.key_hash))
    _, published = publish(tmp_path, {"w1": honest(W1), "w2": honest(W2), "w3": answer})
    assert cosigners(published) == ["w1.example", "w2.example", "w3.example"]
    assert published.count(b"\n\xe2\x80\x94 w3.example ") == 1
    assert published.count(b"\n\xe2\x80\x94 " + ORIGIN.encode() + b" ") == 1  # the log's own


def test_a_witness_may_not_relay_another_witness_s_cosignature(tmp_path: Path) -> None:
    """Even a *valid* cosignature by another witness is not taken from this one: each
    witness speaks for itself (and the other one is asked on its own)."""
    relayed = honest(W2)
    answers = {"w1": honest(W1), "w2": bogus_own(W2), "w3": relayed}
    _, published = publish(tmp_path / "a", answers)
    assert parse_checkpoint(note.parse_note(published).text).size == 0  # 1 of 2: no quorum
    checkpoint, published = publish(tmp_path / "b", answers, quorum=1)
    assert published.startswith(checkpoint)
    assert cosigners_quorum1(published) == ["w1.example"]


def cosigners_quorum1(published: bytes) -> list[str]:
    opened = open_checkpoint(published, LOG_SIGNER.verifier(),
                             witnesses=[w.verifier() for w in WITNESSES.values()],
                             quorum=1, origin=ORIGIN)
    return sorted(c.name for c in opened.cosignatures)


def test_no_quorum_of_valid_cosignatures_is_not_published(tmp_path: Path) -> None:
    checkpoint, published = publish(
        tmp_path, {"w1": honest(W1), "w2": bogus_own(W2), "w3": bogus_own(W3)})
    assert parse_checkpoint(note.parse_note(published).text).size == 0
    assert parse_checkpoint(note.parse_note(checkpoint).text).size == 1


# --------------------------------------------------------------------------- sans-IO


def test_cosignatures_by_keeps_only_that_witness_s_valid_lines() -> None:
    from privproc.tlog.witness_client import cosignatures_by

    cp = note.sign_note(b"log.test.example\n1\n" + b"A" * 43 + b"=\n", [LOG_SIGNER])
    good = honest(W1)(cp)
    kept, dropped = cosignatures_by(W1.verifier(), cp, good)
    assert (kept, dropped) == (good, 0)
    mixed = line(W1.name, W1.key_hash) + good + honest(W2)(cp) + good
    kept, dropped = cosignatures_by(W1.verifier(), cp, mixed)
    assert (kept, dropped) == (good, 3)  # one cosignature per witness is enough
    assert cosignatures_by(W1.verifier(), cp, line(W1.name, W1.key_hash)) == (b"", 1)
    other = note.sign_note(b"log.test.example\n2\n" + b"A" * 43 + b"=\n", [LOG_SIGNER])
    assert cosignatures_by(W1.verifier(), other, good) == (b"", 1)  # another checkpoint


def test_a_failed_publication_does_not_end_the_batch_loop(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The storage fails to publish (a full disk, say): records are still integrated and
    acknowledged, and the loop goes on (before, it ended, and every later add hung)."""
    from typing import Any, cast

    from privproc.tlog.storage import StorageError

    class FailingPublish(SqliteStorage):
        failures = 0

        def publish(self, size: int, checkpoint: bytes) -> None:
            FailingPublish.failures += 1
            raise StorageError("disk full")

    storage = FailingPublish(tmp_path / "log.db")
    config = LogConfig(origin=ORIGIN, signer=LOG_SIGNER, publishers=[PUBLISHER.verifier()])
    service = LogService(storage, config)

    async def scenario() -> list[int]:
        task = asyncio.create_task(service.run(cast(Any, None)))  # no witnesses: no session
        try:
            return [await asyncio.wait_for(service.add(release(i)), 10) for i in range(3)]
        finally:
            task.cancel()

    caplog.set_level(logging.ERROR, logger="privproc.log")
    try:
        assert asyncio.run(scenario()) == [0, 1, 2]
    finally:
        service._writer.shutdown(wait=True)
        storage.close()
    assert FailingPublish.failures >= 3
    assert "checkpoint not published (StorageError)" in caplog.text
