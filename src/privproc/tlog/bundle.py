"""Log bundles: records stapled with their inclusion proofs and the checkpoint they are under.

A service hands a client the log records it needs (its key records, the release records of
its nodes) in one document, so that the client verifies them offline against its trust
file and never has to ask the log itself, in the spirit of a Sigstore bundle. Media type
``application/privproc-log-bundle+json``; version 1::

    {
      "version": 1,
      "checkpoint": "<the log's checkpoint note, with its witness cosignatures>",
      "entries": [
        {"index": 7, "record": "<the record's text>", "proof": ["<hex hash>", ...]},
        ...
      ]
    }

Every entry's proof is an RFC 9162 inclusion proof for ``record`` at ``index`` in the tree
of ``checkpoint``. Decoding is strict: unknown keys, wrong types, more than
:data:`MAX_ENTRIES` entries or more than :data:`MAX_BUNDLE_SIZE` bytes are refused.
Verifying (:meth:`LogBundle.verify`) checks the checkpoint against the client's
:class:`~privproc.tlog.client.LogPolicy` (log signature, witness quorum) and every proof;
whether the checkpoint is consistent with what the client saw before is the caller's
second step (:meth:`privproc.tlog.view.LogView.accept`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from privproc import jsondoc
from privproc.wire import merkle
from privproc.wire.checkpoint import Checkpoint, VerifiedCheckpoint
from privproc.wire.errors import MerkleError

from .client import InclusionError, InclusionProof, LogClientError, LogPolicy, LogReader

MEDIA_TYPE = "application/privproc-log-bundle+json"
FORMAT_VERSION = 1
MAX_ENTRIES = 256
MAX_BUNDLE_SIZE = 1 << 20
_MAX_PROOF = 64
_HASH_HEX = re.compile(r"[0-9a-f]{64}")


class BundleFormatError(LogClientError):
    """A log bundle does not parse, or breaks a limit of the format."""


@dataclass(frozen=True)
class ProvenEntry:
    index: int
    record: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class LogBundle:
    checkpoint: bytes
    entries: tuple[ProvenEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "checkpoint": self.checkpoint.decode("utf-8"),
            "entries": [
                {"index": e.index, "record": e.record.decode("utf-8"),
                 "proof": [h.hex() for h in e.proof]}
                for e in self.entries
            ],
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, doc: object) -> LogBundle:
        """The bundle in a parsed JSON document (strict)."""
        if not isinstance(doc, dict):
            raise BundleFormatError("a log bundle must be a JSON object")
        if set(doc) != {"version", "checkpoint", "entries"}:
            raise BundleFormatError(
                f"a log bundle has exactly the keys version, checkpoint, entries; got "
                f"{sorted(doc)}")
        # type() and not ==: JSON true and 1.0 compare equal to 1 but are not version 1.
        if type(doc["version"]) is not int or doc["version"] != FORMAT_VERSION:
            raise BundleFormatError(
                f"unsupported log bundle version {doc['version']!r}, expected {FORMAT_VERSION}")
        checkpoint, entries = doc["checkpoint"], doc["entries"]
        if not isinstance(checkpoint, str) or not isinstance(entries, list):
            raise BundleFormatError("checkpoint must be a string and entries a list")
        if len(entries) > MAX_ENTRIES:
            raise BundleFormatError(f"{len(entries)} entries, at most {MAX_ENTRIES}")
        return cls(_utf8("checkpoint", checkpoint),
                   tuple(_entry(i, e) for i, e in enumerate(entries)))

    @classmethod
    def decode(cls, data: bytes) -> LogBundle:
        if len(data) > MAX_BUNDLE_SIZE:
            raise BundleFormatError(f"log bundle is {len(data)} bytes, limit {MAX_BUNDLE_SIZE}")
        try:
            doc = jsondoc.parse(data)
        except ValueError as exc:
            raise BundleFormatError(f"log bundle is not JSON: {exc}") from None
        return cls.from_json(doc)

    def proofs(self) -> list[InclusionProof]:
        return [InclusionProof(e.index, e.record, e.proof, self.checkpoint)
                for e in self.entries]

    def verify(self, policy: LogPolicy) -> VerifiedCheckpoint:
        """Check the checkpoint's signatures and quorum and every entry's inclusion proof.

        Raises :class:`~privproc.tlog.client.CheckpointVerificationError` or
        :class:`~privproc.tlog.client.InclusionError` naming the first entry that fails.
        """
        verified = policy.verify(self.checkpoint)
        tree = verified.checkpoint
        for e in self.entries:
            try:
                merkle.verify_inclusion(merkle.leaf_hash(e.record), e.index, tree.size,
                                        list(e.proof), tree.root_hash)
            except MerkleError as exc:
                raise InclusionError(
                    f"bundle entry at index {e.index} is not in the tree of size "
                    f"{tree.size}: {exc}") from None
        return verified


def _utf8(what: str, text: str) -> bytes:
    # JSON may carry lone surrogates ("\ud800"), which have no UTF-8 encoding.
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise BundleFormatError(f"{what} is not valid Unicode (lone surrogate)") from None


def _entry(position: int, doc: object) -> ProvenEntry:
    where = f"entries[{position}]"
    if not isinstance(doc, dict) or set(doc) != {"index", "record", "proof"}:
        raise BundleFormatError(f"{where} must be an object with index, record, proof")
    index, record, proof = doc["index"], doc["record"], doc["proof"]
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise BundleFormatError(f"{where}.index must be a non-negative integer")
    if not isinstance(record, str):
        raise BundleFormatError(f"{where}.record must be a string")
    if not isinstance(proof, list) or len(proof) > _MAX_PROOF:
        raise BundleFormatError(f"{where}.proof must be a list of at most {_MAX_PROOF} hashes")
    hashes: list[bytes] = []
    for h in proof:
        # A regular expression, not bytes.fromhex alone: that skips whitespace, so 64
        # characters could decode to fewer than 32 bytes.
        if not isinstance(h, str) or not _HASH_HEX.fullmatch(h):
            raise BundleFormatError(
                f"{where}.proof holds a value that is not a 32-byte lowercase hex hash")
        hashes.append(bytes.fromhex(h))
    return ProvenEntry(index, _utf8(f"{where}.record", record), tuple(hashes))


def build_bundle(reader: LogReader, checkpoint: Checkpoint, checkpoint_note: bytes,
                 indices: Iterable[int]) -> LogBundle:
    """Prove ``indices`` (those inside the checkpoint's tree) under ``checkpoint``."""
    entries: list[ProvenEntry] = []
    for index in sorted(set(indices)):
        if index >= checkpoint.size:
            continue
        if len(entries) == MAX_ENTRIES:
            raise InclusionError(f"more than {MAX_ENTRIES} records asked for in one bundle")
        proof = reader.prove_in(index, checkpoint, checkpoint_note)
        entries.append(ProvenEntry(index, proof.record, proof.proof))
    return LogBundle(checkpoint_note, tuple(entries))
