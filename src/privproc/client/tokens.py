"""Privacy Pass tokens on the client: obtain a batch from the issuer, cache, spend one each.

:class:`TokenWallet` fetches the issuer directory, sends one RFC 9578 TokenRequest per
token with the account's bearer token, finalizes the tokens and caches the unspent ones
on disk (mode 0600, keyed by challenge). A token is removed from the cache before it is
handed out, so it is never offered twice.
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


class TokenWallet:
    def __init__(
        self,
        issuer_url: str,
        account_token: str,
        cache_path: Path | None = None,
        *,
        token_type: int = pp.TOKEN_TYPE_BLIND_RSA,
        batch: int = 10,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer_url = issuer_url.rstrip("/")
        self.account_token = account_token
        self.cache_path = cache_path
        self.token_type = token_type
        self.batch = batch
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
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

    def fetch(self, challenge: pp.TokenChallenge, count: int) -> int:
        """Obtain ``count`` tokens for ``challenge``; returns how many were added."""
        directory = self.directory()
        key = directory.select(self.token_type, int(self._clock()))
        if key is None:
            raise TokenError(f"issuer offers no key of type 0x{self.token_type:04x}")
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

    def take(self, challenge: pp.TokenChallenge) -> pp.Token:
        """One unspent token for ``challenge``, fetching a batch when none is left."""
        key = challenge.digest().hex()
        for _ in range(2):
            with self._lock:
                if self._cache.get(key):
                    encoded = self._cache[key].pop(0)
                    self._save()
                    return pp.Token.decode(base64.b64decode(encoded))
            self.fetch(challenge, self.batch)
        raise TokenError("the issuer's tokens vanished from the cache")


def pick_challenge(www_authenticate: str, token_type: int) -> pp.TokenChallenge | None:
    """The first challenge of ``token_type`` in a WWW-Authenticate value."""
    try:
        offered = pp.parse_www_authenticate(www_authenticate)
    except pp.PrivacyPassError:
        return None
    return next((c.challenge for c in offered if c.challenge.token_type == token_type), None)

