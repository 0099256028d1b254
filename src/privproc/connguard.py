"""Read deadlines for every service's connections (slowloris): uvicorn's protocol with a
timer per connection.

uvicorn (0.54) bounds only the idle time between kept-alive requests
(``timeout_keep_alive``); a connection that sends part of its request headers, or stops in
the middle of a body, is held open for ever. :func:`guarded_protocol` makes a subclass of
uvicorn's httptools protocol that closes such a connection:

- headers: a request's headers must be complete within ``header_timeout`` seconds of the
  connection's start (first request) or of the request's first byte (later requests on a
  kept-alive connection). A connection that says nothing at all is closed the same way.
  When no answer is being written on the connection, it gets ``408 Request Timeout``
  first.
- body: once the headers are in, each read of the body must bring data within
  ``body_timeout`` seconds of the last (an inactivity bound: the body size is capped by
  each service).

- size: a request's head (request line and header fields) may be at most ``max_head``
  bytes; past that the connection gets ``414 URI Too Long`` (still in the request line)
  or ``431 Request Header Fields Too Large`` and is closed. The parser would otherwise
  keep an endless head in memory (and uvicorn re-joins the target on every read).

Time while the server itself has paused reading (its buffer is full, or pipelined requests
wait their turn) does not count against the client.

One timer handle per connection, moved by a deadline field rather than re-created on each
read. Nothing is logged but the fact of a close (content-free).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger("privproc.connections")

_IDLE = 0
_HEADERS = 1
_BODY = 2


def _closing_answer(status: str, text: str) -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(text)}\r\nconnection: close\r\n\r\n{text}").encode()


_TIMEOUT_408 = _closing_answer("408 Request Timeout", "request too slow")
_TARGET_414 = _closing_answer("414 URI Too Long", "request target too long")
_HEAD_431 = _closing_answer("431 Request Header Fields Too Large",
                            "request header fields too large")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read deadlines (see the module)."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_head: int = 16384

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._phase = _IDLE
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._began = False
        self._refused = False

    # -- the timer ---------------------------------------------------------------------

    def _arm(self, phase: int, timeout: float) -> None:
        self._phase = phase
        self._deadline = self.loop.time() + timeout
        if self._timer is not None and self._timer.when() > self._deadline:
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._expired)
        # A timer that fires before a later deadline re-arms itself (see _expired).

    def _disarm(self) -> None:
        # The timer stays: on a kept-alive connection the next request re-arms it for a
        # later deadline without a new timer (one timer per connection and timeout,
        # not two timer calls per request); fired while idle, it ends itself.
        self._phase = _IDLE

    def _expired(self) -> None:
        self._timer = None
        if self._phase == _IDLE or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:
            # The server stopped reading (its buffer is full, or pipelined requests wait):
            # not the client's delay.
            self._deadline = now + (self.body_timeout if self._phase == _BODY
                                    else self.header_timeout)
        if now < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._expired)
            return
        if self._phase == _HEADERS:
            log.info("connection closed: request headers incomplete after %.1fs",
                     self.header_timeout)
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(_TIMEOUT_408)
        else:
            log.info("connection closed: request body stalled for %.1fs", self.body_timeout)
        self._phase = _IDLE
        self.transport.close()

    # -- the head's size ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered and closing: nothing more is parsed
        started_in_head = self._phase == _HEADERS
        self._began = False
        super().data_received(data)
        # A read that began and ended inside one request's head was all head. One in which
        # a request began is not counted (it may hold earlier pipelined requests, bodies
        # and all): the bound is exceeded by at most one read.
        if (started_in_head and not self._began and self._phase == _HEADERS
                and not self._refused):
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head:
                self._refuse(_HEAD_431 if self.headers else _TARGET_414)

    def _refuse(self, answer: bytes) -> None:
        log.info("connection closed: request head over %d bytes", self.max_head)
        self._refused = True
        self._phase = _IDLE
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(answer)
        self.transport.close()

    # -- uvicorn's callbacks -----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(_HEADERS, self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = _IDLE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._began = True
        if self._phase != _HEADERS:  # a later request on a kept-alive connection
            self._arm(_HEADERS, self.header_timeout)

    def on_headers_complete(self) -> None:
        self._arm(_BODY, self.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._deadline = self.loop.time() + self.body_timeout
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def guarded_protocol(header_timeout: float, body_timeout: float, max_head: int = 16384
                     ) -> type[GuardedHttpToolsProtocol]:
    """A protocol class (uvicorn's ``http=``) with these deadlines, in seconds, and this
    bound on a request's head, in bytes."""
    if not header_timeout > 0 or not body_timeout > 0:
        raise ValueError("read timeouts must be > 0 seconds")
    if max_head < 1:
        raise ValueError(f"the request head bound must be at least 1 byte, got {max_head}")
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"header_timeout": float(header_timeout),
                 "body_timeout": float(body_timeout), "max_head": int(max_head)})
