from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from privproc.gateway.spend import RedisSpendStore, SpendStoreUnavailable, SqliteSpendStore
from privproc.issuer import keystore
from privproc.issuer.accounts import (
    AccountError,
    SignedBearerVerifier,
    StaticAccountVerifier,
    mint_account_token,
)
from privproc.issuer.quota import QuotaUnavailable, RedisQuota, SqliteQuota
from privproc.wire import note
from privproc.wire import privacypass as pp

REDIS = os.environ.get("PRIVPROC_TEST_REDIS", "redis://127.0.0.1:6379/0")


def redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS} is required in CI: {exc}")
        pytest.skip(f"Redis at {REDIS} not reachable: {exc}")


def test_keystore_rotation_and_overlap(tmp_path: Path) -> None:
    first = keystore.load_or_create(tmp_path, now=1000)
    assert (tmp_path / keystore.KEYS_FILE).stat().st_mode & 0o777 == 0o600
    old_ids = {first.current(t).key_id for t in keystore.TOKEN_TYPES}
    rotated = keystore.rotate(tmp_path, now=2000, overlap=100)
    new_ids = {rotated.current(t).key_id for t in keystore.TOKEN_TYPES}
    assert not old_ids & new_ids
    assert set(rotated.accepted(2099)) == old_ids | new_ids
    assert set(rotated.accepted(2100)) == new_ids
    again = keystore.rotate(tmp_path, now=2200, overlap=100)
    assert len(again.keys) == 4  # the first keys are gone from disk
    with pytest.raises(keystore.IssuerKeyError, match=">= 0"):
        keystore.rotate(tmp_path, now=0, overlap=-1)


def test_keys_issue_and_verify_both_types(tmp_path: Path) -> None:
    keys = keystore.load_or_create(tmp_path, now=0)
    challenge = pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, "issuer.example", b"", ["o.example"])
    for token_type in keystore.TOKEN_TYPES:
        key = keys.current(token_type)
        ch = pp.TokenChallenge(token_type, "issuer.example", b"", ["o.example"])
        req, state = pp.begin_issuance(token_type, key.public, ch)
        token = pp.finalize_token(state, pp.issue(key.private, req))
        pp.verify_token(token, {key.key_id: key.verification_key}, challenge=ch)
    assert challenge.token_type == 2


def test_signed_bearer_accounts() -> None:
    signer = note.Ed25519Signer("accounts.example", bytes(32))
    verifier = SignedBearerVerifier([signer.verifier()])
    token = mint_account_token(signer, "alice", expires=2000)
    assert verifier.account(token, now=1000) == "alice"
    with pytest.raises(AccountError, match="expired"):
        verifier.account(token, now=2000)
    other = note.Ed25519Signer("accounts.example", bytes(31) + b"\x01")
    with pytest.raises(AccountError, match="signature"):
        verifier.account(mint_account_token(other, "alice", 2000), now=1000)
    tampered = token.replace(token.split(".")[1], token.split(".")[1][:-2] + "AA")
    with pytest.raises(AccountError):
        verifier.account(tampered, now=1000)
    for bad in ("", "v1.x", "v2.a.b", "v1.!!.??"):
        with pytest.raises(AccountError):
            verifier.account(bad, now=1000)
    with pytest.raises(AccountError, match="unknown"):
        StaticAccountVerifier({"t": "a"}).account("u", 0)


def _hammer_quota(take: object, threads: int = 16, each: int = 5) -> int:
    granted = []

    def worker() -> None:
        for _ in range(each):
            if take("acct", 1, 20, 3600, 1000.0).granted:  # type: ignore[operator]
                granted.append(1)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return len(granted)


def test_sqlite_quota_holds_under_concurrency(tmp_path: Path) -> None:
    quota = SqliteQuota(tmp_path / "q.db")
    assert _hammer_quota(quota.take) == 20
    refused = quota.take("acct", 1, 20, 3600, 1000.0)
    assert not refused.granted and refused.retry_after == 2600
    assert quota.take("acct", 1, 20, 3600, 3600.0).granted  # next period
    assert quota.used("acct", 3600, 3600.0) == 1
    assert quota.take("other", 1, 20, 3600, 1000.0).granted


def test_redis_quota_holds_under_concurrency() -> None:
    redis_or_skip()
    quota = RedisQuota(REDIS, prefix=f"test:{uuid.uuid4().hex}:")
    assert _hammer_quota(quota.take) == 20
    assert quota.used("acct", 3600, 1000.0) == 20
    with pytest.raises(QuotaUnavailable):
        RedisQuota("redis://127.0.0.1:1/0").take("a", 1, 1, 60, 0.0)


def test_spend_stores_accept_once(tmp_path: Path) -> None:
    stores = [SqliteSpendStore(tmp_path / "s.db")]
    try:
        redis_or_skip()
        stores.append(RedisSpendStore(REDIS, prefix=f"test:{uuid.uuid4().hex}:"))
    except pytest.skip.Exception:
        pass
    for store in stores:
        assert store.spend(b"t1", 5000, 1000.0)
        assert not store.spend(b"t1", 5000, 1000.0)
        assert store.spend(b"t2", 5000, 1000.0)
    with pytest.raises(SpendStoreUnavailable):
        RedisSpendStore("redis://127.0.0.1:1/0").spend(b"x", 10, 0.0)


def test_every_key_has_a_not_after_and_a_logged_record(tmp_path: Path) -> None:
    keys = keystore.load_or_create(tmp_path, 1000, lifetime=100)
    for key in keys.keys:
        assert (key.not_before, key.not_after, key.end_of_life) == (1000, 1100, 1100)
        record = key.key_record("issuer.test")
        assert record.purpose == f"privacypass-{key.token_type:04x}"
        assert record.key == key.token_key and record.not_after == 1100
    assert set(keys.accepted(1099)) == {k.key_id for k in keys.keys}
    assert keys.accepted(1100) == {}  # past not_after: no redeemer takes its tokens


def test_rotation_ends_acceptance_at_the_earlier_of_overlap_and_not_after(
        tmp_path: Path) -> None:
    keystore.load_or_create(tmp_path, 0, lifetime=100)
    keys = keystore.rotate(tmp_path, 90, overlap=50, lifetime=100)
    old = [k for k in keys.keys if k.retire_at is not None]
    assert {k.end_of_life for k in old} == {100}  # not_after 100 < retire_at 140
    assert {k.not_after for k in keys.keys if k.retire_at is None} == {190}


def test_keys_are_renewed_when_a_quarter_of_their_life_is_left(tmp_path: Path) -> None:
    keystore.load_or_create(tmp_path, 0, lifetime=100)
    assert keystore.renew_if_due(tmp_path, 75, overlap=10, lifetime=100) is None
    renewed = keystore.renew_if_due(tmp_path, 76, overlap=10, lifetime=100)
    assert renewed is not None
    assert {k.not_before for k in renewed.keys if k.retire_at is None} == {76}
    assert keystore.renew_if_due(tmp_path, 77, overlap=10, lifetime=100) is None


def test_key_files_without_not_after_get_the_default_lifetime(tmp_path: Path) -> None:
    import json

    keystore.load_or_create(tmp_path, 1000)
    path = tmp_path / keystore.KEYS_FILE
    doc = json.loads(path.read_text())
    for key in doc["keys"]:
        del key["not_after"]
    path.write_text(json.dumps(doc))
    os.chmod(path, 0o600)
    assert {k.not_after for k in keystore.load(tmp_path).keys} == {
        1000 + keystore.DEFAULT_LIFETIME}
