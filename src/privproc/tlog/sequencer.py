"""The log's single writer: integrates batches of records into tiles and signs checkpoints.

The sequencer keeps only the tree's right edge in memory (a compact range: at most 64
hashes), so its memory does not grow with the log. Each :meth:`Sequencer.integrate` call
writes one transaction: the entry bundles and hash tiles the batch creates, the lookup
indexes, and the new log-signed checkpoint. Callers acknowledge records only after it
returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from privproc.wire import merkle, note, tiles
from privproc.wire.checkpoint import Checkpoint, parse_checkpoint

from .record import entry_subject
from .storage import Batch, LogStorage, StorageError


def read_stored_tile(storage: LogStorage, tile: tiles.Tile) -> bytes:
    """The bytes of ``tile`` (a prefix of the stored, possibly wider, tile)."""
    data = storage.read_tile(tile.level, tile.index)
    need = tile.width * merkle.HASH_SIZE
    if data is None or len(data) < need:
        raise StorageError(f"tile {tiles.tile_path(*tile)} is not stored")
    return data[:need]


def bundle_prefix(data: bytes, width: int) -> bytes | None:
    """The first ``width`` entries of an encoded entry bundle, or None if it has fewer."""
    pos = 0
    for _ in range(width):
        if pos + 2 > len(data):
            return None
        pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
    return data[:pos] if pos <= len(data) else None


def read_public(storage: LogStorage, path: str) -> bytes | None:
    """What the log serves at ``path`` (``checkpoint`` or a C2SP tile path), or None."""
    if path == "checkpoint":
        state = storage.state()
        return None if state is None else state.published
    parsed = tiles.parse_tile_path(path)  # raises MerkleError for anything else
    if parsed.is_entries:
        data = storage.read_bundle(parsed.index)
        return bundle_prefix(data, parsed.width) if data is not None else None
    data = storage.read_tile(parsed.level, parsed.index)
    need = parsed.width * merkle.HASH_SIZE
    return data[:need] if data is not None and len(data) >= need else None


class Sequencer:
    """Appends records to a log held in ``storage`` and signs its checkpoints."""

    def __init__(self, storage: LogStorage, signer: note.Signer, origin: str) -> None:
        self.storage = storage
        self.signer = signer
        self.origin = origin
        state = storage.state()
        if state is None:
            empty = Checkpoint(origin, 0, merkle.EMPTY_ROOT)
            storage.initialize(note.sign_note(empty.to_text(), [signer]))
            state = storage.state()
            assert state is not None
        signed = parse_checkpoint(note.parse_note(state.checkpoint).text)
        if signed.origin != origin:
            raise StorageError(
                f"the stored log has origin {signed.origin!r}, this sequencer {origin!r}"
            )
        self.range = merkle.CompactRange.from_read_hash(
            state.size, tiles.TileHashReader(state.size, self._read_tile)
        )
        if self.range.root() != signed.root_hash or signed.size != state.size:
            raise StorageError(
                f"stored tiles do not hash to the stored checkpoint at size {state.size}"
            )
        self.checkpoint = state.checkpoint

    @property
    def size(self) -> int:
        return self.range.size

    def _read_tile(self, tile: tiles.Tile) -> bytes:
        return read_stored_tile(self.storage, tile)

    def integrate(self, records: Sequence[bytes]) -> tuple[int, bytes]:
        """Append ``records`` durably; returns the first new index and the checkpoint."""
        if not records:
            return self.size, self.checkpoint
        old_size = self.size
        new_range = self.range.copy()
        leaf_hashes = [merkle.leaf_hash(r) for r in records]
        stored = new_range.extend(leaf_hashes)
        new_size = new_range.size
        batch = Batch(old_size=old_size, new_size=new_size, checkpoint=b"")
        for tile, data in tiles.tiles_to_write(old_size, new_size, stored, self._read_tile):
            batch.tiles[(tile.level, tile.index)] = data
        self._add_bundles(batch, records)
        for i, (record, lh) in enumerate(zip(records, leaf_hashes, strict=True)):
            batch.leaves.append((lh, old_size + i))
            subject = entry_subject(record)
            if subject is not None:  # the log carries any entry; privproc records are indexed
                batch.subjects.append((subject, old_size + i))
        text = Checkpoint(self.origin, new_size, new_range.root()).to_text()
        batch.checkpoint = note.sign_note(text, [self.signer])
        self.storage.write_batch(batch)
        self.range = new_range
        self.checkpoint = batch.checkpoint
        return old_size, batch.checkpoint

    def _add_bundles(self, batch: Batch, records: Sequence[bytes]) -> None:
        index = batch.old_size
        pos = 0
        while pos < len(records):
            bundle, offset = divmod(index, tiles.TILE_WIDTH)
            take = min(tiles.TILE_WIDTH - offset, len(records) - pos)
            prefix = b""
            if offset:
                stored = self.storage.read_bundle(bundle)
                found = bundle_prefix(stored, offset) if stored is not None else None
                if found is None:
                    raise StorageError(
                        f"entry bundle {bundle} is missing its first {offset} entries"
                    )
                prefix = found
            batch.bundles[bundle] = prefix + tiles.encode_entry_bundle(records[pos : pos + take])
            index += take
            pos += take
