"""One key ring for every rotating key: the gateway's OHTTP keys, the issuer's token keys,
the node's HPKE keys.

A *ring* holds entries ``{id, kind, secret, not_before, not_after, retire_at}``. ``kind``
says what a key is for (a token type; the gateway has one kind): every kind has exactly
one *current* key (``retire_at`` is None), the one to publish and to sign or seal with.
A rotation gives each kind a new current key, valid until ``now + lifetime``; the old one
*retires* at ``now + grace`` and stays accepted until then (requests sealed to it, tokens
issued under it); entries past their end are dropped, so their secrets leave the store.
A key is accepted before the earlier of ``retire_at`` and ``not_after`` (its *end of
life*); a ring made with ``expire_at_not_after=False`` ignores ``not_after`` for
acceptance and keeps a key until it is retired (the gateway: see its keystore).

- :class:`KeyRing` is pure and typed (generic over the secret's type): no clock reads
  (times are passed in, seconds since the epoch), no I/O. Key ids come from an
  :data:`IdAllocator` callback (:func:`cyclic_ids` for 1-byte ids that are never reused
  while a key holding one is kept; :func:`sequential_ids` otherwise); secrets come from
  the caller's factory, which is told the new key's kind, id and validity.
- :class:`FileKeyStore` keeps a ring in one JSON document (below), with a
  :class:`SecretCodec` for its secret type, an ``fcntl`` lock around every
  read-modify-write (replicas and the CLI sharing a directory rotate once), atomic writes
  of mode 0600 from creation, and a refusal to read a file that others can read. Older
  formats are read through ``legacy`` readers and rewritten in this one at the next
  locked operation (:meth:`FileKeyStore.load_or_create` does it at start).
- :class:`FileCache` re-reads a file when it is replaced or modified, for services that
  pick up a rotation another process (the CLI) made.
- :class:`MemoryKeyStore` keeps a ring in memory only (keys that must never touch a disk).

The file (``version`` 2; version 1 was each store's own format)::

    {"format": "privproc-key-ring", "version": 2, "secret_type": "<codec name>",
     "keys": [{"id": 1, "kind": "ohttp-gateway", "not_before": 1700000000,
               "not_after": 1702592000, "retire_at": null, "secret": "<codec text>"}]}

Error messages never contain key material.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import stat
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from privproc.errors import PrivprocError
from privproc.files import replace_file

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "FileCache",
    "FileKeyStore",
    "IdAllocator",
    "KeyEntry",
    "KeyIdsExhausted",
    "KeyRing",
    "KeyRingError",
    "LegacyReader",
    "MemoryKeyStore",
    "NewKey",
    "SecretCodec",
    "cyclic_ids",
    "read_private_file",
    "sequential_ids",
]

S = TypeVar("S")
T = TypeVar("T")

FORMAT = "privproc-key-ring"
FORMAT_VERSION = 2


class KeyRingError(PrivprocError):
    """A ring operation is impossible, or a key file is missing, too open or malformed."""


class KeyIdsExhausted(KeyRingError):
    """Every key id the allocator may hand out belongs to a key that is still kept."""


# --------------------------------------------------------------------------- the ring


@dataclass(frozen=True)
class KeyEntry(Generic[S]):
    """One key of a ring. ``retire_at`` is None for the current key of its kind."""

    id: int
    kind: str
    secret: S = field(repr=False)
    not_before: float
    not_after: float
    retire_at: float | None = None

    @property
    def is_current(self) -> bool:
        return self.retire_at is None

    @property
    def end_of_life(self) -> float:
        """The earlier of ``retire_at`` and ``not_after``."""
        return self.not_after if self.retire_at is None else min(self.retire_at,
                                                                  self.not_after)


@dataclass(frozen=True)
class NewKey:
    """What a secret factory is told about the key it makes (the node binds it into
    evidence, the gateway into the key configuration)."""

    kind: str
    id: int
    not_before: float
    not_after: float


IdAllocator = Callable[[Collection[int], "int | None"], int]
"""``allocate(used, previous)``: a new id not in ``used`` (the ids of every key kept and of
the keys made so far in this rotation); ``previous`` is the id of the current key being
replaced, None for a kind's first key. Raises :class:`KeyIdsExhausted`."""


def cyclic_ids(size: int = 256, first: int = 0) -> IdAllocator:
    """Ids ``0..size-1`` in turn after the previous one (``first`` for a first key),
    skipping those in use: an id comes back only once no kept key holds it."""
    if size <= 0 or not 0 <= first < size:
        raise ValueError(f"need 0 <= first < size, got first={first}, size={size}")

    def allocate(used: Collection[int], previous: int | None) -> int:
        start = first if previous is None else previous + 1
        for i in range(start, start + size):
            if i % size not in used:
                return i % size
        raise KeyIdsExhausted(f"all {size} key identifiers are in use; wait for grace to end")

    return allocate


def sequential_ids(used: Collection[int], previous: int | None) -> int:
    """One more than the largest id in use (or than ``previous``); 1 for a first key."""
    return max((*used, previous if previous is not None else 0)) + 1


@dataclass(frozen=True)
class KeyRing(Generic[S]):
    """Keys of one or more kinds; at most one current key per kind, ids unique.

    Immutable: every operation returns a new ring. ``entries`` keep their order (oldest
    first; new keys are appended in the order of their kinds).
    """

    entries: tuple[KeyEntry[S], ...] = ()
    expire_at_not_after: bool = True

    def __post_init__(self) -> None:
        ids = [e.id for e in self.entries]
        if len(set(ids)) != len(ids):
            raise KeyRingError("duplicate key identifiers")
        for kind in self.kinds:
            currents = sum(1 for e in self.entries if e.kind == kind and e.is_current)
            if currents > 1:
                raise KeyRingError(f"{currents} current keys of kind {kind!r}, expected one")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds present, in order of first appearance."""
        return tuple(dict.fromkeys(e.kind for e in self.entries))

    def find_current(self, kind: str) -> KeyEntry[S] | None:
        return next((e for e in self.entries if e.kind == kind and e.is_current), None)

    def current(self, kind: str) -> KeyEntry[S]:
        """The key of ``kind`` to publish and to use for new work."""
        entry = self.find_current(kind)
        if entry is None:
            raise KeyRingError(f"no current key of kind {kind!r}")
        return entry

    def end(self, entry: KeyEntry[S]) -> float:
        """When this ring stops accepting ``entry``."""
        if self.expire_at_not_after:
            return entry.end_of_life
        return math.inf if entry.retire_at is None else entry.retire_at

    def accepted(self, now: float) -> tuple[KeyEntry[S], ...]:
        """The keys that open, or verify, what is presented at ``now``."""
        return tuple(e for e in self.entries if now < self.end(e))

    def get(self, key_id: int) -> KeyEntry[S] | None:
        return next((e for e in self.entries if e.id == key_id), None)

    def due(self, now: float, lifetime: float) -> bool:
        """Whether a current key has less than a quarter of ``lifetime`` left."""
        return any(e.not_after - now < lifetime / 4 for e in self.entries if e.is_current)

    def prune(self, now: float) -> KeyRing[S]:
        """Without the retired keys past their end (current keys stay until replaced)."""
        return replace(self, entries=tuple(e for e in self.entries
                                           if e.is_current or now < self.end(e)))

    def rotate(
        self,
        now: float,
        *,
        grace: float,
        lifetime: float,
        new_secret: Callable[[NewKey], S],
        allocate: IdAllocator = sequential_ids,
        kinds: Iterable[str] | None = None,
    ) -> KeyRing[S]:
        """A new current key for each of ``kinds`` (default: every kind in the ring).

        The keys no longer accepted at ``now`` are dropped (a current one too: it is being
        replaced); each replaced current key retires at ``now + grace``; each new key is
        valid from ``now`` to ``now + lifetime``. A ring without a key of a kind gets its
        first one.
        """
        if grace < 0:
            raise KeyRingError(f"grace period must be >= 0 seconds, got {grace}")
        if lifetime <= 0:
            raise KeyRingError(f"key lifetime must be > 0 seconds, got {lifetime}")
        rotated = tuple(dict.fromkeys(kinds)) if kinds is not None else self.kinds
        if not rotated:
            raise KeyRingError("nothing to rotate: no kind given and the ring is empty")
        previous = {}
        for kind in rotated:
            entry = self.find_current(kind)
            previous[kind] = None if entry is None else entry.id
        kept = [
            replace(e, retire_at=now + grace) if e.is_current and e.kind in rotated else e
            for e in self.accepted(now)
        ]
        used = {e.id for e in kept}
        specs = []
        for kind in rotated:  # every id first: no secret is made for a rotation that fails
            key_id = allocate(frozenset(used), previous[kind])
            if key_id in used or key_id < 0:
                raise KeyRingError(f"the id allocator returned {key_id}, which is not free")
            used.add(key_id)
            specs.append(NewKey(kind, key_id, now, now + lifetime))
        kept += [KeyEntry(spec.id, spec.kind, new_secret(spec), spec.not_before,
                          spec.not_after) for spec in specs]
        return replace(self, entries=tuple(kept))

    def renew_if_due(
        self,
        now: float,
        *,
        grace: float,
        lifetime: float,
        new_secret: Callable[[NewKey], S],
        allocate: IdAllocator = sequential_ids,
    ) -> KeyRing[S] | None:
        """:meth:`rotate` every kind when :meth:`due`; None when nothing is due."""
        if lifetime <= 0:
            raise KeyRingError(f"key lifetime must be > 0 seconds, got {lifetime}")
        if not self.due(now, lifetime):
            return None
        return self.rotate(now, grace=grace, lifetime=lifetime, new_secret=new_secret,
                           allocate=allocate)


# --------------------------------------------------------------------------- file store


@dataclass(frozen=True)
class SecretCodec(Generic[S]):
    """How one secret type is written in a key file.

    ``decode(kind, text)`` raises ValueError on a bad secret (with a message that holds
    no key material); ``name`` is the file's ``secret_type``, checked on every read.
    """

    name: str
    encode: Callable[[S], str]
    decode: Callable[[str, str], S]


LegacyReader = Callable[[Mapping[str, Any]], "KeyRing[Any]"]
"""Reads an older format's parsed JSON document into a ring (raises ValueError, KeyError
or TypeError when malformed)."""


def read_private_file(path: Path, missing_hint: str = "") -> bytes:
    """The bytes of a file that only its owner may read (mode 0600 or stricter)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never hang on a FIFO
    except FileNotFoundError:
        hint = f": {missing_hint}" if missing_hint else ""
        raise KeyRingError(f"{path} does not exist{hint}") from None
    except OSError as exc:
        raise KeyRingError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyRingError(f"{path} is not a regular file")
        mode = st.st_mode & 0o777
        if mode & 0o077:
            raise KeyRingError(f"{path} is readable by others (mode {mode:o}); expected 0600")
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise KeyRingError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value):
        raise KeyRingError(f"a key's {what} is not a number")
    return value


class FileKeyStore(Generic[S]):
    """A :class:`KeyRing` in one JSON file (see the module docstring for the format).

    ``kinds`` must each have a current key in the file. ``derived`` keeps files made
    from the ring in step (the issuer's verification keys): it runs under the lock after
    every write and at every :meth:`load_or_create`.
    """

    def __init__(
        self,
        path: Path,
        codec: SecretCodec[S],
        *,
        kinds: Sequence[str],
        allocate: IdAllocator = sequential_ids,
        expire_at_not_after: bool = True,
        legacy: Mapping[int, LegacyReader] | None = None,
        derived: Callable[[KeyRing[S]], None] | None = None,
        lock_path: Path | None = None,
        missing_hint: str = "",
    ) -> None:
        if not kinds:
            raise ValueError("a key store needs at least one kind")
        self.path = Path(path)
        self.codec = codec
        self.kinds = tuple(kinds)
        self.allocate = allocate
        self.expire_at_not_after = expire_at_not_after
        self.legacy = dict(legacy or {})
        self.derived = derived
        self.lock_path = lock_path or self.path.with_name(f".{self.path.name}.lock")
        self.missing_hint = missing_hint

    # ---- reading

    def read(self) -> KeyRing[S]:
        """The ring in the file (an older format is read, not rewritten: no lock here)."""
        return self._read()[0]

    def _read(self) -> tuple[KeyRing[S], bool]:
        data = read_private_file(self.path, self.missing_hint)
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise TypeError("the document is not an object")
            version = doc.get("version")
            if version == FORMAT_VERSION:
                if doc.get("format") != FORMAT:
                    raise KeyRingError(f"not a {FORMAT} file (format {doc.get('format')!r})")
                ring, migrated = self._decode(doc), False
            elif isinstance(version, int) and version in self.legacy:
                ring, migrated = self.legacy[version](doc), True
            else:
                raise KeyRingError(f"{self.path}: unsupported format version {version!r}, "
                                   f"expected {FORMAT_VERSION}")
            ring = KeyRing(ring.entries, self.expire_at_not_after)
        except KeyRingError as exc:
            if str(exc).startswith(str(self.path)):
                raise
            raise KeyRingError(f"{self.path}: {exc}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyRingError(
                f"{self.path}: malformed key file ({type(exc).__name__})") from None
        for kind in self.kinds:
            if ring.find_current(kind) is None:
                raise KeyRingError(f"{self.path}: no current key of kind {kind!r}")
        return ring, migrated

    def _decode(self, doc: Mapping[str, Any]) -> KeyRing[S]:
        if doc.get("secret_type") != self.codec.name:
            raise KeyRingError(f"holds keys of type {doc.get('secret_type')!r}, "
                               f"expected {self.codec.name!r}")
        entries = []
        for k in doc["keys"]:
            key_id, kind, retire_at = k["id"], k["kind"], k["retire_at"]
            if isinstance(key_id, bool) or not isinstance(key_id, int) or key_id < 0:
                raise KeyRingError("a key id is not a non-negative integer")
            if not isinstance(kind, str) or not kind:
                raise KeyRingError("a key kind is not a non-empty string")
            if not isinstance(k["secret"], str):
                raise KeyRingError("a secret is not a string")
            entries.append(KeyEntry(
                key_id, kind, self.codec.decode(kind, k["secret"]),
                _number(k["not_before"], "not_before"), _number(k["not_after"], "not_after"),
                None if retire_at is None else _number(retire_at, "retire_at"),
            ))
        return KeyRing(tuple(entries), self.expire_at_not_after)

    def encode(self, ring: KeyRing[S]) -> bytes:
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "secret_type": self.codec.name,
            "keys": [
                {"id": e.id, "kind": e.kind, "not_before": e.not_before,
                 "not_after": e.not_after, "retire_at": e.retire_at,
                 "secret": self.codec.encode(e.secret)}
                for e in ring.entries
            ],
        }
        return json.dumps(doc, indent=1).encode() + b"\n"

    def cache(self) -> FileCache[KeyRing[S]]:
        """The ring, re-read whenever the file changes."""
        return FileCache(self.path, self.read)

    # ---- writing (all under the lock)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive access to the file, across threads and processes (``flock``)."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            hint = f": {self.missing_hint}" if self.missing_hint else ""
            raise KeyRingError(f"{self.path} does not exist{hint}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, ring: KeyRing[S]) -> None:
        replace_file(self.path, self.encode(ring), 0o600)
        if self.derived is not None:
            self.derived(ring)

    def _prepare_dir(self) -> None:
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not directory.is_dir():
            raise KeyRingError(f"{directory} is not a directory")

    def load_or_create(self, now: float, *, lifetime: float,
                       new_secret: Callable[[NewKey], S]) -> KeyRing[S]:
        """The ring in the file; on first start a first key of every kind.

        A file in an older format is rewritten in this one."""
        if lifetime <= 0:
            raise KeyRingError(f"key lifetime must be > 0 seconds, got {lifetime}")
        self._prepare_dir()
        with self.locked():
            if self.path.exists() or self.path.is_symlink():
                ring, migrated = self._read()
                if migrated:
                    self._write(ring)
                elif self.derived is not None:
                    self.derived(ring)
                return ring
            empty: KeyRing[S] = KeyRing((), self.expire_at_not_after)
            ring = empty.rotate(
                now, grace=0, lifetime=lifetime, new_secret=new_secret,
                allocate=self.allocate, kinds=self.kinds)
            self._write(ring)
            return ring

    def update(self, change: Callable[[KeyRing[S]], KeyRing[S] | None]) -> KeyRing[S] | None:
        """Read, ``change`` and write the ring under the lock; None (and no write) when
        ``change`` returns None."""
        with self.locked():
            ring = change(self._read()[0])
            if ring is not None:
                self._write(ring)
            return ring

    def rotate(self, now: float, *, grace: float, lifetime: float,
               new_secret: Callable[[NewKey], S],
               kinds: Iterable[str] | None = None) -> KeyRing[S]:
        """:meth:`KeyRing.rotate` on the file's ring (default: every kind of the store)."""
        ring = self.update(lambda r: r.rotate(
            now, grace=grace, lifetime=lifetime, new_secret=new_secret,
            allocate=self.allocate, kinds=self.kinds if kinds is None else kinds))
        assert ring is not None
        return ring

    def renew_if_due(self, now: float, *, grace: float, lifetime: float,
                     new_secret: Callable[[NewKey], S]) -> KeyRing[S] | None:
        """:meth:`KeyRing.renew_if_due` under the lock: replicas sharing the file renew
        once."""
        return self.update(lambda r: r.renew_if_due(
            now, grace=grace, lifetime=lifetime, new_secret=new_secret,
            allocate=self.allocate))


class FileCache(Generic[T]):
    """``load()``'s value, loaded again whenever the file at ``path`` is replaced or
    modified (its inode, size or mtime changes). Loads once at construction, so a
    missing or bad file fails early."""

    def __init__(self, path: Path, load: Callable[[], T]) -> None:
        self.path = path
        self._load = load
        stamp = self._stamp()
        self._state = (stamp, load())

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise
        return st.st_ino, st.st_size, st.st_mtime_ns

    def get(self) -> T:
        stamp, value = self._state
        now_stamp = self._stamp()  # taken before loading: a change in between re-loads
        if now_stamp is None or now_stamp != stamp:
            value = self._load()
            self._state = (now_stamp, value)
        return value


# --------------------------------------------------------------------------- memory store


class MemoryKeyStore(Generic[S]):
    """A :class:`KeyRing` held in memory only, safe to share between threads.

    Updates are optimistic: ``change`` runs without the lock (a secret factory may be slow,
    e.g. collecting attestation evidence) and is run again if another update won the race,
    so readers never wait on it. A key dropped from the ring is gone from this store;
    whoever still holds a reference to its secret must drop it too.
    """

    def __init__(self, ring: KeyRing[S] | None = None, *,
                 allocate: IdAllocator = sequential_ids,
                 expire_at_not_after: bool = True) -> None:
        self.allocate = allocate
        self._lock = threading.Lock()
        self._ring: KeyRing[S] = ring if ring is not None else KeyRing(
            (), expire_at_not_after)

    @property
    def ring(self) -> KeyRing[S]:
        with self._lock:
            return self._ring

    def update(self, change: Callable[[KeyRing[S]], KeyRing[S] | None]) -> KeyRing[S] | None:
        while True:
            base = self.ring
            ring = change(base)
            if ring is None:
                return None
            with self._lock:
                if self._ring is base:
                    self._ring = ring
                    return ring

    def rotate(self, now: float, *, grace: float, lifetime: float,
               new_secret: Callable[[NewKey], S],
               kinds: Iterable[str] | None = None) -> KeyRing[S]:
        """:meth:`KeyRing.rotate`; give ``kinds`` for the first rotation of an empty ring."""
        wanted = None if kinds is None else tuple(kinds)
        ring = self.update(lambda r: r.rotate(now, grace=grace, lifetime=lifetime,
                                              new_secret=new_secret, allocate=self.allocate,
                                              kinds=wanted))
        assert ring is not None
        return ring

    def renew_if_due(self, now: float, *, grace: float, lifetime: float,
                     new_secret: Callable[[NewKey], S]) -> KeyRing[S] | None:
        return self.update(lambda r: r.renew_if_due(now, grace=grace, lifetime=lifetime,
                                                    new_secret=new_secret,
                                                    allocate=self.allocate))

    def prune(self, now: float) -> tuple[KeyEntry[S], ...]:
        """Drop the retired keys past their end; returns them (for logs and tests)."""
        dropped: tuple[KeyEntry[S], ...] = ()

        def change(ring: KeyRing[S]) -> KeyRing[S] | None:
            nonlocal dropped
            pruned = ring.prune(now)
            kept = {e.id for e in pruned.entries}
            dropped = tuple(e for e in ring.entries if e.id not in kept)
            return pruned if dropped else None

        self.update(change)
        return dropped

    def accepted(self, now: float) -> tuple[KeyEntry[S], ...]:
        """:meth:`prune`, then the keys accepted at ``now``."""
        self.prune(now)
        return self.ring.accepted(now)
