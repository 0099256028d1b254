"""Privacy Pass end to end on loopback: issuer, gateways redeeming inside OHTTP, Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from privproc.client.ohttp import OHTTPClient, open_response, seal_request
from privproc.client.tokens import QuotaExceededError, TokenWallet
from privproc.issuer import keystore as issuer_keystore
from privproc.keyring import FileKeyStore
from privproc.up.supervisor import Supervisor
from privproc.wire import blindrsa, ohttp
from privproc.wire import privacypass as pp

from ..keyfiles import end_grace
from ..servers import ANY_PORT, start_service, start_services
from .test_issuer_units import REDIS, redis_or_skip

pytestmark = pytest.mark.slow
ISSUER_NAME = "issuer.test"
ORIGIN_NAME = "gateway.test"


def challenge(token_type: int = pp.TOKEN_TYPE_BLIND_RSA) -> pp.TokenChallenge:
    return pp.TokenChallenge(token_type, ISSUER_NAME, b"", [ORIGIN_NAME])


class Stack:
    """An issuer, gateways redeeming its tokens in front of an echo origin, and a relay;
    every service on a port bound to 0."""

    def __init__(self, tmp: Path, sup: Supervisor, *, gateways: int = 1,
                 redis: str | None = None, quota: int = 1000, relay: bool = True) -> None:
        self.tmp, self.sup = tmp, sup
        first = {"issuer": ["issuer", "serve", "--listen", ANY_PORT, "--state",
                            str(tmp / "issuer"), "--static-account", "tok-alice=alice",
                            "--static-account", "tok-bob=bob", "--quota", str(quota)]}
        if gateways:
            first["origin"] = ["echo", "serve", "--listen", ANY_PORT]
        started = start_services(sup, first)  # the issuer writes the keys gateways read
        self.issuer = started["issuer"].url
        self.gateways: list[str] = []
        if not gateways:
            return
        specs = {}
        for i in range(gateways):
            args = ["gateway", "serve", "--listen", ANY_PORT, "--upstream",
                    started["origin"].url, "--state", str(tmp / f"gw{i}"), "--issuer-keys",
                    str(tmp / "issuer"), "--issuer-name", ISSUER_NAME, "--origin-name",
                    ORIGIN_NAME, "--log-level", "debug"]
            specs[f"gateway{i}"] = [*args, "--redis", redis] if redis else args
        self.gateways = [s.url for s in start_services(sup, specs).values()]
        if relay:
            self.relay = start_service(sup, "relay", [
                "relay", "serve", "--listen", ANY_PORT, "--gateway",
                self.gateways[0] + "/gateway"]).url

    def wallet(self, account: str = "tok-alice", **kw: object) -> TokenWallet:
        return TokenWallet(self.issuer, account, self.wallet_path(), **kw)  # type: ignore[arg-type]

    def wallet_path(self) -> Path:
        return self.tmp / f"wallet-{uuid.uuid4().hex}.json"

    def direct(self, gateway: int = 0) -> OHTTPClient:
        url = self.gateways[gateway]
        return OHTTPClient(url + "/gateway", keys_url=url + "/ohttp-keys", authority="a.test")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One stack for the tests that leave its keys as they found them."""
    tmp = tmp_path_factory.mktemp("tokens")
    with Supervisor(tmp / "logs") as sup:
        yield Stack(tmp, sup)


def send_with_token(client: OHTTPClient, token: pp.Token | None) -> int:
    headers = [] if token is None else [(b"authorization",
                                         pp.format_authorization(token).encode())]
    return client.request("GET", "/private", headers=headers).status


def test_client_answers_the_challenge_and_is_admitted(stack: Stack) -> None:
    path = stack.wallet_path()
    wallet = TokenWallet(stack.issuer, "tok-alice", path, batch=3)
    client = OHTTPClient(stack.relay + "/", authority="a.test", tokens=wallet)
    first = client.request("POST", "/v1/echo", content=b"hello")  # 401 inside, then a token
    assert first.status == 200
    seen = json.loads(first.content)
    assert "authorization" not in {name for name, _ in seen["headers"]}
    assert wallet.unspent(challenge()) == 2
    assert client.request("GET", "/again").status == 200
    assert wallet.unspent(challenge()) == 1
    cache = json.loads(path.read_text())
    assert sum(len(v) for v in cache["tokens"].values()) == 0  # leased out of the file
    wallet.close()  # the unused one goes back
    cache = json.loads(path.read_text())
    assert sum(len(v) for v in cache["tokens"].values()) == 1
    assert path.stat().st_mode & 0o777 == 0o600


def test_type_0x0001_tokens_work_too(stack: Stack) -> None:
    wallet = stack.wallet(token_type=pp.TOKEN_TYPE_VOPRF, batch=1)
    client = OHTTPClient(stack.relay + "/", authority="a.test", tokens=wallet,
                         challenge=challenge(pp.TOKEN_TYPE_VOPRF))
    assert client.request("GET", "/x").status == 200


def test_missing_malformed_foreign_and_replayed_tokens_get_401(stack: Stack) -> None:
    client = stack.direct()
    missing = client.request("GET", "/x")
    assert missing.status == 401
    value = next(f.value for f in missing.headers if f.name == b"www-authenticate").decode()
    offered = pp.parse_www_authenticate(value)
    assert {c.challenge.token_type for c in offered} == {1, 2}
    assert all(c.challenge == challenge(c.challenge.token_type) for c in offered)
    bad = client.request("GET", "/x", headers=[(b"authorization", b"PrivateToken token=AAAA")])
    assert bad.status == 401
    wallet = stack.wallet(batch=2)
    token = wallet.take(challenge())
    wrong_origin = pp.TokenChallenge(2, ISSUER_NAME, b"", ["elsewhere.test"])
    assert send_with_token(client, wallet.take(wrong_origin)) == 401
    assert send_with_token(client, token) == 200
    assert send_with_token(client, token) == 401  # double spend
    assert "token already spent" in stack.sup.services["gateway0"].log_text()


def test_quota_holds_under_concurrency_and_answers_429(tmp_path: Path) -> None:
    with Supervisor(tmp_path / "logs") as sup:
        stack = Stack(tmp_path, sup, quota=5, gateways=0)

        async def ask(session: aiohttp.ClientSession, i: int) -> int:
            wallet = stack.wallet(batch=1)
            directory = await asyncio.to_thread(wallet.directory)
            tk = directory.select(2, int(time.time()))
            assert tk is not None
            req, _ = pp.begin_issuance(2, blindrsa.load_public_key_spki(tk.token_key),
                                       challenge())
            async with session.post(stack.issuer + "/token-request", data=req.encode(),
                                    headers={"Authorization": "Bearer tok-alice",
                                             "Content-Type": pp.MEDIA_TYPE_TOKEN_REQUEST}) as r:
                if r.status == 429:
                    assert int(r.headers["retry-after"]) > 0
                return r.status

        async def run() -> list[int]:
            async with aiohttp.ClientSession() as s:
                return await asyncio.gather(*(ask(s, i) for i in range(12)))

        statuses = Counter(asyncio.run(run()))
        assert statuses == {200: 5, 429: 7}
        with pytest.raises(QuotaExceededError):
            stack.wallet().fetch(challenge(), 1)
        assert stack.wallet("tok-bob", batch=1).fetch(challenge(), 1) == 1  # bob unaffected


def test_two_gateways_sharing_redis_accept_each_token_exactly_once(tmp_path: Path) -> None:
    redis_or_skip()
    with Supervisor(tmp_path / "logs") as sup:
        stack = Stack(tmp_path, sup, gateways=2, redis=REDIS, relay=False)
        wallet = stack.wallet(batch=16)
        tokens = [wallet.take(challenge()) for _ in range(16)]
        configs = [stack.direct(g).key_config() for g in (0, 1)]

        async def client(session: aiohttp.ClientSession, c: int) -> list[tuple[int, int]]:
            out = []
            for t, token in enumerate(tokens):
                if (t + c) % 4:  # each token goes to 8 of the 32 clients
                    continue
                g = (t + c) % 2
                sealed, ctx = seal_request(
                    configs[g], "GET", f"/t/{t}", authority="a.test", now=time.time(),
                    headers=[(b"authorization", pp.format_authorization(token).encode())])
                async with session.post(stack.gateways[g] + "/gateway", data=sealed, headers={
                        "Content-Type": ohttp.MEDIA_TYPE_REQUEST}) as resp:
                    body = await resp.read()
                    response = open_response(ctx, resp.status,
                                             resp.headers["content-type"], body)
                out.append((t, response.status))
            return out

        async def run() -> list[tuple[int, int]]:
            async with aiohttp.ClientSession() as s:
                results = await asyncio.gather(*(client(s, c) for c in range(32)))
            return [r for rs in results for r in rs]

        results = asyncio.run(run())
        accepted = Counter(t for t, status in results if status == 200)
        assert all(status in (200, 401) for _, status in results)
        assert accepted == {t: 1 for t in range(16)}
        assert len(results) == 16 * 8


def test_unreachable_spend_store_fails_closed_with_503(tmp_path: Path) -> None:
    with Supervisor(tmp_path / "logs") as sup:
        stack = Stack(tmp_path, sup, redis="redis://127.0.0.1:1/0", relay=False)
        token = stack.wallet(batch=1).take(challenge())
        assert send_with_token(stack.direct(), token) == 503


def test_rotation_overlap_then_refusal(tmp_path: Path) -> None:
    with Supervisor(tmp_path / "logs") as sup:
        stack = Stack(tmp_path, sup, relay=False)
        wallet = stack.wallet(batch=2)
        old_tokens = [wallet.take(challenge()), wallet.take(challenge())]
        out = subprocess.run([sys.executable, "-m", "privproc.cli", "issuer", "rotate-keys",
                              "--state", str(stack.tmp / "issuer"), "--grace", "3600"],
                             capture_output=True, text=True, check=True)
        assert "current" in out.stdout
        client = stack.direct()
        assert send_with_token(client, old_tokens[0]) == 200  # during the overlap
        new_token = stack.wallet(batch=1).take(challenge())
        assert new_token.token_key_id != old_tokens[0].token_key_id
        # The overlap ends (as an hour passing would end it): the issuer and the gateway
        # see it in the key files they share.
        assert len(end_grace(issuer_keys(stack.tmp / "issuer"))) == 2  # one per token type
        assert send_with_token(client, old_tokens[1]) == 401  # after it
        assert send_with_token(client, new_token) == 200
        directory = json.loads(urllib.request.urlopen(
            stack.issuer + pp.WELL_KNOWN_ISSUER_DIRECTORY, timeout=5).read())
        assert len(directory["token-keys"]) == 2  # only the new keys are listed now


def issuer_keys(state: Path) -> FileKeyStore[Any]:
    return issuer_keystore._store(state)


def test_issuer_cannot_link_tokens_to_redemptions(stack: Stack) -> None:
    wallet = stack.wallet(batch=3)
    tokens = [wallet.take(challenge()) for _ in range(3)]
    for token in tokens:
        assert send_with_token(stack.direct(), token) == 200
    issuer_files = b"".join(p.read_bytes() for p in (stack.tmp / "issuer").rglob("*")
                            if p.is_file())
    issuer_files += stack.sup.services["issuer"].log_text().encode()
    for token in tokens:
        for secret in (token.nonce, token.authenticator, token.encode()):
            assert secret not in issuer_files
            assert secret.hex().encode() not in issuer_files
            assert pp.b64url_encode(secret).encode() not in issuer_files


def test_issuer_refuses_bad_accounts_and_malformed_requests(stack: Stack) -> None:
    def post(body: bytes, auth: str | None = "Bearer tok-alice",
             ctype: str = pp.MEDIA_TYPE_TOKEN_REQUEST) -> int:
        headers = {"Content-Type": ctype}
        if auth:
            headers["Authorization"] = auth
        req = urllib.request.Request(stack.issuer + "/token-request", data=body,
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert post(b"x", auth=None) == 401
    assert post(b"x", auth="Bearer nobody") == 401
    assert post(b"x", ctype="text/plain") == 415
    for body in (b"", b"\x00\x02", b"\x00\x09" + bytes(257), b"\x00\x02" + bytes(300),
                 bytes(range(256))):
        assert post(body) == 400
