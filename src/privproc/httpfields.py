"""HTTP field values read from parties that are not trusted to send sane ones, and an
HTTP client that follows no redirect and bounds whole exchanges.

``str.isdigit`` is not a check for ``int``: read as latin-1, ``"\\xb2"`` (superscript
two) is a digit to it and a ``ValueError`` to ``int``, and ``int`` refuses more than 4,300
digits. Every delay a service or the client reads (Retry-After from a node or the issuer,
max-age from the gateway) goes through :func:`delay_seconds`.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.request
from typing import Any

from privproc.deadlines import WATCHDOG, Watch

DELAY_MAX = 2**31
"""What a delay too large to represent counts as (RFC 9111 section 1.2.2)."""

_DELAY_DIGITS = len(str(DELAY_MAX))


def delay_seconds(value: str | bytes | None) -> int | None:
    """A delay-seconds value (``1*DIGIT``: Retry-After in RFC 9110 section 10.2.3, max-age
    in RFC 9111 section 5.2.2.1), at most :data:`DELAY_MAX`; None when the field is absent
    or not of that form (an HTTP date, a sign, a space, a non-ASCII digit)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if not (text.isascii() and text.isdigit()):
        return None
    return DELAY_MAX if len(text) > _DELAY_DIGITS else min(int(text), DELAY_MAX)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is then raised as an HTTPError, like any refusal


_opened = threading.local()  # the watch of the connection urllib opened last, per thread


def _watch(sock: socket.socket | None, timeout: float | None) -> None:
    assert sock is not None
    # urllib reads one answer per connection: the timeout bounds all of it
    seconds = timeout if isinstance(timeout, int | float) and timeout > 0 else 60.0
    _opened.watch = WATCHDOG.watch(sock, time.monotonic() + seconds)


class _WatchedHTTP(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self.sock, self.timeout)


class _WatchedHTTPS(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self.sock, self.timeout)


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_WatchedHTTP, req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_WatchedHTTPS, req)


_OPENER = urllib.request.build_opener(_NoRedirects, _WatchedHTTPHandler, _WatchedHTTPSHandler)


class _Answer:
    """urllib's response, whose reads raise TimeoutError once the deadline cut it short
    (a cut answer would otherwise read as a short, or empty, one)."""

    def __init__(self, response: Any, watch: Watch | None, timeout: float) -> None:
        self._response = response
        self._watch = watch
        self._timeout = timeout

    def read(self, amount: int = -1) -> bytes:
        data: bytes = self._response.read(amount)
        if self._watch is not None and self._watch.fired:
            raise TimeoutError(f"no complete answer within {self._timeout:g} s")
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    def __enter__(self) -> _Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._response.close()


EXCHANGE_FAILED = (OSError, http.client.HTTPException)
"""What :func:`urlopen_here` raises when the exchange did not complete (after its
``urllib.error.HTTPError`` for an answer that is a refusal): nothing, or not HTTP, or not
all of it in time, came back (``urllib.error.URLError`` and ``TimeoutError`` are
``OSError``)."""


def urlopen_here(request: str | urllib.request.Request, timeout: float) -> Any:
    """``urllib.request.urlopen`` that follows no redirect and whose ``timeout`` bounds the
    whole exchange, not each read (:mod:`privproc.deadlines`). A party answering 3xx (a
    relay for the log, an issuer) cannot send this client, its address and its
    credentials (urllib keeps the Authorization field) to a host its trust file does not
    name, and one dripping its answer cannot hold it: the 3xx is raised as
    :class:`urllib.error.HTTPError`, a dripped answer as ``TimeoutError`` (one of
    :data:`EXCHANGE_FAILED`)."""
    _opened.watch = None
    response = _OPENER.open(request, timeout=timeout)
    return _Answer(response, _opened.watch, timeout)
