"""The log service: a batching sequencer, witness cosigning, and the C2SP tiles over HTTP.

Routes:

- ``POST /add``: a record (release, key or revocation: :mod:`privproc.tlog.record`)
  signed as a note by a publisher key. A *publisher* may add any record; a *key publisher*
  only key records whose owner is its own key name (a gateway or issuer publishes its own
  keys, never a release). The answer (JSON ``{"index": N, "size": S}``) comes only after
  the record is durable in the tree (one transaction per batch); resubmitting the same
  record returns its index.
- ``GET /checkpoint``: the latest published checkpoint, with the witnesses' cosignatures.
- ``GET /tile/<L>/<N>[.p/<W>]`` and ``GET /tile/entries/<N>[.p/<W>]``: C2SP tlog-tiles,
  immutable, servable by any static web server.
- ``GET /lookup/<subject hex>``: the indices of the records with that subject (a
  release's or revocation's measurement, or a key's SHA-256); a hint.
- ``GET /proofs?subject=<hex>[&subject=<hex>...]``: a log bundle
  (:mod:`privproc.tlog.bundle`) of every record with those subjects, with inclusion proofs
  under the published checkpoint: what gateways staple for their clients.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from privproc.service import BodyTooLarge, problem, read_body
from privproc.wire import merkle, note, tiles
from privproc.wire.checkpoint import CosignatureVerifier, open_checkpoint, parse_checkpoint
from privproc.wire.errors import CheckpointError, MerkleError, NoteError

from .bundle import MEDIA_TYPE as BUNDLE_MEDIA_TYPE
from .bundle import build_bundle
from .client import LogClientError, LogFetchError, LogReader
from .record import KeyRecord, RecordError, decode_entry
from .sequencer import Sequencer, read_public, read_stored_tile
from .storage import LogStorage, StorageError
from .witness_client import WitnessError, cosignatures_by, request_cosignature

log = logging.getLogger("privproc.log")

IMMUTABLE = {"cache-control": "public, max-age=31536000, immutable"}


@dataclass(frozen=True)
class WitnessEndpoint:
    url: str
    verifier: CosignatureVerifier


@dataclass
class LogConfig:
    origin: str
    signer: note.Signer
    publishers: Sequence[note.Verifier]
    key_publishers: Sequence[note.Verifier] = ()
    witnesses: Sequence[WitnessEndpoint] = ()
    quorum: int = 0
    batch_max: int = 4096
    batch_wait: float = 0.01
    max_record: int = 8192
    cosign_timeout: float = 10.0
    max_proof_subjects: int = 64
    recosign_interval: float = 300.0
    """Seconds after which an unchanged checkpoint is cosigned again (0: never), so that
    cosignature times show clients how recent it is (their ``max_checkpoint_age``)."""


@dataclass
class _Pending:
    record: bytes
    future: asyncio.Future[int]


@dataclass
class LogService:
    """Owns the sequencer, the batch loop and the cosigning of new checkpoints."""

    storage: LogStorage
    config: LogConfig
    sequencer: Sequencer = field(init=False)
    _queue: asyncio.Queue[_Pending] = field(init=False)
    _writer: ThreadPoolExecutor = field(init=False)
    _witness_sizes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sequencer = Sequencer(self.storage, self.config.signer, self.config.origin)
        self._queue = asyncio.Queue()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sequencer")
        self.log_verifier = _verifier_of(self.config.signer)

    async def add(self, record: bytes) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(record, future))
        return await future

    async def run(self, session: aiohttp.ClientSession) -> None:
        """The batch loop: integrate whatever is queued, acknowledge, then cosign; and
        with nothing queued for ``recosign_interval``, cosign the same checkpoint again."""
        await self._publish(session)
        loop = asyncio.get_running_loop()
        interval = self.config.recosign_interval if self.config.witnesses else 0
        while True:
            try:
                first = await asyncio.wait_for(self._queue.get(), interval or None)
            except TimeoutError:
                await self._publish(session, renew=True)
                continue
            batch = [first]
            deadline = loop.time() + self.config.batch_wait
            while len(batch) < self.config.batch_max:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            try:
                indices = await loop.run_in_executor(self._writer, self._integrate, batch)
            except Exception as exc:  # noqa: BLE001 - every waiter must hear of the failure
                log.error("integration failed: %s", exc)
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(StorageError(f"integration failed: {exc}"))
                continue
            for p, index in zip(batch, indices, strict=True):
                if not p.future.done():
                    p.future.set_result(index)
            await self._publish(session)

    async def _publish(self, session: aiohttp.ClientSession, *, renew: bool = False) -> None:
        """:meth:`cosign_and_publish`, which must not end the batch loop: a failure (the
        storage, say) is logged by type and the checkpoint published at the next batch or
        re-cosigning; the records are integrated and acknowledged meanwhile."""
        try:
            await self.cosign_and_publish(session, renew=renew)
        except Exception as exc:  # noqa: BLE001 - the loop must go on
            log.error("checkpoint not published (%s); trying again later", type(exc).__name__)

    def _integrate(self, batch: list[_Pending]) -> list[int]:
        """Assign indices (reusing those of records already logged) and integrate."""
        fresh: dict[bytes, int] = {}
        indices: list[int] = []
        new_records: list[bytes] = []
        for p in batch:
            lh = merkle.leaf_hash(p.record)
            known = self.storage.find_leaf(lh)
            if known is None:
                known = fresh.get(lh)
            if known is None:
                known = self.sequencer.size + len(new_records)
                fresh[lh] = known
                new_records.append(p.record)
            indices.append(known)
        started = time.perf_counter()
        self.sequencer.integrate(new_records)
        if new_records:
            log.info(
                "integrated %d records, size=%d ms=%.1f",
                len(new_records),
                self.sequencer.size,
                (time.perf_counter() - started) * 1000,
            )
        return indices

    async def cosign_and_publish(self, session: aiohttp.ClientSession, *,
                                 renew: bool = False) -> None:
        """Collect witness cosignatures for the latest checkpoint and publish it (with
        ``renew``, also when it is published already: fresh cosignature times)."""
        state = await run_in_threadpool(self.storage.state)
        assert state is not None
        published = state.published_size == state.size and state.published != state.checkpoint
        if published and not renew:
            return  # already published with cosignatures
        if not self.config.witnesses:
            await run_in_threadpool(self.storage.publish, state.size, state.checkpoint)
            return
        # Each witness's answer is checked against its own key alone (see _cosign), so a
        # faulty or hostile witness costs its own cosignature, never the others'.
        results = await asyncio.gather(
            *(self._cosign(session, w, state.checkpoint, state.size) for w in self.config.witnesses)
        )
        lines = b"".join(r for r in results if r)
        candidate = state.checkpoint + lines
        try:
            open_checkpoint(
                candidate,
                self.log_verifier,
                witnesses=[w.verifier for w in self.config.witnesses],
                quorum=self.config.quorum,
                origin=self.config.origin,
            )
        except (CheckpointError, NoteError) as exc:
            log.warning("checkpoint size=%d not published: %s", state.size, exc)
            return
        await run_in_threadpool(self.storage.publish, state.size, candidate)
        log.info(
            "published checkpoint size=%d with %d cosignatures",
            state.size,
            sum(1 for r in results if r),
        )

    async def _cosign(
        self, session: aiohttp.ClientSession, witness: WitnessEndpoint, checkpoint: bytes, size: int
    ) -> bytes | None:
        for _ in range(2):
            old = self._witness_sizes.get(witness.url, 0)
            if old > size:
                log.warning("witness %s is at size %d, beyond ours %d", witness.url, old, size)
                return None
            proof = await run_in_threadpool(self._consistency, old, size)
            try:
                result = await asyncio.wait_for(
                    request_cosignature(session, witness.url, checkpoint, old, proof),
                    self.config.cosign_timeout,
                )
            except (WitnessError, TimeoutError) as exc:
                log.warning("witness %s: %s", witness.url, exc or "timed out")
                return None
            if result.signatures is not None:
                try:
                    kept, dropped = cosignatures_by(witness.verifier, checkpoint,
                                                    result.signatures)
                except WitnessError as exc:
                    log.warning("witness %s: %s", witness.url, exc)
                    return None
                if dropped:
                    # Content-free: the lines are the witness's words, not to be echoed.
                    log.warning("witness %s: dropped %d signature line(s) that are not its "
                                "valid cosignature of checkpoint size=%d", witness.url,
                                dropped, size)
                if not kept:
                    return None
                self._witness_sizes[witness.url] = size
                return kept
            assert result.conflict_size is not None
            self._witness_sizes[witness.url] = result.conflict_size
        return None

    def _consistency(self, old: int, new: int) -> list[bytes]:
        if old in (0, new):
            return []
        reader = tiles.TileHashReader(new, lambda t: read_stored_tile(self.storage, t))
        return merkle.consistency_proof(old, new, reader)


def _verifier_of(signer: note.Signer) -> note.Verifier:
    if isinstance(signer, note.Ed25519Signer):
        return signer.verifier()
    raise TypeError(f"the log signer must be an Ed25519Signer, got {type(signer).__name__}")


def create_app(storage: LogStorage, config: LogConfig) -> Starlette:
    service: LogService | None = None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal service
        service = LogService(storage, config)
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=config.cosign_timeout)
        ) as session:
            task = asyncio.create_task(service.run(session))
            try:
                yield
            finally:
                task.cancel()
                service._writer.shutdown(wait=True)
                storage.close()

    signers = [*config.publishers, *config.key_publishers]
    release_publishers = {(v.name, v.key_hash) for v in config.publishers}

    def public_fetch(path: str) -> bytes:
        data = read_public(storage, path)
        if data is None:
            raise LogFetchError(f"{path} is not stored")
        return data

    async def add(request: Request) -> Response:
        assert service is not None
        try:
            body = await read_body(request, config.max_record + 1024)
        except BodyTooLarge:
            return problem(413, f"record too large (limit {config.max_record} bytes)")
        try:
            parsed, signatures = note.open_note(body, signers)
        except NoteError as exc:
            log.info("refused add: %s", exc)
            return problem(403, "record must be signed by a publisher key")
        try:
            record = decode_entry(parsed.text)
        except RecordError as exc:
            return problem(400, f"malformed record: {exc}")
        names = {sig.name for sig in signatures
                 if (sig.name, sig.key_hash) in release_publishers}
        if not names:
            key_names = {sig.name for sig in signatures}
            if not isinstance(record, KeyRecord) or record.owner not in key_names:
                log.info("refused add: key publisher outside its scope")
                return problem(403, "a key publisher may add only key records of its own "
                                    "name")
        try:
            index = await service.add(parsed.text)
        except StorageError as exc:
            return problem(503, str(exc))
        return Response(
            json.dumps({"index": index, "size": service.sequencer.size}),
            media_type="application/json",
        )

    async def checkpoint(request: Request) -> Response:
        state = await run_in_threadpool(storage.state)
        assert state is not None
        return Response(
            state.published,
            media_type="text/plain; charset=utf-8",
            headers={"cache-control": "no-store"},
        )

    async def tile(request: Request) -> Response:
        path = "tile/" + request.path_params["rest"]
        try:
            body = await run_in_threadpool(read_public, storage, path)
        except MerkleError as exc:
            return problem(404, f"not a tile path: {exc}")
        if body is None:
            return problem(404, "no such tile")
        return Response(body, media_type="application/octet-stream", headers=IMMUTABLE)

    async def lookup(request: Request) -> Response:
        try:
            subject = bytes.fromhex(request.path_params["subject"])
        except ValueError:
            return problem(400, "subject must be hex")
        indices = await run_in_threadpool(storage.find_subject, subject)
        return Response(json.dumps({"indices": indices}), media_type="application/json")

    def bundle_for(subjects: list[bytes]) -> bytes:
        state = storage.state()
        assert state is not None
        checkpoint = parse_checkpoint(note.parse_note(state.published).text)
        indices = [i for s in subjects for i in storage.find_subject(s)]
        return build_bundle(LogReader(public_fetch), checkpoint, state.published,
                            indices).encode()

    async def proofs(request: Request) -> Response:
        values = request.query_params.getlist("subject")
        if not 1 <= len(values) <= config.max_proof_subjects:
            return problem(400, f"give 1 to {config.max_proof_subjects} subject parameters")
        try:
            subjects = [bytes.fromhex(v) for v in values]
        except ValueError:
            return problem(400, "subjects must be hex")
        # bytes.fromhex skips whitespace and reads "" as no bytes: neither names a subject.
        if any(not s or s.hex() != v.lower() for s, v in zip(subjects, values, strict=True)):
            return problem(400, "subjects must be hex")
        try:
            body = await run_in_threadpool(bundle_for, subjects)
        except (LogClientError, MerkleError, StorageError) as exc:
            return problem(503, f"cannot prove the records: {exc}")
        return Response(body, media_type=BUNDLE_MEDIA_TYPE, headers={"cache-control": "no-store"})

    async def health(request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    return Starlette(
        routes=[
            Route("/add", add, methods=["POST"]),
            Route("/checkpoint", checkpoint, methods=["GET"]),
            Route("/tile/{rest:path}", tile, methods=["GET"]),
            Route("/lookup/{subject}", lookup, methods=["GET"]),
            Route("/proofs", proofs, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
