"""RFC 9162 (RFC 6962) Merkle tree hashing, proofs and verification, over SHA-256.

Everything here is a pure function over bytes. Leaves are hashed as
``SHA-256(0x00 || data)`` and interior nodes as ``SHA-256(0x01 || left || right)``; the
Merkle Tree Hash of ``n`` leaves splits at the largest power of two smaller than ``n``
(RFC 9162 section 2.1.1), and the tree of no leaves hashes to ``SHA-256("")``.

Storage is described by *complete subtrees*: the hash at ``(level, index)`` is the hash of
the perfect subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0
holds the leaf hashes. These hashes never change once the tree has grown past them, which
is what a tile store keeps (see :mod:`privproc.wire.tiles`). Proof generation takes a
``read_hash(level, index)`` callback for them and reads only ``O(log n)`` of them; the
hashes of the incomplete right edge of a tree are recomputed from complete ones
(:func:`subtree_hash`), as Go's ``golang.org/x/mod/sumdb/tlog`` does. :class:`CompactRange`
keeps just the ``popcount(size)`` hashes a sequencer needs to append leaves and produce
new roots without holding the tree.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, and every
failure raises :class:`~privproc.wire.errors.MerkleError` saying what was expected and
what was found; a function that returns at all has verified.

Policy where the RFC leaves room (the transparency-dev test vectors flag the same two
spots). Both decisions fail closed:

* **Every hash is exactly 32 bytes.** RFC 9162's algorithms compare byte strings and
  never check a length, so read literally they accept a one-leaf inclusion proof whose
  leaf hash and root are both empty (``inclusion/single-entry/empty-root-and-leaf.json``).
  privproc rejects any leaf hash, root, proof element or stored hash that is not a
  SHA-256 output *before* looking at anything else, in every function, including the
  trivial equal-size consistency check.
* **Consistency from an empty tree is rejected, even to another empty tree.**
  RFC 9162 section 2.1.4.1 defines ``PROOF(m, D_n)`` only for ``0 < m < n`` and section
  2.1.4.2 fails every empty proof, so it gives no meaning to ``size1 == 0``; the empty
  tree commits to nothing, and "verifying" from it would only pretend to have checked
  something. :func:`verify_consistency` and :func:`consistency_proof` raise for
  ``size1 == 0`` (``consistency/additional/sizes-are-equal-zero-and-proof-is-empty.json``).
  A client whose trusted state is the empty tree has nothing to check and simply adopts
  the new checkpoint. The one extension privproc does make is ``0 < size1 == size2``:
  the proof must be empty and the roots equal (RFC 9162 would fail it on the empty proof),
  so a client can re-check an unchanged checkpoint.

Note that an inclusion proof does not by itself bind the tree size: the same proof can
verify for one leaf index under more than one size with the *same* root (for example leaf
0 of 3 and of 4 leaves). The size is bound by the signed checkpoint carrying the root;
always take ``size`` and ``root`` from the same verified checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence

from privproc.wire.errors import MerkleError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "CompactRange",
    "ReadHash",
    "consistency_proof",
    "consistency_proof_length",
    "inclusion_proof",
    "inclusion_proof_length",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "subtree_hash",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""The size in bytes of every hash (SHA-256)."""

MAX_TREE_SIZE = (1 << 64) - 1
"""The largest tree size (and one more than the largest leaf index): sizes are uint64."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The Merkle Tree Hash of the empty tree, ``SHA-256("")``."""

ReadHash = Callable[[int, int], bytes]
"""``read_hash(level, index)``: the hash of the complete subtree of ``2**level`` leaves
starting at leaf ``index * 2**level``; level 0 returns leaf hashes."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(_LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``."""
    _check_hash("left child hash", left)
    _check_hash("right child hash", right)
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _hash_children(left: bytes, right: bytes) -> bytes:
    # node_hash without the length checks, for values this module already checked.
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


# ---------------------------------------------------------------------------------------
# Argument checks


def _check_hash(what: str, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise MerkleError(f"{what} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise MerkleError(f"{what} is {len(value)} bytes, expected {HASH_SIZE}")


def _check_size(what: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MerkleError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_TREE_SIZE:
        raise MerkleError(f"{what} {value} is out of range, expected 0..2**64-1")


def _check_proof(what: str, proof: Sequence[bytes], expected_len: int) -> list[bytes]:
    if len(proof) != expected_len:
        raise MerkleError(f"{what} has {len(proof)} hashes, expected {expected_len}")
    for i, p in enumerate(proof):
        _check_hash(f"{what} hash {i}", p)
    return [bytes(p) for p in proof]


def _read(read_hash: ReadHash, level: int, index: int) -> bytes:
    h = read_hash(level, index)
    if not isinstance(h, bytes) or len(h) != HASH_SIZE:
        got = f"{len(h)} bytes" if isinstance(h, bytes) else type(h).__name__
        raise MerkleError(
            f"stored hash at level {level} index {index} is {got}, expected {HASH_SIZE} bytes"
        )
    return h


def _mismatch(what: str, computed: bytes, expected: bytes) -> MerkleError:
    return MerkleError(f"{what}: computed {computed.hex()}, expected {bytes(expected).hex()}")


# ---------------------------------------------------------------------------------------
# Tree hashes


class CompactRange:
    """The state of an append-only tree in ``O(log n)`` hashes.

    Holds the hashes of the complete subtrees that make up a tree of :attr:`size` leaves,
    one per set bit of the size, largest (leftmost) first. :meth:`append` adds a leaf and
    returns every complete-subtree hash it creates, so a sequencer can store them (tiles)
    while keeping only this object in memory.

    Serialised by :meth:`to_bytes` as the size (8 bytes, big-endian) followed by the
    ``popcount(size)`` hashes in order.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _check_size("compact range size", size)
        want = size.bit_count()
        if len(hashes) != want:
            raise MerkleError(
                f"compact range of size {size} needs {want} hashes, got {len(hashes)}"
            )
        for i, h in enumerate(hashes):
            _check_hash(f"compact range hash {i}", h)
        self._size = size
        self._hashes = [bytes(h) for h in hashes]

    @classmethod
    def from_read_hash(cls, size: int, read_hash: ReadHash) -> CompactRange:
        """Load the state of an existing tree of ``size`` leaves from stored hashes."""
        _check_size("tree size", size)
        hashes = [
            _read(read_hash, level, (size >> level) - 1)
            for level in reversed(range(size.bit_length()))
            if size >> level & 1
        ]
        return cls(size, hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        """Parse the encoding written by :meth:`to_bytes`."""
        if len(data) < 8:
            raise MerkleError(f"compact range is {len(data)} bytes, expected at least 8")
        size = int.from_bytes(data[:8], "big")
        want = 8 + HASH_SIZE * size.bit_count()
        if len(data) != want:
            raise MerkleError(f"compact range of size {size} is {len(data)} bytes, expected {want}")
        body = data[8:]
        return cls(size, [body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)])

    def to_bytes(self) -> bytes:
        """Encode as the 8-byte big-endian size followed by the hashes."""
        return self._size.to_bytes(8, "big") + b"".join(self._hashes)

    @property
    def size(self) -> int:
        """The number of leaves in the tree."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The complete-subtree hashes, largest subtree first."""
        return tuple(self._hashes)

    def copy(self) -> CompactRange:
        """Return an independent copy (to compute a tentative root, say)."""
        return CompactRange(self._size, self._hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Append one leaf hash; return the new ``(level, index, hash)`` stored hashes.

        The first is the leaf itself at level 0; each further one is a complete subtree
        that the leaf completed, bottom up.
        """
        _check_hash("leaf hash", leaf)
        if self._size == MAX_TREE_SIZE:
            raise MerkleError("tree is full: size is already 2**64-1")
        h = bytes(leaf)
        level, index = 0, self._size
        created = [(0, index, h)]
        while index & 1:
            h = _hash_children(self._hashes.pop(), h)
            level, index = level + 1, index >> 1
            created.append((level, index, h))
        self._hashes.append(h)
        self._size += 1
        return created

    def extend(self, leaves: Iterable[bytes]) -> list[tuple[int, int, bytes]]:
        """Append several leaf hashes; return all new stored hashes in creation order."""
        created: list[tuple[int, int, bytes]] = []
        for leaf in leaves:
            created.extend(self.append(leaf))
        return created

    def root(self) -> bytes:
        """Return the Merkle Tree Hash of the tree (``EMPTY_ROOT`` when empty)."""
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            r = _hash_children(h, r)
        return r

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    def __hash__(self) -> int:
        return hash((self._size, tuple(self._hashes)))

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


def root_from_leaf_hashes(hashes: Iterable[bytes]) -> bytes:
    """Return the Merkle Tree Hash of a tree with these leaf hashes (RFC 9162 2.1.1)."""
    cr = CompactRange()
    for h in hashes:
        cr.append(h)
    return cr.root()


def subtree_hash(start: int, end: int, read_hash: ReadHash) -> bytes:
    """Return ``MTH(D[start:end])`` for a subtree of the RFC 9162 tree shape.

    ``[start, end)`` must be non-empty and start on a multiple of the smallest power of
    two ``>= end - start`` (every node of every tree, complete or on a right edge, has
    this shape). It is assembled from the complete subtrees given by the binary
    digits of ``end - start``: one ``read_hash`` call per set bit.
    """
    _check_size("subtree start", start)
    _check_size("subtree end", end)
    if start >= end:
        raise MerkleError(f"subtree range [{start}, {end}) is empty, expected start < end")
    width = end - start
    span = 1 << (width - 1).bit_length()
    if start % span:
        raise MerkleError(
            f"subtree range [{start}, {end}) is not a tree node: start must be a multiple of {span}"
        )
    parts = []
    pos = start
    for level in reversed(range(width.bit_length())):
        if width >> level & 1:
            parts.append(_read(read_hash, level, pos >> level))
            pos += 1 << level
    r = parts[-1]
    for h in reversed(parts[:-1]):
        r = _hash_children(h, r)
    return r


def tree_hash(size: int, read_hash: ReadHash) -> bytes:
    """Return the root hash of the tree of ``size`` leaves (``EMPTY_ROOT`` for 0)."""
    _check_size("tree size", size)
    if size == 0:
        return EMPTY_ROOT
    return subtree_hash(0, size, read_hash)


# ---------------------------------------------------------------------------------------
# Proof generation (RFC 9162 2.1.3.1 and 2.1.4.1)


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(index: int, size: int, read_hash: ReadHash) -> list[bytes]:
    """Return the inclusion proof ``PATH(index, D[0:size])``, leaf end first."""
    _check_size("tree size", size)
    _check_size("leaf index", index)
    if index >= size:
        raise MerkleError(f"leaf index {index} is out of range for tree size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(subtree_hash(lo + k, hi, read_hash))
            hi = lo + k
        else:
            path.append(subtree_hash(lo, lo + k, read_hash))
            lo += k
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, read_hash: ReadHash) -> list[bytes]:
    """Return the consistency proof ``PROOF(size1, D[0:size2])``, leaf end first.

    ``size1 == size2`` gives the empty proof; ``size1 == 0`` is refused (see the module
    docstring).
    """
    _check_sizes(size1, size2)
    path: list[bytes] = []
    m, lo, hi = size1, 0, size2
    complete = True  # the b flag of SUBPROOF: is MTH(D[lo:lo+m]) already known?
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            path.append(subtree_hash(lo + k, hi, read_hash))
            hi = lo + k
        else:
            path.append(subtree_hash(lo, lo + k, read_hash))
            m -= k
            lo += k
            complete = False
    if not complete:
        path.append(subtree_hash(lo, hi, read_hash))
    path.reverse()
    return path


def _check_sizes(size1: int, size2: int) -> None:
    _check_size("size1", size1)
    _check_size("size2", size2)
    if size1 > size2:
        raise MerkleError(f"size1 {size1} is greater than size2 {size2}, expected size1 <= size2")
    if size1 == 0:
        raise MerkleError(
            f"size1 is 0: consistency with the empty tree is meaningless (size2 {size2})"
        )


# ---------------------------------------------------------------------------------------
# Verification (RFC 9162 2.1.3.2 and 2.1.4.2)


def inclusion_proof_length(index: int, size: int) -> int:
    """Return how many hashes the inclusion proof for ``index`` in ``size`` leaves has."""
    _check_size("tree size", size)
    _check_size("leaf index", index)
    if index >= size:
        raise MerkleError(f"leaf index {index} is out of range for tree size {size}")
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(size1: int, size2: int) -> int:
    """Return how many hashes the consistency proof from ``size1`` to ``size2`` has."""
    _check_sizes(size1, size2)
    if size1 == size2:
        return 0
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    shift = (size1 & -size1).bit_length() - 1  # trailing zero bits of size1
    seed = 0 if size1 == 1 << shift else 1  # size1 not a power of two: root1's subtree
    return inner - shift + border + seed


def _lsb(x: int) -> int:
    return x & 1


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Run RFC 9162 2.1.3.2 steps 1-5 but the final comparison; return the root.

    Raises :class:`MerkleError` if the arguments are malformed or the proof has the
    wrong length for ``index`` and ``size``.
    """
    _check_hash("leaf hash", leaf)
    want = inclusion_proof_length(index, size)  # step 1: index < size
    path = _check_proof("inclusion proof", proof, want)
    fn, sn = index, size - 1  # step 2
    r = bytes(leaf)  # step 3
    for p in path:  # step 4
        if sn == 0:  # 4a (unreachable once the length is checked; kept as in the RFC)
            raise MerkleError("inclusion proof is too long: hashes left after reaching the root")
        if _lsb(fn) or fn == sn:  # 4b
            r = _hash_children(p, r)
            if not _lsb(fn):
                while not (_lsb(fn) or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = _hash_children(r, p)
        fn >>= 1  # 4c
        sn >>= 1
    if sn != 0:  # step 5
        raise MerkleError("inclusion proof is too short: the root was not reached")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify that ``leaf`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Returns ``None`` on success; raises :class:`MerkleError` otherwise.
    """
    _check_hash("leaf hash", leaf)
    _check_hash("root hash", root)
    r = root_from_inclusion_proof(leaf, index, size, proof)
    if not hmac.compare_digest(r, bytes(root)):
        raise _mismatch(f"inclusion proof for leaf {index} of {size} does not verify", r, root)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Verify that the tree of ``size1`` leaves with ``root1`` is a prefix of the tree of
    ``size2`` leaves with ``root2``.

    Returns ``None`` on success; raises :class:`MerkleError` otherwise.
    """
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    want = consistency_proof_length(size1, size2)  # 0 < size1 <= size2
    path = _check_proof("consistency proof", proof, want)
    first_hash, second_hash = bytes(root1), bytes(root2)
    if size1 == size2:
        if not hmac.compare_digest(first_hash, second_hash):
            raise _mismatch(
                f"root2 differs from root1 at equal size {size1}", second_hash, first_hash
            )
        return
    # Step 1 (empty path) cannot happen: 0 < size1 < size2 always needs >= 1 hash.
    if size1 & (size1 - 1) == 0:  # step 2
        path.insert(0, first_hash)
    fn, sn = size1 - 1, size2 - 1  # step 3
    while _lsb(fn):  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:  # 6a
            raise MerkleError("consistency proof is too long: hashes left after the root")
        if _lsb(fn) or fn == sn:  # 6b
            fr = _hash_children(c, fr)
            sr = _hash_children(c, sr)
            if not _lsb(fn):
                while not (_lsb(fn) or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _hash_children(sr, c)
        fn >>= 1  # 6c
        sn >>= 1
    if sn != 0:  # step 7
        raise MerkleError("consistency proof is too short: the new root was not reached")
    if not hmac.compare_digest(fr, first_hash):
        raise _mismatch(
            f"consistency proof {size1} -> {size2} does not match root1", fr, first_hash
        )
    if not hmac.compare_digest(sr, second_hash):
        raise _mismatch(
            f"consistency proof {size1} -> {size2} does not match root2", sr, second_hash
        )
