"""Request outcomes summed into one log line per interval.

A log line per request cost the relay about a tenth of its CPU per request, and a flood
of refusals would have been a flood of lines. :class:`RequestLog` counts each request's
outcome (a fixed, content-free label such as ``ok`` or ``refused: token already
spent``) and its time, writes each at DEBUG, and at INFO once per ``interval`` seconds
a summary: how many requests, how many per outcome, p50 and p99 milliseconds. The
summary is written by the first request after the interval ends (and by
:meth:`RequestLog.flush` at shutdown): an idle service writes nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

MAX_OUTCOMES = 32  # distinct labels per interval; more are counted as "other"
MAX_SAMPLES = 8192  # times kept per interval for the percentiles (the latest ones)


class RequestLog:
    def __init__(self, log: logging.Logger, *, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self.interval = interval
        self._clock = clock
        self._start = clock()
        self._counts: Counter[str] = Counter()
        self._times: list[float] = []
        self._seen = 0

    def record(self, outcome: str, ms: float, detail: str = "") -> None:
        """One request's ``outcome`` label and time (``detail``: DEBUG line only)."""
        if self._log.isEnabledFor(logging.DEBUG):
            self._log.debug("%s ms=%.1f %s", outcome, ms, detail)
        if outcome not in self._counts and len(self._counts) >= MAX_OUTCOMES:
            outcome = "other"
        self._counts[outcome] += 1
        self._seen += 1
        if len(self._times) < MAX_SAMPLES:
            self._times.append(ms)
        else:  # the percentiles are those of the latest MAX_SAMPLES requests
            self._times[self._seen % MAX_SAMPLES] = ms
        now = self._clock()
        if now - self._start >= self.interval:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Write the summary of the requests since the last one (nothing if none)."""
        now = self._clock() if now is None else now
        if self._seen:
            times = sorted(self._times)
            p50 = times[len(times) // 2]
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            outcomes = ", ".join(f"{label} {n}" for label, n in self._counts.most_common())
            self._log.info("%d requests in %.0f s (%s); p50 %.1f ms, p99 %.1f ms",
                           self._seen, now - self._start, outcomes, p50, p99)
        self._start = now
        self._counts.clear()
        self._times.clear()
        self._seen = 0


__all__ = ["RequestLog"]
