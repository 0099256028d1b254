"""Publishing a record against a hostile log: every failure is a PublishError."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from privproc.tlog.publish import PublishError, RecordPublisher, _index, publish
from privproc.wire import note
from tests.servers import aiohttp_serving, not_http

SIGNER = note.Ed25519Signer("publisher.example", bytes(range(32)))
NESTED = b"[" * 60000  # under the 64 KiB answer cap; json.loads raises RecursionError


@pytest.mark.parametrize("answer", [NESTED, b'{"index": -1}', b'{"index": true}', b"[]",
                                    b'{"index": 1e999}', b"\xff"])
def test_a_malformed_answer_is_a_publish_error(answer: bytes) -> None:
    with pytest.raises(PublishError):
        _index(answer)


def test_an_answer_that_is_not_http_is_a_publish_error() -> None:
    with not_http() as url, pytest.raises(PublishError, match="cannot reach the log"):
        publish(url, SIGNER, b"record\n", timeout=5)


def test_a_log_answering_deeply_nested_json_fails_the_add_not_the_publisher() -> None:
    """A gateway's or issuer's key upkeep task publishes with publish_all: a hostile log's
    answer must come back as a failure to retry, not end the task."""
    async def add(request: web.Request) -> web.Response:
        return web.Response(body=NESTED)

    async def run() -> list[PublishError]:
        app = web.Application()
        app.router.add_post("/add", add)
        async with aiohttp_serving(app) as url, aiohttp.ClientSession() as session:
            return await RecordPublisher(url, SIGNER).publish_all(session, [b"record\n"])

    failures = asyncio.run(run())
    assert len(failures) == 1 and "malformed" in str(failures[0])
