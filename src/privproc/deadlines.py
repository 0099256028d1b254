"""Deadlines for whole HTTP exchanges on blocking sockets.

A socket timeout bounds each read, not the whole answer: a server that drips its answer a
byte at a time holds the caller for ever. :data:`WATCHDOG`, one thread for the process,
shuts down the socket of each watched exchange still running at its deadline, so that the
exchange fails (the caller sees ``OSError`` or ``http.client.HTTPException``, and
:attr:`Watch.fired`).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time


class Watch:
    __slots__ = ("done", "fired", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.done = False
        self.fired = False


class Watchdog:
    """Shuts down the socket of each watched exchange still running at its deadline."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # (also in a forked child: it has no watchdog thread, and the lock may have been
        # held at the fork)
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> Watch:
        watch = Watch(sock)
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-deadlines",
                                                daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._cond.notify()
        return watch

    def cancel(self, watch: Watch) -> None:
        """The exchange is over: its socket is never shut down after this returns."""
        with self._cond:
            watch.done = True

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, watch = heapq.heappop(self._heap)
                watch.fired = watch.done = True
                with contextlib.suppress(OSError):
                    # (the TCP socket's own shutdown: a TLS socket's would drop its state)
                    socket.socket.shutdown(watch.sock, socket.SHUT_RDWR)


WATCHDOG = Watchdog()
os.register_at_fork(after_in_child=WATCHDOG._reset)
