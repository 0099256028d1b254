"""The token wallet asks only for tokens under keys the SDK accepts, refills single-flight."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from pathlib import Path

import pytest

from privproc.client import tokens as tokens_module
from privproc.client.errors import KeyNotLoggedError
from privproc.client.tokens import (
    LEASE,
    UNREACHABLE_RETRY_SECONDS,
    IssuerRefusedError,
    IssuerUnreachableError,
    TokenError,
    TokenWallet,
)
from privproc.issuer import keystore
from privproc.wire import privacypass as pp

from ..servers import endless, not_http, redirect_trap, serving
from ..threads import on_threads

CHALLENGE = pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, "issuer.test", b"", ["origin.test"])
NOW = 1_800_000_000


class FakeIssuerWallet(TokenWallet):
    """A wallet whose issuer is in-process: a directory of ``keys``, signing with them."""

    def __init__(self, keys: list[keystore.IssuerKey], cache_path: Path | None = None,
                 **kwargs: object) -> None:
        super().__init__("http://issuer.invalid", "account", cache_path,
                         clock=lambda: float(NOW), **kwargs)  # type: ignore[arg-type]
        self.keys = keys
        self.requests = 0
        self._count_lock = threading.Lock()

    def directory(self) -> pp.IssuerDirectory:
        return pp.IssuerDirectory("/token-request", [
            pp.TokenKey(k.token_type, k.token_key, k.not_before) for k in self.keys])

    def _http(self, url: str, data: bytes | None = None,
              headers: dict[str, str] | None = None) -> bytes:
        assert data is not None
        with self._count_lock:
            self.requests += 1
        request = pp.TokenRequest.decode(data)
        key = next(k for k in self.keys if k.key_id[-1] == request.truncated_token_key_id)
        return pp.issue(key.private, request).encode()


@pytest.fixture(scope="module")
def two_keys() -> list[keystore.IssuerKey]:
    first = keystore.generate(pp.TOKEN_TYPE_BLIND_RSA, NOW - 100)
    while True:  # (the fake issuer tells keys apart by the last byte of their ids)
        second = keystore.generate(pp.TOKEN_TYPE_BLIND_RSA, NOW - 10)
        if second.key_id[-1] != first.key_id[-1]:
            return [first, second]


def test_no_token_is_requested_under_a_refused_key(two_keys: list[keystore.IssuerKey]) -> None:
    def refuse(token_type: int, token_key: bytes) -> None:
        raise KeyNotLoggedError("not in the log")

    wallet = FakeIssuerWallet(two_keys, key_check=refuse)
    with pytest.raises(KeyNotLoggedError):
        wallet.fetch(CHALLENGE, 3)
    assert wallet.requests == 0 and wallet.unspent(CHALLENGE) == 0


def test_the_newest_accepted_key_is_used(two_keys: list[keystore.IssuerKey]) -> None:
    older, newer = two_keys
    checked: list[bytes] = []

    def only_older(token_type: int, token_key: bytes) -> None:
        checked.append(token_key)
        if token_key != older.token_key:
            raise KeyNotLoggedError("a key of its own for this client")

    wallet = FakeIssuerWallet(two_keys, key_check=only_older)
    wallet.fetch(CHALLENGE, 2)
    assert checked[0] == newer.token_key  # newest first, refused, then the older one
    token = wallet.take(CHALLENGE)
    assert token.token_key_id == hashlib.sha256(older.token_key).digest()


def test_refills_happen_below_low_water_only(two_keys: list[keystore.IssuerKey]) -> None:
    wallet = FakeIssuerWallet(two_keys, batch=4, low_water=2)
    assert wallet.refill_if_low(CHALLENGE) == 4
    assert wallet.refill_if_low(CHALLENGE) == 0  # 4 left: nothing to do
    for _ in range(3):
        wallet.take(CHALLENGE)
    assert wallet.requests == 4  # taking while tokens remain never asks the issuer
    assert wallet.refill_if_low(CHALLENGE) == 4 and wallet.unspent(CHALLENGE) == 5


def test_an_empty_wallet_fetches_once_for_many_threads_and_says_so(
        two_keys: list[keystore.IssuerKey]) -> None:
    told: list[str] = []
    wallet = FakeIssuerWallet(two_keys, batch=10, on_fetch=told.append)
    tokens = on_threads(lambda: wallet.take(CHALLENGE), 8)
    assert len({t.nonce for t in tokens}) == 8
    assert wallet.requests == 10  # one batch, not one per thread
    assert len(told) == 1 and "link this request" in told[0]


class RestartingIssuerWallet(FakeIssuerWallet):
    """An issuer that cannot be reached for its first ``down`` exchanges; virtual time."""

    def __init__(self, keys: list[keystore.IssuerKey], down: int, **kwargs: object) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        super().__init__(keys, monotonic=lambda: self.now, sleep=self._advance, **kwargs)
        self.down = down

    def _advance(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def directory(self) -> pp.IssuerDirectory:
        if self.down > 0:
            self.down -= 1
            raise IssuerUnreachableError("cannot reach the issuer")
        return super().directory()


def test_an_unreachable_issuer_is_asked_again_while_requests_wait(
        two_keys: list[keystore.IssuerKey]) -> None:
    wallet = RestartingIssuerWallet(two_keys, down=4, batch=3)
    token = wallet.take(CHALLENGE)  # the refill waits out the restart
    assert token is not None and wallet.unspent(CHALLENGE) == 2
    assert len(wallet.slept) == 4 and all(0 < s <= 2.0 for s in wallet.slept)


def test_an_issuer_down_for_long_fails_the_request(two_keys: list[keystore.IssuerKey]) -> None:
    wallet = RestartingIssuerWallet(two_keys, down=10_000, batch=3)
    with pytest.raises(IssuerUnreachableError):
        wallet.take(CHALLENGE)
    assert wallet.now <= UNREACHABLE_RETRY_SECONDS and wallet.requests == 0
    assert wallet.down > 10_000 - 40


def test_a_refusing_issuer_is_not_asked_again(two_keys: list[keystore.IssuerKey]) -> None:
    wallet = FakeIssuerWallet(two_keys, batch=3)

    def refuse(url: str, data: bytes | None = None,
               headers: dict[str, str] | None = None) -> bytes:
        wallet.requests += 1
        raise IssuerRefusedError(401, "account token refused")

    wallet._http = refuse  # type: ignore[method-assign]
    with pytest.raises(IssuerRefusedError):
        wallet.take(CHALLENGE)
    assert wallet.requests == 1


# -- the cache file: tokens leased out of it, never handed out twice ---------------------


def stored(path: Path) -> set[bytes]:
    doc = json.loads(path.read_text())
    return {base64.b64decode(t) for tokens in doc["tokens"].values() for t in tokens}


def test_a_token_handed_out_is_no_longer_in_the_file(
        two_keys: list[keystore.IssuerKey], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tokens.json"
    writes: list[int] = []
    real_replace = tokens_module.replace_file

    def counting_replace(*args: object, **kwargs: object) -> None:
        writes.append(1)
        real_replace(*args, **kwargs)  # type: ignore[arg-type]

    wallet = FakeIssuerWallet(two_keys, path)
    wallet.fetch(CHALLENGE, 3 * LEASE + 5)
    monkeypatch.setattr(tokens_module, "replace_file", counting_replace)
    handed = []
    for _ in range(2 * LEASE + 1):
        token = wallet.take(CHALLENGE).encode()
        assert token not in stored(path)  # out of the file before it is handed out
        handed.append(token)
    assert len(set(handed)) == len(handed)
    assert len(writes) == 3  # one synced write per lease, not per request
    assert wallet.unspent(CHALLENGE) == 3 * LEASE + 5 - len(handed)

    # the process dies here: the next one never sees a token the first handed out
    after_crash = FakeIssuerWallet(two_keys, path)
    assert after_crash.unspent(CHALLENGE) == 5  # the leased rest is lost, not reused
    rest = [after_crash.take(CHALLENGE).encode() for _ in range(5)]
    assert not set(rest) & set(handed)


def test_close_puts_the_leased_tokens_back(two_keys: list[keystore.IssuerKey],
                                          tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    wallet = FakeIssuerWallet(two_keys, path)
    wallet.fetch(CHALLENGE, LEASE + 2)
    first = wallet.take(CHALLENGE).encode()
    assert len(stored(path)) == 2
    wallet.close()
    assert len(stored(path)) == LEASE + 1 and first not in stored(path)
    again = FakeIssuerWallet(two_keys, path)
    taken = {again.take(CHALLENGE).encode() for _ in range(LEASE + 1)}
    assert len(taken) == LEASE + 1 and first not in taken


def test_a_hostile_issuer_cannot_make_the_wallet_read_without_end() -> None:
    """Attack: an issuer (or whoever answers for it) streams an endless answer, as a
    directory or as an error: the wallet reads at most its bound (8 MiB; 200 bytes of an
    error) and refuses."""
    with endless() as url:
        wallet = TokenWallet(url, "account", None, token_type=pp.TOKEN_TYPE_BLIND_RSA)
        with pytest.raises(TokenError, match=r"answer is larger than 8388608 bytes"):
            wallet.directory()
        wallet = TokenWallet(url + "/error", "account", None)
        with pytest.raises(IssuerRefusedError, match=r"issuer answered 500: x{20}"):
            wallet.directory()


def test_an_issuer_answering_something_that_is_not_http_is_unreachable() -> None:
    """Attack: a bad status line (http.client.BadStatusLine, no OSError) is the issuer
    unreachable, which the wallet waits out and then reports, not a raw exception."""
    from privproc.client.tokens import IssuerUnreachableError

    with not_http() as url:
        wallet = TokenWallet(url, "account", None, token_type=pp.TOKEN_TYPE_BLIND_RSA)
        with pytest.raises(IssuerUnreachableError, match="cannot reach the issuer"):
            wallet._http(url + "/directory")


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120), ("Wed, 21 Oct 2015 07:28:00 GMT", 0), ("soon", 0), ("-5", 0), ("", 0),
    ("9" * 40, 0)])
def test_an_issuer_over_quota_with_any_retry_after_is_a_quota_error(
        header: str, seconds: int) -> None:
    """Retry-After may be an HTTP date, or nonsense from a hostile issuer: the wallet
    raises QuotaExceededError all the same (0: no usable hint), never a ValueError."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from privproc.client.tokens import QuotaExceededError

    async def over_quota(request: object) -> Response:
        return Response(b"quota", status_code=429, headers={"retry-after": header})

    app = Starlette(routes=[Route("/{path:path}", over_quota, methods=["GET", "POST"])])
    with serving(app) as url:
        with pytest.raises(QuotaExceededError) as info:
            TokenWallet(url, "account", None).directory()
        assert info.value.retry_after == seconds


@pytest.mark.parametrize("uri", ["/token-request", "http://issuer.invalid/token-request",
                                 "HTTP://Issuer.Invalid:80/token-request"])
def test_the_issuers_own_origin_may_be_written_any_way(two_keys: list[keystore.IssuerKey],
                                                        uri: str) -> None:
    class Absolute(FakeIssuerWallet):
        def directory(self) -> pp.IssuerDirectory:
            return pp.IssuerDirectory(uri, [pp.TokenKey(k.token_type, k.token_key,
                                                        k.not_before) for k in self.keys])

    wallet = Absolute(two_keys)
    assert wallet.fetch(CHALLENGE, 1) == 1 and wallet.requests == 1


@pytest.mark.parametrize("uri", ["http://elsewhere.example/token-request",
                                 "//elsewhere.example/token-request",
                                 "https://issuer.invalid/token-request",
                                 "http://issuer.invalid:8080/token-request"])
def test_the_account_token_goes_only_to_the_issuers_own_origin(
        two_keys: list[keystore.IssuerKey], uri: str) -> None:
    """Attack: the issuer's directory names a request URI (or a batch URI) on another
    host, or over another scheme: the wallet would send the account token (and this
    device's address) there. It refuses before any request."""
    class Elsewhere(FakeIssuerWallet):
        def directory(self) -> pp.IssuerDirectory:
            return pp.IssuerDirectory(uri, [pp.TokenKey(k.token_type, k.token_key,
                                                        k.not_before) for k in self.keys])

    wallet = Elsewhere(two_keys)
    with pytest.raises(TokenError, match=r"off the issuer's origin http://issuer\.invalid"):
        wallet.fetch(CHALLENGE, 1)
    assert wallet.requests == 0
    batch = FakeIssuerWallet(two_keys)
    batch._batch_offer = (uri, 10)  # as a directory advertising batches there would set
    with pytest.raises(TokenError, match="off the issuer's origin"):
        batch.fetch(CHALLENGE, 1)
    assert batch.requests == 0


def test_a_redirect_from_the_issuer_is_not_followed() -> None:
    """Attack: the issuer answers 302 to a host of its choice; urllib would follow it with
    the Authorization field. The wallet reports the refusal and goes nowhere else."""
    with redirect_trap() as (issuer, seen):
        wallet = TokenWallet(issuer, "account-secret", None)
        with pytest.raises(IssuerRefusedError, match="302"):
            wallet._http(issuer + "/token-request", b"x", {"Authorization": "Bearer x"})
    assert seen == []


def test_a_directory_listing_thousands_of_keys_costs_a_few_checks(
        two_keys: list[keystore.IssuerKey]) -> None:
    """Attack: the issuer lists unlogged keys thousands of times: each refusal cost a
    key-bundle refresh through the relay. The wallet checks each distinct key once, and
    at most MAX_KEYS_CONSIDERED of them, the newest first."""
    from privproc.client.tokens import MAX_KEYS_CONSIDERED

    extra = [keystore.generate(pp.TOKEN_TYPE_BLIND_RSA, NOW - 50 - i) for i in range(4)]
    checks: list[bytes] = []

    def refuse(token_type: int, token_key: bytes) -> None:
        checks.append(token_key)
        raise KeyNotLoggedError("not in the log")

    class Flood(FakeIssuerWallet):
        def directory(self) -> pp.IssuerDirectory:
            return pp.IssuerDirectory("/token-request", [
                pp.TokenKey(k.token_type, k.token_key, k.not_before)
                for k in self.keys] * 1000)

    wallet = Flood([*two_keys, *extra])
    wallet.key_check = refuse
    with pytest.raises(KeyNotLoggedError):
        wallet.fetch(CHALLENGE, 1)
    assert len(checks) == MAX_KEYS_CONSIDERED == len(set(checks)) < 6
    assert checks[0] == two_keys[1].token_key  # the newest first


@pytest.mark.parametrize("first", [b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n",
                                   b"HTTP/1.1 200 OK\r\nx-a: "])
def test_an_issuer_dripping_its_answer_is_cut_off_at_the_timeout(first: bytes) -> None:
    """Attack: the issuer drips its answer a byte every 0.1 s, each read within the socket
    timeout: the exchange still ends at the wallet's timeout."""
    import time

    from ..servers import dripping

    with dripping(first, 0.1) as port:
        wallet = TokenWallet(f"http://127.0.0.1:{port}", "account", None, timeout=0.6)
        started = time.monotonic()
        with pytest.raises(IssuerUnreachableError):
            wallet.directory()
        assert time.monotonic() - started < 3
