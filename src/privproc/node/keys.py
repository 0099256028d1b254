"""The node's short-lived HPKE keys, each bound into attestation evidence.

A key is made in memory at start and at every rotation, never written anywhere. Its
evidence bundle binds the key configuration and its expiry into REPORT_DATA. After a
rotation the previous key still opens requests for a short grace period (requests
already sealed to it), then it is destroyed: its private key object is dropped and a
request sealed to it is refused, which gives forward security. Times are passed in.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from privproc.attest.evidence import PlatformProvider, collect_bundle, encode_bundle
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


class NodeKeys:
    """The current key and, during its grace, the previous one."""

    def __init__(
        self,
        provider: PlatformProvider,
        *,
        lifetime: int = 3600,
        grace: int = 60,
        rand: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if lifetime <= 0 or grace < 0:
            raise ValueError(f"lifetime must be > 0 and grace >= 0, got {lifetime}, {grace}")
        self.provider = provider
        self.lifetime = lifetime
        self.grace = grace
        self._rand = rand
        self._lock = threading.Lock()
        self._keys: list[NodeKey] = []
        self.destroyed: list[int] = []  # key ids destroyed so far (for logs and tests)

    @property
    def current(self) -> NodeKey:
        with self._lock:
            if not self._keys:
                raise RuntimeError("no key yet: call rotate() first")
            return self._keys[-1]

    def rotate(self, now: int) -> NodeKey:
        """Make a new current key with fresh evidence; the old one enters its grace."""
        used = {k.key_id for k in self._keys}
        start = self._keys[-1].key_id + 1 if self._keys else 0
        key_id = next(i % 256 for i in range(start, start + 256) if i % 256 not in used)
        pair = hpke.KeyPair.generate(self._rand)
        key = ohttp.GatewayKey.create(key_id, pair)
        expiry = now + self.lifetime + self.grace
        bundle = encode_bundle(collect_bundle(self.provider, key.config.encode(), expiry))
        node_key = NodeKey(key, now, expiry, bundle)
        with self._lock:
            for old in self._keys:
                old.expiry = min(old.expiry, now + self.grace)
            self._keys.append(node_key)
        return node_key

    def destroy_expired(self, now: int) -> list[int]:
        with self._lock:
            gone = [k for k in self._keys[:-1] if k.expiry <= now]
            self._keys = [k for k in self._keys if k not in gone]
        ids = [k.key_id for k in gone]
        self.destroyed.extend(ids)
        for k in gone:
            del k.key  # drop the only reference to the private key
        return ids

    def accepted(self, now: int) -> ohttp.GatewayKeys:
        self.destroy_expired(now)
        with self._lock:
            return ohttp.GatewayKeys(k.key for k in self._keys)

    def fresh_bundle(self, nonce: bytes) -> bytes:
        """Evidence for the current key with a client's nonce in REPORT_DATA."""
        key = self.current
        return encode_bundle(
            collect_bundle(self.provider, key.key.config.encode(), key.expiry, nonce)
        )
