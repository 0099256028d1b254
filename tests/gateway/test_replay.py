from __future__ import annotations

import pytest

from privproc.gateway.replay import ReplayGuard, Verdict, parse_http_date


def test_fresh_then_replayed_then_forgotten_after_two_windows() -> None:
    guard = ReplayGuard(window_seconds=10)
    assert guard.check(b"enc1", 100.0, now=100.0) is Verdict.FRESH
    assert guard.check(b"enc1", 100.0, now=105.0) is Verdict.REPLAYED
    assert guard.check(b"enc2", 100.0, now=105.0) is Verdict.FRESH
    assert len(guard) == 2
    # A replay of enc1 at 126 is refused by its date even though enc1 was forgotten.
    assert guard.check(b"enc1", 100.0, now=126.0) is Verdict.BAD_DATE
    assert len(guard) == 0


def test_dates_outside_the_window_or_missing_are_refused() -> None:
    guard = ReplayGuard(window_seconds=10)
    assert guard.check(b"a", None, now=100.0) is Verdict.BAD_DATE
    assert guard.check(b"b", 89.0, now=100.0) is Verdict.BAD_DATE
    assert guard.check(b"c", 111.0, now=100.0) is Verdict.BAD_DATE
    assert guard.check(b"d", 90.0, now=100.0) is Verdict.FRESH


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="> 0"):
        ReplayGuard(0)


def test_parse_http_date() -> None:
    assert parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT") == 784111777.0
    assert parse_http_date(b"yesterday") is None
    assert parse_http_date(b"\xff") is None
