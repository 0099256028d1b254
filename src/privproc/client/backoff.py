"""Waiting out a party that is restarting (relay, gateway, issuer): jittered waits that
double up to a cap, offered only while they end within a window."""

from __future__ import annotations

import math
import secrets

_random = secrets.SystemRandom()

FIRST_WAIT = 0.25
LONGEST_WAIT = 2.0


class Backoff:
    """Waits of ``first``, then twice as long each time up to ``cap``, each drawn from
    half to all of that; none that would end at or after ``now + window``."""

    def __init__(self, now: float, window: float, *, first: float = FIRST_WAIT,
                 cap: float = LONGEST_WAIT) -> None:
        self._until = now + window
        self._next = first
        self._cap = cap

    def next_wait(self, now: float, left: float = math.inf) -> float | None:
        """The next wait (at most ``left``, what remains of the caller's budget), or None
        when it would not end within the window or there is no time left."""
        wait = min(self._next * _random.uniform(0.5, 1.0), left)
        if wait <= 0 or now + wait >= self._until:
            return None
        self._next = min(self._next * 2, self._cap)
        return wait
