"""C2SP tlog-tiles: the static tile layout of a transparency log's Merkle tree.

A tile is a run of up to 256 consecutive complete-subtree hashes at one *tile level*:
tile level ``L`` holds the Merkle subtrees of ``256**L`` leaves, i.e. the hashes at Merkle
level ``8 * L`` of :mod:`privproc.wire.merkle` (level 0 tiles hold leaf hashes, a level 1
tile holds hashes of 256-leaf subtrees, and so on). Tile ``N`` of level ``L`` holds the
hashes with indices ``N * 256 .. N * 256 + 255`` at that level. A tree of size ``s`` has
``c = s // 256**L`` hashes at level ``L``: ``c // 256`` full tiles and, when ``c % 256``
is not 0, one *partial* tile of that width. Entry bundles mirror the level 0 tiles.

Paths (relative to the log prefix, no leading slash)::

    tile/<L>/<N>[.p/<W>]        hash tiles, L in 0..63
    tile/entries/<N>[.p/<W>]    entry bundles

``<N>`` is written in zero-padded 3-digit groups, all but the last prefixed with ``x``
(1234067 -> ``x001/x234/067``); ``<L>`` and ``<W>`` (1..255) are plain decimals without
leading zeros. A full tile has width 256 here, which is written without ``.p/``.
:func:`parse_tile_path` accepts exactly the canonical form :func:`tile_path` and
:func:`entries_path` produce, and only for tiles that can exist in a tree of at most
``2**64 - 1`` leaves (so tile levels above 7, legal syntax in the spec, never parse).

Everything is sans-IO: tiles are fetched and stored through callbacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from privproc.wire.errors import MerkleError
from privproc.wire.merkle import (
    HASH_SIZE,
    MAX_TREE_SIZE,
    CompactRange,
    ReadHash,
    node_hash,
)

__all__ = [
    "MAX_ENTRY_SIZE",
    "MAX_TILE_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "ReadTile",
    "Tile",
    "TileHashReader",
    "TilePath",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "entries_path",
    "new_tiles",
    "parse_tile_path",
    "stored_hashes_for_append",
    "tile_hashes",
    "tile_path",
    "tiles_for_size",
    "tiles_to_write",
]

TILE_HEIGHT = 8
"""Merkle levels per tile level."""

TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes in a full tile (and entries in a full bundle): 256."""

MAX_TILE_LEVEL = 63
"""The largest ``<L>`` the path syntax allows."""

MAX_ENTRY_SIZE = 0xFFFF
"""The largest entry an entry bundle can carry (uint16 length prefix)."""

_DIGITS3 = re.compile(r"[0-9]{3}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_MAX_INDEX_GROUPS = 7  # 2**64 has 20 decimal digits


class Tile(NamedTuple):
    """Tile coordinates: tile ``level``, ``index`` within the level, ``width`` 1..256."""

    level: int
    index: int  # type: ignore[assignment]  # shadows tuple.index, on purpose
    width: int


class TilePath(NamedTuple):
    """A parsed tile path; entry bundles have ``level`` 0 and ``is_entries`` set."""

    level: int
    index: int  # type: ignore[assignment]  # shadows tuple.index, on purpose
    width: int
    is_entries: bool


ReadTile = Callable[[Tile], bytes]
"""``read_tile(tile)``: the stored bytes of the hash tile with these coordinates."""


# ---------------------------------------------------------------------------------------
# Paths


def _check_tile(level: int, index: int, width: int) -> None:
    for what, v in (("tile level", level), ("tile index", index), ("tile width", width)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise MerkleError(f"{what} must be an int, got {type(v).__name__}")
    if not 0 <= level <= MAX_TILE_LEVEL:
        raise MerkleError(f"tile level {level} is out of range, expected 0..{MAX_TILE_LEVEL}")
    if not 1 <= width <= TILE_WIDTH:
        raise MerkleError(f"tile width {width} is out of range, expected 1..{TILE_WIDTH}")
    if index < 0:
        raise MerkleError(f"tile index {index} is negative")
    # The smallest tree containing this tile has (index * 256 + width) * 256**level leaves.
    if (index * TILE_WIDTH + width) << (TILE_HEIGHT * level) > MAX_TREE_SIZE:
        raise MerkleError(
            f"tile {level}/{index} of width {width} cannot exist: it needs a tree of more "
            f"than 2**64-1 leaves"
        )


def _encode_index(index: int) -> str:
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def _suffix(width: int) -> str:
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """Return ``tile/<L>/<N>[.p/<W>]`` for a hash tile (width 256 means full)."""
    _check_tile(level, index, width)
    return f"tile/{level}/{_encode_index(index)}{_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """Return ``tile/entries/<N>[.p/<W>]`` for an entry bundle (width 256 means full)."""
    _check_tile(0, index, width)
    return f"tile/entries/{_encode_index(index)}{_suffix(width)}"


def parse_tile_path(path: str) -> TilePath:
    """Parse a canonical tile or entry bundle path; raise :class:`MerkleError` otherwise."""
    if not isinstance(path, str):
        raise MerkleError(f"tile path must be a str, got {type(path).__name__}")
    if len(path) > 64 or not path.isascii():
        raise MerkleError(f"malformed tile path {path!r}: too long or not ASCII")
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise MerkleError(f"malformed tile path {path!r}: expected tile/<L>/<N>[.p/<W>]")
    is_entries = parts[1] == "entries"
    if is_entries:
        level = 0
    elif _DECIMAL.fullmatch(parts[1]) and len(parts[1]) <= 2:
        level = int(parts[1])
    else:
        raise MerkleError(
            f"malformed tile path {path!r}: level {parts[1]!r} is not 'entries' or a "
            f"decimal 0..{MAX_TILE_LEVEL} without leading zeros"
        )
    rest = parts[2:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        w = rest[-1]
        if not (_DECIMAL.fullmatch(w) and len(w) <= 3 and 1 <= int(w) < TILE_WIDTH):
            raise MerkleError(
                f"malformed tile path {path!r}: width {w!r} is not a decimal 1..255 "
                f"without leading zeros"
            )
        width = int(w)
        rest = [*rest[:-2], rest[-2][: -len(".p")]]
    if len(rest) > _MAX_INDEX_GROUPS:
        raise MerkleError(f"malformed tile path {path!r}: index has too many path elements")
    index = 0
    for i, group in enumerate(rest):
        last = i == len(rest) - 1
        digits = group if last else group[1:]
        if (not last and not group.startswith("x")) or not _DIGITS3.fullmatch(digits):
            want = "3 digits" if last else "'x' and 3 digits"
            raise MerkleError(
                f"malformed tile path {path!r}: index element {group!r}, expected {want}"
            )
        index = index * 1000 + int(digits)
    if len(rest) > 1 and rest[0] == "x000":
        raise MerkleError(f"malformed tile path {path!r}: index has a leading x000 element")
    try:
        _check_tile(level, index, width)
    except MerkleError as e:
        raise MerkleError(f"malformed tile path {path!r}: {e}") from None
    canonical = entries_path(index, width) if is_entries else tile_path(level, index, width)
    if canonical != path:  # cannot happen given the checks above; fail closed regardless
        raise MerkleError(f"malformed tile path {path!r}: canonical form is {canonical!r}")
    return TilePath(level, index, width, is_entries)


# ---------------------------------------------------------------------------------------
# Which tiles exist


def _level_count(size: int, level: int) -> int:
    """How many hashes tile level ``level`` has in a tree of ``size`` leaves."""
    return size >> (TILE_HEIGHT * level)


def _check_tree_size(what: str, size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_TREE_SIZE:
        raise MerkleError(f"{what} {size!r} is out of range, expected 0..2**64-1")


def tiles_for_size(size: int) -> list[Tile]:
    """Return every tile of a tree of ``size`` leaves, by level then index.

    Full tiles have width 256; each level ends with at most one partial tile. The entry
    bundles are exactly the level 0 tiles. (The list has about ``size / 255`` items.)
    """
    return new_tiles(0, size)


def new_tiles(old_size: int, new_size: int) -> list[Tile]:
    """Return the tiles of a tree of ``new_size`` leaves that one of ``old_size`` lacks.

    These are what a sequencer writes when the tree grows: the new full tiles and the
    new partial tiles, by level then index. Partial tiles of the old tree that are
    superseded are not listed (they may be kept or deleted).
    """
    _check_tree_size("old size", old_size)
    _check_tree_size("new size", new_size)
    if old_size > new_size:
        raise MerkleError(f"old size {old_size} is greater than new size {new_size}")
    out: list[Tile] = []
    level = 0
    while (count := _level_count(new_size, level)) > _level_count(old_size, level):
        old_count = _level_count(old_size, level)
        for n in range(old_count // TILE_WIDTH, count // TILE_WIDTH):
            out.append(Tile(level, n, TILE_WIDTH))
        if count % TILE_WIDTH:
            out.append(Tile(level, count // TILE_WIDTH, count % TILE_WIDTH))
        level += 1
    return out


def _tile_at(size: int, level: int, index: int) -> Tile:
    """The tile of a tree of ``size`` leaves holding hash ``index`` of tile level ``level``."""
    n = index // TILE_WIDTH
    width = min(TILE_WIDTH, _level_count(size, level) - n * TILE_WIDTH)
    return Tile(level, n, width)


# ---------------------------------------------------------------------------------------
# Tile contents


def tile_hashes(data: bytes, width: int) -> list[bytes]:
    """Split a hash tile of ``width`` hashes into its 32-byte hashes, checking its size."""
    if not isinstance(width, int) or not 1 <= width <= TILE_WIDTH:
        raise MerkleError(f"tile width {width!r} is out of range, expected 1..{TILE_WIDTH}")
    if len(data) != width * HASH_SIZE:
        raise MerkleError(
            f"tile of width {width} is {len(data)} bytes, expected {width * HASH_SIZE}"
        )
    data = bytes(data)
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Encode 1..256 entries, each as a big-endian uint16 length and the entry bytes."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise MerkleError(f"entry bundle has {len(entries)} entries, expected 1..{TILE_WIDTH}")
    out = bytearray()
    for i, e in enumerate(entries):
        if len(e) > MAX_ENTRY_SIZE:
            raise MerkleError(f"entry {i} is {len(e)} bytes, expected at most {MAX_ENTRY_SIZE}")
        out += len(e).to_bytes(2, "big")
        out += e
    return bytes(out)


def decode_entry_bundle(data: bytes, width: int) -> list[bytes]:
    """Decode an entry bundle that must hold exactly ``width`` (1..256) entries."""
    if not isinstance(width, int) or not 1 <= width <= TILE_WIDTH:
        raise MerkleError(f"entry bundle width {width!r} is out of range, expected 1..256")
    data = bytes(data)
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(entries) == width:
            raise MerkleError(
                f"entry bundle has {len(data) - pos} trailing bytes after {width} entries"
            )
        if len(data) - pos < 2:
            raise MerkleError(f"entry bundle is truncated in the length of entry {len(entries)}")
        n = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if len(data) - pos < n:
            raise MerkleError(
                f"entry {len(entries)} is truncated: length {n}, {len(data) - pos} bytes left"
            )
        entries.append(data[pos : pos + n])
        pos += n
    if len(entries) != width:
        raise MerkleError(f"entry bundle has {len(entries)} entries, expected {width}")
    return entries


# ---------------------------------------------------------------------------------------
# Reading Merkle hashes through tiles


def _fold_complete(hashes: Sequence[bytes]) -> bytes:
    """The root of a complete subtree (a power-of-two number of hashes)."""
    level = list(hashes)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


class TileHashReader:
    """A :data:`~privproc.wire.merkle.ReadHash` for a tree of ``size`` leaves, from tiles.

    ``read_hash(level, index)`` (or calling the object) returns the hash of a complete
    subtree of that tree, fetching the one tile that holds it from ``read_tile`` at the
    coordinates that exist for this size (partial tiles included) and hashing up to
    seven Merkle levels inside it. Tiles and results are cached for the reader's life.

    Tile contents are only length-checked: verify what they produce against a signed
    root (a proof that doesn't verify, or a root that doesn't match, exposes bad tiles).
    """

    def __init__(self, size: int, read_tile: ReadTile) -> None:
        _check_tree_size("tree size", size)
        self.size = size
        self._read_tile = read_tile
        self._tiles: dict[Tile, list[bytes]] = {}
        self._hashes: dict[tuple[int, int], bytes] = {}

    def tile(self, tile: Tile) -> list[bytes]:
        """Fetch (once) and split the hash tile ``tile``."""
        got = self._tiles.get(tile)
        if got is None:
            data = self._read_tile(tile)
            try:
                got = tile_hashes(data, tile.width)
            except MerkleError as e:
                raise MerkleError(f"tile {tile_path(*tile)}: {e}") from None
            self._tiles[tile] = got
        return got

    def read_hash(self, level: int, index: int) -> bytes:
        """Return the hash of the complete subtree at Merkle ``level`` and ``index``."""
        if level < 0 or index < 0 or (index + 1) << level > self.size:
            raise MerkleError(
                f"no complete subtree at level {level} index {index} in a tree of size {self.size}"
            )
        key = (level, index)
        h = self._hashes.get(key)
        if h is None:
            tile_level, sub = divmod(level, TILE_HEIGHT)
            first = index << sub  # first hash at tile level `tile_level`
            t = _tile_at(self.size, tile_level, first)
            start = first - t.index * TILE_WIDTH
            h = _fold_complete(self.tile(t)[start : start + (1 << sub)])
            self._hashes[key] = h
        return h

    __call__ = read_hash


# ---------------------------------------------------------------------------------------
# Writing tiles


def stored_hashes_for_append(
    old_size: int, new_leaf_hashes: Iterable[bytes], read_hash: ReadHash
) -> list[tuple[int, int, bytes]]:
    """Return every ``(level, index, hash)`` complete subtree created by the append.

    ``read_hash`` reads the old tree (of ``old_size`` leaves); it is asked only for the
    ``popcount(old_size)`` hashes of its right edge. Levels are Merkle levels; the ones
    that go into tiles are the multiples of 8 (see :func:`tiles_to_write`).
    """
    state = CompactRange.from_read_hash(old_size, read_hash)
    return state.extend(new_leaf_hashes)


def tiles_to_write(
    old_size: int,
    new_size: int,
    stored_hashes: Iterable[tuple[int, int, bytes]],
    read_tile: ReadTile,
) -> list[tuple[Tile, bytes]]:
    """Return the new tiles, with their bytes, for growing the tree to ``new_size``.

    ``stored_hashes`` are the ``(level, index, hash)`` triples created by the append
    (from :func:`stored_hashes_for_append` or :meth:`CompactRange.extend`); only Merkle
    levels that are multiples of 8 are used, and each one a new tile needs must be
    there. Where a new tile extends a partial tile of the old tree, that tile is read
    with ``read_tile`` for its first hashes. Write the tiles in the order returned
    (lower levels first), and publish the new checkpoint only after all are stored.
    """
    tiles = new_tiles(old_size, new_size)
    by_pos: dict[tuple[int, int], bytes] = {}
    for level, index, h in stored_hashes:
        if level % TILE_HEIGHT == 0:
            by_pos[(level // TILE_HEIGHT, index)] = h
    out: list[tuple[Tile, bytes]] = []
    for t in tiles:
        start = t.index * TILE_WIDTH
        old_count = _level_count(old_size, t.level)
        parts: list[bytes] = []
        if old_count > start:
            old_tile = Tile(t.level, t.index, old_count - start)
            data = read_tile(old_tile)
            try:
                tile_hashes(data, old_tile.width)
            except MerkleError as e:
                raise MerkleError(f"tile {tile_path(*old_tile)}: {e}") from None
            parts.append(bytes(data))
        for i in range(max(start, old_count), start + t.width):
            stored = by_pos.get((t.level, i))
            if stored is None:
                raise MerkleError(
                    f"stored hash at level {TILE_HEIGHT * t.level} index {i} is missing for "
                    f"tile {tile_path(*t)}"
                )
            if len(stored) != HASH_SIZE:
                raise MerkleError(
                    f"stored hash at level {TILE_HEIGHT * t.level} index {i} is {len(stored)} "
                    f"bytes, expected {HASH_SIZE}"
                )
            parts.append(bytes(stored))
        out.append((t, b"".join(parts)))
    return out
