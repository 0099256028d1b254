"""C2SP tlog-tiles: paths, tile sets, entry bundles, and Merkle hashes read through tiles
agreeing with the tree computed directly, for every size up to 1000 and around 65536."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproc.wire.errors import MerkleError
from privproc.wire.merkle import (
    MAX_TREE_SIZE,
    CompactRange,
    ReadHash,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)
from privproc.wire.tiles import (
    Tile,
    TileHashReader,
    TilePath,
    decode_entry_bundle,
    encode_entry_bundle,
    entries_path,
    new_tiles,
    parse_tile_path,
    stored_hashes_for_append,
    tile_hashes,
    tile_path,
    tiles_for_size,
    tiles_to_write,
)

# ---------------------------------------------------------------------------------------
# Paths


def test_path_examples() -> None:
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(0, 0) == "tile/0/000"
    assert tile_path(1, 0, 17) == "tile/1/000.p/17"
    assert tile_path(2, 999, 255) == "tile/2/999.p/255"
    assert tile_path(0, 1000, 256) == "tile/0/x001/000"
    assert entries_path(1234067) == "tile/entries/x001/x234/067"
    assert entries_path(5, 1) == "tile/entries/005.p/1"
    assert parse_tile_path("tile/0/x001/x234/067") == (0, 1234067, 256, False)
    assert parse_tile_path("tile/3/012.p/7") == TilePath(3, 12, 7, False)
    assert parse_tile_path("tile/entries/x001/000.p/255") == (0, 1000, 255, True)
    # The largest tiles a uint64 tree can have.
    last = MAX_TREE_SIZE >> 8
    assert parse_tile_path(tile_path(0, last, 255)) == (0, last, 255, False)
    assert parse_tile_path("tile/7/000.p/255") == (7, 0, 255, False)


def test_tiles_that_cannot_exist_are_refused() -> None:
    # Level 8 and up, and the full level 7 tile, need more than 2**64 - 1 leaves.
    with pytest.raises(MerkleError, match=r"tile 63/0 of width 1 cannot exist"):
        tile_path(63, 0, 1)
    with pytest.raises(MerkleError, match=r"cannot exist"):
        tile_path(7, 0)
    with pytest.raises(MerkleError, match=r"cannot exist"):
        entries_path((MAX_TREE_SIZE >> 8) + 1, 1)
    with pytest.raises(MerkleError, match=r"tile level 64 is out of range, expected 0..63"):
        tile_path(64, 0, 1)
    with pytest.raises(MerkleError, match=r"tile width 0 is out of range, expected 1..256"):
        tile_path(0, 0, 0)
    with pytest.raises(MerkleError, match=r"tile width 257 is out of range"):
        entries_path(0, 257)
    with pytest.raises(MerkleError, match=r"tile index -1 is negative"):
        tile_path(0, -1)
    with pytest.raises(MerkleError, match=r"tile level must be an int, got bool"):
        tile_path(True, 0)


MALFORMED = [
    "",
    "tile",
    "tile/0",
    "tile/0/",
    "/tile/0/000",
    "tile/0/000/",
    "tiles/0/000",
    "Tile/0/000",
    "tile/00/000",  # leading zero in level
    "tile/01/000",
    "tile/64/000.p/1",  # level out of range
    "tile/100/000.p/1",
    "tile/-1/000",
    "tile/+1/000",
    "tile/8/000.p/1",  # syntactically fine, but needs more than 2**64 - 1 leaves
    "tile/7/000",
    "tile/data/000",
    "tile/entry/000",
    "tile/0/00",  # index elements are exactly 3 digits
    "tile/0/0000",
    "tile/0/1",
    "tile/0/x000",  # the last element has no x
    "tile/0/x001",
    "tile/0/001/000",  # non-final elements need the x
    "tile/0/x000/001",  # no leading zero element
    "tile/0/x000/x001/000",
    "tile/0/X001/000",
    "tile/0/xx01/000",
    "tile/0/x01/000",
    "tile/0/x0001/000",
    "tile/0/+00",
    "tile/0/ 00",
    "tile/0/00a",
    "tile/0/\u0660\u0660\u0660",  # Arabic-Indic digits
    "tile/0/x001/x002/x003/x004/x005/x006/x007/000",  # 8 elements
    "tile/0/x072/x057/x594/x037/x927/936",  # 2**56: starts at leaf 2**64
    "tile/0/000.p",
    "tile/0/000.p/",
    "tile/0/000.p/0",  # width 1..255
    "tile/0/000.p/256",
    "tile/0/000.p/300",
    "tile/0/000.p/01",
    "tile/0/000.p/+5",
    "tile/0/000.p/5/6",
    "tile/0/000.p/5/",
    "tile/0/000.P/5",
    "tile/0/000.q/5",
    "tile/0/.p/5",
    "tile/0/x001.p/000/5",
    "tile/0/000.p.p/5",
    "tile/entries/000.p/256",
    "tile/entries/00",
    "tile/entries",
    "tile/entries/",
    "tile/0/000\n",
    "tile//000",
    "tile/0//000",
]


@pytest.mark.parametrize("path", MALFORMED)
def test_malformed_paths_are_rejected(path: str) -> None:
    with pytest.raises(MerkleError, match=r"malformed tile path|must be a str"):
        parse_tile_path(path)


def test_non_str_path_is_rejected() -> None:
    with pytest.raises(MerkleError, match=r"tile path must be a str, got bytes"):
        parse_tile_path(b"tile/0/000")  # type: ignore[arg-type]


@st.composite
def tile_coords(draw: st.DrawFn) -> tuple[int, int, int]:
    level = draw(st.integers(0, 7))
    width = draw(st.integers(1, 256 if level < 7 else 255))
    max_index = ((MAX_TREE_SIZE >> (8 * level)) - width) // 256
    index = draw(st.integers(0, min(3000, max_index)) | st.integers(0, max_index))
    return level, index, width


@settings(max_examples=300, deadline=None)
@given(tile_coords())
def test_paths_round_trip(coords: tuple[int, int, int]) -> None:
    level, index, width = coords
    p = tile_path(level, index, width)
    assert parse_tile_path(p) == (level, index, width, False)
    if level == 0:
        e = entries_path(index, width)
        assert e == p.replace("tile/0/", "tile/entries/", 1)
        assert parse_tile_path(e) == (0, index, width, True)


def _accepts_only_canonical(path: str) -> None:
    try:
        level, index, width, is_entries = parse_tile_path(path)
    except MerkleError:
        return
    canonical = entries_path(index, width) if is_entries else tile_path(level, index, width)
    assert canonical == path


@settings(max_examples=500, deadline=None)
@given(tile_coords(), st.data())
def test_edited_paths_are_rejected_unless_canonical(
    coords: tuple[int, int, int], data: st.DataObject
) -> None:
    path = tile_path(*coords)
    if data.draw(st.booleans()) and coords[0] == 0:
        path = entries_path(coords[1], coords[2])
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(path)))
        char = data.draw(st.sampled_from("0123456789x/.p-+ entriesX\u0661"))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        if op == "insert":
            path = path[:pos] + char + path[pos:]
        elif op == "delete":
            path = path[:pos] + path[pos + 1 :]
        else:
            path = path[:pos] + char + path[pos + 1 :]
    _accepts_only_canonical(path)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["tile", "entries", "0", "1", "63", "64", "000", "x000", "x001", "255"])
        | st.sampled_from(["001.p", "000.p", "256", "01", "x999", "999", "p", ".p", ""])
        | st.text("0123456789xp./", max_size=6),
        min_size=1,
        max_size=10,
    )
)
def test_random_segment_paths_are_rejected_unless_canonical(segments: list[str]) -> None:
    _accepts_only_canonical("/".join(segments))
    _accepts_only_canonical("/".join(["tile", *segments]))


# ---------------------------------------------------------------------------------------
# Which tiles exist


def test_tiles_for_size_matches_the_spec_examples() -> None:
    assert tiles_for_size(0) == []
    assert tiles_for_size(1) == [Tile(0, 0, 1)]
    assert tiles_for_size(255) == [Tile(0, 0, 255)]
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level
    # 1 tile of width 1"
    assert tiles_for_size(256) == [Tile(0, 0, 256), Tile(1, 0, 1)]
    assert tiles_for_size(257) == [Tile(0, 0, 256), Tile(0, 1, 1), Tile(1, 0, 1)]
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
    # level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width
    # 17, and one partial level 2 tile of width 1"
    t = tiles_for_size(70_000)
    assert [x for x in t if x.level == 0] == [Tile(0, n, 256) for n in range(273)] + [
        Tile(0, 273, 112)
    ]
    assert [x for x in t if x.level > 0] == [Tile(1, 0, 256), Tile(1, 1, 17), Tile(2, 0, 1)]
    assert tiles_for_size(65536)[-2:] == [Tile(1, 0, 256), Tile(2, 0, 1)]
    # Near the top of uint64: one leaf completes a tile on every level and adds the
    # highest tile there can be.
    top = 255 << 56
    assert new_tiles(top - 1, top) == [
        *(Tile(level, (top >> (8 * level + 8)) - 1, 256) for level in range(7)),
        Tile(7, 0, 255),
    ]
    assert new_tiles(MAX_TREE_SIZE - 1, MAX_TREE_SIZE) == [Tile(0, MAX_TREE_SIZE >> 8, 255)]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 200_000) | st.sampled_from([255, 256, 257, 65535, 65536, 65537]),
    st.integers(0, 70_000) | st.sampled_from([0, 1, 255, 256, 65280, 65536]),
)
def test_new_tiles_is_the_set_difference(old: int, grow: int) -> None:
    new = old + grow
    before, after = tiles_for_size(old), tiles_for_size(new)
    fresh = new_tiles(old, new)
    assert set(fresh) == set(after) - set(before)
    assert fresh == sorted(fresh)
    for t in after:
        count = new >> (8 * t.level)
        assert 1 <= t.width <= 256
        assert t.index * 256 + t.width <= count
        assert t.width == 256 or t.index * 256 + t.width == count


def test_new_tiles_rejects_shrinking() -> None:
    with pytest.raises(MerkleError, match=r"old size 5 is greater than new size 4"):
        new_tiles(5, 4)
    with pytest.raises(MerkleError, match=r"new size -1 is out of range"):
        new_tiles(0, -1)


# ---------------------------------------------------------------------------------------
# Tile and bundle contents


def test_tile_hashes_checks_length() -> None:
    data = bytes(range(32)) * 3
    assert tile_hashes(data, 3) == [bytes(range(32))] * 3
    with pytest.raises(MerkleError, match=r"tile of width 3 is 95 bytes, expected 96"):
        tile_hashes(data[:-1], 3)
    with pytest.raises(MerkleError, match=r"tile of width 2 is 96 bytes, expected 64"):
        tile_hashes(data, 2)
    with pytest.raises(MerkleError, match=r"tile width 0 is out of range"):
        tile_hashes(b"", 0)
    with pytest.raises(MerkleError, match=r"tile width 257 is out of range"):
        tile_hashes(bytes(257 * 32), 257)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=256))
def test_entry_bundles_round_trip(entries: list[bytes]) -> None:
    data = encode_entry_bundle(entries)
    assert decode_entry_bundle(data, len(entries)) == entries
    assert len(data) == sum(2 + len(e) for e in entries)
    with pytest.raises(MerkleError):
        decode_entry_bundle(data[:-1], len(entries))
    with pytest.raises(MerkleError):
        decode_entry_bundle(data + b"\x00", len(entries))
    if len(entries) > 1:
        with pytest.raises(MerkleError, match=r"trailing bytes after"):
            decode_entry_bundle(data, len(entries) - 1)
    if len(entries) < 256:
        with pytest.raises(MerkleError, match=rf"has {len(entries)} entries, expected"):
            decode_entry_bundle(data, len(entries) + 1)


def test_entry_bundle_errors() -> None:
    assert encode_entry_bundle([b"ab", b""]) == b"\x00\x02ab\x00\x00"
    assert decode_entry_bundle(b"\xff\xff" + bytes(0xFFFF), 1) == [bytes(0xFFFF)]
    with pytest.raises(MerkleError, match=r"entry 1 is 65536 bytes, expected at most 65535"):
        encode_entry_bundle([b"", bytes(0x10000)])
    with pytest.raises(MerkleError, match=r"entry bundle has 0 entries, expected 1..256"):
        encode_entry_bundle([])
    with pytest.raises(MerkleError, match=r"entry bundle has 257 entries"):
        encode_entry_bundle([b""] * 257)
    with pytest.raises(MerkleError, match=r"entry bundle has 0 entries, expected 1"):
        decode_entry_bundle(b"", 1)
    with pytest.raises(MerkleError, match=r"truncated in the length of entry 1"):
        decode_entry_bundle(b"\x00\x00\x00", 2)
    with pytest.raises(MerkleError, match=r"entry 0 is truncated: length 5, 2 bytes left"):
        decode_entry_bundle(b"\x00\x05ab", 1)
    with pytest.raises(MerkleError, match=r"width 0 is out of range"):
        decode_entry_bundle(b"\x00\x00", 0)


# ---------------------------------------------------------------------------------------
# Hashes through tiles vs. the tree computed directly


class Log:
    """A test log: all complete-subtree hashes, and a tile store grown through tiles.py."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        self.direct: dict[tuple[int, int], bytes] = {
            (lv, ix): h for lv, ix, h in CompactRange().extend(leaves)
        }
        self.store: dict[Tile, bytes] = {}
        self.size = 0

    def read_direct(self, size: int) -> ReadHash:
        def read_hash(level: int, index: int) -> bytes:
            assert (index + 1) << level <= size
            return self.direct[(level, index)]

        return read_hash

    def grow(self, new_size: int) -> list[tuple[Tile, bytes]]:
        old = self.size
        created = stored_hashes_for_append(
            old, self.leaves[old:new_size], TileHashReader(old, self.store.__getitem__)
        )
        writes = tiles_to_write(old, new_size, created, self.store.__getitem__)
        assert [t for t, _ in writes] == new_tiles(old, new_size)
        self.store.update(writes)
        self.size = new_size
        return writes

    def expected_tile(self, t: Tile) -> bytes:
        return b"".join(self.direct[(8 * t.level, t.index * 256 + j)] for j in range(t.width))


def synthetic_leaves(n: int) -> list[bytes]:
    # Any 32 bytes are a fine leaf hash; this is much cheaper than hashing entries.
    return [i.to_bytes(32, "big") for i in range(n)]


SMALL = Log([leaf_hash(i.to_bytes(4, "big")) for i in range(1000)])
SMALL_ROOTS = [CompactRange().root()]
_cr = CompactRange()
for _leaf in SMALL.leaves:
    _cr.append(_leaf)
    SMALL_ROOTS.append(_cr.root())


def test_every_size_to_1000_one_leaf_at_a_time() -> None:
    log = Log(SMALL.leaves)
    for n in range(1, 1001):
        log.grow(n)
        for t in tiles_for_size(n):
            assert log.store[t] == log.expected_tile(t)
        tiles = TileHashReader(n, log.store.__getitem__)
        direct = log.read_direct(n)
        assert tree_hash(n, tiles) == SMALL_ROOTS[n]
        for i in {0, n // 2, n - 1, (n - 1) & ~255}:
            proof = inclusion_proof(i, n, tiles)
            assert proof == inclusion_proof(i, n, direct)
            verify_inclusion(log.leaves[i], i, n, proof, SMALL_ROOTS[n])
        for m in {1, n // 3 or 1, n - 1 or 1, n & ~255 or 1}:
            proof = consistency_proof(m, n, tiles)
            assert proof == consistency_proof(m, n, direct)
            verify_consistency(m, n, proof, SMALL_ROOTS[m], SMALL_ROOTS[n])


@pytest.mark.parametrize("n", [1, 2, 255, 256, 257, 511, 512, 513, 768, 1000])
def test_all_proofs_through_tiles_at_tile_boundaries(n: int) -> None:
    log = Log(SMALL.leaves[:n])
    log.grow(n)
    tiles = TileHashReader(n, log.store.__getitem__)
    direct = log.read_direct(n)
    for i in range(n):
        assert inclusion_proof(i, n, tiles) == inclusion_proof(i, n, direct)
    for m in range(1, n + 1):
        assert consistency_proof(m, n, tiles) == consistency_proof(m, n, direct)


def test_growing_in_jumps_writes_the_same_tiles() -> None:
    jumps = [1, 3, 256, 257, 300, 511, 512, 513, 700, 767, 768, 1000]
    log = Log(SMALL.leaves)
    for n in jumps:
        old_store = dict(log.store)
        writes = log.grow(n)
        for t, data in writes:
            assert data == log.expected_tile(t)
            assert t not in old_store
        reader = TileHashReader(n, log.store.__getitem__)
        assert tree_hash(n, reader) == SMALL_ROOTS[n]
        assert CompactRange.from_read_hash(n, reader).root() == SMALL_ROOTS[n]
    for t in tiles_for_size(1000):
        assert log.store[t] == log.expected_tile(t)


def test_around_65536() -> None:
    sizes = [65535, 65536, 65537, 65791, 65792, 65793, 66049]
    log = Log(synthetic_leaves(max(sizes)))
    roots = {}
    cr = CompactRange()
    for n, leaf in enumerate(log.leaves, 1):
        cr.append(leaf)
        if n in sizes:
            roots[n] = cr.root()
    for n in sizes:
        log.grow(n)
        assert set(tiles_for_size(n)) <= set(log.store)
        for t in tiles_for_size(n):
            assert log.store[t] == log.expected_tile(t)
        tiles = TileHashReader(n, log.store.__getitem__)
        direct = log.read_direct(n)
        assert tree_hash(n, tiles) == roots[n]
        for i in {0, 255, 256, 65279, 65280, min(65535, n - 1), n - 1}:
            proof = inclusion_proof(i, n, tiles)
            assert proof == inclusion_proof(i, n, direct)
            verify_inclusion(log.leaves[i], i, n, proof, roots[n])
        for m in [1, 256, 65535, *(s for s in sizes if s <= n)]:
            proof = consistency_proof(m, n, tiles)
            assert proof == consistency_proof(m, n, direct)
            if m in roots:
                verify_consistency(m, n, proof, roots[m], roots[n])
    assert Tile(2, 0, 1) in log.store
    assert log.store[Tile(2, 0, 1)] == roots[65536]


def test_reader_fetches_each_tile_once_and_checks_it() -> None:
    n = 1000
    log = Log(SMALL.leaves[:n])
    log.grow(n)
    fetched: list[Tile] = []

    def read_tile(t: Tile) -> bytes:
        fetched.append(t)
        return log.store[t]

    reader = TileHashReader(n, read_tile)
    for i in range(n):
        inclusion_proof(i, n, reader)
    assert len(fetched) == len(set(fetched)) == len(tiles_for_size(n))
    with pytest.raises(MerkleError, match=r"no complete subtree at level 3 index 125"):
        reader.read_hash(3, 125)
    with pytest.raises(MerkleError, match=r"no complete subtree at level 0 index 1000"):
        reader(0, 1000)

    bad = TileHashReader(n, lambda t: log.store[t][:-1])
    with pytest.raises(
        MerkleError, match=r"tile tile/0/000: tile of width 256 is 8191 bytes, expected 8192"
    ):
        bad.read_hash(0, 0)


def test_reader_hash_inside_tiles() -> None:
    n = 1000
    log = Log(SMALL.leaves[:n])
    log.grow(n)
    reader = TileHashReader(n, log.store.__getitem__)
    for level in range(10):
        for index in range(n >> level):
            assert reader.read_hash(level, index) == log.direct[(level, index)]
    assert reader.read_hash(1, 0) == node_hash(log.leaves[0], log.leaves[1])


def test_tiles_to_write_errors() -> None:
    leaves = SMALL.leaves[:300]
    log = Log(leaves)
    log.grow(200)
    created = stored_hashes_for_append(
        200, leaves[200:300], TileHashReader(200, log.store.__getitem__)
    )
    with pytest.raises(MerkleError, match=r"stored hash at level 0 index 299 is missing"):
        tiles_to_write(200, 300, created[:-3], log.store.__getitem__)
    with pytest.raises(MerkleError, match=r"stored hash at level 0 index 200 is 3 bytes"):
        tiles_to_write(200, 300, [(0, 200, b"abc"), *created[1:]], log.store.__getitem__)
    with pytest.raises(MerkleError, match=r"tile tile/0/000.p/200: tile of width 200 is 0"):
        tiles_to_write(200, 300, created, lambda t: b"")
    with pytest.raises(MerkleError, match=r"old size 300 is greater than new size 200"):
        tiles_to_write(300, 200, created, log.store.__getitem__)
    writes = tiles_to_write(200, 300, created, log.store.__getitem__)
    assert [t for t, _ in writes] == [Tile(0, 0, 256), Tile(0, 1, 44), Tile(1, 0, 1)]
