"""Moving a key file along in time, for services that run as separate processes.

A service in another process reads the real clock, so a test cannot hand it a fake one.
What the passing of time does to its keys is visible in its key file, though: a rotated-out
key stops being accepted at its ``retire_at``. :func:`end_grace` writes that moment as
now, under the store's lock, as a grace period running out would; the service re-reads
the file when it changes. No test waits for a grace period in real time.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from privproc.keyring import FileKeyStore, KeyRing


def end_grace(store: FileKeyStore[Any], now: float | None = None) -> list[int]:
    """Every rotated-out key retires at ``now`` (default: a second ago); the ids retired."""
    at = time.time() - 1 if now is None else now
    ended: list[int] = []

    def change(ring: KeyRing[Any]) -> KeyRing[Any]:
        ended.extend(e.id for e in ring.entries if e.retire_at is not None and e.retire_at > at)
        return replace(ring, entries=tuple(replace(e, retire_at=at) if e.id in ended else e
                                           for e in ring.entries))

    store.update(change)
    assert ended, "no key was in its grace period"
    return ended
