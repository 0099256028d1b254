from __future__ import annotations

import asyncio
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privproc.client.ohttp import seal_request
from privproc.gateway.core import GatewayCore, Opened, OuterAnswer
from privproc.gateway.replay import (
    ReplayGuard,
    ReplayStoreUnavailable,
    SqliteReplayGuard,
    Verdict,
    parse_http_date,
)
from privproc.wire import hpke, ohttp

NOW = 1_800_000_000.0


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
    assert parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT") == 784111777.0  # obsolete
    for impossible in (b"Mon, 31 Feb 2026 10:00:00 GMT", b"Mon, 02 Feb 2026 24:00:00 GMT",
                       b"Mon, 02 Feb 2026 10:00:60 GMT", b"Mon, 00 Feb 2026 10:00:00 GMT"):
        assert parse_http_date(impossible) is None


@given(st.integers(min_value=0, max_value=253402300799))
def test_the_fast_date_path_agrees_with_the_standard_library(seconds: int) -> None:
    value = formatdate(seconds, usegmt=True)
    assert parse_http_date(value.encode()) == parsedate_to_datetime(value).timestamp()


@given(st.binary(max_size=40) | st.text(alphabet="0123456789 :,ADFGJMNOSTWabceghilnoprtuvy",
                                        max_size=40).map(str.encode))
def test_any_date_value_parses_or_is_refused(value: bytes) -> None:
    parsed = parse_http_date(value)
    assert parsed is None or isinstance(parsed, float)


def test_sqlite_guard_judges_as_the_memory_one_and_prunes(tmp_path: Path) -> None:
    guard = SqliteReplayGuard(tmp_path / "replay.db", window_seconds=10, prune_every=2)
    assert guard.check(b"enc1", 100.0, now=100.0) is Verdict.FRESH
    assert guard.check(b"enc1", 100.0, now=105.0) is Verdict.REPLAYED
    assert guard.check(b"enc2", 100.0, now=105.0) is Verdict.FRESH
    assert guard.check(b"x", None, now=105.0) is Verdict.BAD_DATE
    assert len(guard) == 2
    assert guard.check(b"enc1", 100.0, now=126.0) is Verdict.BAD_DATE
    assert guard.check(b"enc3", 126.0, now=126.0) is Verdict.FRESH  # prunes enc1, enc2
    assert len(guard) == 1
    guard.close()


def test_sqlite_guard_stores_no_request_bytes(tmp_path: Path) -> None:
    guard = SqliteReplayGuard(tmp_path / "replay.db")
    guard.check(b"the-encapsulated-key-share", 100.0, now=100.0)
    guard.close()
    assert b"the-encapsulated-key-share" not in (tmp_path / "replay.db").read_bytes() + (
        (tmp_path / "replay.db-wal").read_bytes() if (tmp_path / "replay.db-wal").exists()
        else b"")


def test_a_delivered_request_is_refused_after_the_gateway_restarts(tmp_path: Path) -> None:
    key = ohttp.GatewayKey.create(1, hpke.KeyPair.generate())

    def gateway() -> tuple[GatewayCore, SqliteReplayGuard]:
        guard = SqliteReplayGuard(tmp_path / "replay.db", 60)
        return GatewayCore(keys=lambda: ohttp.GatewayKeys([key]), replay=guard,
                           directory=True), guard

    body, _ = seal_request(key.config, "GET", "/v1/nodes", authority="gw", now=NOW)
    first, guard = gateway()
    opened = first.open(ohttp.MEDIA_TYPE_REQUEST, body, NOW)
    assert isinstance(opened, Opened)
    assert asyncio.run(first.admit(opened, NOW)) is None  # delivered
    guard.close()  # the gateway stops (or is killed: every record is already written)
    second, guard = gateway()
    again = second.open(ohttp.MEDIA_TYPE_REQUEST, body, NOW + 5)
    assert isinstance(again, Opened)
    answer = asyncio.run(second.admit(again, NOW + 5))
    assert isinstance(answer, OuterAnswer) and answer.status == 400
    assert answer.log == "replayed request"
    guard.close()


def test_an_unusable_replay_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayStoreUnavailable, match="replay database"):
        SqliteReplayGuard(tmp_path / "missing" / "replay.db")
