"""Request outcomes summed into one log line per interval; each request at DEBUG only."""

from __future__ import annotations

import logging

import pytest

from privproc.reqlog import MAX_OUTCOMES, RequestLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_summary_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    requests = RequestLog(logging.getLogger("test.reqlog"), interval=60.0, clock=clock)
    with caplog.at_level(logging.INFO, "test.reqlog"):
        for i in range(99):
            requests.record("ok", float(i + 1))
        requests.record("refused: token already spent", 0.5)
        assert caplog.records == []  # nothing per request at INFO
        clock.now = 60.0
        requests.record("ok", 1.0)
    [line] = [r.getMessage() for r in caplog.records]
    assert line == ("101 requests in 60 s (ok 100, refused: token already spent 1); "
                    "p50 49.0 ms, p99 98.0 ms")
    caplog.clear()
    with caplog.at_level(logging.INFO, "test.reqlog"):
        requests.flush(clock.now)  # nothing since the last summary
    assert caplog.records == []


def test_each_request_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    requests = RequestLog(logging.getLogger("test.reqlog.debug"), clock=Clock())
    with caplog.at_level(logging.DEBUG, "test.reqlog.debug"):
        requests.record("gateway 200", 1.25, "in=10 out=20")
    assert [r.getMessage() for r in caplog.records] == ["gateway 200 ms=1.2 in=10 out=20"]


def test_outcome_labels_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    requests = RequestLog(logging.getLogger("test.reqlog.bound"), clock=clock)
    for i in range(MAX_OUTCOMES + 10):
        requests.record(f"refused: reason {i}", 1.0)
    with caplog.at_level(logging.INFO, "test.reqlog.bound"):
        requests.flush()
    [line] = [r.getMessage() for r in caplog.records]
    assert "other 10" in line and line.count("refused: reason") == MAX_OUTCOMES
