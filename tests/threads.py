"""Running one call on many threads at once, for the tests of single-flight and
exactly-once behaviour."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def on_threads(call: Callable[[], T], count: int) -> list[T]:
    """``call`` on ``count`` threads started together; their results, in start order (an
    exception in any is raised here)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(call) for _ in range(count)]
        return [f.result() for f in futures]
