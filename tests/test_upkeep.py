"""A background duty goes on after a failure nobody expected."""

from __future__ import annotations

import asyncio
import logging

import pytest

from privproc.upkeep import keep_running


def test_a_step_that_fails_is_logged_by_type_and_run_again(
        caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[float | Exception] = [RuntimeError("secret detail"), 30.0,
                                         KeyError("x"), 5.0]
    waits: list[float] = []

    async def step() -> float:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if not outcomes:
            raise asyncio.CancelledError  # the service stops its task

    with caplog.at_level(logging.ERROR), pytest.raises(asyncio.CancelledError):
        asyncio.run(keep_running("key upkeep", step, logging.getLogger("t"), retry=2.0,
                                 sleep=sleep))
    assert waits == [2.0, 30.0, 2.0, 5.0]
    assert "key upkeep failed (RuntimeError); trying again in 2 s" in caplog.text
    assert "key upkeep failed (KeyError)" in caplog.text
    assert "secret detail" not in caplog.text
