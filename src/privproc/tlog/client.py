"""The client side of the log: verified checkpoints, inclusion proofs, fork detection.

A :class:`LogClient` fetches the log's checkpoint, checks the log's signature and a
quorum of witness cosignatures (:class:`LogPolicy`), and proves that every new checkpoint
is consistent with the last one it verified (kept in a :class:`CheckpointStore`). Two
signed checkpoints that are not consistent raise :class:`LogForkError` carrying both as
evidence. Inclusion of a record is proved from the log's tiles.

Whoever serves the tiles (for a client, the relay) may serve them wrong. A tile is cached
only once a proof it took part in verified against a signed root, and tiles that do not
verify against the signed checkpoint they should prove raise :class:`LogServingError`
(a :class:`LogFetchError`): bad data shows nothing about the log, so it is never taken
for a fork, and nothing of it is kept once the server is honest again.

Transport is a callable ``fetch(path) -> bytes`` (path relative to the log URL), so the
verification logic is independent of HTTP; :func:`http_fetcher` is the default.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from privproc.errors import PrivprocError
from privproc.files import replace_file
from privproc.httpfields import EXCHANGE_FAILED, urlopen_here
from privproc.wire import merkle, note, tiles
from privproc.wire.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    VerifiedCheckpoint,
    open_checkpoint,
)
from privproc.wire.errors import CheckpointError, MerkleError, NoteError

from .record import format_time

Fetch = Callable[[str], bytes]
_T = TypeVar("_T")

DEFAULT_MAX_CHECKPOINT_AGE = 86400.0
"""How old (by its witnesses' cosignature times) a checkpoint stapled to a bundle may be."""


class LogClientError(PrivprocError):
    """Base class for failures of log verification on the client side."""


class LogFetchError(LogClientError):
    """A checkpoint, tile or entry bundle could not be fetched."""


class LogServingError(LogFetchError):
    """What was served (tiles, entry bundles) does not match the signed checkpoint it
    should prove: a faulty or hostile server (or relay), not evidence of a log fork."""


class CheckpointVerificationError(LogClientError):
    """The checkpoint's log signature or witness quorum does not verify."""


class StaleCheckpointError(CheckpointVerificationError):
    """No quorum of witnesses cosigned the checkpoint recently enough: whoever served it
    may be hiding newer records (a revocation, a new key) behind an old, genuine one."""


class InclusionError(LogClientError):
    """A record is not provably included under the checkpoint."""


class LogForkError(LogClientError):
    """Two signed checkpoints of the same log that are not consistent: proof of a fork."""

    def __init__(self, message: str, first: bytes, second: bytes) -> None:
        super().__init__(message)
        self.first = first
        self.second = second


@dataclass(frozen=True)
class LogPolicy:
    """Whom to trust: the log's key, the witnesses' keys, and how many must cosign."""

    log_verifier: note.Verifier
    origin: str
    witnesses: Sequence[CosignatureVerifier] = ()
    quorum: int = 0

    @classmethod
    def from_keys(
        cls,
        log_vkey: str,
        witness_vkeys: Sequence[str] = (),
        quorum: int = 0,
        origin: str | None = None,
    ) -> LogPolicy:
        log_verifier = note.Ed25519Verifier.from_key(log_vkey)
        witnesses = [CosignatureVerifier.from_key(k) for k in witness_vkeys]
        if quorum > len(witnesses):
            raise ValueError(f"quorum {quorum} exceeds the {len(witnesses)} witnesses given")
        return cls(log_verifier, origin or log_verifier.name, witnesses, quorum)

    def verify(self, checkpoint_note: bytes) -> VerifiedCheckpoint:
        try:
            return open_checkpoint(
                checkpoint_note,
                self.log_verifier,
                witnesses=self.witnesses,
                quorum=self.quorum,
                origin=self.origin,
            )
        except (CheckpointError, NoteError) as exc:
            raise CheckpointVerificationError(f"checkpoint refused: {exc}") from None

    def witnessed_at(self, verified: VerifiedCheckpoint, before: float | None = None
                     ) -> int | None:
        """The latest time by which ``quorum`` distinct witnesses had all cosigned this
        checkpoint (the quorum-th newest of their newest cosignatures, counting none
        dated after ``before``); None without such a quorum. Witnesses never cosign an
        older tree after a newer one, so the log held nothing beyond this checkpoint that
        a quorum had seen at that time."""
        newest: dict[tuple[str, int], int] = {}
        for c in verified.cosignatures:
            if before is not None and c.timestamp > before:
                continue
            key = (c.name, c.key_hash)
            newest[key] = max(newest.get(key, 0), c.timestamp)
        times = sorted(newest.values(), reverse=True)
        quorum = max(self.quorum, 1)
        return times[quorum - 1] if len(times) >= quorum else None

    def check_fresh(self, verified: VerifiedCheckpoint, now: float, max_age: float) -> int:
        """:meth:`witnessed_at`, or :class:`StaleCheckpointError` unless a quorum of
        witnesses cosigned the checkpoint at most ``max_age`` seconds before ``now``. A
        cosignature dated more than ``max_age`` after ``now`` (a witness whose clock is
        far ahead) shows nothing and is not counted: it could keep a checkpoint looking
        recent long after it was replaced."""
        at = self.witnessed_at(verified, before=now + max_age)
        size = verified.checkpoint.size
        if at is None:
            raise StaleCheckpointError(
                f"the checkpoint of size {size} carries no quorum of witness cosignatures "
                "dated before this client's clock (plus max_checkpoint_age), so nothing "
                "shows how recent it is")
        if now - at > max_age:
            raise StaleCheckpointError(
                f"the checkpoint of size {size} was last cosigned by a quorum of witnesses "
                f"{now - at:.0f} s ago ({format_time(at)}); at most {max_age:g} s is accepted "
                "(max_checkpoint_age): whoever served it may be hiding newer log records, "
                "such as a revocation or a new key (or this device's clock is ahead)")
        return at


class CheckpointStore:
    """The last verified checkpoint, kept in a file (written atomically, mode 0600)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._memory: bytes | None = None

    def load(self) -> bytes | None:
        if self.path is None:
            return self._memory
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def save(self, checkpoint_note: bytes) -> None:
        if self.path is None:
            self._memory = checkpoint_note
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.path, checkpoint_note, 0o600)


MAX_FETCH = 8 << 20
"""The most bytes read of one answer: a checkpoint, a tile (8 KiB), an entry bundle (256
records of at most 8 KiB each) or a proof bundle all fit; whoever serves the log (for a
client, the relay) cannot make it read more."""


def http_fetcher(base_url: str, timeout: float = 10.0) -> Fetch:
    """Fetch paths relative to ``base_url`` over HTTP(S), at most :data:`MAX_FETCH` bytes
    each."""
    base = base_url.rstrip("/") + "/"

    def fetch(path: str) -> bytes:
        try:
            with urlopen_here(base + path, timeout) as resp:
                body: bytes = resp.read(MAX_FETCH + 1)
        except urllib.error.HTTPError as exc:
            raise LogFetchError(f"{base}{path}: HTTP {exc.code}") from None
        except EXCHANGE_FAILED as exc:
            raise LogFetchError(f"{base}{path}: {exc}") from None
        if len(body) > MAX_FETCH:
            raise LogFetchError(f"{base}{path}: answer over {MAX_FETCH} bytes, refused")
        return body

    return fetch


@dataclass(frozen=True)
class TrustedCheckpoint:
    """A checkpoint that passed the policy, with the exact note bytes that carried it."""

    checkpoint: Checkpoint
    note: bytes


@dataclass(frozen=True)
class InclusionProof:
    """A record, where it is, and the proof that it is under a checkpoint."""

    index: int
    record: bytes
    proof: tuple[bytes, ...]
    checkpoint: bytes  # the signed (and cosigned) checkpoint note the proof is against


class LogReader:
    """Reads a log's public data (tiles, entry bundles) and proves inclusion: no policy.

    Both sides use it: a client under a verified checkpoint, the log (or a service that
    staples proofs) under the checkpoint it publishes.
    """

    def __init__(self, fetch: Fetch, tile_cache_size: int = 4096) -> None:
        self.fetch = fetch
        # Only tiles read by a proof that verified against a signed root (see _proved).
        self._tiles: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._cache_size = tile_cache_size

    def _cache(self, key: tuple[int, int, int], data: bytes) -> None:
        self._tiles[key] = data
        self._tiles.move_to_end(key)
        while len(self._tiles) > self._cache_size:
            self._tiles.popitem(last=False)

    def _proved(self, size: int, prove: Callable[[tiles.TileHashReader], _T]) -> _T:
        """Run ``prove`` on the tiles of the tree of ``size``. It must raise MerkleError
        unless what it read verified against a signed root; only when it returns are the
        tiles it fetched cached. If it fails having read cached tiles (a verified tile may
        hold hashes that no proof used yet), those are dropped and it runs once more on
        freshly fetched ones. Raises the MerkleError of the last run."""
        use_cache = True
        while True:
            reads = _TileReads(self, use_cache)
            try:
                result = prove(tiles.TileHashReader(size, reads.read_tile))
            except MerkleError:
                reads.forget()
                if not reads.from_cache:
                    raise
                use_cache = False
                continue
            reads.commit()
            return result

    def check_consistent(self, size1: int, root1: bytes, size2: int, root2: bytes) -> None:
        """Return if the tree (size1, root1) is a prefix of (size2, root2), ``size1 <=
        size2``, both roots from signed checkpoints.

        Raises MerkleError only if the trees provably conflict: the same size with
        different roots, or tiles that verify against ``root2`` showing another tree of
        ``size1`` at its start. Raises :class:`LogServingError` if the tiles served do not
        verify against ``root2`` (a bad server, which shows nothing about the two trees),
        :class:`LogFetchError` if they cannot be fetched.
        """
        if not 0 <= size1 <= size2:
            raise ValueError(f"check_consistent: expected 0 <= size1 <= size2, got {size1}, "
                             f"{size2}")
        if size1 == size2:
            if root1 != root2:
                raise MerkleError("same size, different root hashes")
            return
        if size1 == 0:  # every tree extends the empty one, whose root is fixed
            if root1 != merkle.EMPTY_ROOT:
                raise MerkleError("a checkpoint of size 0 must carry the empty-tree root")
            return

        def prefix_root(read_hash: tiles.TileHashReader) -> bytes:
            # The prefix's root is read from the tiles too, and proved against root2 with
            # them: if that verifies, it is the genuine start of the tree of root2 (for a
            # power-of-two size1 the proof alone would lean on root1, so that a bad tile
            # and a conflicting root1 would look the same).
            proof = merkle.consistency_proof(size1, size2, read_hash)
            prefix = merkle.tree_hash(size1, read_hash)
            merkle.verify_consistency(size1, size2, proof, prefix, root2)
            return prefix

        try:
            prefix = self._proved(size2, prefix_root)
        except MerkleError as exc:
            raise LogServingError(
                f"the tiles served for the tree of size {size2} do not match its signed "
                f"root hash: {exc}") from None
        if prefix != root1:
            raise MerkleError(
                f"the tree of size {size2} begins with a tree of size {size1} whose root "
                f"hash is {prefix.hex()}, not {bytes(root1).hex()}")

    def entries(self, bundle: int, size: int) -> list[bytes]:
        """The entries of entry bundle ``bundle`` in a tree of ``size`` leaves."""
        width = min(tiles.TILE_WIDTH, size - bundle * tiles.TILE_WIDTH)
        if width <= 0:
            raise InclusionError(f"entry bundle {bundle} is outside the tree of size {size}")
        data = self.fetch(tiles.entries_path(bundle, width))
        try:
            return tiles.decode_entry_bundle(data, width)
        except MerkleError as exc:
            raise InclusionError(f"entry bundle {bundle}: {exc}") from None

    def entry(self, index: int, size: int) -> bytes:
        """Entry ``index`` of a tree of ``size`` leaves, from its entry bundle."""
        if not 0 <= index < size:
            raise InclusionError(f"index {index} is outside the tree of size {size}")
        bundle, offset = divmod(index, tiles.TILE_WIDTH)
        return self.entries(bundle, size)[offset]

    def prove_in(self, index: int, checkpoint: Checkpoint, checkpoint_note: bytes
                 ) -> InclusionProof:
        """Fetch entry ``index`` and prove it is in the tree of ``checkpoint``."""
        size = checkpoint.size
        record = self.entry(index, size)
        leaf = merkle.leaf_hash(record)

        def prove(read_hash: tiles.TileHashReader) -> list[bytes]:
            proof = merkle.inclusion_proof(index, size, read_hash)
            merkle.verify_inclusion(leaf, index, size, proof, checkpoint.root_hash)
            return proof

        try:
            proof = self._proved(size, prove)
        except MerkleError as exc:
            raise InclusionError(f"record {index} is not included: {exc}") from None
        return InclusionProof(index, record, tuple(proof), checkpoint_note)


class _TileReads:
    """The tiles one proof reads: the cached ones it used, and those it fetched, kept aside
    until the proof verified (:meth:`commit`) or failed (:meth:`forget`)."""

    def __init__(self, reader: LogReader, use_cache: bool) -> None:
        self.reader = reader
        self.use_cache = use_cache
        self.from_cache: set[tuple[int, int, int]] = set()
        self.fetched: dict[tuple[int, int, int], bytes] = {}

    def read_tile(self, tile: tiles.Tile) -> bytes:
        key = (tile.level, tile.index, tile.width)
        cache = self.reader._tiles
        data = cache.get(key) if self.use_cache else None
        if data is not None:
            cache.move_to_end(key)
            self.from_cache.add(key)
            return data
        data = self.fetched.get(key)
        if data is None:
            data = self.reader.fetch(tiles.tile_path(*tile))
            self.fetched[key] = data
        return data

    def commit(self) -> None:
        for key, data in self.fetched.items():
            self.reader._cache(key, data)

    def forget(self) -> None:
        for key in self.from_cache:
            self.reader._tiles.pop(key, None)


class LogClient(LogReader):
    """Verifies a log's checkpoints and proves records against them."""

    def __init__(
        self,
        fetch: Fetch,
        policy: LogPolicy,
        store: CheckpointStore | None = None,
        tile_cache_size: int = 4096,
    ) -> None:
        super().__init__(fetch, tile_cache_size)
        self.policy = policy
        self.store = store or CheckpointStore(None)

    def update(self) -> TrustedCheckpoint:
        """Fetch and verify the latest checkpoint; prove it consistent with the last one."""
        latest = self.fetch("checkpoint")
        return self.accept(latest)

    def accept(self, checkpoint_note: bytes) -> TrustedCheckpoint:
        """Verify a checkpoint from any source against the policy and the stored one.

        Raises :class:`LogForkError` only if the two signed checkpoints conflict;
        :class:`LogServingError` if the tiles served to prove them consistent are bad.
        """
        new = self.policy.verify(checkpoint_note)
        stored_note = self.store.load()
        if stored_note is None:
            self.store.save(checkpoint_note)
            return TrustedCheckpoint(new.checkpoint, checkpoint_note)
        old = self.policy.verify(stored_note)
        small, large = sorted((old, new), key=lambda v: v.checkpoint.size)
        small_note, large_note = (
            (stored_note, checkpoint_note) if small is old else (checkpoint_note, stored_note)
        )
        # A LogServingError (tiles served wrong) is no evidence of a fork: it propagates.
        try:
            self.check_consistent(
                small.checkpoint.size,
                small.checkpoint.root_hash,
                large.checkpoint.size,
                large.checkpoint.root_hash,
            )
        except MerkleError as exc:
            raise LogForkError(
                f"log fork: checkpoints of size {small.checkpoint.size} and "
                f"{large.checkpoint.size} are not consistent ({exc})",
                small_note,
                large_note,
            ) from None
        if new.checkpoint.size > old.checkpoint.size:
            self.store.save(checkpoint_note)
            return TrustedCheckpoint(new.checkpoint, checkpoint_note)
        return TrustedCheckpoint(old.checkpoint, stored_note)

    def prove(self, index: int, trusted: TrustedCheckpoint) -> InclusionProof:
        """Fetch entry ``index`` and prove it is in the tree of ``trusted``."""
        return self.prove_in(index, trusted.checkpoint, trusted.note)


def verify_inclusion_offline(proof: InclusionProof, policy: LogPolicy) -> VerifiedCheckpoint:
    """Check a kept inclusion proof with no network: signature, quorum, Merkle path."""
    verified = policy.verify(proof.checkpoint)
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(proof.record),
            proof.index,
            verified.checkpoint.size,
            list(proof.proof),
            verified.checkpoint.root_hash,
        )
    except MerkleError as exc:
        raise InclusionError(f"record {proof.index} is not included: {exc}") from None
    return verified
