"""The key ring (pure), its file store, its memory store and the file cache."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from privproc import keyring
from privproc.keyring import (
    FileCache,
    FileKeyStore,
    KeyEntry,
    KeyIdsExhausted,
    KeyRing,
    KeyRingError,
    MemoryKeyStore,
    NewKey,
    SecretCodec,
    cyclic_ids,
    sequential_ids,
)

ROOT = Path(__file__).resolve().parents[1]


class Secrets:
    """A secret factory that records what it was told; secrets are unique bytes."""

    def __init__(self) -> None:
        self.made: list[NewKey] = []

    def __call__(self, spec: NewKey) -> bytes:
        self.made.append(spec)
        return b"secret-%d-%s-%d" % (len(self.made), spec.kind.encode(), spec.id)


def ids(ring: KeyRing[Any]) -> list[int]:
    return [e.id for e in ring.entries]


def first_ring(kinds: tuple[str, ...] = ("a",), *, lifetime: float = 100,
               now: float = 0, **kwargs: Any) -> KeyRing[bytes]:
    empty: KeyRing[bytes] = KeyRing(**kwargs)
    return empty.rotate(now, grace=0, lifetime=lifetime, new_secret=Secrets(), kinds=kinds)


# --------------------------------------------------------------------------- the ring


def test_first_keys_and_their_validity() -> None:
    make = Secrets()
    empty: KeyRing[bytes] = KeyRing()
    ring = empty.rotate(10, grace=0, lifetime=100, new_secret=make, kinds=["a", "b"])
    assert ring.kinds == ("a", "b")
    assert [(e.id, e.kind, e.not_before, e.not_after, e.retire_at) for e in ring.entries] == [
        (1, "a", 10, 110, None), (2, "b", 10, 110, None)]
    assert make.made == [NewKey("a", 1, 10, 110), NewKey("b", 2, 10, 110)]
    assert ring.current("a").secret == b"secret-1-a-1"
    with pytest.raises(KeyRingError, match="no current key of kind 'c'"):
        ring.current("c")
    assert ring.get(2) is ring.current("b") and ring.get(3) is None
    assert "secret-1" not in repr(ring)  # secrets stay out of reprs


def test_rotation_retires_the_current_key_after_the_grace() -> None:
    ring = first_ring().rotate(40, grace=20, lifetime=100, new_secret=Secrets())
    old, new = ring.entries
    assert (old.id, old.retire_at, old.end_of_life) == (1, 60, 60)
    assert (new.id, new.not_before, new.not_after, new.is_current) == (2, 40, 140, True)
    assert ring.current("a") is new
    assert ids(KeyRing(ring.accepted(59))) == [1, 2]
    assert ids(KeyRing(ring.accepted(60))) == [2]


def test_not_after_ends_acceptance_unless_the_ring_says_otherwise() -> None:
    ring = first_ring().rotate(90, grace=50, lifetime=100, new_secret=Secrets())
    assert ring.entries[0].end_of_life == 100  # not_after 100 < retire_at 140
    assert ids(KeyRing(ring.accepted(99))) == [1, 2]
    assert ids(KeyRing(ring.accepted(100))) == [2]
    assert first_ring().accepted(100) == ()  # a current key past its not_after
    lenient = first_ring(expire_at_not_after=False)
    assert ids(KeyRing(lenient.accepted(1e9))) == [1]  # until retired
    lenient = lenient.rotate(90, grace=50, lifetime=100, new_secret=Secrets())
    assert ids(KeyRing(lenient.accepted(139))) == [1, 2]
    assert ids(KeyRing(lenient.accepted(140))) == [2]


def test_rotation_drops_keys_past_their_end() -> None:
    make = Secrets()
    ring = first_ring()
    ring = ring.rotate(10, grace=5, lifetime=100, new_secret=make)
    ring = ring.rotate(20, grace=5, lifetime=100, new_secret=make)
    assert ids(ring) == [2, 3]
    assert all(e.secret != b"secret-1-a-1" for e in ring.entries)
    # a current key past its not_after is dropped when it is replaced, not retired
    ring = ring.rotate(500, grace=5, lifetime=100, new_secret=make)
    assert [(e.id, e.retire_at) for e in ring.entries] == [(4, None)]


def test_prune_drops_only_retired_keys_past_their_end() -> None:
    ring = first_ring().rotate(10, grace=5, lifetime=100, new_secret=Secrets())
    assert ids(ring.prune(14)) == [1, 2]
    assert ids(ring.prune(15)) == [2]
    assert ids(ring.prune(10_000)) == [2]  # the current key stays until replaced


def test_rotating_some_kinds_only() -> None:
    make = Secrets()
    ring = first_ring(("a", "b")).rotate(10, grace=5, lifetime=100, new_secret=make,
                                         kinds=["b"])
    assert [(e.id, e.kind, e.retire_at) for e in ring.entries] == [
        (1, "a", None), (2, "b", 15), (3, "b", None)]
    ring = ring.rotate(20, grace=5, lifetime=100, new_secret=make)  # every kind
    assert [(e.id, e.kind, e.retire_at) for e in ring.entries] == [
        (1, "a", 25), (3, "b", 25), (4, "a", None), (5, "b", None)]
    ring = ring.rotate(30, grace=5, lifetime=100, new_secret=make, kinds=["c"])
    assert ring.kinds == ("a", "b", "c") and ring.current("c").id == 6


def test_renewal_when_a_quarter_of_the_lifetime_is_left() -> None:
    make = Secrets()
    ring = first_ring(("a", "b"))
    assert not ring.due(75, 100)
    assert ring.renew_if_due(75, grace=10, lifetime=100, new_secret=make) is None
    assert make.made == []
    assert ring.due(75.5, 100)
    renewed = ring.renew_if_due(76, grace=10, lifetime=100, new_secret=make)
    assert renewed is not None
    assert [(e.kind, e.retire_at, e.not_after) for e in renewed.entries] == [
        ("a", 86, 100), ("b", 86, 100), ("a", None, 176), ("b", None, 176)]
    assert renewed.renew_if_due(77, grace=10, lifetime=100, new_secret=make) is None
    # one kind due renews them all
    partial = first_ring(("a", "b")).rotate(50, grace=1, lifetime=100, new_secret=make,
                                            kinds=["b"])
    assert partial.due(76, 100)


def test_bad_rotations_are_refused() -> None:
    ring = first_ring()
    with pytest.raises(KeyRingError, match=">= 0"):
        ring.rotate(1, grace=-1, lifetime=100, new_secret=Secrets())
    with pytest.raises(KeyRingError, match="> 0"):
        ring.rotate(1, grace=0, lifetime=0, new_secret=Secrets())
    with pytest.raises(KeyRingError, match="nothing to rotate"):
        KeyRing[bytes]().rotate(1, grace=0, lifetime=1, new_secret=Secrets())
    with pytest.raises(KeyRingError, match="not free"):
        ring.rotate(1, grace=0, lifetime=1, new_secret=Secrets(), allocate=lambda used, p: 1)


def test_a_ring_keeps_its_invariants() -> None:
    a = KeyEntry(1, "a", b"x", 0, 10)
    with pytest.raises(KeyRingError, match="duplicate key identifiers"):
        KeyRing((a, KeyEntry(1, "b", b"y", 0, 10)))
    with pytest.raises(KeyRingError, match="2 current keys of kind 'a'"):
        KeyRing((a, KeyEntry(2, "a", b"y", 0, 10)))
    KeyRing((a, KeyEntry(2, "a", b"y", 0, 10, retire_at=5)))


# --------------------------------------------------------------------------- id allocation


def test_sequential_ids_never_reuse_a_kept_id() -> None:
    assert sequential_ids(frozenset(), None) == 1
    assert sequential_ids(frozenset({3, 9}), 3) == 10
    assert sequential_ids(frozenset(), 41) == 42


def test_cyclic_ids_wrap_and_skip_ids_in_use() -> None:
    allocate = cyclic_ids(256, first=1)
    assert allocate(frozenset(), None) == 1
    assert allocate(frozenset({1}), 1) == 2
    assert allocate(frozenset({255}), 255) == 0
    assert allocate(frozenset({255, 0, 1}), 255) == 2
    with pytest.raises(ValueError):
        cyclic_ids(4, first=4)


def test_one_byte_ids_stay_unique_over_many_rotations() -> None:
    make = Secrets()
    ring: KeyRing[bytes] = KeyRing()
    ring = ring.rotate(0, grace=0, lifetime=1e9, new_secret=make, kinds=["a"],
                       allocate=cyclic_ids(256))
    for i in range(1, 600):
        ring = ring.rotate(i, grace=2.5, lifetime=1e9, new_secret=make,
                           allocate=cyclic_ids(256))
        assert all(0 <= e.id <= 255 for e in ring.entries)
        assert len(ring.entries) == min(i + 1, 4)
    assert ids(ring) == [596 % 256, 597 % 256, 598 % 256, 599 % 256]


def test_id_exhaustion() -> None:
    make = Secrets()
    allocate = cyclic_ids(4)
    ring: KeyRing[bytes] = KeyRing()
    ring = ring.rotate(0, grace=0, lifetime=1e9, new_secret=make, kinds=["a"],
                       allocate=allocate)
    for i in range(3):
        ring = ring.rotate(i, grace=100, lifetime=1e9, new_secret=make, allocate=allocate)
    assert sorted(ids(ring)) == [0, 1, 2, 3]
    with pytest.raises(KeyIdsExhausted, match="all 4 key identifiers are in use"):
        ring.rotate(50, grace=100, lifetime=1e9, new_secret=make, allocate=allocate)
    # once a grace has ended, its id is free again
    ring = ring.rotate(100, grace=100, lifetime=1e9, new_secret=make, allocate=allocate)
    assert ids(ring) == [1, 2, 3, 0]


# --------------------------------------------------------------------------- file store


def decode_secret(kind: str, text: str) -> bytes:
    return bytes.fromhex(text)


CODEC: SecretCodec[bytes] = SecretCodec("test-bytes", bytes.hex, decode_secret)


def read_v1(doc: Mapping[str, Any]) -> KeyRing[bytes]:
    return KeyRing(tuple(KeyEntry(int(k["n"]), "a", bytes.fromhex(k["s"]), 0, float(k["end"]),
                                  k["retired"]) for k in doc["keys"]))


def make_store(tmp_path: Path, **kwargs: Any) -> FileKeyStore[bytes]:
    kwargs.setdefault("kinds", ("a",))
    return FileKeyStore(tmp_path / "state" / "keys.json", CODEC, **kwargs)


def test_file_store_creates_the_first_keys_with_mode_0600(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        seen.append(os.stat(src).st_mode & 0o777)  # the temporary file, before the rename
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    old_umask = os.umask(0)  # the mode must not depend on the umask
    try:
        store = make_store(tmp_path, kinds=("a", "b"))
        ring = store.load_or_create(1000, lifetime=100, new_secret=Secrets())
    finally:
        os.umask(old_umask)
    assert seen == [0o600]
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.path.parent.stat().st_mode & 0o777 == 0o700
    assert store.lock_path.stat().st_mode & 0o777 == 0o600
    doc = json.loads(store.path.read_text())
    assert doc == {"format": "privproc-key-ring", "version": 2, "secret_type": "test-bytes",
                   "keys": [{"id": e.id, "kind": e.kind, "not_before": 1000,
                             "not_after": 1100, "retire_at": None,
                             "secret": e.secret.hex()} for e in ring.entries]}
    again = store.load_or_create(2000, lifetime=100, new_secret=Secrets())
    assert again == ring == store.read()
    assert [p.name for p in store.path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_file_store_drops_retired_secrets_from_the_file(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    first = store.load_or_create(0, lifetime=100, new_secret=Secrets()).current("a")
    store.rotate(10, grace=5, lifetime=100, new_secret=Secrets())
    assert first.secret.hex() in store.path.read_text()  # in its grace
    ring = store.rotate(20, grace=5, lifetime=100, new_secret=Secrets())
    assert ids(ring) == [2, 3]
    assert first.secret.hex() not in store.path.read_text()
    assert store.renew_if_due(30, grace=5, lifetime=100, new_secret=Secrets()) is None
    renewed = store.renew_if_due(96, grace=5, lifetime=100, new_secret=Secrets())
    assert renewed is not None and ids(renewed) == [3, 4] and renewed == store.read()


def test_file_store_refuses_files_others_can_read(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.load_or_create(0, lifetime=100, new_secret=Secrets())
    for mode in (0o644, 0o640, 0o604, 0o660):
        store.path.chmod(mode)
        with pytest.raises(KeyRingError, match=f"readable by others \\(mode {mode:o}\\)"):
            store.read()
        with pytest.raises(KeyRingError, match="readable by others"):
            store.rotate(1, grace=0, lifetime=100, new_secret=Secrets())
    store.path.chmod(0o400)
    assert ids(store.read()) == [1]


def test_file_store_errors(tmp_path: Path) -> None:
    store = make_store(tmp_path, missing_hint="start the thing once")
    with pytest.raises(KeyRingError, match="does not exist: start the thing once"):
        store.read()
    with pytest.raises(KeyRingError, match="does not exist: start the thing once"):
        store.rotate(0, grace=0, lifetime=1, new_secret=Secrets())
    store.load_or_create(0, lifetime=100, new_secret=Secrets())
    good = json.loads(store.path.read_text())

    def check(doc: object, match: str) -> None:
        store.path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        with pytest.raises(KeyRingError, match=match) as info:
            store.read()
        assert good["keys"][0]["secret"] not in str(info.value)

    check("not json", "malformed key file")
    check([], "malformed key file")
    check({**good, "version": 9}, "unsupported format version 9, expected 2")
    check({**good, "version": 1}, "unsupported format version 1")  # no legacy reader
    check({**good, "format": "other"}, "not a privproc-key-ring file")
    check({**good, "secret_type": "other"}, "holds keys of type 'other'")
    check({**good, "keys": []}, "no current key of kind 'a'")
    check({**good, "keys": [{**good["keys"][0], "secret": "zz"}]}, "malformed key file")
    check({**good, "keys": [{**good["keys"][0], "id": -1}]}, "not a non-negative integer")
    check({**good, "keys": [{**good["keys"][0], "not_after": "soon"}]}, "not a number")
    check({**good, "keys": [good["keys"][0], good["keys"][0]]}, "duplicate key identifiers")
    del good["keys"][0]["retire_at"]
    check(good, r"malformed key file \(KeyError\)")


def test_file_store_migrates_an_older_format(tmp_path: Path) -> None:
    derived: list[KeyRing[bytes]] = []
    store = make_store(tmp_path, legacy={1: read_v1}, derived=derived.append)
    store.path.parent.mkdir(mode=0o700)
    v1 = {"version": 1, "keys": [{"n": 4, "s": "0a0b", "end": 50, "retired": 20},
                                 {"n": 5, "s": "0c0d", "end": 60, "retired": None}]}
    store.path.write_text(json.dumps(v1))
    store.path.chmod(0o600)
    ring = store.read()  # read, not rewritten
    assert [(e.id, e.secret, e.retire_at) for e in ring.entries] == [
        (4, b"\x0a\x0b", 20), (5, b"\x0c\x0d", None)]
    assert json.loads(store.path.read_text()) == v1 and derived == []
    assert store.load_or_create(10, lifetime=100, new_secret=Secrets()) == ring
    doc = json.loads(store.path.read_text())
    assert doc["version"] == 2 and [k["id"] for k in doc["keys"]] == [4, 5]
    assert derived == [ring]
    assert store.read() == ring
    assert store.load_or_create(11, lifetime=100, new_secret=Secrets()) == ring
    assert derived == [ring, ring]  # derived files are kept in step at every start
    store.path.write_text(json.dumps({"version": 1, "keys": [{"n": 1}]}))
    with pytest.raises(KeyRingError, match="malformed"):
        store.read()


def test_the_lock_is_held_across_read_modify_write(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.load_or_create(0, lifetime=100, new_secret=Secrets())
    inside = threading.Event()
    release = threading.Event()
    probes: list[bool] = []

    def lock_is_free() -> bool:
        fd = os.open(store.lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True

    def slow_secret(spec: NewKey) -> bytes:
        probes.append(lock_is_free())
        inside.set()
        assert release.wait(10)
        return b"slow"

    first = threading.Thread(
        target=store.rotate, args=(1,),
        kwargs={"grace": 100, "lifetime": 100, "new_secret": slow_secret})
    first.start()
    assert inside.wait(10)
    assert probes == [False]  # held while the new secret is being made
    second_done = threading.Event()

    def second() -> None:
        store.rotate(2, grace=100, lifetime=100, new_secret=lambda spec: b"second")
        second_done.set()

    other = threading.Thread(target=second)
    other.start()
    assert not second_done.is_set()
    release.set()
    first.join(10)
    other.join(10)
    ring = store.read()
    assert [(e.id, e.secret) for e in ring.entries][1:] == [(2, b"slow"), (3, b"second")]
    assert lock_is_free()


def test_concurrent_rotations_from_threads_lose_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.load_or_create(0, lifetime=1e9, new_secret=Secrets())

    def rotate_many() -> None:
        for i in range(15):
            store.rotate(i, grace=1e6, lifetime=1e9, new_secret=Secrets())

    threads = [threading.Thread(target=rotate_many) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ring = store.read()
    assert ids(ring) == list(range(1, 32))


ROTATE_SCRIPT = """
import sys
from pathlib import Path
from privproc.keyring import FileKeyStore, SecretCodec
codec = SecretCodec("test-bytes", bytes.hex, lambda kind, text: bytes.fromhex(text))
store = FileKeyStore(Path(sys.argv[1]), codec, kinds=("a",))
for i in range(int(sys.argv[2])):
    store.rotate(i, grace=1e6, lifetime=1e9, new_secret=lambda spec: spec.id.to_bytes(4, "big"))
"""


def test_concurrent_rotations_from_processes_lose_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.load_or_create(0, lifetime=1e9, new_secret=Secrets())
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    procs = [subprocess.Popen([sys.executable, "-c", ROTATE_SCRIPT, str(store.path), "20"],
                              env=env) for _ in range(2)]
    assert [p.wait(60) for p in procs] == [0, 0]
    assert ids(store.read()) == list(range(1, 42))


# --------------------------------------------------------------------------- file cache


def test_file_cache_reloads_only_when_the_file_changes(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.load_or_create(0, lifetime=100, new_secret=Secrets())
    loads: list[int] = []

    def load() -> KeyRing[bytes]:
        loads.append(1)
        return store.read()

    cache = FileCache(store.path, load)
    assert len(loads) == 1
    assert ids(cache.get()) == [1] and ids(cache.get()) == [1]
    assert len(loads) == 1
    store.rotate(10, grace=5, lifetime=100, new_secret=Secrets())  # another process's CLI
    assert ids(cache.get()) == [1, 2] and len(loads) == 2
    assert ids(cache.get()) == [1, 2] and len(loads) == 2
    assert ids(store.cache().get()) == [1, 2]
    store.path.unlink()
    with pytest.raises(KeyRingError, match="does not exist"):
        cache.get()


# --------------------------------------------------------------------------- memory store


def test_memory_store_rotates_prunes_and_accepts() -> None:
    store: MemoryKeyStore[bytes] = MemoryKeyStore(allocate=cyclic_ids(256))
    assert store.ring.kinds == ()
    store.rotate(0, grace=60, lifetime=3600, new_secret=Secrets(), kinds=["hpke"])
    store.rotate(100, grace=60, lifetime=3600, new_secret=Secrets())
    assert [(e.id, e.retire_at) for e in store.ring.entries] == [(0, 160), (1, None)]
    assert [e.id for e in store.accepted(159)] == [0, 1]
    assert store.prune(159) == ()
    dropped = store.prune(160)
    assert [e.id for e in dropped] == [0]
    assert [e.id for e in store.accepted(10_000)] == []  # the current key is past its end
    assert [e.id for e in store.ring.entries] == [1]  # but kept until replaced
    assert store.renew_if_due(100, grace=60, lifetime=3600, new_secret=Secrets()) is None
    renewed = store.renew_if_due(3000, grace=60, lifetime=3600, new_secret=Secrets())
    assert renewed is not None and ids(renewed) == [1, 2]


def test_memory_store_updates_are_not_lost_in_a_race() -> None:
    store: MemoryKeyStore[bytes] = MemoryKeyStore()
    store.rotate(0, grace=100, lifetime=1000, new_secret=Secrets(), kinds=["a"])
    calls: list[int] = []

    def racing_secret(spec: NewKey) -> bytes:
        calls.append(spec.id)
        if len(calls) == 1:  # another thread rotates while this secret is being made
            store.rotate(1, grace=100, lifetime=1000, new_secret=lambda s: b"other")
        return b"mine"

    store.rotate(2, grace=100, lifetime=1000, new_secret=racing_secret)
    assert calls == [2, 3]  # made again on the winner's ring
    assert [(e.id, e.secret) for e in store.ring.entries][1:] == [(2, b"other"), (3, b"mine")]


def test_module_exports() -> None:
    assert set(keyring.__all__) <= set(dir(keyring))


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    before = threading.active_count()
    yield
    assert threading.active_count() == before
