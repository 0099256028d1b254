"""A full audit of a log from its public tiles.

The auditor downloads every entry bundle of the latest checkpoint, recomputes every hash
tile from the entries and compares it byte for byte with the tile the log serves,
checks the recomputed root against the checkpoint, and checks that every checkpoint it
has seen before (kept in a state file) is a prefix of the tree: the root of the tree
rebuilt up to that size must equal that checkpoint's root. It lists the releases.

Memory is bounded: the rebuild keeps only the tree's right edge and one tile per level.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from privproc.files import replace_file
from privproc.wire import merkle, note, tiles
from privproc.wire.checkpoint import Checkpoint, parse_checkpoint
from privproc.wire.errors import CheckpointError, MerkleError, NoteError

from .client import Fetch, LogClientError, LogFetchError, LogPolicy
from .record import RecordError, ReleaseRecord, decode_record

Progress = Callable[[int, int], None]


class AuditError(LogClientError):
    """The log failed the audit: a tile, root or earlier checkpoint does not match."""


@dataclass
class AuditReport:
    checkpoint: Checkpoint
    releases: list[tuple[int, ReleaseRecord]] = field(default_factory=list)
    other_entries: int = 0
    tiles_checked: int = 0
    checkpoints_checked: int = 0


class SeenCheckpoints:
    """The checkpoints an auditor has verified before, in a JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.notes: list[bytes] = []
        if path is not None and path.exists():
            try:
                doc = json.loads(path.read_text())
                self.notes = [n.encode() for n in doc["checkpoints"]]
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise AuditError(f"{path}: malformed audit state ({exc})") from None

    def add(self, checkpoint_note: bytes) -> None:
        if checkpoint_note not in self.notes:
            self.notes.append(checkpoint_note)
        if self.path is not None:
            doc = {"checkpoints": [n.decode() for n in self.notes]}
            replace_file(self.path, json.dumps(doc, indent=1).encode(), 0o600)


def _checkpoint_of(checkpoint_note: bytes, policy: LogPolicy | None) -> Checkpoint:
    if policy is not None:
        return policy.verify(checkpoint_note).checkpoint
    try:
        return parse_checkpoint(note.parse_note(checkpoint_note).text)
    except (NoteError, CheckpointError) as exc:
        raise AuditError(f"checkpoint does not parse: {exc}") from None


def audit(
    fetch: Fetch,
    policy: LogPolicy | None,
    seen: SeenCheckpoints,
    progress: Progress | None = None,
) -> AuditReport:
    """Audit the log behind ``fetch``; raises :class:`AuditError` on any mismatch."""
    latest_note = fetch("checkpoint")
    latest = _checkpoint_of(latest_note, policy)
    earlier: dict[int, list[bytes]] = {}
    for old_note in seen.notes:
        old = _checkpoint_of(old_note, policy)
        if old.origin != latest.origin:
            raise AuditError(f"seen checkpoint has origin {old.origin!r}, log {latest.origin!r}")
        if old.size > latest.size:
            raise AuditError(
                f"log rolled back: a checkpoint of size {old.size} was seen, latest is "
                f"{latest.size}"
            )
        earlier.setdefault(old.size, []).append(old.root_hash)

    report = AuditReport(latest)
    size = latest.size
    state = merkle.CompactRange()
    pending: dict[int, list[bytes]] = {}  # tile level -> hashes of its current tile

    def check_tile(level: int, index: int, hashes: list[bytes]) -> None:
        tile = tiles.Tile(level, index, len(hashes))
        served = fetch(tiles.tile_path(*tile))
        if served != b"".join(hashes):
            raise AuditError(f"tile {tiles.tile_path(*tile)} does not match the entries")
        report.tiles_checked += 1

    def check_roots_at(current: int) -> None:
        for root in earlier.pop(current, []):
            if state.root() != root:
                raise AuditError(f"the tree at size {current} does not match a checkpoint seen "
                                 "earlier: the log forked")
            report.checkpoints_checked += 1

    check_roots_at(0)
    bundles = (size + tiles.TILE_WIDTH - 1) // tiles.TILE_WIDTH
    for bundle in range(bundles):
        width = min(tiles.TILE_WIDTH, size - bundle * tiles.TILE_WIDTH)
        try:
            entries = tiles.decode_entry_bundle(fetch(tiles.entries_path(bundle, width)), width)
        except MerkleError as exc:
            raise AuditError(f"entry bundle {bundle}: {exc}") from None
        except LogFetchError as exc:
            raise AuditError(f"entry bundle {bundle} missing: {exc}") from None
        for offset, entry in enumerate(entries):
            index = bundle * tiles.TILE_WIDTH + offset
            for level, idx, h in state.append(merkle.leaf_hash(entry)):
                if level % tiles.TILE_HEIGHT == 0:
                    tile_level = level // tiles.TILE_HEIGHT
                    pending.setdefault(tile_level, []).append(h)
                    if len(pending[tile_level]) == tiles.TILE_WIDTH:
                        check_tile(tile_level, idx // tiles.TILE_WIDTH, pending.pop(tile_level))
            check_roots_at(index + 1)
            try:
                report.releases.append((index, decode_record(entry)))
            except RecordError:
                report.other_entries += 1
        if progress is not None:
            progress(min(size, (bundle + 1) * tiles.TILE_WIDTH), size)
    for tile_level, hashes in sorted(pending.items()):
        count = size >> (tiles.TILE_HEIGHT * tile_level)
        check_tile(tile_level, count // tiles.TILE_WIDTH, hashes)
    if state.root() != latest.root_hash:
        raise AuditError(f"the entries hash to {state.root().hex()}, the checkpoint says "
                         f"{latest.root_hash.hex()}")
    seen.add(latest_note)
    return report
