"""A spent token stays refused for as long as any gateway would accept its key.

The reported attack: a spend record lived ``now + 7 days`` while the issuer key had no
end of life, so a token spent at t0 (refused again at t0 + 10 s) was accepted once more
at t0 + 8 days, after the SQLite purge had dropped its record (Redis: after the TTL ran
out). Now every key has an end of life (the earlier of ``not_after`` and ``retire_at``),
spend records live until it, and tokens of keys past it are refused by the key check.

These tests use real tokens of both types, the real :class:`Redeemer` and both spend
stores, with injected times: no sleeps, and no real clock except where Redis counts a TTL
down (see :meth:`Backend.check_record_covers`).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from privproc.gateway.redeem import Redeemer, RedemptionConfig
from privproc.gateway.spend import RedisSpendStore, SpendStore, SqliteSpendStore
from privproc.issuer import keystore
from privproc.wire import bhttp
from privproc.wire import privacypass as pp

from ..issuer.test_issuer_units import REDIS, redis_or_skip

ISSUER = "issuer.test"
ORIGIN = "gateway.test"
DAY = 24 * 3600
T0 = 1_700_000_000
SPENT = "token already spent"
UNKNOWN_KEY = "token from an unknown issuer key"
TYPES = (pp.TOKEN_TYPE_BLIND_RSA, pp.TOKEN_TYPE_VOPRF)


def make_token(key: keystore.IssuerKey) -> pp.Token:
    """A real token of ``key`` for the Redeemer's challenge, as a client would get one."""
    challenge = pp.TokenChallenge(key.token_type, ISSUER, b"", [ORIGIN])
    request, state = pp.begin_issuance(key.token_type, key.public, challenge)
    return pp.finalize_token(state, pp.issue(key.private, request))


def token_id(token: pp.Token) -> bytes:
    """The double-spend key, derived as the Redeemer derives it."""
    return hashlib.sha256(token.token_type.to_bytes(2, "big") + token.token_key_id
                          + token.nonce).digest()


def redeemer_for(keydir: Path, store: SpendStore) -> Redeemer:
    return Redeemer(RedemptionConfig(issuer_keys=keydir, issuer_name=ISSUER,
                                     origin_name=ORIGIN, spend_store=store))


def redeem(redeemer: Redeemer, token: pp.Token, now: float) -> str | None:
    """None when admitted, else the refusal's reason (always a 401 here)."""
    inner = bhttp.Request(
        method=b"POST", scheme=b"https", authority=ORIGIN.encode(), path=b"/v1/chat",
        headers=(bhttp.Field(b"authorization", pp.format_authorization(token).encode()),
                 bhttp.Field(b"content-type", b"application/json")),
        content=b"{}",
    )
    forwarded, refusal = asyncio.run(redeemer.redeem(inner, now))
    assert all(f.name != b"authorization" for f in forwarded.headers)
    if refusal is None:
        return None
    assert refusal.response.status == 401
    return refusal.reason


def assert_key_refused(reason: str | None) -> None:
    """Refused because the key is past its end of life, not by the spend store."""
    assert reason == UNKNOWN_KEY
    assert "spent" not in reason


@dataclass
class Backend:
    """One spend store's backing (an SQLite file or a Redis key prefix), reopenable."""

    kind: str
    path: Path
    prefix: str = field(default_factory=lambda: f"test:{uuid.uuid4().hex}:spent:")
    opened: list[SpendStore] = field(default_factory=list)

    def open(self) -> SpendStore:
        """A new store on the same backing (what a restarted gateway opens)."""
        store: SpendStore = (SqliteSpendStore(self.path) if self.kind == "sqlite"
                             else RedisSpendStore(REDIS, prefix=self.prefix))
        self.opened.append(store)
        return store

    def force_purge(self, store: SpendStore, now: float) -> None:
        """SQLite: make the every-1000-spends purge run at ``now`` and prove that it ran.

        A canary record that expired before ``now`` is spent first; 1000 other distinct
        ids spent with the same ``now`` cross a multiple of 1000 whatever the store's
        counter was, so the purge runs once among them; the canary can then be spent
        again only because the purge deleted it. Redis has no purge (TTLs only).
        """
        if not isinstance(store, SqliteSpendStore):
            return
        run = uuid.uuid4().hex.encode()
        assert store.spend(b"canary:" + run, int(now) - 1, now)
        for i in range(1000):
            assert store.spend(b"filler:%s:%d" % (run, i), int(now) + DAY, now)
        assert store.spend(b"canary:" + run, int(now) - 1, now), "the purge did not run"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(REDIS, socket_connect_timeout=2)

    def check_record_covers(self, token: pp.Token, end_of_life: int, spent_at: float,
                            real_spend_started: float) -> None:
        """The token's spend record lasts at least until ``end_of_life``.

        SQLite: the row's ``expires_at`` is the key's end of life. Redis: its clock
        cannot be fast-forwarded to t0 + 8 days, so instead the record's TTL must cover
        the key's whole remaining life at the injected spend time ``spent_at``, i.e.
        TTL >= end_of_life - spent_at. Redis has been counting the TTL down in real time
        since the spend, so the real milliseconds elapsed since just before the spend
        (``real_spend_started``, from time.monotonic) are added back: a failure here
        means the TTL it was given was short, by more than that slack.
        """
        if self.kind == "sqlite":
            with sqlite3.connect(self.path) as db:
                rows = db.execute("SELECT expires_at FROM spent WHERE token_id = ?",
                                  (token_id(token),)).fetchall()
            assert rows == [(end_of_life,)]
            return
        client = self.client()
        try:
            pttl = client.pttl(self.prefix.encode() + token_id(token))
        finally:
            client.close()
        elapsed_ms = (time.monotonic() - real_spend_started) * 1000
        assert pttl > 0, f"no spend record with a TTL in Redis (PTTL {pttl})"
        needed_ms = (end_of_life - spent_at) * 1000
        assert pttl + elapsed_ms >= needed_ms, (
            f"Redis TTL {pttl} ms (+{elapsed_ms:.0f} ms elapsed) < {needed_ms:.0f} ms the"
            " key is still accepted for")

    def record_exists(self, token: pp.Token) -> bool:
        if self.kind == "sqlite":
            with sqlite3.connect(self.path) as db:
                return db.execute("SELECT 1 FROM spent WHERE token_id = ?",
                                  (token_id(token),)).fetchone() is not None
        client = self.client()
        try:
            return bool(client.exists(self.prefix.encode() + token_id(token)))
        finally:
            client.close()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    kind = str(request.param)
    if kind == "redis":
        redis_or_skip()
    b = Backend(kind, tmp_path / "spent.db")
    yield b
    for store in b.opened:
        store.close()
    if kind == "redis":
        client = b.client()
        try:
            keys = list(client.scan_iter(match=b.prefix + "*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One issuer key file made at T0 (RSA key generation is slow), copied per test."""
    keydir = tmp_path_factory.mktemp("issuer")
    keystore.load_or_create(keydir, T0)
    return keydir / keystore.KEYS_FILE


@pytest.fixture
def keydir(key_file: Path, tmp_path: Path) -> Path:
    """A test's own issuer key directory, as ``keystore.load_or_create(dir, T0)`` made it."""
    path = tmp_path / "keys"
    path.mkdir(mode=0o700)
    shutil.copy2(key_file, path / keystore.KEYS_FILE)  # keeps mode 0600
    return path


def spend(redeemer: Redeemer, token: pp.Token, now: float) -> float:
    """Redeem a fresh token (it must be admitted); returns the real time just before."""
    started = time.monotonic()
    assert redeem(redeemer, token, now) is None
    return started


def test_spent_token_stays_refused_until_its_key_retires(
        backend: Backend, keydir: Path) -> None:
    keys = keystore.load_or_create(keydir, T0)
    key = {t: keys.current(t) for t in TYPES}
    eol = T0 + keystore.DEFAULT_LIFETIME
    for t in TYPES:
        assert key[t].retire_at is None
        assert key[t].end_of_life == key[t].not_after == eol
    store = backend.open()
    redeemer = redeemer_for(keydir, store)
    token = {t: make_token(key[t]) for t in TYPES}
    unspent = {t: make_token(key[t]) for t in TYPES}

    for t in TYPES:
        started = spend(redeemer, token[t], T0)
        backend.check_record_covers(token[t], eol, T0, started)
        assert redeem(redeemer, token[t], T0 + 10) == SPENT

    # The reported attack: t0 + 8 days, after the purge ran (records once lived 7 days).
    backend.force_purge(store, T0 + 8 * DAY)
    for t in TYPES:
        assert backend.record_exists(token[t])
        assert redeem(redeemer, token[t], T0 + 8 * DAY) == SPENT

    # And up to the last second the keys are accepted, again after a purge at that time.
    last = eol - 1
    assert set(keys.accepted(last)) == {key[t].key_id for t in TYPES}
    backend.force_purge(store, last)
    for t in TYPES:
        assert backend.record_exists(token[t])
        assert redeem(redeemer, token[t], last) == SPENT

    # From the keys' end of life on, the key check refuses, whatever the store holds:
    # at t0 + 31 days the SQLite purge has dropped the records, and the token is still
    # refused as a token of a retired key (as is one that was never spent).
    for t in TYPES:
        assert_key_refused(redeem(redeemer, token[t], eol))
    backend.force_purge(store, T0 + 31 * DAY)
    for t in TYPES:
        assert backend.kind == "redis" or not backend.record_exists(token[t])
        assert_key_refused(redeem(redeemer, token[t], T0 + 31 * DAY))
        assert_key_refused(redeem(redeemer, unspent[t], T0 + 31 * DAY))


def test_rotated_out_key_is_accepted_during_the_overlap_then_refused(
        backend: Backend, keydir: Path) -> None:
    first = keystore.load_or_create(keydir, T0)
    old = {t: first.current(t) for t in TYPES}
    early = {t: make_token(old[t]) for t in TYPES}  # spent before the rotation
    during = {t: make_token(old[t]) for t in TYPES}  # spent in the overlap
    last_second = {t: make_token(old[t]) for t in TYPES}
    too_late = {t: make_token(old[t]) for t in TYPES}
    store = backend.open()
    redeemer = redeemer_for(keydir, store)  # made before the rotation: must see it
    for t in TYPES:
        started = spend(redeemer, early[t], T0 + 60)
        backend.check_record_covers(early[t], old[t].end_of_life, T0 + 60, started)

    rotated_at, overlap = T0 + DAY, 2 * DAY
    rotated = keystore.rotate(keydir, rotated_at, overlap=overlap)
    retired = {k.key_id: k for k in rotated.keys if k.retire_at is not None}
    for t in TYPES:
        assert retired[old[t].key_id].end_of_life == rotated_at + overlap  # < not_after
    end = rotated_at + overlap
    fresh = {t: make_token(rotated.current(t)) for t in TYPES}

    now = rotated_at + 60
    for t in TYPES:
        started = spend(redeemer, during[t], now)
        backend.check_record_covers(during[t], end, now, started)
        assert redeem(redeemer, during[t], now + 10) == SPENT
        assert redeem(redeemer, early[t], now + 10) == SPENT

    backend.force_purge(store, end - 1)
    for t in TYPES:
        spend(redeemer, last_second[t], end - 1)  # the overlap's last second
        assert redeem(redeemer, during[t], end - 1) == SPENT
        assert redeem(redeemer, early[t], end - 1) == SPENT

    for t in TYPES:
        for token in (too_late[t], during[t], early[t], last_second[t]):
            assert_key_refused(redeem(redeemer, token, end))
            assert_key_refused(redeem(redeemer, token, end + 8 * DAY))
        assert redeem(redeemer, fresh[t], end) is None  # the new keys go on
        assert redeem(redeemer, fresh[t], end + 8 * DAY) == SPENT


def test_spent_token_stays_refused_across_a_gateway_restart(
        backend: Backend, keydir: Path) -> None:
    keys = keystore.load_or_create(keydir, T0)
    tokens = {t: make_token(keys.current(t)) for t in TYPES}
    store = backend.open()
    redeemer = redeemer_for(keydir, store)
    for t in TYPES:
        spend(redeemer, tokens[t], T0)
    store.close()

    # A new process: new store object on the same file (or Redis prefix), new Redeemer,
    # its purge counter starting from zero.
    reopened = backend.open()
    restarted = redeemer_for(keydir, reopened)
    backend.force_purge(reopened, T0 + 8 * DAY)
    for t in TYPES:
        assert backend.record_exists(tokens[t])
        assert redeem(restarted, tokens[t], T0 + 8 * DAY) == SPENT
        assert_key_refused(redeem(restarted, tokens[t], T0 + 31 * DAY))


def check_records_cover_the_last_seconds(backend: Backend, keydir: Path,
                                         lefts: tuple[float, ...]) -> None:
    """Spend one token per ``left``, that many seconds before the key's end of life."""
    key = keystore.load_or_create(keydir, T0).current(pp.TOKEN_TYPE_BLIND_RSA)
    eol = key.end_of_life
    store = backend.open()
    redeemer = redeemer_for(keydir, store)
    tokens = [make_token(key) for _ in lefts]
    for token, left in zip(tokens, lefts, strict=True):
        started = spend(redeemer, token, eol - left)
        backend.check_record_covers(token, eol, eol - left, started)
    almost = eol - 0.001  # the key is still accepted; int(almost) == eol - 1
    backend.force_purge(store, almost)
    for token in tokens:
        assert redeem(redeemer, token, almost) == SPENT
        assert_key_refused(redeem(redeemer, token, eol))


def test_spend_record_covers_a_key_that_ends_within_the_next_second(
        backend: Backend, keydir: Path) -> None:
    check_records_cover_the_last_seconds(backend, keydir, (0.5, 0.999, 1.0))


@pytest.mark.parametrize("left", [1.5, keystore.DEFAULT_LIFETIME - 0.25],
                         ids=["ends-in-1.5-s", "spent-at-t0+0.25-s"])
def test_spend_record_covers_a_fractional_remaining_life(
        backend: Backend, keydir: Path, left: float) -> None:
    # The gateway's clock is time.time(): a fractional ``now`` is the usual case. Redis
    # once truncated EX to whole seconds, so records vanished up to 1 s early.
    check_records_cover_the_last_seconds(backend, keydir, (left,))
