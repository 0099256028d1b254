"""The node's short-lived HPKE keys, each bound into attestation evidence.

A key is made in memory at start and at every rotation, never written anywhere. Its
evidence bundle binds the key configuration and its expiry into REPORT_DATA. After a
rotation the previous key still opens requests for a short grace period (requests
already sealed to it), then it is destroyed: its private key object is dropped and a
request sealed to it is refused, which gives forward security. Times are passed in.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from privproc.attest.evidence import PlatformProvider, collect_bundle, encode_bundle
from privproc.keyring import KeyRing, MemoryKeyStore, NewKey, cyclic_ids
from privproc.wire import hpke, ohttp


@dataclass
class NodeKey:
    key: ohttp.GatewayKey
    created: int
    expiry: int  # advertised and bound into the evidence: the key is destroyed by then
    bundle: bytes

    @property
    def key_id(self) -> int:
        return self.key.config.key_id


KIND = "node-hpke"


class NodeKeys:
    """The current key and, during its grace, the previous one: a key ring held in memory
    (:class:`privproc.keyring.MemoryKeyStore`), never written anywhere."""

    def __init__(
        self,
        provider: PlatformProvider,
        *,
        lifetime: int = 3600,
        grace: int = 60,
        rand: Callable[[int], bytes] = os.urandom,
        registration_key: bytes | None = None,
    ) -> None:
        if lifetime <= 0 or grace < 0:
            raise ValueError(f"lifetime must be > 0 and grace >= 0, got {lifetime}, {grace}")
        self.provider = provider
        self.registration_key = registration_key  # bound into every key's evidence
        self.lifetime = lifetime
        self.grace = grace
        self._rand = rand
        self._store: MemoryKeyStore[NodeKey] = MemoryKeyStore(allocate=cyclic_ids(256, 0))
        self.destroyed: list[int] = []  # key ids destroyed so far (for logs and tests)

    @property
    def current(self) -> NodeKey:
        entry = self._store.ring.find_current(KIND)
        if entry is None:
            raise RuntimeError("no key: call rotate() first (or every key was destroyed)")
        return entry.secret

    def held(self) -> list[int]:
        """The ids of the keys still held (the current one and any in grace)."""
        return [e.id for e in self._store.ring.entries]

    def _make(self, spec: NewKey) -> NodeKey:
        pair = hpke.KeyPair.generate(self._rand, hpke.DEFAULT_KEM)  # hybrid, post-quantum
        key = ohttp.GatewayKey.create(spec.id, pair)
        expiry = int(spec.not_after)
        bundle = encode_bundle(collect_bundle(self.provider, key.config.encode(), expiry,
                                              registration_key=self.registration_key))
        return NodeKey(key, int(spec.not_before), expiry, bundle)

    def rotate(self, now: int) -> NodeKey:
        """Make a new current key with fresh evidence; the old one enters its grace.

        The new key's expiry (bound into its evidence) is ``now + lifetime + grace``: it
        rotates after ``lifetime`` and is destroyed ``grace`` later."""
        ring = self._store.rotate(now, grace=self.grace, lifetime=self.lifetime + self.grace,
                                  new_secret=self._make, kinds=(KIND,))
        for entry in ring.entries:
            if entry.retire_at is not None:
                entry.secret.expiry = min(entry.secret.expiry, int(entry.end_of_life))
        return ring.current(KIND).secret

    def _destroy(self, gone: tuple[NodeKey, ...]) -> list[int]:
        ids = [k.key_id for k in gone]
        self.destroyed.extend(ids)
        for k in gone:
            if hasattr(k, "key"):
                del k.key  # drop the only reference to the private key
        return ids

    def destroy_expired(self, now: int) -> list[int]:
        return self._destroy(tuple(e.secret for e in self._store.prune(now)))

    def destroy_all(self) -> list[int]:
        """Destroy every key, the current one too (failing closed); returns their ids."""
        gone: tuple[NodeKey, ...] = ()

        def empty(ring: KeyRing[NodeKey]) -> KeyRing[NodeKey]:
            nonlocal gone
            gone = tuple(e.secret for e in ring.entries)
            return KeyRing((), ring.expire_at_not_after)

        self._store.update(empty)
        return self._destroy(gone)

    def accepted(self, now: int) -> ohttp.GatewayKeys:
        """The keys that open requests at ``now`` (past their expiry, none does)."""
        self.destroy_expired(now)
        return ohttp.GatewayKeys(e.secret.key for e in self._store.ring.accepted(now))

    def fresh_bundle(self, nonce: bytes) -> bytes:
        """Evidence for the current key with a client's nonce in REPORT_DATA."""
        key = self.current
        return encode_bundle(
            collect_bundle(self.provider, key.key.config.encode(), key.expiry, nonce,
                           self.registration_key)
        )
