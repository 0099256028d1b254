"""Privacy Pass tokens on the client: obtain a batch from the issuer, cache, spend one each.

:class:`TokenWallet` fetches the issuer directory, asks for tokens with the account's
bearer token, finalizes them and caches the unspent ones on disk (mode 0600, keyed by
challenge). A token is removed from the cache before it is handed out, so it is never
offered twice: requests lease tokens from the file :data:`LEASE` at a time (one synced
write per lease, not per request), and :meth:`TokenWallet.close` puts the unused ones
back; a process that dies first loses at most that many, never reuses one.

When the directory advertises batched issuance (:mod:`privproc.wire.privacypass.batch`:
``privproc-batch-request-uri``), a refill is one HTTP exchange per batch of up to
``privproc-batch-max`` TokenRequests; otherwise one RFC 9578 TokenRequest per token (and
the wallet falls back to that if the batch endpoint is refused as unknown).

The issuer must not be able to recognise one client's tokens, so the wallet asks for
tokens only under a key that ``key_check`` accepts (the SDK accepts only keys with a key
record in the transparency log). Refills are meant to happen away from requests
(:meth:`TokenWallet.refill_if_low`, which the SDK runs in the background on a jittered
schedule of its own: below the low-water mark, never because a request took a token):
fetching tokens just before spending one would let the issuer and the gateway link the
account to the request by time. Only an empty wallet fetches inside :meth:`TokenWallet.take`
(and says so through ``on_fetch``).

Fetches are single-flight: one refill at a time. A request that finds the wallet empty
while a refill is under way waits for its tokens instead of starting one of its own; the
one refill started by requests finding it empty asks for enough for every request then
waiting (at least a batch). A refill that fails fails the requests that waited for it.
"""

from __future__ import annotations

import base64
import collections
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

from privproc.files import replace_file
from privproc.httpfields import EXCHANGE_FAILED, delay_seconds, urlopen_here
from privproc.wire import blindrsa
from privproc.wire import privacypass as pp
from privproc.wire.privacypass import batch as ppbatch

from .backoff import Backoff
from .errors import ClientError
from .http import MAX_ANSWER


class TokenError(ClientError):
    """Tokens could not be obtained from the issuer."""


class IssuerRefusedError(TokenError):
    """The issuer answered an HTTP error (``status``) other than over quota."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"issuer answered {status}: {detail}")
        self.status = status


class IssuerUnreachableError(TokenError):
    """No connection to the issuer could be made (it, or the network, is down)."""


class QuotaExceededError(TokenError):
    """The issuer refused: the account's quota is used up (see ``retry_after``)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"token quota exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


# An issuer that cannot be reached (restarting, say) is asked again (:class:`.Backoff`:
# jittered, doubling from 0.25 s to 2 s) for at most this long; requests waiting for the
# refill keep waiting.
LEASE = 8
"""Tokens taken out of the cache file at a time: a synced write per this many requests."""
UNREACHABLE_RETRY_SECONDS = 15.0
MAX_ISSUER_ANSWER = MAX_ANSWER
"""The most bytes read of one issuer answer (a directory, tokens, an error's first 200)."""

MAX_RETRY_AFTER = 7 * 86400

MAX_KEYS_CONSIDERED = 4
"""How many of the issuer directory's newest keys (of the wallet's type, distinct) the
wallet considers: an honest issuer offers its current key and the next."""


def _origin(url: SplitResult) -> tuple[str, str, int | None]:
    """Scheme, host (lowercase) and port (the scheme's default if none is named)."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    try:
        port = url.port
    except ValueError:  # not a port number: no origin this could be
        return url.scheme, "", -1
    return url.scheme, (url.hostname or "").lower(), port if port is not None else default


def _retry_after(value: str | None) -> int:
    """Seconds from a Retry-After field in its delay-seconds form; 0 (no usable hint) for
    an HTTP date, nonsense or a delay over a week."""
    seconds = delay_seconds(value)
    return seconds if seconds is not None and seconds <= MAX_RETRY_AFTER else 0


# Called with (token type, token key) before the wallet asks for tokens under that key;
# raises to refuse the key.
KeyCheck = Callable[[int, bytes], Any]


class TokenWallet:
    def __init__(
        self,
        issuer_url: str,
        account_token: str,
        cache_path: Path | None = None,
        *,
        token_type: int = pp.TOKEN_TYPE_BLIND_RSA,
        batch: int = 10,
        low_water: int | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        key_check: KeyCheck | None = None,
        on_fetch: Callable[[str], None] | None = None,
        unreachable_retry: float = UNREACHABLE_RETRY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.issuer_url = issuer_url.rstrip("/")
        self.account_token = account_token
        self.cache_path = cache_path
        self.token_type = token_type
        self.batch = batch
        self.low_water = max(1, batch // 2) if low_water is None else low_water
        self.timeout = timeout
        self.key_check = key_check
        self.on_fetch = on_fetch
        self._clock = clock
        self.unreachable_retry = unreachable_retry
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # tokens added, or a refill ended
        self._fetching = False  # a refill is under way (single flight)
        self._waiting = 0  # requests waiting for its tokens
        self._failure: tuple[int, BaseException] | None = None  # (refill number, error)
        self._refills = 0  # refills ended
        self._batch_offer: tuple[str, int] | None = None  # from the last directory
        self.fetches = 0  # HTTP exchanges that asked the issuer for tokens
        self.fetched = 0  # tokens obtained
        self._cache: dict[str, list[str]] = self._load()
        self._leased: dict[str, collections.deque[pp.Token]] = {}  # out of the file

    def _load(self) -> dict[str, list[str]]:
        if self.cache_path is None or not self.cache_path.exists():
            return {}
        try:
            doc = json.loads(self.cache_path.read_text())
            return {str(k): [str(t) for t in v] for k, v in doc["tokens"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TokenError(f"{self.cache_path}: malformed token cache ({exc})") from None

    def _save(self) -> None:
        if self.cache_path is None:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.cache_path, json.dumps({"tokens": self._cache}).encode(), 0o600)

    def unspent(self, challenge: pp.TokenChallenge) -> int:
        with self._lock:
            return self._unspent_locked(challenge.digest().hex())

    def _unspent_locked(self, key: str) -> int:
        return len(self._cache.get(key, ())) + len(self._leased.get(key, ()))

    def close(self) -> None:
        """Put the leased, unused tokens back in the cache file."""
        with self._lock:
            if not any(self._leased.values()):
                return
            for key, leased in self._leased.items():
                self._cache[key] = [base64.b64encode(t.encode()).decode() for t in leased
                                    ] + self._cache.get(key, [])
            self._leased.clear()
            self._save()

    @property
    def batch_offer(self) -> tuple[str, int] | None:
        """The batch endpoint the issuer's last directory advertised (URI, largest batch)."""
        return self._batch_offer

    def _http(self, url: str, data: bytes | None = None,
              headers: dict[str, str] | None = None) -> bytes:
        req = urllib.request.Request(url, data=data, headers=headers or {},
                                     method="POST" if data is not None else "GET")
        try:
            with urlopen_here(req, self.timeout) as resp:
                body: bytes = resp.read(MAX_ISSUER_ANSWER + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 429:
                raise QuotaExceededError(_retry_after(exc.headers.get("retry-after"))) \
                    from None
            detail = exc.read(200).decode(errors="replace")
            exc.close()
            raise IssuerRefusedError(exc.code, detail) from None
        except EXCHANGE_FAILED as exc:
            raise IssuerUnreachableError(f"cannot reach the issuer at {url}: {exc}") from None
        if len(body) > MAX_ISSUER_ANSWER:
            raise TokenError(f"the issuer's answer is larger than {MAX_ISSUER_ANSWER} bytes: "
                             "refused unread")
        return body

    def directory(self) -> pp.IssuerDirectory:
        """The issuer's directory (and, kept aside, the batch endpoint it advertises)."""
        body = self._http(self.issuer_url + pp.WELL_KNOWN_ISSUER_DIRECTORY)
        try:
            directory = pp.IssuerDirectory.decode(body)
        except pp.PrivacyPassError as exc:
            raise TokenError(f"issuer directory is malformed: {exc}") from None
        self._batch_offer = ppbatch.batch_offer(body)
        return directory

    def _pick_key(self, directory: pp.IssuerDirectory) -> pp.TokenKey:
        """The newest key of our type that ``key_check`` accepts."""
        now = int(self._clock())
        distinct = {k.token_key: k for k in directory.token_keys
                    if k.token_type == self.token_type and (k.not_before or 0) <= now}
        # The newest few only: each one refused costs a key-bundle refresh through the
        # relay, and a directory may list thousands (a hostile issuer's would).
        offered: list[pp.TokenKey] = sorted(
            distinct.values(), key=lambda k: k.not_before or 0, reverse=True
        )[:MAX_KEYS_CONSIDERED]
        if not offered:
            raise TokenError(f"issuer offers no key of type 0x{self.token_type:04x}")
        if self.key_check is None:
            return offered[0]
        refusal: Exception | None = None
        for key in offered:
            try:
                self.key_check(key.token_type, key.token_key)
            except ClientError as exc:
                refusal = refusal or exc
                continue
            return key
        assert refusal is not None
        raise refusal

    def fetch(self, challenge: pp.TokenChallenge, count: int) -> int:
        """Obtain ``count`` tokens for ``challenge``; returns how many were added. Waits
        for a refill under way first (single flight)."""
        return self._single_flight(challenge, lambda: count)

    def refill_if_low(self, challenge: pp.TokenChallenge) -> int:
        """Fetch a batch when fewer than ``low_water`` tokens are left; returns how many.
        (The SDK calls this on its background schedule, never inside a request.)"""
        key = challenge.digest().hex()
        return self._single_flight(
            challenge, lambda: self.batch if self._unspent_locked(key) < self.low_water
            else 0)

    def _single_flight(self, challenge: pp.TokenChallenge, how_many: Callable[[], int]) -> int:
        """Wait for a refill under way, then (if ``how_many()``, read under the lock,
        is above 0) run one."""
        with self._changed:
            while self._fetching:
                self._changed.wait()
            count = how_many()
            if count <= 0:
                return 0
            self._fetching = True
        return self._run_refill(challenge, count)

    def _run_refill(self, challenge: pp.TokenChallenge, count: int | Callable[[], int]
                    ) -> int:
        """Fetch with ``_fetching`` set; clear it, record a failure and wake the waiters."""
        try:
            added = self._fetch_retrying(challenge, count)
        except BaseException as exc:
            with self._changed:
                self._refills += 1
                self._failure = (self._refills, exc)
                self._fetching = False
                self._changed.notify_all()
            raise
        with self._changed:
            self._refills += 1
            self._fetching = False
            self._changed.notify_all()
        return added

    def _fetch_retrying(self, challenge: pp.TokenChallenge,
                        count: int | Callable[[], int]) -> int:
        """:meth:`_fetch`, asked again while the issuer cannot be reached (for at most
        ``unreachable_retry`` seconds)."""
        restarting = Backoff(self._monotonic(), self.unreachable_retry)
        while True:
            try:
                return self._fetch(challenge, count)
            except IssuerUnreachableError:
                wait = restarting.next_wait(self._monotonic())
                if wait is None:
                    raise
                self._sleep(wait)

    def _on_issuer(self, uri: str) -> str:
        """A URI from the issuer's directory, resolved; the account token goes nowhere but
        to the issuer's own origin (an absolute URI elsewhere, or plain http from https,
        would hand it, and this device's address, to a host the trust file does not name)."""
        url = urljoin(self.issuer_url + "/", uri)
        ours, theirs = urlsplit(self.issuer_url), urlsplit(url)
        if _origin(theirs) != _origin(ours):
            raise TokenError(
                f"the issuer's directory names {uri[:100]!r}, off the issuer's origin "
                f"{ours.scheme}://{ours.netloc}: refused (the account token goes only to "
                "the issuer the trust file names)")
        return url

    def _fetch(self, challenge: pp.TokenChallenge, count: int | Callable[[], int]) -> int:
        """Fetch ``count`` tokens (a callable: read once the directory is known, so a
        refill started by an empty wallet covers the requests that queued meanwhile)."""
        directory = self.directory()
        key = self._pick_key(directory)
        public: pp.IssuerPublicKey = (
            key.token_key if self.token_type == pp.TOKEN_TYPE_VOPRF
            else blindrsa.load_public_key_spki(key.token_key)
        )
        if callable(count):
            count = count()
        offer = self._batch_offer
        added = 0
        if offer is not None:
            uri, limit = offer
            url = self._on_issuer(uri)
            try:
                while added < count:
                    added += self._fetch_batch(url, public, challenge,
                                               min(limit, count - added))
                return added
            except IssuerRefusedError as exc:
                if exc.status not in (404, 405, 415, 501):
                    raise
                self._batch_offer = None  # not offered after all: one request per token
        url = self._on_issuer(directory.issuer_request_uri)
        headers = {"Content-Type": pp.MEDIA_TYPE_TOKEN_REQUEST,
                   "Authorization": f"Bearer {self.account_token}"}
        for _ in range(count - added):
            request, state = pp.begin_issuance(self.token_type, public, challenge)
            with self._lock:
                self.fetches += 1
            body = self._http(url, request.encode(), headers)
            try:
                token = pp.finalize_token(state, pp.TokenResponse.decode(body, self.token_type))
            except pp.PrivacyPassError as exc:
                raise TokenError(f"issuer's token response does not verify: {exc}") from None
            self._add(challenge, [token])
            added += 1
        return added

    def _fetch_batch(self, url: str, public: pp.IssuerPublicKey,
                     challenge: pp.TokenChallenge, count: int) -> int:
        """One exchange with the batch endpoint: ``count`` tokens."""
        begun = [pp.begin_issuance(self.token_type, public, challenge) for _ in range(count)]
        body = ppbatch.encode_batch([request.encode() for request, _ in begun])
        headers = {"Content-Type": ppbatch.MEDIA_TYPE_BATCH_REQUEST,
                   "Authorization": f"Bearer {self.account_token}"}
        with self._lock:
            self.fetches += 1
        answer = self._http(url, body, headers)
        try:
            responses = ppbatch.decode_batch(answer, count)
            if len(responses) != count:
                raise pp.PrivacyPassError(f"{len(responses)} token responses for {count} "
                                          "requests")
            tokens = [pp.finalize_token(state, pp.TokenResponse.decode(r, self.token_type))
                      for (_, state), r in zip(begun, responses, strict=True)]
        except pp.PrivacyPassError as exc:
            raise TokenError(f"issuer's token responses do not verify: {exc}") from None
        self._add(challenge, tokens)
        return len(tokens)

    def _add(self, challenge: pp.TokenChallenge, tokens: list[pp.Token]) -> None:
        with self._changed:
            self._cache.setdefault(challenge.digest().hex(), []).extend(
                base64.b64encode(token.encode()).decode() for token in tokens)
            self.fetched += len(tokens)
            self._save()
            self._changed.notify_all()  # requests waiting on an empty wallet take these

    def _pop_locked(self, key: str) -> pp.Token | None:
        leased = self._leased.get(key)
        if not leased:
            stored = self._cache.get(key)
            if not stored:
                return None
            chunk = stored[:LEASE if self.cache_path is not None else len(stored)]
            del stored[:len(chunk)]
            self._save()  # out of the file before any of them is handed out
            leased = self._leased.setdefault(key, collections.deque())
            leased.extend(pp.Token.decode(base64.b64decode(t)) for t in chunk)
        return leased.popleft()

    def take(self, challenge: pp.TokenChallenge) -> pp.Token:
        """One unspent token for ``challenge``. An empty wallet waits for the refill
        under way, or starts one (single flight: for every request then waiting, at
        least a batch) and says so through ``on_fetch``."""
        key = challenge.digest().hex()
        for _ in range(3):
            with self._changed:
                seen = self._refills
                while True:
                    token = self._pop_locked(key)
                    if token is not None:
                        return token
                    if self._failure is not None and self._failure[0] > seen:
                        raise self._failure[1]  # the refill this request waited for failed
                    if not self._fetching:
                        break
                    self._waiting += 1
                    try:
                        self._changed.wait()
                    finally:
                        self._waiting -= 1
                self._fetching = True
            if self.on_fetch is not None:
                self.on_fetch("token wallet empty: fetching tokens from the issuer now (the "
                              "issuer and the gateway could link this request to the "
                              "account by time)")
            # for every request waiting by the time the issuer is asked, at least a batch
            self._run_refill(challenge, lambda: max(self.batch, self._waiting + 1))
        raise TokenError("the issuer's tokens were taken by other requests as they came")


def pick_challenge(www_authenticate: str, token_type: int) -> pp.TokenChallenge | None:
    """The first challenge of ``token_type`` in a WWW-Authenticate value."""
    try:
        offered = pp.parse_www_authenticate(www_authenticate)
    except pp.PrivacyPassError:
        return None
    return next((c.challenge for c in offered if c.challenge.token_type == token_type), None)

