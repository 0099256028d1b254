"""A service's background duty (renewing keys, logging their records) that never stops
silently: a step that fails in a way nobody expected is logged and run again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

RETRY_SECONDS = 2.0


async def keep_running(what: str, step: Callable[[], Awaitable[float]], log: logging.Logger,
                       *, retry: float = RETRY_SECONDS,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Run ``step`` for ever, waiting the seconds it returns between runs. An exception it
    raises is logged (its type only: its text may carry what should not be logged) and the
    step runs again ``retry`` seconds later; before, such a task ended unnoticed and with
    it the service's key renewal."""
    while True:
        try:
            wait = await step()
        except Exception as exc:  # noqa: BLE001 - the duty must go on
            log.error("%s failed (%s); trying again in %g s", what, type(exc).__name__, retry)
            wait = retry
        await sleep(wait)
