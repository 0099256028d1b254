"""A client's own verified copy of what the log holds: every record, replayed.

Inclusion proofs show that a record *is* in the log; they cannot show that a record is
*not* there. A client that only checked proofs would never learn of a revocation the
operator leaves out of what it serves, nor see how many keys an issuer has logged. So the
client keeps a :class:`LogView`: at every sync it fetches the latest checkpoint, checks the
log's signature and the witness quorum, downloads the entries added since its last sync
and replays them into the tree state it kept (a compact range: at most 64 hashes). The
result must hash to the new checkpoint's root, which proves at once that the new
checkpoint extends every checkpoint seen before and that the client has seen every record
up to it. From the records it keeps a small index: revoked measurements, key records,
the indices of releases.

A checkpoint of another size that arrives from elsewhere (stapled to a log bundle) is
accepted by :meth:`LogView.accept` only if it is consistent with the view: same size, same
root; larger, replay up to it; smaller, a consistency proof from the log's tiles.
Two signed checkpoints that conflict raise :class:`~privproc.tlog.client.LogForkError`
with both as evidence. Entries or tiles served wrong (by a hostile relay, say) raise
:class:`~privproc.tlog.client.LogServingError` instead, a fetch error: the tiles are first
proved against a signed root, so bad data is never taken for a fork, and none of it is
kept (:class:`~privproc.tlog.client.LogReader` caches only tiles that verified).

Logs hold few records (releases, key rotations, revocations), so the first sync
downloads all of them once; later syncs download only what is new. The state lives in a
JSON file (mode 0600, written atomically) or in memory.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privproc.files import replace_file
from privproc.wire import hpke, merkle, ohttp, tiles
from privproc.wire.checkpoint import Checkpoint
from privproc.wire.errors import KeyConfigError, MerkleError

from .client import (
    Fetch,
    InclusionError,
    LogClientError,
    LogFetchError,
    LogForkError,
    LogPolicy,
    LogReader,
    LogServingError,
    TrustedCheckpoint,
)
from .record import (
    PURPOSE_OHTTP_GATEWAY,
    KeyRecord,
    RecordError,
    ReleaseRecord,
    RevocationRecord,
    decode_entry,
)

STATE_VERSION = 2
"""Version 2 adds each gateway key's KEM. A version 1 state is loaded and re-indexed from
the log's first entry at the next checkpoint it accepts (checked against the kept tree)."""

MAX_REPLAY = 1_000_000
"""The most entries one sync replays (a log of releases, keys and revocations holds few;
a hostile one claiming millions would otherwise be downloaded, and kept, in full)."""


class LogViewStateError(LogClientError):
    """The view's state file is unreadable or malformed."""


@dataclass(frozen=True)
class KeyEntry:
    """A key record the view has seen, without the key itself (its digest suffices)."""

    index: int
    purpose: str
    owner: str
    key_sha256: bytes
    not_before: int
    not_after: int
    kem_id: int | None = None
    """The KEM of an OHTTP gateway key (purpose ``ohttp-gateway``), so that a client can
    tell a bundle that hides the gateway's post-quantum key from a gateway that has none;
    None for every other purpose (and for a key configuration that does not parse)."""

    def valid_at(self, now: float) -> bool:
        return self.not_before <= now < self.not_after

    @property
    def post_quantum(self) -> bool:
        info = hpke.KEMS.get(self.kem_id) if self.kem_id is not None else None
        return info is not None and info.post_quantum

    @property
    def kem_name(self) -> str:
        return hpke.kem_name(self.kem_id) if self.kem_id is not None else "no KEM"


def _kem_of(record: KeyRecord) -> int | None:
    if record.purpose != PURPOSE_OHTTP_GATEWAY:
        return None
    try:
        return ohttp.decode_key_config(record.key).kem_id
    except KeyConfigError:
        return None


@dataclass(frozen=True)
class Revocation:
    index: int
    reason: str
    time: int


class LogView:
    """Every record of one log up to a verified checkpoint, kept by a client."""

    def __init__(self, fetch: Fetch, policy: LogPolicy, state_path: Path | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.reader = LogReader(fetch)
        self.policy = policy
        self.state_path = state_path
        self.progress = progress
        self._lock = threading.RLock()
        self._note: bytes | None = None
        self._range = merkle.CompactRange()
        self._keys: list[KeyEntry] = []
        self._revoked: dict[bytes, Revocation] = {}
        self._releases: dict[bytes, list[int]] = {}
        self._reindex = False  # a version 1 state: its key index lacks the KEMs
        self._load()

    # -- queries ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._range.size

    @property
    def checkpoint_note(self) -> bytes | None:
        return self._note

    def revocation(self, measurement: bytes) -> Revocation | None:
        with self._lock:
            return self._revoked.get(measurement)

    def releases(self, measurement: bytes) -> list[int]:
        with self._lock:
            return list(self._releases.get(measurement, ()))

    def keys(self, purpose: str, owner: str) -> list[KeyEntry]:
        with self._lock:
            return [k for k in self._keys if k.purpose == purpose and k.owner == owner]

    def key(self, key_sha256: bytes) -> list[KeyEntry]:
        with self._lock:
            return [k for k in self._keys if k.key_sha256 == key_sha256]

    # -- syncing -----------------------------------------------------------------------------

    def sync(self) -> TrustedCheckpoint:
        """Fetch the latest checkpoint and bring the view up to it."""
        return self.accept(self.reader.fetch("checkpoint"))

    def accept(self, checkpoint_note: bytes) -> TrustedCheckpoint:
        """Verify a checkpoint (signature, quorum) and prove it consistent with the view.

        Raises :class:`LogForkError` only if it provably conflicts with the view's
        checkpoint; :class:`LogServingError` (a :class:`LogFetchError`) if the entries or
        tiles served to prove it are bad.
        """
        new = self.policy.verify(checkpoint_note).checkpoint
        with self._lock:
            ours = self._range.size
            if self._reindex and new.size >= ours:
                self._replay_to(new, checkpoint_note, reindex=True)
            elif new.size > ours or self._note is None:
                self._replay_to(new, checkpoint_note)
            elif new.size == ours:
                if new.root_hash != self._range.root():
                    raise self._fork(checkpoint_note, "same size, different root hashes")
            else:
                # MerkleError: the tiles, proved against the view's root, show another
                # tree at the start (LogServingError, bad tiles, propagates as is).
                try:
                    self.reader.check_consistent(new.size, new.root_hash, ours,
                                                 self._range.root())
                except MerkleError as exc:
                    raise self._fork(checkpoint_note, str(exc)) from None
            return TrustedCheckpoint(new, checkpoint_note)

    def _fork(self, other: bytes, why: str) -> LogForkError:
        assert self._note is not None
        return LogForkError(
            f"log fork: a checkpoint of size {self._range.size} was seen before and this "
            f"one is not consistent with it ({why})", self._note, other)

    def _replay_to(self, new: Checkpoint, checkpoint_note: bytes, *,
                   reindex: bool = False) -> None:
        """Replay the entries the view lacks (``reindex``: all of them, into a fresh index,
        checking that their first ``size`` hash to the tree kept so far)."""
        kept = self._range
        start = 0 if reindex else kept.size
        if new.size - start > MAX_REPLAY:
            raise LogFetchError(
                f"the checkpoint of size {new.size} has {new.size - start} entries this view "
                f"lacks; a client replays at most {MAX_REPLAY} at once (a log of privproc "
                "records holds few): refused before downloading them")
        grown = merkle.CompactRange() if reindex else kept.copy()
        kept_root = None  # reindex: the root of the replayed entries at the kept size
        records: list[tuple[int, bytes]] = []
        first_bundle = start // tiles.TILE_WIDTH
        last_bundle = (new.size + tiles.TILE_WIDTH - 1) // tiles.TILE_WIDTH
        malformed: str | None = None
        for bundle in range(first_bundle, last_bundle):
            base = bundle * tiles.TILE_WIDTH
            try:
                entries = self.reader.entries(bundle, new.size)
            except InclusionError as exc:
                # An entry bundle that does not even parse is a corrupt copy, like one whose
                # entries hash wrong: the same fork-or-corrupt check below tells them apart.
                malformed = str(exc)
                break
            for offset in range(max(0, start - base), len(entries)):
                grown.append(merkle.leaf_hash(entries[offset]))
                records.append((base + offset, entries[offset]))
                if reindex and grown.size == kept.size:
                    kept_root = grown.root()
            if self.progress is not None:
                self.progress(min(new.size, base + len(entries)), new.size)
        if malformed is not None or grown.root() != new.root_hash:
            if self._note is not None and not reindex:
                # Tampered entries, or a fork? A consistency proof tells them apart (and
                # tampered tiles raise LogServingError, no fork either).
                try:
                    self.reader.check_consistent(start, self._range.root(), new.size,
                                                 new.root_hash)
                except MerkleError as exc:
                    raise self._fork(checkpoint_note, str(exc)) from None
            why = (f"an entry bundle is malformed ({malformed})" if malformed is not None
                   else "they do not hash to the checkpoint's root")
            raise LogServingError(
                f"the entries up to {new.size} that were served are a corrupt copy: {why}")
        if reindex:
            # (the new checkpoint's entries hash right; an empty kept tree is any prefix)
            if kept.size and kept_root != kept.root():
                raise self._fork(checkpoint_note, "its first entries do not hash to the tree "
                                                  "kept before")
            self._keys, self._revoked, self._releases = [], {}, {}
            self._reindex = False
        for index, data in records:
            self._index(index, data)
        self._range = grown
        self._note = checkpoint_note
        self._save()

    def _index(self, index: int, data: bytes) -> None:
        try:
            record = decode_entry(data)
        except RecordError:
            return  # the log may carry entries of other kinds; they mean nothing here
        if isinstance(record, KeyRecord):
            self._keys.append(KeyEntry(index, record.purpose, record.owner, record.key_sha256,
                                       record.not_before, record.not_after,
                                       _kem_of(record)))
        elif isinstance(record, RevocationRecord):
            self._revoked.setdefault(record.measurement,
                                     Revocation(index, record.reason, record.time))
        elif isinstance(record, ReleaseRecord):
            self._releases.setdefault(record.measurement, []).append(index)

    # -- state -------------------------------------------------------------------------------

    def _save(self) -> None:
        if self.state_path is None:
            return
        assert self._note is not None
        doc: dict[str, Any] = {
            "version": STATE_VERSION,
            "checkpoint": self._note.decode(),
            "range": self._range.to_bytes().hex(),
            "keys": [[k.index, k.purpose, k.owner, k.key_sha256.hex(), k.not_before,
                      k.not_after, k.kem_id] for k in self._keys],
            "revoked": {m.hex(): [r.index, r.reason, r.time] for m, r in self._revoked.items()},
            "releases": {m.hex(): ix for m, ix in self._releases.items()},
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.state_path, json.dumps(doc).encode(), 0o600)

    def _load(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        try:
            doc = json.loads(self.state_path.read_bytes())
            version = doc["version"]
            if version not in (1, STATE_VERSION):
                raise LogViewStateError(f"{self.state_path}: unsupported state version "
                                        f"{version!r}")
            note_ = doc["checkpoint"].encode()
            rng = merkle.CompactRange.from_bytes(bytes.fromhex(doc["range"]))
            keys = [_key_entry(k, version) for k in doc["keys"]]
            revoked = {bytes.fromhex(m): Revocation(int(i), str(r), int(t))
                       for m, (i, r, t) in doc["revoked"].items()}
            releases = {bytes.fromhex(m): [int(i) for i in ix]
                        for m, ix in doc["releases"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, MerkleError) as exc:
            raise LogViewStateError(f"{self.state_path}: malformed log view state "
                                    f"({type(exc).__name__}: {exc})") from None
        checkpoint = self.policy.verify(note_).checkpoint
        if checkpoint.size != rng.size or checkpoint.root_hash != rng.root():
            raise LogViewStateError(f"{self.state_path}: the kept tree does not match the "
                                    "kept checkpoint")
        self._note, self._range = note_, rng
        self._keys, self._revoked, self._releases = keys, revoked, releases
        self._reindex = version == 1


def _key_entry(fields: list[Any], version: int) -> KeyEntry:
    if version == 1:
        i, p, o, h, nb, na = fields
        kem = None
    else:
        i, p, o, h, nb, na, kem = fields
    return KeyEntry(int(i), str(p), str(o), bytes.fromhex(h), int(nb), int(na),
                    None if kem is None else int(kem))
