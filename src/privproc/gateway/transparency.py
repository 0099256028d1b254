"""What the gateway staples for its clients: log bundles of the records they must check.

A client uses the gateway's OHTTP key and the issuer's token keys only if it finds their
key records in the transparency log, and a node only if its measurement has a release
record there. So that clients never ask the log themselves (the log would learn who is a
client, and when), the gateway fetches log bundles (:mod:`privproc.tlog.bundle`: records,
inclusion proofs, the cosigned checkpoint) and serves them through the relay:

- ``GET /privproc/keys``: the key records of the gateway's current OHTTP key and of the
  issuer keys it accepts, renewed every ``refresh`` seconds;
- the node list (``GET /v1/nodes`` through OHTTP) carries a bundle of the release records
  of the nodes it lists.

A bundle that cannot be renewed (log down) is served as last fetched: its proofs stay
valid, only its checkpoint ages. With a publisher key the gateway also puts its own key
records in the log, at start and after each rotation.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

from privproc.errors import PrivprocError
from privproc.service import read_up_to
from privproc.tlog.bundle import BundleFormatError, LogBundle
from privproc.tlog.client import MAX_FETCH
from privproc.wire import note

log = logging.getLogger("privproc.gateway")


@dataclass
class TransparencyConfig:
    log_url: str
    owner: str  # the gateway's name: the owner of its OHTTP key records
    signer: note.Signer | None = None  # a key publisher named ``owner``; None: not published
    refresh: float = 10.0  # how often stapled bundles are renewed (seconds)
    max_cached: int = 64  # node-set bundles kept


class StapleUnavailable(PrivprocError):
    """No bundle for these subjects could be fetched yet."""


def key_subject(key: bytes) -> bytes:
    """The log indexes a key record under the SHA-256 of its key."""
    return hashlib.sha256(key).digest()


class Stapler:
    """Fetches and caches log bundles (``GET {log}/proofs``) per set of subjects."""

    def __init__(self, config: TransparencyConfig) -> None:
        self.config = config
        self._cache: OrderedDict[frozenset[bytes], tuple[float, LogBundle]] = OrderedDict()
        self._locks: dict[frozenset[bytes], asyncio.Lock] = {}

    async def _fetch(self, session: aiohttp.ClientSession, subjects: frozenset[bytes]
                     ) -> LogBundle:
        query = urlencode([("subject", s.hex()) for s in sorted(subjects)])
        url = f"{self.config.log_url.rstrip('/')}/proofs?{query}"
        async with session.get(url) as resp:
            body = await read_up_to(resp.content, MAX_FETCH + 1)
            if resp.status != 200:
                raise StapleUnavailable(f"the log answered {resp.status}")
            if len(body) > MAX_FETCH:
                raise StapleUnavailable(f"the log's bundle is over {MAX_FETCH} bytes")
        try:
            return LogBundle.decode(body)
        except BundleFormatError as exc:
            raise StapleUnavailable(f"the log's bundle is malformed: {exc}") from None

    async def bundle(self, session: aiohttp.ClientSession, subjects: Iterable[bytes],
                     now: float, *, force: bool = False) -> LogBundle:
        """The bundle for ``subjects``, renewed when older than ``refresh`` seconds."""
        key = frozenset(subjects)
        cached = self._cache.get(key)
        if cached is not None and not force and now - cached[0] < self.config.refresh:
            self._cache.move_to_end(key)
            return cached[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one fetch per subject set, however many callers wait
            cached = self._cache.get(key)
            if cached is not None and not force and now - cached[0] < self.config.refresh:
                return cached[1]
            try:
                fresh = await self._fetch(session, key)
            except (aiohttp.ClientError, TimeoutError, StapleUnavailable) as exc:
                if cached is None:
                    raise StapleUnavailable(f"no log bundle yet: {exc!r}") from None
                log.warning("log bundle not renewed, serving the last one: %r", exc)
                return cached[1]
            self._cache[key] = (now, fresh)
            self._cache.move_to_end(key)
            while len(self._cache) > self.config.max_cached:
                old, _ = self._cache.popitem(last=False)
                self._locks.pop(old, None)
            return fresh
