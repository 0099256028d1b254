"""The gateway writes a token's spend while it forwards the request, and answers only once
the spend is durable. Attacks: a replayed token must cost the origin (or a node) no work,
and an answer whose spend did not become durable must never leave the gateway."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from privproc.client.ohttp import open_response, seal_request
from privproc.gateway import keystore as gateway_keystore
from privproc.gateway.app import GatewayConfig, create_app
from privproc.gateway.redeem import RedemptionConfig
from privproc.gateway.spend import SqliteSpendStore
from privproc.issuer import keystore as issuer_keystore
from privproc.wire import bhttp, ohttp
from privproc.wire import privacypass as pp

from ..node.asgi import call, running
from ..servers import aiohttp_serving
from .test_spend_batch import HeldConnection

ISSUER = "issuer.test"
ORIGIN = "origin.test"
ANSWER = b"THE-ORIGIN-ANSWER"


@asynccontextmanager
async def origin() -> AsyncIterator[tuple[str, list[bytes]]]:
    """An origin on a free port that records each request body it is sent."""
    seen: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.Response(body=ANSWER, content_type="text/plain")

    app = web.Application()
    app.router.add_post("/work", handle)
    async with aiohttp_serving(app) as url:
        yield url, seen


def token_for(keydir: Path) -> pp.Token:
    key = issuer_keystore.load(keydir).current(pp.TOKEN_TYPE_BLIND_RSA)
    challenge = pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, ISSUER, b"", [ORIGIN])
    request, state = pp.begin_issuance(key.token_type, key.public, challenge)
    return pp.finalize_token(state, pp.issue(key.private, request))


async def send(app: object, config: ohttp.KeyConfig, token: pp.Token, body: bytes
               ) -> bhttp.Response:
    """A fresh encapsulation (new Date) of ``POST /work`` carrying ``token``."""
    sealed, ctx = seal_request(
        config, "POST", "/work", authority=ORIGIN, content=body, now=time.time(),
        headers=[(b"authorization", pp.format_authorization(token).encode())])
    status, headers, answer = await call(app, sealed, path="/gateway",
                                         content_type=ohttp.MEDIA_TYPE_REQUEST)
    return open_response(ctx, status, headers.get("content-type", ""), answer)


@asynccontextmanager
async def gateway_before_origin(tmp_path: Path, store: SqliteSpendStore
                                ) -> AsyncIterator[tuple[object, ohttp.KeyConfig, pp.Token,
                                                         list[bytes]]]:
    """A gateway (in process) redeeming tokens into ``store`` in front of :func:`origin`:
    (the app, its key configuration, a fresh token, the bodies the origin was sent)."""
    keydir = tmp_path / "issuer"
    keydir.mkdir(mode=0o700)
    issuer_keystore.load_or_create(keydir, int(time.time()))
    async with origin() as (url, seen):
        app = create_app(GatewayConfig(
            state_dir=tmp_path / "gateway", upstream=url,
            redemption=RedemptionConfig(issuer_keys=keydir, issuer_name=ISSUER,
                                        origin_name=ORIGIN, spend_store=store)))
        async with running(app):
            config = gateway_keystore.load(tmp_path / "gateway").current.gateway_key.config
            yield app, config, token_for(keydir), seen


def test_a_replayed_token_costs_the_origin_nothing(tmp_path: Path) -> None:
    store = SqliteSpendStore(tmp_path / "spent.db")

    async def run() -> None:
        async with gateway_before_origin(tmp_path, store) as (app, config, token, seen):
            first = await send(app, config, token, b"first")
            assert (first.status, first.content) == (200, ANSWER)
            for i in range(5):  # new encapsulations, the same token
                again = await send(app, config, token, b"again %d" % i)
                assert again.status == 401
                assert json.loads(again.content)["title"] == "token already spent"
            assert seen == [b"first"]  # forwarded once, never for the replays

    try:
        asyncio.run(run())
    finally:
        store.close()


def test_an_answer_whose_spend_failed_never_leaves(tmp_path: Path) -> None:
    store = SqliteSpendStore(tmp_path / "spent.db")
    conn = HeldConnection(store._conn, fail_commits={1})
    conn.release.set()
    store._conn = conn  # type: ignore[assignment]

    async def run() -> None:
        async with gateway_before_origin(tmp_path, store) as (app, config, token, seen):
            failed = await send(app, config, token, b"work")
            assert seen == [b"work"]  # forwarded while the spend was being written
            assert failed.status == 503 and ANSWER not in failed.content
            assert json.loads(failed.content)["title"] == "token store unavailable"
            # the failed spend left nothing behind: the token is spent once, now
            retried = await send(app, config, token, b"retry")
            assert (retried.status, retried.content) == (200, ANSWER)

    try:
        asyncio.run(run())
    finally:
        store.close()


def test_a_failure_inside_the_gateway_is_a_sealed_500_not_an_outer_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Defence in depth: whatever fails unexpectedly once a request is open (here the
    spend store, with an exception no layer expects) is answered inside the encapsulation,
    so the relay and the client tell it from a broken relay; the log names only the
    exception's type."""
    class BrokenStore(SqliteSpendStore):
        async def reserve_async(self, token_id: bytes, expires_at: int, now: float
                                ) -> asyncio.Future[bool]:
            raise RuntimeError("a bug, with a detail: " + token_id.hex())

    store = BrokenStore(tmp_path / "spent.db")

    async def run() -> None:
        async with gateway_before_origin(tmp_path, store) as (app, config, token, seen):
            answer = await send(app, config, token, b"work")
            assert answer.status == 500 and seen == []
            assert json.loads(answer.content)["title"] == "gateway error"

    try:
        with caplog.at_level("ERROR", logger="privproc.gateway"):
            asyncio.run(run())
    finally:
        store.close()
    assert "request failed inside the gateway (RuntimeError)" in caplog.text
    assert "a bug, with a detail" not in caplog.text
