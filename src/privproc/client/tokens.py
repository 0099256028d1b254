"""Privacy Pass tokens on the client: obtain a batch from the issuer, cache, spend one each.

:class:`TokenWallet` fetches the issuer directory, sends one RFC 9578 TokenRequest per
token with the account's bearer token, finalizes the tokens and caches the unspent ones
on disk (mode 0600, keyed by challenge). A token is removed from the cache before it is
handed out, so it is never offered twice.

The issuer must not be able to recognise one client's tokens, so the wallet asks for
tokens only under a key that ``key_check`` accepts (the SDK accepts only keys with a key
record in the transparency log). Refills are meant to happen away from requests
(:meth:`TokenWallet.refill_if_low`, which the SDK runs in the background on a jittered
schedule): fetching tokens just before spending one would let the issuer and the gateway
link the account to the request by time. Only an empty wallet fetches inside
:meth:`TokenWallet.take` (and says so through ``on_fetch``). Fetches are single-flight.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from privproc.files import replace_file
from privproc.wire import blindrsa
from privproc.wire import privacypass as pp

from .errors import ClientError


class TokenError(ClientError):
    """Tokens could not be obtained from the issuer."""


class QuotaExceededError(TokenError):
    """The issuer refused: the account's quota is used up (see ``retry_after``)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"token quota exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


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
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._cache: dict[str, list[str]] = self._load()

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
            return len(self._cache.get(challenge.digest().hex(), []))

    def _http(self, url: str, data: bytes | None = None,
              headers: dict[str, str] | None = None) -> bytes:
        req = urllib.request.Request(url, data=data, headers=headers or {},
                                     method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body: bytes = resp.read()
                return body
        except urllib.error.HTTPError as exc:
            if exc.code == 429:
                raise QuotaExceededError(int(exc.headers.get("retry-after", "0") or 0)) from None
            detail = exc.read()[:200].decode(errors="replace")
            raise TokenError(f"issuer answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TokenError(f"cannot reach the issuer at {url}: {exc}") from None

    def directory(self) -> pp.IssuerDirectory:
        body = self._http(self.issuer_url + pp.WELL_KNOWN_ISSUER_DIRECTORY)
        try:
            return pp.IssuerDirectory.decode(body)
        except pp.PrivacyPassError as exc:
            raise TokenError(f"issuer directory is malformed: {exc}") from None

    def _pick_key(self, directory: pp.IssuerDirectory) -> pp.TokenKey:
        """The newest key of our type that ``key_check`` accepts."""
        now = int(self._clock())
        offered: list[pp.TokenKey] = sorted(
            (k for k in directory.token_keys
             if k.token_type == self.token_type and (k.not_before or 0) <= now),
            key=lambda k: k.not_before or 0, reverse=True)
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
        """Obtain ``count`` tokens for ``challenge``; returns how many were added."""
        with self._fetch_lock:  # single flight: concurrent callers do not each fetch
            return self._fetch(challenge, count)

    def refill_if_low(self, challenge: pp.TokenChallenge) -> int:
        """Fetch a batch when fewer than ``low_water`` tokens are left; returns how many."""
        with self._fetch_lock:
            if self.unspent(challenge) >= self.low_water:
                return 0
            return self._fetch(challenge, self.batch)

    def _fetch(self, challenge: pp.TokenChallenge, count: int) -> int:
        directory = self.directory()
        key = self._pick_key(directory)
        public: pp.IssuerPublicKey = (
            key.token_key if self.token_type == pp.TOKEN_TYPE_VOPRF
            else blindrsa.load_public_key_spki(key.token_key)
        )
        url = urljoin(self.issuer_url + "/", directory.issuer_request_uri)
        headers = {"Content-Type": pp.MEDIA_TYPE_TOKEN_REQUEST,
                   "Authorization": f"Bearer {self.account_token}"}
        added = 0
        for _ in range(count):
            request, state = pp.begin_issuance(self.token_type, public, challenge)
            body = self._http(url, request.encode(), headers)
            try:
                token = pp.finalize_token(state, pp.TokenResponse.decode(body, self.token_type))
            except pp.PrivacyPassError as exc:
                raise TokenError(f"issuer's token response does not verify: {exc}") from None
            with self._lock:
                self._cache.setdefault(challenge.digest().hex(), []).append(
                    base64.b64encode(token.encode()).decode())
                self._save()
            added += 1
        return added

    def _pop(self, key: str) -> pp.Token | None:
        with self._lock:
            if not self._cache.get(key):
                return None
            encoded = self._cache[key].pop(0)
            self._save()
        return pp.Token.decode(base64.b64decode(encoded))

    def take(self, challenge: pp.TokenChallenge) -> pp.Token:
        """One unspent token for ``challenge``; an empty wallet fetches a batch first."""
        key = challenge.digest().hex()
        for _ in range(2):
            token = self._pop(key)
            if token is not None:
                return token
            with self._fetch_lock:
                if self.unspent(challenge) == 0:
                    if self.on_fetch is not None:
                        self.on_fetch(f"token wallet empty: fetching {self.batch} tokens from "
                                      "the issuer now (the issuer and the gateway could link "
                                      "this request to the account by time)")
                    self._fetch(challenge, self.batch)
        raise TokenError("the issuer's tokens vanished from the cache")


def pick_challenge(www_authenticate: str, token_type: int) -> pp.TokenChallenge | None:
    """The first challenge of ``token_type`` in a WWW-Authenticate value."""
    try:
        offered = pp.parse_www_authenticate(www_authenticate)
    except pp.PrivacyPassError:
        return None
    return next((c.challenge for c in offered if c.challenge.token_type == token_type), None)

