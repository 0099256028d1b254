from __future__ import annotations

import uuid

import pytest

from privproc.gateway.directory import (
    MemoryRegistry,
    NodeEntry,
    RedisRegistry,
    RegistryUnavailable,
    window_subset,
)
from tests.issuer.test_issuer_units import REDIS, redis_or_skip


def entries(n: int, seen: float = 100.0) -> list[NodeEntry]:
    return [NodeEntry(f"node-{i:02d}", f"http://n{i}", bytes([i]), seen) for i in range(n)]


def test_subset_depends_only_on_the_window() -> None:
    nodes = entries(20)
    a = window_subset(nodes, 1000.0, 60.0, 5)
    assert a == window_subset(list(reversed(nodes)), 1019.0, 60.0, 5)  # any caller, same set
    assert len(a) == 5 and len({e.node_id for e in a}) == 5
    later = [window_subset(nodes, 1000.0 + 60 * k, 60.0, 5) for k in range(1, 6)]
    assert any(s != a for s in later)  # it moves between windows
    assert window_subset(nodes[:3], 0.0, 60.0, 5) == nodes[:3]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_registries_drop_silent_nodes(kind: str) -> None:
    if kind == "redis":
        redis_or_skip()
        registry: MemoryRegistry | RedisRegistry = RedisRegistry(
            REDIS, prefix=f"test:{uuid.uuid4().hex}:")
    else:
        registry = MemoryRegistry()
    fresh, stale = NodeEntry("a", "http://a", b"A", 100.0), NodeEntry("b", "http://b", b"B", 50.0)
    registry.register(fresh, ttl=30)
    registry.register(stale, ttl=30)
    assert [e.node_id for e in registry.live(110.0, ttl=30)] == ["a"]
    assert registry.get("a", 110.0, ttl=30) == fresh
    assert registry.get("b", 110.0, ttl=30) is None
    assert registry.get("zzz", 110.0, ttl=30) is None


def test_unreachable_redis_registry() -> None:
    with pytest.raises(RegistryUnavailable):
        RedisRegistry("redis://127.0.0.1:1/0").live(0.0, 30)
