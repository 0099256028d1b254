"""An OHTTP client: key configuration, encapsulation, the trip through the relay.

:class:`OHTTPClient` is synchronous (standard library only), :class:`AsyncOHTTPClient`
uses aiohttp. Both wrap the same sans-IO steps: :func:`seal_request` and
:func:`open_response`. Every inner request carries a ``Date`` field, which the gateway
uses against replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import os
import time
from collections.abc import Callable, Sequence
from email.utils import formatdate
from types import TracebackType
from urllib.parse import urljoin, urlsplit

import aiohttp

from privproc import jsondoc
from privproc.service import read_up_to
from privproc.wire import bhttp, hpke, ohttp
from privproc.wire import privacypass as pp
from privproc.wire.errors import BinaryHttpError, HPKEError, KeyConfigError, OHTTPError

from .errors import (
    ClassicalKeyRefusedError,
    KeyConfigFetchError,
    RelayRefusedError,
    RelayUnreachableError,
    RequestError,
    ResponseError,
    TokenChallengeRefusedError,
    TransportError,
)
from .http import MAX_ANSWER, AnswerTooLarge, ConnectionPool
from .tokens import TokenWallet, pick_challenge

Headers = Sequence[tuple[bytes, bytes]]
# Where the gateway key comes from when not from /ohttp-keys (the SDK gives one that
# accepts only logged keys); called with refresh=True after the gateway answered 422.
KeySource = Callable[[bool], ohttp.KeyConfig]
_POST_HEADERS = {"Content-Type": ohttp.MEDIA_TYPE_REQUEST}


def seal_request(
    config: ohttp.KeyConfig,
    method: str,
    path: str,
    *,
    authority: str,
    headers: Headers = (),
    content: bytes = b"",
    now: float,
    scheme: str = "https",
    rand: hpke.Rand = os.urandom,
) -> tuple[bytes, ohttp.ClientResponseContext]:
    """Encode the inner request as Binary HTTP (with a Date field) and encapsulate it."""
    fields = [bhttp.Field(n.lower(), v) for n, v in headers if n.lower() != b"date"]
    fields.append(bhttp.Field(b"date", formatdate(now, usegmt=True).encode()))
    try:
        encoded = bhttp.encode_request(bhttp.Request(
            method=method.encode(),
            scheme=scheme.encode(),
            authority=authority.encode(),
            path=path.encode(),
            headers=tuple(fields),
            content=content,
        ))
    except BinaryHttpError as exc:
        raise RequestError(f"request cannot be encoded: {exc}") from None
    try:
        return ohttp.encapsulate_request(config, encoded, rand=rand)
    except (OHTTPError, HPKEError) as exc:
        raise KeyConfigFetchError(f"cannot seal to the gateway key: {exc}") from None


def open_response(
    ctx: ohttp.ClientResponseContext, status: int, content_type: str, body: bytes
) -> bhttp.Response:
    """Check the outer answer and open the encapsulated response."""
    if status != 200:
        detail = body[:300].decode("utf-8", errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = str(jsondoc.parse(body).get("title", detail))
        raise RelayRefusedError(status, detail)
    if content_type.split(";", maxsplit=1)[0].strip() != ohttp.MEDIA_TYPE_RESPONSE:
        raise TransportError(
            f"expected {ohttp.MEDIA_TYPE_RESPONSE}, relay answered {content_type!r}"
        )
    try:
        return bhttp.decode_response(ctx.decapsulate_response(body))
    except OHTTPError as exc:
        raise ResponseError(f"encapsulated response does not open: {exc}") from None
    except BinaryHttpError as exc:
        raise ResponseError(f"inner response is not valid Binary HTTP: {exc}") from None


def pick_config(body: bytes, *, require_pq: bool = False) -> ohttp.KeyConfig:
    """The configuration to seal to: the first with a post-quantum KEM, else (unless
    ``require_pq``) the first with a supported suite."""
    try:
        configs = ohttp.decode_key_configs(body)
    except KeyConfigError as exc:
        raise KeyConfigFetchError(f"gateway key configuration unusable: {exc}") from None
    usable = [c for c in configs if next(c.supported_suites(), None) is not None]
    if not usable:
        raise KeyConfigFetchError("no key configuration offers a supported HPKE suite")
    hybrid = [c for c in usable if c.post_quantum]
    if not hybrid and require_pq:
        offered = ", ".join(f"key_id {c.key_id} {c.kem_name}" for c in usable)
        raise ClassicalKeyRefusedError(
            f"require_pq is set, but the gateway offers only classical keys ({offered}); "
            f"expected a post-quantum KEM (MLKEM768-X25519, 0x{hpke.KEM_MLKEM768_X25519:04x})")
    return (hybrid or usable)[0]


class _Base:
    def __init__(
        self,
        relay_url: str,
        keys_url: str | None = None,
        *,
        authority: str | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        rand: hpke.Rand = os.urandom,
        tokens: TokenWallet | None = None,
        challenge: pp.TokenChallenge | None = None,
        key_source: KeySource | None = None,
    ) -> None:
        self.relay_url = relay_url
        self.key_source = key_source
        self.tokens = tokens
        self.challenge = challenge
        self.keys_url = keys_url or urljoin(relay_url, "/ohttp-keys")
        self.authority = authority or (urlsplit(relay_url).netloc or "localhost")
        self.timeout = timeout
        self._clock = clock
        self._rand = rand
        self._config: ohttp.KeyConfig | None = None

    def _with_token(self, headers: Headers, token: pp.Token | None) -> list[tuple[bytes, bytes]]:
        out = list(headers)
        if token is not None:
            out.append((b"authorization", pp.format_authorization(token).encode()))
        return out

    def _wants_new_token(self, response: bhttp.Response) -> bool:
        """On a 401 with a PrivateToken challenge, whether to try again with a fresh token.

        Only under the challenge the client was given (the trust file's) or, given none,
        one without a redemption context: a gateway that hands one client a challenge of
        its own (a random context, another issuer or origin) would find it again in every
        later token, and an empty wallet would fetch from the issuer inside the request.
        Raises :class:`TokenChallengeRefusedError` for any other.
        """
        if response.status != 401 or self.tokens is None:
            return False
        value = next((f.value for f in response.headers if f.name == b"www-authenticate"), None)
        if value is None:
            return False
        challenge = pick_challenge(value.decode("latin-1"), self.tokens.token_type)
        if challenge is None:
            return False
        if self.challenge is not None and challenge.encode() != self.challenge.encode():
            raise TokenChallengeRefusedError(
                f"the gateway asked for a token under a challenge (issuer "
                f"{challenge.issuer_name!r}, origin {','.join(challenge.origin_info)!r}, "
                f"{len(challenge.redemption_context)}-byte redemption context) that is not "
                f"the one the trust file names (issuer {self.challenge.issuer_name!r}, "
                f"origin {','.join(self.challenge.origin_info)!r}, "
                f"{len(self.challenge.redemption_context)}-byte context): refused, no token "
                "taken")
        if self.challenge is None and challenge.redemption_context:
            raise TokenChallengeRefusedError(
                "the gateway asked for a token under a challenge with a redemption context, "
                "which could tag this client's tokens: refused, no token taken")
        self.challenge = challenge
        return True


class OHTTPClient(_Base):
    """Synchronous OHTTP client over the standard library, on kept-alive connections to
    the relay (:class:`~privproc.client.http.ConnectionPool`)."""

    @functools.cached_property
    def pool(self) -> ConnectionPool:
        return ConnectionPool(self.relay_url)

    def close(self) -> None:
        """Close the kept-alive connections (a later request opens new ones)."""
        self.pool.close()

    def key_config(self, refresh: bool = False) -> ohttp.KeyConfig:
        if self.key_source is not None:
            return self.key_source(refresh)
        if self._config is None or refresh:
            try:
                status, _, body = self.pool.request(
                    "GET", self.keys_url, headers={"Accept": ohttp.MEDIA_TYPE_KEYS},
                    timeout=self.timeout)
            except (OSError, http.client.HTTPException, TransportError) as exc:
                raise KeyConfigFetchError(f"cannot fetch {self.keys_url}: {exc}") from None
            if status != 200:
                raise KeyConfigFetchError(f"cannot fetch {self.keys_url}: HTTP {status}")
            self._config = pick_config(body)
        return self._config

    def _post(self, sealed: bytes, timeout: float | None = None) -> tuple[int, str, bytes]:
        wait = self.timeout if timeout is None else max(0.001, min(timeout, self.timeout))
        try:
            status, fields, body = self.pool.request(
                "POST", self.relay_url, sealed, headers=_POST_HEADERS, timeout=wait)
        except TimeoutError:
            raise TransportError(f"the relay did not answer within {wait:.0f} s "
                                 f"({self.relay_url})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RelayUnreachableError(f"cannot reach relay {self.relay_url}: "
                                        f"{type(exc).__name__}: {exc}") from None
        except AnswerTooLarge as exc:
            raise TransportError(f"relay {self.relay_url}: {exc}") from None
        return status, fields.get("content-type", ""), body

    def request(
        self, method: str, path: str, *, headers: Headers = (), content: bytes = b"",
        spent: list[pp.Token] | None = None, timeout: float | None = None,
        token: pp.Token | None = None,
    ) -> bhttp.Response:
        """Send one request through the relay.

        Refetches the gateway key once on a 422, and, with a token wallet, answers a 401
        token challenge once with a fresh token. Tokens attached are appended to ``spent``.
        ``timeout`` (seconds, at most the client's own) bounds each exchange of this
        request: what is left of a caller's deadline budget. ``token``: one to attach
        first instead of a fresh one (a retry's, after the relay failed it).
        """
        refreshed = retried = False
        if token is not None and spent is not None:
            spent.append(token)
        while True:
            if token is None and self.tokens is not None and self.challenge is not None:
                token = self.tokens.take(self.challenge)
                if spent is not None:
                    spent.append(token)
            sealed, ctx = seal_request(
                self.key_config(refresh=refreshed), method, path, authority=self.authority,
                headers=self._with_token(headers, token), content=content, now=self._clock(),
                rand=self._rand,
            )
            status, ctype, body = self._post(sealed, timeout)
            if status == 422 and not refreshed:
                refreshed = True
                continue  # (the same token: the gateway could not open the request)
            response = open_response(ctx, status, ctype, body)
            if not retried and self._wants_new_token(response):
                retried = True
                token = None
                continue
            return response


class AsyncOHTTPClient(_Base):
    """Asynchronous OHTTP client over aiohttp; use as ``async with``.

    ``local_addr`` binds the outgoing connections (tests use it to tell the client's
    address apart from the services' on loopback).
    """

    def __init__(
        self,
        relay_url: str,
        keys_url: str | None = None,
        *,
        authority: str | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        rand: hpke.Rand = os.urandom,
        tokens: TokenWallet | None = None,
        challenge: pp.TokenChallenge | None = None,
        key_source: KeySource | None = None,
        local_addr: tuple[str, int] | None = None,
    ) -> None:
        super().__init__(relay_url, keys_url, authority=authority, timeout=timeout,
                         clock=clock, rand=rand, tokens=tokens, challenge=challenge,
                         key_source=key_source)
        self._local_addr = local_addr
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncOHTTPClient:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(local_addr=self._local_addr, limit=256),
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise TransportError("AsyncOHTTPClient used outside 'async with'")
        return self._session

    async def key_config(self, refresh: bool = False) -> ohttp.KeyConfig:
        if self.key_source is not None:
            return await asyncio.to_thread(self.key_source, refresh)
        if self._config is None or refresh:
            try:
                async with self.session.get(
                    self.keys_url, headers={"Accept": ohttp.MEDIA_TYPE_KEYS}
                ) as resp:
                    body = await self._bounded(resp)
                    if resp.status != 200:
                        raise KeyConfigFetchError(f"{self.keys_url} answered {resp.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise KeyConfigFetchError(f"cannot fetch {self.keys_url}: {exc!r}") from None
            self._config = pick_config(body)
        return self._config

    async def _bounded(self, resp: aiohttp.ClientResponse) -> bytes:
        """The answer's body; AnswerTooLarge past :data:`MAX_ANSWER` (as the sync pool)."""
        body = await read_up_to(resp.content, MAX_ANSWER + 1)
        if len(body) > MAX_ANSWER:
            raise AnswerTooLarge(f"answer over {MAX_ANSWER} bytes from {resp.url}")
        return body

    async def post_sealed(self, sealed: bytes) -> tuple[int, str, bytes]:
        """POST an encapsulated request to the relay; returns status, type and body."""
        try:
            async with self.session.post(
                self.relay_url, data=sealed,
                headers={"Content-Type": ohttp.MEDIA_TYPE_REQUEST},
            ) as resp:
                return (resp.status, resp.headers.get("content-type", ""),
                        await self._bounded(resp))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RelayUnreachableError(f"cannot reach relay {self.relay_url}: {exc!r}") \
                from None

    async def request(
        self, method: str, path: str, *, headers: Headers = (), content: bytes = b""
    ) -> bhttp.Response:
        """Send one request through the relay (same retries as :meth:`OHTTPClient.request`)."""
        refreshed = retried = False
        token: pp.Token | None = None
        while True:
            if token is None and self.tokens is not None and self.challenge is not None:
                token = await asyncio.to_thread(self.tokens.take, self.challenge)
            config = await self.key_config(refresh=refreshed)
            sealed, ctx = seal_request(
                config, method, path, authority=self.authority,
                headers=self._with_token(headers, token), content=content,
                now=self._clock(), rand=self._rand,
            )
            status, ctype, body = await self.post_sealed(sealed)
            if status == 422 and not refreshed:
                refreshed = True
                continue  # (the same token: the gateway could not open the request)
            response = open_response(ctx, status, ctype, body)
            if not retried and self._wants_new_token(response):
                retried = True
                token = None
                continue
            return response
