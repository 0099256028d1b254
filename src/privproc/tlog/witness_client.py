"""The log's side of c2sp.org/tlog-witness: ask a witness to cosign a checkpoint.

:func:`request_cosignature` posts an ``add-checkpoint`` request and returns either the
witness's signature lines (to append to the checkpoint note, after verifying them with
the witness keys the log trusts) or, on a ``409`` with a ``text/x.tlog.size`` body, the
size the witness last cosigned, so the log can retry with a consistency proof from that
size. Every other outcome raises :class:`WitnessError` saying what happened.

What a witness answers is its word alone: :func:`cosignatures_by` keeps only the lines
that are valid cosignatures of the checkpoint by *that* witness's key, so that one faulty
or hostile witness (a bad line under its own key, or one claiming another witness's or the
log's name and key) cannot spoil the note that the other witnesses' cosignatures complete.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from privproc.errors import PrivprocError
from privproc.wire.checkpoint import CosignatureVerifier
from privproc.wire.errors import NoteError
from privproc.wire.note import parse_note

from .witness import CONTENT_TYPE_SIZE, MAX_PROOF_LINES

__all__ = [
    "MAX_RESPONSE_SIZE",
    "CosignResult",
    "WitnessError",
    "cosignatures_by",
    "format_add_checkpoint",
    "request_cosignature",
]

MAX_RESPONSE_SIZE = 64 * 1024
"""Most bytes of a witness answer that are read (cosignature lines are ~120 bytes each)."""

_MAX_SIZE = (1 << 64) - 1
_HASH_SIZE = 32
_SIZE_BODY = re.compile(rb"(0|[1-9][0-9]{0,19})\n")


class WitnessError(PrivprocError):
    """A witness refused the checkpoint, answered malformed, or could not be reached."""


@dataclass(frozen=True)
class CosignResult:
    """Exactly one of: the witness's signature lines, or the size it says it is at (409)."""

    signatures: bytes | None = None
    conflict_size: int | None = None

    def __post_init__(self) -> None:
        if (self.signatures is None) == (self.conflict_size is None):
            raise ValueError("CosignResult: expected exactly one of signatures, conflict_size")


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], checkpoint_note: bytes) -> bytes:
    """Encode an ``add-checkpoint`` request body.

    Raises :class:`ValueError` for a size outside 0..2**64-1, more than 63 proof hashes, a
    hash that is not 32 bytes, a non-empty proof with old size 0, or a note that is empty
    or does not end in a newline.
    """
    if not isinstance(old_size, int) or isinstance(old_size, bool):
        raise ValueError(f"old size: expected int, got {type(old_size).__name__}")
    if not 0 <= old_size <= _MAX_SIZE:
        raise ValueError(f"old size: expected 0..2**64-1, got {old_size}")
    if len(proof) > MAX_PROOF_LINES:
        raise ValueError(f"consistency proof: expected at most {MAX_PROOF_LINES} hashes, "
                         f"got {len(proof)}")
    if old_size == 0 and proof:
        raise ValueError(f"consistency proof: expected none with old size 0, got {len(proof)}")
    for i, h in enumerate(proof, 1):
        if not isinstance(h, bytes | bytearray) or len(h) != _HASH_SIZE:
            got = f"{len(h)} bytes" if isinstance(h, bytes | bytearray) else type(h).__name__
            raise ValueError(f"consistency proof hash {i}: expected {_HASH_SIZE} bytes, got {got}")
    if not isinstance(checkpoint_note, bytes | bytearray):
        raise ValueError(f"checkpoint note: expected bytes, got {type(checkpoint_note).__name__}")
    if not checkpoint_note.endswith(b"\n"):
        raise ValueError("checkpoint note: expected a signed note ending in a newline")
    lines = [b"old %d\n" % old_size, *(base64.b64encode(bytes(h)) + b"\n" for h in proof), b"\n"]
    return b"".join(lines) + bytes(checkpoint_note)


def cosignatures_by(witness: CosignatureVerifier, checkpoint_note: bytes, lines: bytes
                    ) -> tuple[bytes, int]:
    """Keep, of the signature ``lines`` a witness answered for ``checkpoint_note``, the first
    that is a valid cosignature of its text by ``witness``; returns that line (or ``b""``)
    and how many lines were dropped: invalid ones, those of any other name or key (another
    witness's, the log's), and further ones. Raises :class:`WitnessError` if the lines, or
    the note they complete, do not parse.
    """
    try:
        base = parse_note(bytes(checkpoint_note))
        answered = parse_note(bytes(checkpoint_note) + bytes(lines)).signatures[
            len(base.signatures):]
    except NoteError as exc:
        raise WitnessError(f"signature lines do not parse: {exc}") from None
    kept = b""
    for sig in answered:
        if (not kept and (sig.name, sig.key_hash) == (witness.name, witness.key_hash)
                and witness.verify(base.text, sig.signature)):
            kept = sig.to_line().encode("utf-8")
    return kept, len(answered) - (1 if kept else 0)


def _snippet(body: bytes) -> str:
    """A short, printable rendering of an error body for messages."""
    text = body[:200].decode("utf-8", "replace").strip()
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text or "(empty body)"


def _media_type(resp: aiohttp.ClientResponse) -> str:
    return resp.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_capped(resp: aiohttp.ClientResponse, where: str) -> bytes:
    body = bytearray()
    while chunk := await resp.content.read(MAX_RESPONSE_SIZE + 1 - len(body)):
        body += chunk
        if len(body) > MAX_RESPONSE_SIZE:
            raise WitnessError(
                f"{where}: answer {resp.status} exceeds {MAX_RESPONSE_SIZE} bytes, refusing it"
            )
    return bytes(body)


async def request_cosignature(
    session: aiohttp.ClientSession,
    witness_url: str,
    checkpoint_note: bytes,
    old_size: int,
    proof: list[bytes],
) -> CosignResult:
    """POST ``add-checkpoint`` to the witness at ``witness_url`` (its submission prefix).

    Returns ``CosignResult(signatures=...)`` on 200 (the lines are well-formed note
    signature lines but *not* verified here: keep only this witness's valid cosignature,
    :func:`cosignatures_by`, before appending it to the note), or
    ``CosignResult(conflict_size=N)`` on a 409 whose body is a ``text/x.tlog.size``.
    Raises :class:`WitnessError` for any other status (including a 409 without a size,
    which means the witness holds a different root at that size), a malformed answer, a
    timeout or a transport error; raises :class:`ValueError` if the request itself cannot
    be encoded (see :func:`format_add_checkpoint`).
    """
    body = format_add_checkpoint(old_size, proof, checkpoint_note)
    url = witness_url.rstrip("/") + "/add-checkpoint"
    where = f"witness {url}"
    try:
        async with session.post(
            url,
            data=body,
            headers={"content-type": "text/plain; charset=utf-8"},
            allow_redirects=False,
        ) as resp:
            answer = await _read_capped(resp, where)
            status, media_type = resp.status, _media_type(resp)
    except TimeoutError:
        raise WitnessError(f"{where}: timed out") from None
    except aiohttp.ClientError as exc:
        raise WitnessError(f"{where}: transport error: {type(exc).__name__}: {exc}") from exc

    if status == 200:
        if not answer:
            raise WitnessError(f"{where}: 200 with an empty body, expected signature lines")
        try:
            note = parse_note(bytes(checkpoint_note) + answer)
        except NoteError as exc:
            raise WitnessError(f"{where}: 200 with malformed signature lines: {exc}") from None
        if not note.signatures:  # pragma: no cover - parse_note requires one
            raise WitnessError(f"{where}: 200 without signature lines")
        return CosignResult(signatures=answer)
    if status == 409:
        if media_type != CONTENT_TYPE_SIZE:
            raise WitnessError(
                f"{where}: 409 conflict without a size ({media_type or 'no content type'}), "
                f"the witness reports: {_snippet(answer)}"
            )
        match = _SIZE_BODY.fullmatch(answer)
        if match is None or int(match.group(1)) > _MAX_SIZE:
            raise WitnessError(
                f"{where}: 409 with a malformed {CONTENT_TYPE_SIZE} body {answer[:40]!r}, "
                "expected a decimal size and a newline"
            )
        return CosignResult(conflict_size=int(match.group(1)))
    meaning = {
        400: "bad request",
        403: "no trusted log signature verified",
        404: "unknown log origin",
        413: "request too large",
        422: "consistency proof rejected",
    }.get(status, "unexpected status")
    raise WitnessError(f"{where}: {status} ({meaning}): {_snippet(answer)}")
