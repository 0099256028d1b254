"""Batched issuance: the issuer's batch endpoint (format, limits, quota per token, the
directory's offer) and the wallet that uses it when offered, falls back to one request
per token otherwise, and refills single-flight. The wallet talks to the issuer's ASGI
app in-process: no sockets, no real waits."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from privproc.client.tokens import IssuerRefusedError, QuotaExceededError, TokenWallet
from privproc.issuer.accounts import StaticAccountVerifier
from privproc.issuer.app import IssuerConfig, create_app
from privproc.issuer.keystore import load
from privproc.issuer.quota import SqliteQuota
from privproc.wire import privacypass as pp
from privproc.wire.privacypass import batch as ppbatch

from ..node import asgi
from ..threads import on_threads

NOW = 1_800_000_000
CHALLENGE = pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, "issuer.test", b"", ["origin.test"])


async def call(app: Any, method: str, path: str, body: bytes = b"",
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return await asgi.call(app, body, method=method, path=path, headers=headers or {})


@pytest.fixture(scope="module")
def issuer_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("issuer")
    make_app(state, state / "warm.db")  # creates the keys once for the module
    return state


def make_app(state: Path, quota_db: Path, *, limit: int = 1000, batch: bool = True,
             batch_max: int = ppbatch.MAX_BATCH) -> Any:
    config = IssuerConfig(state_dir=state, accounts=StaticAccountVerifier({"tok": "alice"}),
                          quota=SqliteQuota(quota_db), limit=limit,
                          batch_uri="/token-request-batch" if batch else None,
                          batch_max=batch_max, clock=lambda: float(NOW))
    return create_app(config)


def batch_of(state: Path, n: int) -> tuple[bytes, list[pp.ClientState]]:
    key = load(state).current(pp.TOKEN_TYPE_BLIND_RSA)
    from privproc.wire import blindrsa

    public = blindrsa.load_public_key_spki(key.token_key)
    begun = [pp.begin_issuance(pp.TOKEN_TYPE_BLIND_RSA, public, CHALLENGE) for _ in range(n)]
    return ppbatch.encode_batch([r.encode() for r, _ in begun]), [s for _, s in begun]


AUTH = {"authorization": "Bearer tok", "content-type": ppbatch.MEDIA_TYPE_BATCH_REQUEST}


def test_the_directory_advertises_the_batch_endpoint(issuer_state: Path,
                                                     tmp_path: Path) -> None:
    status, _, body = asyncio.run(call(make_app(issuer_state, tmp_path / "q.db"), "GET",
                                       pp.WELL_KNOWN_ISSUER_DIRECTORY))
    assert status == 200
    assert ppbatch.batch_offer(body) == ("/token-request-batch", ppbatch.MAX_BATCH)
    pp.IssuerDirectory.decode(body)  # still an RFC 9578 directory
    status, _, body = asyncio.run(call(make_app(issuer_state, tmp_path / "q2.db",
                                                batch=False), "GET",
                                       pp.WELL_KNOWN_ISSUER_DIRECTORY))
    assert ppbatch.batch_offer(body) is None


def test_a_batch_is_answered_with_one_token_response_each(issuer_state: Path,
                                                          tmp_path: Path) -> None:
    app = make_app(issuer_state, tmp_path / "q.db")
    body, states = batch_of(issuer_state, 5)
    status, headers, answer = asyncio.run(call(app, "POST", "/token-request-batch", body,
                                               AUTH))
    assert status == 200 and headers["content-type"] == ppbatch.MEDIA_TYPE_BATCH_RESPONSE
    responses = ppbatch.decode_batch(answer)
    tokens = [pp.finalize_token(s, pp.TokenResponse.decode(r, pp.TOKEN_TYPE_BLIND_RSA))
              for s, r in zip(states, responses, strict=True)]
    assert len({t.nonce for t in tokens}) == 5


def test_batch_limits(issuer_state: Path, tmp_path: Path) -> None:
    app = make_app(issuer_state, tmp_path / "q.db", batch_max=3)
    body, _ = batch_of(issuer_state, 4)
    status, _, _ = asyncio.run(call(app, "POST", "/token-request-batch", body, AUTH))
    assert status in (400, 413)
    for bad in (b"", b"\x00", b"\x00\x05abc", b"\x00\x00"):
        status, _, _ = asyncio.run(call(app, "POST", "/token-request-batch", bad, AUTH))
        assert status == 400
    body, _ = batch_of(issuer_state, 2)
    status, _, _ = asyncio.run(call(app, "POST", "/token-request-batch", body,
                                    {"content-type": ppbatch.MEDIA_TYPE_BATCH_REQUEST}))
    assert status == 401
    status, _, _ = asyncio.run(call(app, "POST", "/token-request-batch", body,
                                    {**AUTH, "content-type": pp.MEDIA_TYPE_TOKEN_REQUEST}))
    assert status == 415


def test_the_quota_counts_every_token_and_a_batch_that_does_not_fit_is_refused_whole(
        issuer_state: Path, tmp_path: Path) -> None:
    quota_db = tmp_path / "q.db"
    app = make_app(issuer_state, quota_db, limit=5)
    body, _ = batch_of(issuer_state, 4)
    assert asyncio.run(call(app, "POST", "/token-request-batch", body, AUTH))[0] == 200
    body, _ = batch_of(issuer_state, 2)
    status, headers, _ = asyncio.run(call(app, "POST", "/token-request-batch", body, AUTH))
    assert status == 429 and int(headers["retry-after"]) > 0
    body, _ = batch_of(issuer_state, 1)
    assert asyncio.run(call(app, "POST", "/token-request-batch", body, AUTH))[0] == 200
    assert SqliteQuota(quota_db).used("alice", 24 * 3600, NOW) == 5


class InProcessWallet(TokenWallet):
    """A wallet whose HTTP goes to the issuer's ASGI app in-process; counts exchanges.
    ``directory_edit`` rewrites the directory (an offer the issuer does not serve)."""

    def __init__(self, app: Any, *, before_issue: Callable[[], None] | None = None,
                 directory_edit: Callable[[bytes], bytes] | None = None,
                 **kwargs: Any) -> None:
        super().__init__("http://issuer.test", "tok", None, clock=lambda: float(NOW),
                         **kwargs)
        self.app = app
        self.before_issue = before_issue
        self.directory_edit = directory_edit
        self.posts: list[str] = []
        self._posts_lock = threading.Lock()

    def _http(self, url: str, data: bytes | None = None,
              headers: dict[str, str] | None = None) -> bytes:
        path = urlsplit(url).path
        if data is None and self.before_issue is not None:
            self.before_issue()  # a refill starts by reading the directory
        if data is not None:
            with self._posts_lock:
                self.posts.append(path)
        status, answer_headers, body = asyncio.run(
            call(self.app, "POST" if data is not None else "GET", path, data or b"",
                 headers))
        if status == 429:
            raise QuotaExceededError(int(answer_headers.get("retry-after", "0")))
        if status != 200:
            raise IssuerRefusedError(status, body[:200].decode(errors="replace"))
        if data is None and self.directory_edit is not None:
            return self.directory_edit(body)
        return body


def test_the_wallet_uses_the_batch_endpoint_when_offered(issuer_state: Path,
                                                         tmp_path: Path) -> None:
    wallet = InProcessWallet(make_app(issuer_state, tmp_path / "q.db"), batch=25)
    assert wallet.refill_if_low(CHALLENGE) == 25
    assert wallet.posts == ["/token-request-batch"] and wallet.fetches == 1
    assert wallet.fetched == 25 and wallet.unspent(CHALLENGE) == 25
    assert wallet.take(CHALLENGE).token_type == pp.TOKEN_TYPE_BLIND_RSA


def test_large_refills_are_split_at_the_advertised_maximum(issuer_state: Path,
                                                           tmp_path: Path) -> None:
    wallet = InProcessWallet(make_app(issuer_state, tmp_path / "q.db", batch_max=10))
    assert wallet.fetch(CHALLENGE, 25) == 25
    assert wallet.posts == ["/token-request-batch"] * 3


def test_without_an_offer_the_wallet_sends_one_request_per_token(issuer_state: Path,
                                                                 tmp_path: Path) -> None:
    wallet = InProcessWallet(make_app(issuer_state, tmp_path / "q.db", batch=False), batch=3)
    assert wallet.refill_if_low(CHALLENGE) == 3
    assert wallet.posts == ["/token-request"] * 3


def test_an_offer_the_issuer_does_not_serve_falls_back_to_single_requests(
        issuer_state: Path, tmp_path: Path) -> None:
    wallet = InProcessWallet(make_app(issuer_state, tmp_path / "q.db", batch=False), batch=2,
                             directory_edit=lambda body: ppbatch.with_batch_offer(body, "/gone"))
    assert wallet.refill_if_low(CHALLENGE) == 2
    assert wallet.posts == ["/gone", "/token-request", "/token-request"]


def test_a_quota_refusal_of_a_batch_is_not_a_fallback(issuer_state: Path,
                                                      tmp_path: Path) -> None:
    wallet = InProcessWallet(make_app(issuer_state, tmp_path / "q.db", limit=5), batch=10)
    with pytest.raises(QuotaExceededError):
        wallet.refill_if_low(CHALLENGE)
    assert wallet.posts == ["/token-request-batch"] and wallet.unspent(CHALLENGE) == 0


def test_concurrent_requests_on_an_empty_wallet_share_one_refill(issuer_state: Path,
                                                                 tmp_path: Path) -> None:
    threads_n = 16
    wallet: InProcessWallet

    def all_waiting() -> None:
        # The refill asks the issuer once every other request waits for it.
        give_up = time.monotonic() + 30
        while wallet._waiting < threads_n - 1 and time.monotonic() < give_up:
            time.sleep(0.001)

    wallet = InProcessWallet(make_app(issuer_state, tmp_path / "q.db"), batch=4,
                             before_issue=all_waiting)
    told: list[str] = []
    wallet.on_fetch = told.append
    tokens = on_threads(lambda: wallet.take(CHALLENGE), threads_n)
    assert len({t.nonce for t in tokens}) == threads_n
    assert wallet.posts == ["/token-request-batch"]  # one exchange for all sixteen
    assert wallet.fetched == threads_n and len(told) == 1


def test_a_failed_refill_fails_the_requests_that_waited_for_it(issuer_state: Path,
                                                               tmp_path: Path) -> None:
    threads_n = 6
    wallet: InProcessWallet

    def all_waiting() -> None:
        give_up = time.monotonic() + 30
        while wallet._waiting < threads_n - 1 and time.monotonic() < give_up:
            time.sleep(0.001)

    wallet = InProcessWallet(make_app(issuer_state, tmp_path / "q.db", limit=2), batch=4,
                             before_issue=all_waiting)
    def take() -> BaseException | None:
        try:
            wallet.take(CHALLENGE)
        except QuotaExceededError as exc:
            return exc
        return None

    errors = [e for e in on_threads(take, threads_n) if e is not None]
    assert len(errors) == threads_n and len(wallet.posts) == 1  # one try, not six
