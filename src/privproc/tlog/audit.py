"""A full audit of a log from its public tiles.

The auditor downloads every entry bundle of the latest checkpoint, recomputes every hash
tile from the entries and compares it byte for byte with the tile the log serves,
checks the recomputed root against the checkpoint, and checks that every checkpoint it
has seen before (kept in a state file) is a prefix of the tree: the root of the tree
rebuilt up to that size must equal that checkpoint's root. It lists the releases, key
records and revocations, and counts, for every purpose and owner, how many keys are valid
at one instant (:func:`surplus_keys`): a gateway or issuer needs at most its current key and
the next one, so more suggests that some clients are being handed keys of their own.

Memory is bounded: the rebuild keeps only the tree's right edge and one tile per level.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from privproc.files import replace_file
from privproc.wire import merkle, note, tiles
from privproc.wire.checkpoint import Checkpoint, VerifiedCheckpoint, parse_checkpoint
from privproc.wire.errors import CheckpointError, MerkleError, NoteError

from .client import Fetch, LogClientError, LogFetchError, LogPolicy
from .record import (
    KeyRecord,
    RecordError,
    ReleaseRecord,
    RevocationRecord,
    decode_entry,
)

Progress = Callable[[int, int], None]
DEFAULT_MAX_KEYS = 2  # a current key and the next one


class AuditError(LogClientError):
    """The log failed the audit: a tile, root or earlier checkpoint does not match."""


@dataclass(frozen=True)
class Surplus:
    """More keys of one purpose and owner valid at one instant than the policy allows."""

    purpose: str
    owner: str
    count: int  # distinct keys valid at ``at``
    allowed: int
    at: int  # the first instant (seconds since the epoch) at which ``count`` keys are valid
    indices: tuple[int, ...]  # the log indices of the key records valid at ``at``


def most_concurrent(keys: Iterable[tuple[int, KeyRecord]]) -> tuple[int, int, tuple[int, ...]]:
    """The largest number of distinct keys valid at one instant, the first such instant,
    and the indices of the records valid then; ``(0, 0, ())`` for no keys.

    A sweep over the validity intervals' endpoints. A record is valid on
    ``[not_before, not_after)``, so one ending exactly when another begins does not overlap
    it. Two records of the same key count as one key (they hand clients nothing new).
    """
    members = list(keys)
    events: list[tuple[int, int, bytes]] = []
    for _, rec in members:
        events.append((rec.not_before, 1, rec.key))
        events.append((rec.not_after, -1, rec.key))
    events.sort()  # at one instant, ends (-1) come before starts (1)
    active: dict[bytes, int] = {}  # key -> how many of its records are valid
    best, best_at = 0, 0
    for when, step, key in events:
        active[key] = active.get(key, 0) + step
        if not active[key]:
            del active[key]
        elif step > 0 and len(active) > best:
            best, best_at = len(active), when
    indices = tuple(sorted(index for index, rec in members if rec.valid_at(best_at)))
    return (best, best_at, indices) if best else (0, 0, ())


def surplus_keys(keys: Iterable[tuple[int, KeyRecord]], max_keys: int) -> list[Surplus]:
    """Every (purpose, owner) with more than ``max_keys`` keys valid at one instant, sorted
    by purpose and owner; ``keys`` are (log index, record) pairs."""
    groups: dict[tuple[str, str], list[tuple[int, KeyRecord]]] = {}
    for index, rec in keys:
        groups.setdefault((rec.purpose, rec.owner), []).append((index, rec))
    found = []
    for (purpose, owner), members in sorted(groups.items()):
        count, at, indices = most_concurrent(members)
        if count > max_keys:
            found.append(Surplus(purpose, owner, count, max_keys, at, indices))
    return found


@dataclass
class AuditReport:
    checkpoint: Checkpoint
    releases: list[tuple[int, ReleaseRecord]] = field(default_factory=list)
    keys: list[tuple[int, KeyRecord]] = field(default_factory=list)
    revocations: list[tuple[int, RevocationRecord]] = field(default_factory=list)
    other_entries: int = 0  # entries that are not privproc records
    tiles_checked: int = 0
    checkpoints_checked: int = 0
    verified: VerifiedCheckpoint | None = None  # its witness cosignatures (None: no policy)

    def add(self, index: int, entry: bytes) -> None:
        """File the entry at ``index`` under its kind."""
        try:
            record = decode_entry(entry)
        except RecordError:
            self.other_entries += 1
            return
        if isinstance(record, ReleaseRecord):
            self.releases.append((index, record))
        elif isinstance(record, KeyRecord):
            self.keys.append((index, record))
        else:
            self.revocations.append((index, record))

    def surplus(self, max_keys: int = DEFAULT_MAX_KEYS) -> list[Surplus]:
        return surplus_keys(self.keys, max_keys)

    def revoked(self) -> dict[bytes, int]:
        """Revoked measurements and the index of the first revocation of each."""
        found: dict[bytes, int] = {}
        for index, rec in self.revocations:
            found.setdefault(rec.measurement, index)
        return found


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
        # One note per tree: the log has an unchanged checkpoint cosigned again every few
        # minutes, and each new set of cosignatures would otherwise be kept (and checked).
        if _tree_of(checkpoint_note) not in (_tree_of(n) for n in self.notes):
            self.notes.append(checkpoint_note)
        if self.path is not None:
            doc = {"checkpoints": [n.decode() for n in self.notes]}
            replace_file(self.path, json.dumps(doc, indent=1).encode(), 0o600)


def _tree_of(checkpoint_note: bytes) -> bytes:
    """The checkpoint text of a note (origin, size, root hash): its signatures aside."""
    return checkpoint_note.split(b"\n\n", 1)[0]


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
    verified = policy.verify(latest_note) if policy is not None else None
    latest = verified.checkpoint if verified is not None else _checkpoint_of(latest_note, None)
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

    report = AuditReport(latest, verified=verified)
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
            report.add(index, entry)
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
