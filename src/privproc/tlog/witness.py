"""A C2SP transparency log witness (https://c2sp.org/tlog-witness), sans-IO.

The witness keeps, per log origin, the size and root hash of the latest checkpoint it
cosigned, and cosigns a new checkpoint only if it is signed by a key it trusts for that
origin and is provably an append-only extension of that state. :class:`Witness` takes the
raw ``add-checkpoint`` request body and answers with the status, content type and body the
spec prescribes:

======  ==================================================================================
200     the cosignature line(s), after the new state was persisted
400     malformed request, or old size greater than the checkpoint size
403     no signature from a key trusted for the origin verifies (or one from a trusted key
        is invalid: the note is rejected as a whole, fail closed)
404     the checkpoint's origin is not a log this witness knows
409     old size differs from the stored size (``text/x.tlog.size`` body ``"<size>\\n"``);
        also old size == checkpoint size with a root hash different from the stored one
        (``text/plain`` body: that is evidence of a fork, not a size to retry with)
422     the consistency proof does not verify, or is not empty although old size is 0
======  ==================================================================================

Checks run in this order: framing (400), checkpoint note and text (400), origin (404),
signatures (403), old size <= checkpoint size (400), old size == stored size (409), equal
sizes need equal roots (409), consistency (422), then persist and cosign.

A rollback is never cosigned: a checkpoint smaller than the stored one either comes with
an old size greater than its own size (400) or with an old size that is not the stored
size (409).

**Atomicity.** Checking the old size and storing the new state happen in one
:meth:`WitnessStateStore.compare_and_set`, which stores only if the state is still what
the checks ran against. A request that loses that race is evaluated again against the
state that won (so it gets 409 with the current size in the usual case), at most
:data:`MAX_ATTEMPTS` times; it can never roll the state back.

**Policy beyond the spec** (both fail closed): a checkpoint of size 0 must carry the root
of the empty tree, ``SHA-256("")`` (422 otherwise), since the empty tree commits to
nothing else; and the store refuses any update that is not an append-only step (see
:class:`WitnessStoreError`), as a second line of defence.

The module reads no clock and does no IO of its own: the caller passes ``now_unix`` (the
cosignature timestamp) and the state store.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from privproc.errors import PrivprocError
from privproc.wire import merkle
from privproc.wire.checkpoint import (
    MAX_TIMESTAMP,
    Checkpoint,
    CosignatureSigner,
    parse_checkpoint,
)
from privproc.wire.errors import CheckpointError, MerkleError, NoteError
from privproc.wire.note import NoteSignature, Verifier, open_note, parse_note

__all__ = [
    "CONTENT_TYPE_SIGNATURES",
    "CONTENT_TYPE_SIZE",
    "CONTENT_TYPE_TEXT",
    "MAX_ATTEMPTS",
    "MAX_PROOF_LINES",
    "AddCheckpointError",
    "AddCheckpointRequest",
    "HistoryEntry",
    "State",
    "Witness",
    "WitnessResponse",
    "WitnessStateStore",
    "WitnessStoreError",
    "check_transition",
    "parse_add_checkpoint",
]

MAX_PROOF_LINES = 63
"""Most consistency proof lines an ``add-checkpoint`` body may carry (the spec's limit)."""

MAX_ATTEMPTS = 4
"""How many times a request is evaluated again after losing a compare-and-set race."""

CONTENT_TYPE_SIZE = "text/x.tlog.size"
"""Content type of the 409 body carrying the witness's size for the origin."""

CONTENT_TYPE_SIGNATURES = "text/plain; charset=utf-8"
"""Content type of the 200 body (note signature lines)."""

CONTENT_TYPE_TEXT = "text/plain; charset=utf-8"
"""Content type of error bodies (one line saying what was wrong)."""

_MAX_SIZE = (1 << 64) - 1
_OLD_LINE = re.compile(rb"old (0|[1-9][0-9]{0,19})")
_B64_HASH_LEN = 44  # base64 of 32 bytes, with one '=' of padding

State = tuple[int, bytes]
"""A witness's record for one origin: ``(tree size, root hash)``."""


class AddCheckpointError(PrivprocError, ValueError):
    """An ``add-checkpoint`` request body is malformed (answered with 400)."""


class WitnessStoreError(PrivprocError):
    """The witness state store refused an update or is unusable."""


@dataclass(frozen=True)
class AddCheckpointRequest:
    """A parsed ``add-checkpoint`` body. ``checkpoint_note`` is the signed note, unparsed."""

    old_size: int
    proof: list[bytes]
    checkpoint_note: bytes


@dataclass(frozen=True)
class WitnessResponse:
    """The HTTP answer to an ``add-checkpoint`` request.

    ``origin``, ``old_size`` and ``size`` are for content-free logging only: ``origin`` is
    set only when it is a configured (known) origin, the sizes only once parsed.
    """

    status: int
    content_type: str
    body: bytes
    origin: str | None = None
    old_size: int | None = None
    size: int | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One cosigned checkpoint state: first time the witness cosigned ``(size, root)``."""

    origin: str
    size: int
    root_hash: bytes
    timestamp: int | None


class WitnessStateStore(Protocol):
    """Per-origin latest cosigned state, updated only by an atomic compare-and-set."""

    def get(self, origin: str) -> State | None:
        """The latest cosigned ``(size, root hash)`` for ``origin``, or None if none."""
        ...

    def compare_and_set(
        self,
        origin: str,
        expected_old: State | None,
        new: State,
        *,
        timestamp: int | None = None,
    ) -> bool:
        """Store ``new`` for ``origin`` iff the stored state is exactly ``expected_old``.

        Returns whether it stored. Atomic with respect to every other caller (threads and,
        for durable stores, processes). ``timestamp`` is the cosignature time recorded in
        the history. Raises :class:`WitnessStoreError` if ``new`` is not an append-only
        step from ``expected_old`` (see :func:`check_transition`).
        """
        ...


def check_transition(origin: str, old: State | None, new: State) -> None:
    """Raise :class:`WitnessStoreError` unless ``old -> new`` could be append-only.

    The size must not shrink and an equal size must keep the root hash. Stores call this
    as a second line of defence; the witness has already proved consistency.
    """
    size, root = new
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= _MAX_SIZE:
        raise WitnessStoreError(f"{origin!r}: new size must be an int in 0..2**64-1, got {size!r}")
    if not isinstance(root, bytes) or len(root) != merkle.HASH_SIZE:
        raise WitnessStoreError(
            f"{origin!r}: new root hash must be {merkle.HASH_SIZE} bytes, got {root!r:.80}"
        )
    if old is None:
        return
    if size < old[0]:
        raise WitnessStoreError(f"{origin!r}: refusing to roll back from size {old[0]} to {size}")
    if size == old[0] and root != old[1]:
        raise WitnessStoreError(
            f"{origin!r}: refusing to replace the root hash at the same size {size}"
        )


# --------------------------------------------------------------------------- parsing


def _b64_hash(line: bytes, number: int) -> bytes:
    what = f"consistency proof line {number}"
    if len(line) != _B64_HASH_LEN:
        raise AddCheckpointError(
            f"{what}: expected {_B64_HASH_LEN} characters of base64 (a 32-byte hash), "
            f"got {len(line)}"
        )
    try:
        raw = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AddCheckpointError(f"{what}: invalid base64 {line!r}: {exc}") from None
    if len(raw) != merkle.HASH_SIZE:  # 44 characters without padding are 33 bytes
        raise AddCheckpointError(f"{what}: expected a 32-byte hash, got {len(raw)} bytes")
    if base64.b64encode(raw) != line:
        raise AddCheckpointError(f"{what}: non-canonical base64 {line!r}")
    return raw


def parse_add_checkpoint(body: bytes) -> AddCheckpointRequest:
    """Parse an ``add-checkpoint`` request body strictly (c2sp.org/tlog-witness).

    The body is ``old <size>\\n``, up to 63 lines each holding one base64 32-byte hash,
    an empty line, then the signed checkpoint note (returned unparsed; it must not be
    empty). The size is ASCII decimal with no leading zeroes and below 2**64. Raises
    :class:`AddCheckpointError` saying what was wrong.
    """
    if not isinstance(body, bytes | bytearray):
        raise AddCheckpointError(f"body: expected bytes, got {type(body).__name__}")
    body = bytes(body)
    end = body.find(b"\n")
    if end < 0:
        raise AddCheckpointError("old size line: expected a line ending in a newline, got none")
    line = body[:end]
    match = _OLD_LINE.fullmatch(line)
    if match is None:
        raise AddCheckpointError(
            "old size line: expected 'old <size>' (one space, ASCII decimal without leading "
            f"zeroes), got {line[:40]!r}"
        )
    old_size = int(match.group(1))
    if old_size > _MAX_SIZE:
        raise AddCheckpointError(f"old size line: expected a size below 2**64, got {old_size}")
    pos = end + 1
    proof: list[bytes] = []
    while True:
        end = body.find(b"\n", pos)
        if end < 0:
            raise AddCheckpointError(
                f"expected an empty line after the old size and {len(proof)} proof line(s), "
                "got end of body"
            )
        line = body[pos:end]
        pos = end + 1
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise AddCheckpointError(
                f"consistency proof: expected at most {MAX_PROOF_LINES} lines, got more"
            )
        proof.append(_b64_hash(line, len(proof) + 1))
    note = body[pos:]
    if not note:
        raise AddCheckpointError(
            "checkpoint: expected a signed note after the empty line, got none"
        )
    return AddCheckpointRequest(old_size, proof, note)


# --------------------------------------------------------------------------- witness


@dataclass(frozen=True)
class _Context:
    """What an answer may log: the origin (only if known) and the sizes (once parsed)."""

    origin: str | None = None
    old_size: int | None = None
    size: int | None = None

    def answer(self, status: int, content_type: str, body: bytes) -> WitnessResponse:
        return WitnessResponse(status, content_type, body, self.origin, self.old_size, self.size)

    def text(self, status: int, message: str) -> WitnessResponse:
        return self.answer(status, CONTENT_TYPE_TEXT, message.encode("utf-8") + b"\n")

    def size_conflict(self, size: int) -> WitnessResponse:
        return self.answer(409, CONTENT_TYPE_SIZE, b"%d\n" % size)


class Witness:
    """Checks ``add-checkpoint`` requests and cosigns consistent checkpoints.

    ``logs`` maps each known origin to the verifiers of the keys trusted to sign its
    checkpoints (several keys allow rotation); a checkpoint is accepted if at least one
    of them signed it and none of the trusted keys' signatures on it is invalid.
    """

    def __init__(
        self,
        signer: CosignatureSigner,
        logs: Mapping[str, Sequence[Verifier]],
        store: WitnessStateStore,
    ) -> None:
        if not isinstance(signer, CosignatureSigner):
            raise TypeError(f"signer: expected CosignatureSigner, got {type(signer).__name__}")
        checked: dict[str, tuple[Verifier, ...]] = {}
        for origin, verifiers in logs.items():
            try:
                Checkpoint(origin, 0, merkle.EMPTY_ROOT)  # validates the origin line
            except CheckpointError as exc:
                raise ValueError(f"log origin {origin!r}: {exc}") from None
            vs = tuple(verifiers)
            if not vs:
                raise ValueError(f"log origin {origin!r}: expected at least one verifier, got none")
            ids = [(v.name, v.key_hash) for v in vs]
            if len(set(ids)) != len(ids):
                raise ValueError(
                    f"log origin {origin!r}: expected distinct verifier keys, got a repeated "
                    "(name, key hash)"
                )
            checked[origin] = vs
        self._signer = signer
        self._logs = checked
        self._store = store

    @property
    def signer(self) -> CosignatureSigner:
        return self._signer

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(self._logs)

    @property
    def store(self) -> WitnessStateStore:
        return self._store

    def add_checkpoint(self, body: bytes, now_unix: int) -> WitnessResponse:
        """Answer one ``add-checkpoint`` request; cosignatures carry ``now_unix``.

        Never raises for any request body; raises :class:`ValueError` for an invalid
        ``now_unix`` and lets store failures (:class:`WitnessStoreError`,
        :class:`sqlite3.Error`) propagate, since those are the witness's own faults.
        """
        if not isinstance(now_unix, int) or isinstance(now_unix, bool):
            raise ValueError(f"now_unix: expected int, got {type(now_unix).__name__}")
        if not 0 <= now_unix <= MAX_TIMESTAMP:
            raise ValueError(f"now_unix: expected 0..2**63-1, got {now_unix}")
        try:
            req = parse_add_checkpoint(body)
        except AddCheckpointError as exc:
            return _Context().text(400, f"malformed add-checkpoint request: {exc}")
        try:
            note = parse_note(req.checkpoint_note)
            checkpoint = parse_checkpoint(note.text)
        except (NoteError, CheckpointError) as exc:
            return _Context(old_size=req.old_size).text(400, f"malformed checkpoint: {exc}")
        verifiers = self._logs.get(checkpoint.origin)
        if verifiers is None:
            return _Context(None, req.old_size, checkpoint.size).text(404, "unknown log origin")
        origin = checkpoint.origin
        ctx = _Context(origin, req.old_size, checkpoint.size)
        try:
            open_note(req.checkpoint_note, verifiers)
        except NoteError as exc:
            return ctx.text(403, f"checkpoint signature: {exc}")
        if req.old_size > checkpoint.size:
            return ctx.text(
                400,
                f"old size {req.old_size} is greater than the checkpoint size {checkpoint.size}",
            )
        for _ in range(MAX_ATTEMPTS):
            stored = self._store.get(origin)
            refusal = self._check(req, checkpoint, stored, ctx)
            if refusal is not None:
                return refusal
            new = (checkpoint.size, checkpoint.root_hash)
            if self._store.compare_and_set(origin, stored, new, timestamp=now_unix):
                break
        else:
            current = self._store.get(origin)
            return ctx.size_conflict(0 if current is None else current[0])
        sig = self._signer.sign_at(note.text, now_unix)
        line = NoteSignature(self._signer.name, self._signer.key_hash, sig).to_line()
        return ctx.answer(200, CONTENT_TYPE_SIGNATURES, line.encode("utf-8"))

    def _check(
        self,
        req: AddCheckpointRequest,
        checkpoint: Checkpoint,
        stored: State | None,
        ctx: _Context,
    ) -> WitnessResponse | None:
        """The refusal for ``req`` against the ``stored`` state, or None to cosign."""
        stored_size = 0 if stored is None else stored[0]
        if req.old_size != stored_size:
            return ctx.size_conflict(stored_size)
        if (
            stored is not None
            and checkpoint.size == stored_size
            and not hmac.compare_digest(checkpoint.root_hash, stored[1])
        ):
            return ctx.text(
                409,
                f"checkpoint root hash differs from the cosigned one at the same size "
                f"{stored_size}",
            )
        if checkpoint.size == 0 and checkpoint.root_hash != merkle.EMPTY_ROOT:
            return ctx.text(422, "a checkpoint of size 0 must have the empty tree's root hash")
        if req.old_size == 0:
            if req.proof:
                return ctx.text(
                    422,
                    f"consistency proof must be empty when the old size is 0, "
                    f"got {len(req.proof)} line(s)",
                )
            return None
        assert stored is not None  # stored_size == old_size > 0
        try:
            merkle.verify_consistency(
                req.old_size, checkpoint.size, req.proof, stored[1], checkpoint.root_hash
            )
        except MerkleError as exc:
            return ctx.text(422, f"consistency proof does not verify: {exc}")
        return None
