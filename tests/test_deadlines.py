"""The watchdog ends exchanges at their deadline, in a forked child too."""

from __future__ import annotations

import os
import socket
import time

from privproc.deadlines import WATCHDOG


def _fires_within(seconds: float) -> bool:
    left, right = socket.socketpair()
    try:
        watch = WATCHDOG.watch(left, time.monotonic() + 0.1)
        left.settimeout(seconds)
        try:
            data = left.recv(1)  # nothing is sent: only the watchdog ends this wait
        except OSError:
            data = b""
        return watch.fired and data == b""
    finally:
        left.close()
        right.close()


def test_a_watch_fires_at_its_deadline() -> None:
    assert _fires_within(5)


def test_a_watch_fires_in_a_forked_child() -> None:
    """After fork the child has no watchdog thread: it gets one of its own."""
    assert _fires_within(5)  # the parent's thread is running now
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 if the watch fired
        os._exit(0 if _fires_within(3) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
