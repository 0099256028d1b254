"""The node directory: which attested nodes are alive, and forwarding to them.

Nodes register (signed, attested and verified: :mod:`privproc.gateway.registrar`) and
re-register on every heartbeat and rotation; a node silent for ``ttl`` seconds is
dropped. The registry is bounded (entries and bytes) and drops silent nodes on every
write, so registrations cannot pile up. Clients ask, through OHTTP, ``GET /v1/nodes``: a random
subset of the live nodes that is **the same for every caller within a time window** (the
choice is seeded by the window number, never by anything about the caller), since a
directory that answers differently per caller is what a targeting attack needs. Then
``POST /v1/nodes/<node_id>/process`` carries the still-sealed inner request to that node,
and only to a registered one.

Registrations live in memory by default, or in Redis for several gateway replicas.
"""

from __future__ import annotations

import base64
import json
import random
import threading
from dataclasses import dataclass
from typing import Protocol

from privproc.errors import PrivprocError


@dataclass(frozen=True)
class NodeEntry:
    node_id: str
    url: str
    bundle: bytes
    seen: float

    def to_json(self) -> dict[str, str]:
        return {"node_id": self.node_id, "bundle": base64.b64encode(self.bundle).decode()}


class RegistryUnavailable(PrivprocError):
    """The shared registry cannot be reached."""


class RegistryFull(PrivprocError):
    """The registry holds its maximum of nodes or bytes: a new node is refused."""


DEFAULT_MAX_NODES = 1024
DEFAULT_MAX_BYTES = 64 << 20


class NodeRegistry(Protocol):
    def register(self, entry: NodeEntry, ttl: float) -> None: ...

    def live(self, now: float, ttl: float) -> list[NodeEntry]: ...

    def get(self, node_id: str, now: float, ttl: float) -> NodeEntry | None: ...


def _size(entry: NodeEntry) -> int:
    return len(entry.bundle) + len(entry.url) + len(entry.node_id)


class MemoryRegistry:
    def __init__(self, max_nodes: int = DEFAULT_MAX_NODES,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._nodes: dict[str, NodeEntry] = {}
        self._lock = threading.Lock()
        self.max_nodes = max_nodes
        self.max_bytes = max_bytes

    def register(self, entry: NodeEntry, ttl: float) -> None:
        with self._lock:
            for node_id in [n for n, e in self._nodes.items() if entry.seen - e.seen > ttl]:
                del self._nodes[node_id]
            others = [e for n, e in self._nodes.items() if n != entry.node_id]
            if len(others) >= self.max_nodes:
                raise RegistryFull(f"the registry holds its maximum of {self.max_nodes} nodes")
            if sum(map(_size, others)) + _size(entry) > self.max_bytes:
                raise RegistryFull(f"the registry holds its maximum of {self.max_bytes} bytes")
            self._nodes[entry.node_id] = entry

    def live(self, now: float, ttl: float) -> list[NodeEntry]:
        with self._lock:
            for node_id in [n for n, e in self._nodes.items() if now - e.seen > ttl]:
                del self._nodes[node_id]
            return sorted(self._nodes.values(), key=lambda e: e.node_id)

    def get(self, node_id: str, now: float, ttl: float) -> NodeEntry | None:
        with self._lock:
            entry = self._nodes.get(node_id)
        return entry if entry is not None and now - entry.seen <= ttl else None


class RedisRegistry:
    """Entries expire by Redis TTL; the entry count is bounded (bytes per entry are bounded
    by the registration size limit)."""

    def __init__(self, url: str, prefix: str = "privproc:nodes:",
                 max_nodes: int = DEFAULT_MAX_NODES) -> None:
        import redis

        self._redis_error = redis.RedisError
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = prefix
        self.max_nodes = max_nodes

    def _encode(self, entry: NodeEntry) -> bytes:
        return json.dumps({"node_id": entry.node_id, "url": entry.url, "seen": entry.seen,
                           "bundle": base64.b64encode(entry.bundle).decode()}).encode()

    @staticmethod
    def _decode(data: bytes | str) -> NodeEntry:
        doc = json.loads(data)
        return NodeEntry(doc["node_id"], doc["url"], base64.b64decode(doc["bundle"]),
                         float(doc["seen"]))

    def register(self, entry: NodeEntry, ttl: float) -> None:
        key = self._prefix + entry.node_id
        try:
            if not self._client.exists(key):
                count = sum(1 for _ in self._client.scan_iter(match=self._prefix + "*",
                                                              count=1000))
                if count >= self.max_nodes:
                    raise RegistryFull(
                        f"the registry holds its maximum of {self.max_nodes} nodes")
            self._client.set(key, self._encode(entry), ex=max(1, int(ttl)))
        except self._redis_error as exc:
            raise RegistryUnavailable(str(exc)) from None

    def live(self, now: float, ttl: float) -> list[NodeEntry]:
        try:
            keys = sorted(self._client.scan_iter(match=self._prefix + "*"))
            values = self._client.mget(keys) if keys else []
        except self._redis_error as exc:
            raise RegistryUnavailable(str(exc)) from None
        entries = [self._decode(v) for v in values if v is not None]
        return sorted((e for e in entries if now - e.seen <= ttl), key=lambda e: e.node_id)

    def get(self, node_id: str, now: float, ttl: float) -> NodeEntry | None:
        try:
            data = self._client.get(self._prefix + node_id)
        except self._redis_error as exc:
            raise RegistryUnavailable(str(exc)) from None
        if data is None:
            return None
        entry = self._decode(data)
        return entry if now - entry.seen <= ttl else None


def window_subset(nodes: list[NodeEntry], now: float, window: float, size: int
                  ) -> list[NodeEntry]:
    """A subset that depends only on the node set and the time window, not the caller."""
    ordered = sorted(nodes, key=lambda e: e.node_id)
    if len(ordered) <= size:
        return ordered
    rng = random.Random(f"privproc-directory:{int(now // window)}")
    return sorted(rng.sample(ordered, size), key=lambda e: e.node_id)
