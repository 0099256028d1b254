"""The SDK's attempt threads: reused when idle, never making an attempt wait for a busy
one (a hedge must start while the first attempt hangs), ended when idle long enough."""

from __future__ import annotations

import threading
from collections.abc import Callable

from privproc.client.sdk import _Threads


def idle_count(threads: _Threads) -> int:
    with threads._lock:
        return threads._idle


def until(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` holds within 5 s (a thread counts itself idle just after its
    task returns)."""
    for _ in range(5000):
        if condition():
            return True
        threading.Event().wait(0.001)
    return False


def test_a_task_never_waits_for_a_busy_thread() -> None:
    threads = _Threads()
    release = threading.Event()
    second_ran = threading.Event()
    threads.submit(lambda: release.wait(10))  # hangs, like an attempt to a stopped node
    threads.submit(second_ran.set)
    assert second_ran.wait(5)
    release.set()


def test_an_idle_thread_is_reused() -> None:
    threads = _Threads()
    seen: list[int] = []
    for _ in range(20):
        threads.submit(lambda: seen.append(threading.get_ident()))
        assert until(lambda: idle_count(threads) == 1)
    assert len(seen) == 20 and len(set(seen)) == 1


def test_an_idle_thread_ends() -> None:
    threads = _Threads(idle_exit=0.01)
    ran: list[int] = []
    threads.submit(lambda: ran.append(threading.get_ident()))
    assert until(lambda: bool(ran))
    assert until(lambda: all(t.ident != ran[0] for t in threading.enumerate()))
    assert idle_count(threads) == 0  # it ended, and counts itself no more
    again = threading.Event()
    threads.submit(again.set)  # a new thread starts for the next task
    assert again.wait(5)
