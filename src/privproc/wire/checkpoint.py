"""C2SP transparency log checkpoints and Ed25519 cosignatures.

* c2sp.org/tlog-checkpoint: the note text of a checkpoint is the origin line, the tree size
  (ASCII decimal, no leading zeroes), the base64 root hash, then optional non-empty
  extension lines, each ending in a newline.
* c2sp.org/tlog-cosignature, Ed25519 ``cosignature/v1``: a note signature with signature
  type byte 0x04 in its key ID, whose bytes (after the 4-byte key ID) are
  ``timestamp (u64, big-endian) || Ed25519 signature (64)`` -- 76 bytes with the key ID --
  over the message ``"cosignature/v1\\ntime <timestamp>\\n" || checkpoint note text``.

Sans-IO: timestamps are passed in, never read from a clock. Verifiers MAY reject
cosignatures from the future; that policy is left to the caller, who gets the timestamps
from :func:`open_checkpoint`.

Malformed checkpoints and cosignatures raise :class:`~privproc.wire.errors.CheckpointError`;
problems with the signed note or keys raise :class:`~privproc.wire.errors.NoteError`.

Limits: a checkpoint text is at most :data:`~privproc.wire.note.MAX_NOTE_SIZE` bytes; the
tree size is below 2**64; the root hash is exactly 32 bytes (SHA-256, RFC 6962) in
canonical base64; timestamps are 0..2**63-1.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature

from privproc.wire.errors import CheckpointError
from privproc.wire.note import (
    ALG_COSIGNATURE_V1,
    MAX_NOTE_SIZE,
    Ed25519KeySigner,
    Ed25519KeyVerifier,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    ed25519_public_key,
    format_signer_key,
    format_verifier_key,
    open_note,
)

__all__ = [
    "COSIGNATURE_V1_HEADER",
    "COSIGNATURE_SIZE",
    "MAX_TIMESTAMP",
    "Checkpoint",
    "Cosignature",
    "CosignatureSigner",
    "CosignatureVerifier",
    "VerifiedCheckpoint",
    "cosignature_message",
    "generate_cosigner",
    "open_checkpoint",
    "parse_checkpoint",
    "parse_cosignature",
]

COSIGNATURE_V1_HEADER = b"cosignature/v1\n"
"""First line of the message signed by an Ed25519 cosignature/v1."""

COSIGNATURE_SIZE = 8 + 64
"""Bytes of a cosignature after the 4-byte key ID: u64 timestamp + Ed25519 signature."""

MAX_TIMESTAMP = (1 << 63) - 1
"""Largest cosignature timestamp allowed by c2sp.org/tlog-cosignature."""

_HASH_SIZE = 32
_MAX_SIZE_DIGITS = 20  # 2**64 - 1 has 20 digits
_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x1f]")  # no newline allowed inside a line either


def _check_line(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise CheckpointError(f"{what}: expected str, got {type(value).__name__}")
    if value == "":
        raise CheckpointError(f"{what}: expected a non-empty line, got ''")
    bad = _CONTROL.search(value)
    if bad:
        raise CheckpointError(f"{what}: expected no control characters, got {bad.group()!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError(f"{what}: expected valid Unicode, got lone surrogates") from None
    return value


@dataclass(frozen=True)
class Checkpoint:
    """A transparency log checkpoint (the note text, without signatures)."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint origin")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise CheckpointError(f"checkpoint size: expected int, got {type(self.size).__name__}")
        if not 0 <= self.size < (1 << 64):
            raise CheckpointError(f"checkpoint size: expected 0 <= size < 2**64, got {self.size}")
        if not isinstance(self.root_hash, bytes | bytearray):
            raise CheckpointError(
                f"checkpoint root hash: expected bytes, got {type(self.root_hash).__name__}"
            )
        if len(self.root_hash) != _HASH_SIZE:
            raise CheckpointError(
                f"checkpoint root hash: expected {_HASH_SIZE} bytes, got {len(self.root_hash)}"
            )
        object.__setattr__(self, "root_hash", bytes(self.root_hash))
        if isinstance(self.extensions, str):
            raise CheckpointError("checkpoint extensions: expected a sequence of lines, got str")
        extensions = tuple(self.extensions)
        for i, ext in enumerate(extensions, 1):
            _check_line(ext, f"checkpoint extension line {i}")
        object.__setattr__(self, "extensions", extensions)

    def to_text(self) -> bytes:
        """The checkpoint note text, ending in a newline."""
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root_hash).decode("ascii"),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines).encode("utf-8")


def parse_checkpoint(text: bytes) -> Checkpoint:
    """Parse a checkpoint note text strictly. Raises :class:`CheckpointError`."""
    if not isinstance(text, bytes | bytearray):
        raise CheckpointError(f"checkpoint: expected bytes, got {type(text).__name__}")
    if len(text) > MAX_NOTE_SIZE:
        raise CheckpointError(
            f"checkpoint: expected at most {MAX_NOTE_SIZE} bytes, got {len(text)}"
        )
    try:
        s = bytes(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"checkpoint: expected UTF-8, got {exc.reason} at byte {exc.start}"
        ) from None
    if not s.endswith("\n"):
        raise CheckpointError("checkpoint: expected a final newline, got none")
    lines = s[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(
            f"checkpoint: expected at least 3 lines (origin, size, root hash), got {len(lines)}"
        )
    origin, size_s, hash_s, *extensions = lines
    _check_line(origin, "checkpoint origin")
    if len(size_s) > _MAX_SIZE_DIGITS or not _SIZE_RE.fullmatch(size_s):
        raise CheckpointError(
            f"checkpoint size: expected ASCII decimal without leading zeroes, got {size_s[:40]!r}"
        )
    size = int(size_s)
    if size >= 1 << 64:
        raise CheckpointError(f"checkpoint size: expected < 2**64, got {size}")
    root_hash = _b64decode(hash_s, "checkpoint root hash")
    if len(root_hash) != _HASH_SIZE:
        raise CheckpointError(
            f"checkpoint root hash: expected {_HASH_SIZE} bytes, got {len(root_hash)}"
        )
    return Checkpoint(origin, size, root_hash, tuple(extensions))


def _b64decode(s: str, what: str) -> bytes:
    if not s.isascii():
        raise CheckpointError(f"{what}: expected base64, got non-ASCII characters")
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"{what}: invalid base64 {s[:60]!r}: {exc}") from None
    if base64.b64encode(raw).decode("ascii") != s:
        raise CheckpointError(f"{what}: non-canonical base64 {s[:60]!r}")
    return raw


# --------------------------------------------------------------------------- cosignatures


def _check_timestamp(timestamp: int) -> None:
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise CheckpointError(f"timestamp: expected int, got {type(timestamp).__name__}")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CheckpointError(f"timestamp: expected 0 <= timestamp <= 2**63-1, got {timestamp}")


def cosignature_message(body: bytes, timestamp: int) -> bytes:
    """The message an Ed25519 cosignature/v1 signs: header, time line, checkpoint text."""
    _check_timestamp(timestamp)
    return COSIGNATURE_V1_HEADER + b"time %d\n" % timestamp + bytes(body)


def parse_cosignature(sig: bytes) -> tuple[int, bytes]:
    """Split cosignature bytes (after the key ID) into ``(timestamp, ed25519_signature)``."""
    if len(sig) != COSIGNATURE_SIZE:
        raise CheckpointError(
            f"cosignature: expected {COSIGNATURE_SIZE} bytes (8-byte timestamp + 64-byte "
            f"Ed25519 signature) after the key ID, got {len(sig)}"
        )
    timestamp = int.from_bytes(sig[:8], "big")
    if timestamp > MAX_TIMESTAMP:
        raise CheckpointError(f"cosignature: expected timestamp <= 2**63-1, got {timestamp}")
    return timestamp, bytes(sig[8:])


class CosignatureVerifier(Ed25519KeyVerifier):
    """Verifier of Ed25519 cosignature/v1 signatures (signature type 0x04)."""

    ALG = ALG_COSIGNATURE_V1
    ALG_LABEL = "cosignature/v1"

    __slots__ = ()

    def verify_timestamped(self, msg: bytes, sig: bytes) -> int | None:
        """The cosignature's timestamp if ``sig`` is a valid cosignature of ``msg``, else None."""
        try:
            timestamp, ed_sig = parse_cosignature(sig)
        except CheckpointError:
            return None
        try:
            self._key.verify(ed_sig, cosignature_message(msg, timestamp))
        except InvalidSignature:
            return None
        return timestamp

    def verify(self, msg: bytes, sig: bytes) -> bool:
        return self.verify_timestamped(msg, sig) is not None


class _TimestampedCosigner:
    """A :class:`~privproc.wire.note.Signer` view of a cosigner at a fixed timestamp."""

    __slots__ = ("_cosigner", "_timestamp")

    def __init__(self, cosigner: CosignatureSigner, timestamp: int) -> None:
        _check_timestamp(timestamp)
        self._cosigner = cosigner
        self._timestamp = timestamp

    @property
    def name(self) -> str:
        return self._cosigner.name

    @property
    def key_hash(self) -> int:
        return self._cosigner.key_hash

    def sign(self, msg: bytes) -> bytes:
        return self._cosigner.sign_at(msg, self._timestamp)


class CosignatureSigner(Ed25519KeySigner):
    """Signer of Ed25519 cosignature/v1 signatures (signature type 0x04).

    A cosignature carries a timestamp, so signing goes through :meth:`sign_at` or a
    :class:`~privproc.wire.note.Signer` bound to a timestamp by :meth:`at`.
    """

    ALG = ALG_COSIGNATURE_V1
    ALG_LABEL = "cosignature/v1"

    __slots__ = ()

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self._name, self._public_key)

    def sign_at(self, msg: bytes, timestamp: int) -> bytes:
        """Cosign checkpoint text ``msg``: returns ``timestamp (8, BE) || Ed25519 sig (64)``.

        ``msg`` must be a well-formed checkpoint text; raises :class:`CheckpointError`
        otherwise.
        """
        parse_checkpoint(msg)
        signed = cosignature_message(msg, timestamp)
        return timestamp.to_bytes(8, "big") + self._key.sign(signed)

    def at(self, timestamp: int) -> Signer:
        """A note :class:`~privproc.wire.note.Signer` producing cosignatures at ``timestamp``."""
        return _TimestampedCosigner(self, timestamp)


def generate_cosigner(name: str, seed: bytes) -> tuple[str, str]:
    """Derive ``(signer_key, verifier_key)`` strings (type 0x04) from a 32-byte seed."""
    return (
        format_signer_key(name, seed, alg=ALG_COSIGNATURE_V1),
        format_verifier_key(name, ed25519_public_key(seed), alg=ALG_COSIGNATURE_V1),
    )


# --------------------------------------------------------------------------- opening


class Cosignature(NamedTuple):
    """A verified witness cosignature."""

    name: str
    key_hash: int
    timestamp: int


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint whose log signature, and a quorum of cosignatures, verified."""

    checkpoint: Checkpoint
    note: Note
    log_signature: NoteSignature
    cosignatures: tuple[Cosignature, ...]


def open_checkpoint(
    msg: bytes,
    log_verifier: Verifier,
    *,
    witnesses: Sequence[CosignatureVerifier] = (),
    quorum: int = 0,
    origin: str | None = None,
) -> VerifiedCheckpoint:
    """Verify a signed checkpoint: the log's signature, then a quorum of witnesses.

    The note must carry a valid signature from ``log_verifier`` and valid cosignatures
    from at least ``quorum`` distinct ``witnesses``; any signature from a known key that
    does not verify rejects the note (see :func:`~privproc.wire.note.open_note`). Unknown
    signatures are ignored. If ``origin`` is given, the checkpoint's origin must equal it.

    Raises :class:`NoteError` for note/signature failures and :class:`CheckpointError` for
    a malformed checkpoint, wrong origin, or a missed quorum.
    """
    witness_ids = {(w.name, w.key_hash) for w in witnesses}
    if not 0 <= quorum <= len(witness_ids):
        raise CheckpointError(
            f"quorum: expected 0 <= quorum <= {len(witness_ids)} (distinct witnesses), got {quorum}"
        )
    by_id = {(w.name, w.key_hash): w for w in witnesses}
    note, verified = open_note(msg, [log_verifier, *witnesses], required=[log_verifier])
    checkpoint = parse_checkpoint(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint origin: expected {origin!r}, got {checkpoint.origin!r}")
    log_id = (log_verifier.name, log_verifier.key_hash)
    log_signature = next(s for s in verified if (s.name, s.key_hash) == log_id)
    cosignatures = []
    for sig in verified:
        ident = (sig.name, sig.key_hash)
        if ident not in by_id or ident == log_id:
            continue
        timestamp, _ = parse_cosignature(sig.signature)
        cosignatures.append(Cosignature(sig.name, sig.key_hash, timestamp))
    if len(cosignatures) < quorum:
        got = ", ".join(c.name for c in cosignatures) or "none"
        raise CheckpointError(
            f"cosignature quorum not met: expected at least {quorum} of {len(witness_ids)} "
            f"witnesses, got {len(cosignatures)} ({got})"
        )
    return VerifiedCheckpoint(checkpoint, note, log_signature, tuple(cosignatures))
