"""A node keeps registering with the directory after a failure nobody expected."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privproc.node.registration import register_forever

from ..servers import aiohttp_serving


def test_registration_goes_on_after_an_unexpected_failure() -> None:
    async def run() -> None:
        tried, posted, wake = asyncio.Event(), asyncio.Event(), asyncio.Event()

        class Keys:
            calls = 0

            @property
            def current(self) -> Any:
                Keys.calls += 1
                tried.set()
                if Keys.calls == 1:
                    raise RuntimeError("a bug")
                return SimpleNamespace(bundle=b"evidence bundle")

        async def register(request: web.Request) -> web.Response:
            posted.set()
            return web.json_response({"node_id": "n1"})

        app = web.Application()
        app.router.add_post("/nodes/register", register)
        async with aiohttp_serving(app) as url:
            task = asyncio.create_task(register_forever(
                url, "http://node.test", Keys(), Ed25519PrivateKey.generate(),  # type: ignore[arg-type]
                interval=3600, token="t", wake=wake))
            await asyncio.wait_for(tried.wait(), 10)
            assert not posted.is_set() and not task.done()  # failed, and still running
            wake.set()  # what a key rotation does
            await asyncio.wait_for(posted.wait(), 10)
            task.cancel()

    asyncio.run(run())
