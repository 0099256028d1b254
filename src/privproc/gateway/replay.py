"""Anti-replay for encapsulated requests (RFC 9458 section 6.5).

A request is accepted once: the gateway remembers the client's encapsulated key share
(``enc``, fresh for every request) for as long as the request's ``Date`` could still be
accepted, and refuses requests whose ``Date`` is outside the window. Memory is bounded by
the request rate times the window. Times are passed in; nothing here reads a clock.
"""

from __future__ import annotations

import enum
from collections import deque
from email.utils import parsedate_to_datetime

from privproc.errors import PrivprocError


class Verdict(enum.Enum):
    FRESH = "fresh"
    REPLAYED = "replayed"
    BAD_DATE = "bad-date"


def parse_http_date(value: bytes) -> float | None:
    """An HTTP ``Date`` value as seconds since the epoch, or None if malformed."""
    try:
        return parsedate_to_datetime(value.decode("ascii")).timestamp()
    except (ValueError, TypeError, UnicodeDecodeError):
        return None


class ReplayGuard:
    """Remembers recent request identifiers; refuses repeats and stale dates."""

    def __init__(self, window_seconds: float = 60.0) -> None:
        if window_seconds <= 0:
            raise ValueError(f"replay window must be > 0 seconds, got {window_seconds}")
        self.window = window_seconds
        self._seen: set[bytes] = set()
        self._expiry: deque[tuple[float, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            self._seen.discard(self._expiry.popleft()[1])

    def check(self, request_id: bytes, request_date: float | None, now: float) -> Verdict:
        """Judge one request and remember it if fresh."""
        self._expire(now)
        if request_date is None or abs(now - request_date) > self.window:
            return Verdict.BAD_DATE
        if request_id in self._seen:
            return Verdict.REPLAYED
        self._seen.add(request_id)
        # A request dated d is acceptable until d + window; remember it that long, and
        # never less than the window from now so that clock skew cannot shorten it.
        self._expiry.append((now + 2 * self.window, request_id))
        return Verdict.FRESH


class ReplayStoreUnavailable(PrivprocError):
    """The shared replay store cannot be reached: the request is refused, not admitted."""


class RedisReplayGuard:
    """The same judgement, shared by every gateway replica through Redis.

    ``SET <prefix><sha256(enc)> 1 NX PX <twice the window>``: the first replica to see a request
    records it, every later sighting (on any replica) is a replay. Only a hash of the
    encapsulated key share is stored, for twice the window.
    """

    def __init__(self, url: str, window_seconds: float = 60.0,
                 prefix: str = "privproc:replay:") -> None:
        import redis

        if window_seconds <= 0:
            raise ValueError(f"replay window must be > 0 seconds, got {window_seconds}")
        self.window = window_seconds
        self._redis_error = redis.RedisError
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = prefix.encode()

    def check(self, request_id: bytes, request_date: float | None, now: float) -> Verdict:
        import hashlib

        if request_date is None or abs(now - request_date) > self.window:
            return Verdict.BAD_DATE
        key = self._prefix + hashlib.sha256(request_id).digest()
        try:
            first = self._client.set(key, b"1", nx=True, px=int(2000 * self.window))
        except self._redis_error as exc:
            raise ReplayStoreUnavailable(f"redis replay store: {exc}") from None
        return Verdict.FRESH if first else Verdict.REPLAYED

    def close(self) -> None:
        self._client.close()
