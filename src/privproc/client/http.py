"""Kept-alive HTTP/1.1 connections from the synchronous client to the relay.

``urllib`` opens a TCP (and TLS) connection per request and tears it down after: on
loopback that was about a sixth of the client's CPU per private request, and on a real
network it is a round trip (two with TLS) before every request. :class:`ConnectionPool`
keeps a few connections to one origin open for the threads of one client.

- An idle connection is closed after ``max_idle`` seconds, before the relay would close
  it (a privproc service keeps an idle connection 5 s), so a request is rarely sent on a
  connection the server is closing. If that happens anyway (a kept-alive connection
  closed by the server before any answer), the request goes once more on a new
  connection: a server closing an idle connection read nothing of it. (A server that
  crashed after reading it looks the same; a second copy reaching the gateway is
  refused by its replay guard, never opened twice.)
- An answer larger than ``max_answer`` bytes is refused (:class:`AnswerTooLarge`).
- ``timeout`` bounds the whole exchange, not each read: a socket timeout alone would let
  a server that drips its answer a byte at a time hold the caller for ever. One watchdog
  thread (for every pool) shuts down the socket of an exchange still running at its
  deadline, and the exchange raises ``TimeoutError``.
- Errors are those of the standard library (``OSError``, ``TimeoutError``,
  ``http.client.HTTPException``); callers name the party.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from privproc.deadlines import WATCHDOG

from .errors import TransportError

MAX_IDLE = 4.0
MAX_ANSWER = 8 << 20


class AnswerTooLarge(TransportError):
    """The server's answer is larger than the pool accepts."""


class ConnectionPool:
    """Connections to the origin of ``url`` (``http`` or ``https``), shared by threads."""

    def __init__(self, url: str, *, max_idle: float = MAX_IDLE, max_kept: int = 8,
                 max_answer: int = MAX_ANSWER,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http or https URL, got {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.max_idle = max_idle
        self.max_kept = max_kept
        self.max_answer = max_answer
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._idle: list[tuple[float, http.client.HTTPConnection]] = []
        self._context: ssl.SSLContext | None = None
        self.opened = 0  # connections opened so far

    def request(self, method: str, url: str, body: bytes | None = None, *,
                headers: Mapping[str, str] | None = None, timeout: float
                ) -> tuple[int, Mapping[str, str], bytes]:
        """``(status, header fields with lower-case names, body)`` of one exchange; any
        status is an answer, not an error."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        deadline = time.monotonic() + timeout
        while True:
            conn, reused = self._take(timeout)
            if conn.sock is None:
                conn.connect()  # (within the timeout) so that the socket can be watched
            assert conn.sock is not None
            watch = WATCHDOG.watch(conn.sock, deadline)
            try:
                try:
                    conn.request(method, target, body=body, headers=dict(headers or {}))
                    response = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError,
                        BrokenPipeError):
                    conn.close()
                    if reused and not watch.fired:  # closed by the server as it sat idle
                        WATCHDOG.cancel(watch)
                        continue
                    raise
                except BaseException:
                    conn.close()
                    raise
                try:
                    answer = response.read(self.max_answer + 1)
                except BaseException:
                    conn.close()
                    raise
            except (OSError, http.client.HTTPException):
                WATCHDOG.cancel(watch)
                if watch.fired:
                    raise self._late(timeout) from None
                raise
            WATCHDOG.cancel(watch)
            if watch.fired:  # (shut down as the last bytes came: not to be kept)
                conn.close()
                raise self._late(timeout)
            if len(answer) > self.max_answer:
                conn.close()
                raise AnswerTooLarge(f"answer over {self.max_answer} bytes from "
                                     f"{self.host}")
            fields = {name.lower(): value for name, value in response.getheaders()}
            if response.will_close or not response.isclosed():
                conn.close()
            else:
                self._give_back(conn)
            return response.status, fields, answer

    def _late(self, timeout: float) -> TimeoutError:
        return TimeoutError(f"no complete answer from {self.host} within {timeout:g} s")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, conn in idle:
            conn.close()

    def _take(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        now = self._monotonic()
        stale: list[http.client.HTTPConnection] = []
        conn = None
        with self._lock:
            while self._idle:
                since, candidate = self._idle.pop()
                if now - since < self.max_idle:
                    conn = candidate
                    break
                stale.append(candidate)
        for old in stale:
            old.close()
        if conn is not None:
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            conn.timeout = timeout
            return conn, True
        self.opened += 1
        if self.scheme == "https":
            if self._context is None:
                self._context = ssl.create_default_context()
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=self._context), False
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.max_kept:
                self._idle.append((self._monotonic(), conn))
                return
        conn.close()


__all__ = ["MAX_ANSWER", "MAX_IDLE", "AnswerTooLarge", "ConnectionPool"]
