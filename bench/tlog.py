"""Transparency log benchmark: batched appends, proof generation and verification.

Appends go through the real sequencer into SQLite (WAL, synchronous=FULL). Proofs are
generated from tiles (the log's storage for 10^4 and 10^6 records; an in-memory tile map
for 10^7, built from synthetic leaves) and verified with privproc.wire.merkle.
``--quick`` stops at 10^5 records.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from privproc.tlog.record import ReleaseRecord
from privproc.tlog.sequencer import Sequencer, read_stored_tile
from privproc.tlog.storage import SqliteStorage
from privproc.wire import merkle, note, tiles

SIGNER = note.Ed25519Signer("bench.log", bytes(32))
BATCH = 4096  # the log's default --batch-max


def record(i: int) -> bytes:
    return ReleaseRecord(hashlib.sha384(i.to_bytes(8, "big")).digest(), bytes(32), "1.0.0",
                         f"git:{i:08x}", 1_700_000_000).encode()


def timed(fn: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e6


def proof_row(size: int, read: merkle.ReadHash, root: bytes, leaf: Callable[[int], bytes]
              ) -> tuple[float, float, float, float]:
    rng = random.Random(size)
    index = rng.randrange(size)
    old = rng.randrange(1, size)
    inc = merkle.inclusion_proof(index, size, read)
    con = merkle.consistency_proof(old, size, read)
    old_root = merkle.tree_hash(old, read)
    return (
        timed(lambda: merkle.inclusion_proof(rng.randrange(size), size, read), 200),
        timed(lambda: merkle.verify_inclusion(leaf(index), index, size, inc, root), 2000),
        timed(lambda: merkle.consistency_proof(rng.randrange(1, size), size, read), 200),
        timed(lambda: merkle.verify_consistency(old, size, con, old_root, root), 2000),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [10_000, 1_000_000]
    print("| records | appends/s (SQLite, batches of 4096) | sequencer peak alloc per batch "
          "| incl. proof gen µs | incl. verify µs | cons. proof gen µs | cons. verify µs |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        storage = SqliteStorage(Path(tmp) / "log.db")
        seq = Sequencer(storage, SIGNER, "bench.log")
        done = 0
        for size in sizes:
            records = [record(i) for i in range(done, size)]
            start = time.perf_counter()
            peak = 0
            for i in range(0, len(records), BATCH):
                if i + BATCH >= len(records):  # measure the last batch, at the largest size
                    tracemalloc.start()
                    seq.integrate(records[i : i + BATCH])
                    peak = tracemalloc.get_traced_memory()[1]
                    tracemalloc.stop()
                else:
                    seq.integrate(records[i : i + BATCH])
            rate = len(records) / (time.perf_counter() - start)
            done = size
            reader = tiles.TileHashReader(size, lambda t: read_stored_tile(storage, t))
            row = proof_row(size, reader, seq.range.root(),
                            lambda i: merkle.leaf_hash(record(i)))
            print(f"| {size:,} | {rate:,.0f} | {peak / 1024:,.0f} KiB | "
                  + " | ".join(f"{v:,.1f}" for v in row) + " |")
    if not args.quick:
        size = 10_000_000
        rng_leaf = lambda i: hashlib.sha256(i.to_bytes(8, "big")).digest()  # noqa: E731
        state = merkle.CompactRange()
        tile_map: dict[tuple[int, int], bytearray] = {}
        start = time.perf_counter()
        for i in range(size):
            for level, index, h in state.append(rng_leaf(i)):
                if level % tiles.TILE_HEIGHT == 0:
                    key = (level // tiles.TILE_HEIGHT, index // tiles.TILE_WIDTH)
                    tile_map.setdefault(key, bytearray()).extend(h)
        build = time.perf_counter() - start

        def read_tile(t: tiles.Tile) -> bytes:
            return bytes(tile_map[(t.level, t.index)][: t.width * 32])

        reader = tiles.TileHashReader(size, read_tile)
        row = proof_row(size, reader, state.root(), rng_leaf)
        print(f"| {size:,} | (in-memory tiles, built in {build:.0f}s) | | "
              + " | ".join(f"{v:,.1f}" for v in row) + " |")


if __name__ == "__main__":
    main()
