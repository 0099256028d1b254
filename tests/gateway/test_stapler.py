"""The gateway's stapler: what it fetches from the log is bounded."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from privproc.gateway.transparency import Stapler, StapleUnavailable, TransparencyConfig
from privproc.tlog.client import MAX_FETCH

from ..servers import endless


def test_a_log_that_answers_without_end_staples_nothing() -> None:
    """Attack: the log (a party of its own) streams a proof bundle without end."""
    async def fetch(url: str) -> None:
        stapler = Stapler(TransparencyConfig(log_url=url, owner="gateway.test"))
        async with aiohttp.ClientSession() as session:
            with pytest.raises(StapleUnavailable, match=rf"over {MAX_FETCH} bytes"):
                await stapler.bundle(session, {bytes(32)}, 0.0)

    with endless() as url:
        asyncio.run(fetch(url))
