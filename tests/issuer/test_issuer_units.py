from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from privproc.files import replace_file
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


def write_v1_file(state_dir: Path, keys: list[keystore.IssuerKey], *,
                  with_not_after: bool = True) -> Path:
    """An issuer key file as the code before the key ring (format version 1) wrote it."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    entries = []
    for k in keys:
        entry: dict[str, object] = {
            "token_type": k.token_type, "secret": base64.b64encode(k.secret).decode(),
            "not_before": k.not_before, "retire_at": k.retire_at}
        if with_not_after:
            entry["not_after"] = k.not_after
        entries.append(entry)
    path = state_dir / keystore.KEYS_FILE
    replace_file(path, json.dumps({"version": 1, "keys": entries}, indent=1).encode(), 0o600)
    return path


@pytest.fixture(scope="module")
def v1_keys() -> list[keystore.IssuerKey]:
    """Keys of a version 1 file: a retired pair in its overlap and a current pair."""
    old = [replace(keystore.generate(t, 1000, 5000), retire_at=3000)
           for t in keystore.TOKEN_TYPES]
    return old + [keystore.generate(t, 2000, 5000) for t in keystore.TOKEN_TYPES]


def test_key_files_without_not_after_get_the_default_lifetime(
        tmp_path: Path, v1_keys: list[keystore.IssuerKey]) -> None:
    write_v1_file(tmp_path, v1_keys, with_not_after=False)
    assert {k.not_after for k in keystore.load(tmp_path).keys} == {
        1000 + keystore.DEFAULT_LIFETIME, 2000 + keystore.DEFAULT_LIFETIME}


def test_version_1_files_are_read_and_migrated_at_start(
        tmp_path: Path, v1_keys: list[keystore.IssuerKey]) -> None:
    path = write_v1_file(tmp_path, v1_keys)
    before = path.read_bytes()

    def summary(keys: keystore.IssuerKeys) -> list[tuple[object, ...]]:
        return [(k.token_type, k.key_id, k.secret, k.not_before, k.retire_at, k.not_after)
                for k in keys.keys]

    expected = summary(keystore.IssuerKeys(tuple(v1_keys)))
    assert summary(keystore.load(tmp_path)) == expected  # read as it is, not rewritten
    assert path.read_bytes() == before
    assert summary(keystore.KeyFileCache(tmp_path).get()) == expected

    migrated = keystore.load_or_create(tmp_path, 2500)  # the issuer starts
    assert summary(migrated) == expected
    doc = json.loads(path.read_text())
    assert (doc["format"], doc["version"]) == ("privproc-key-ring", 2)
    assert [k["kind"] for k in doc["keys"]] == [
        "privacypass-0001", "privacypass-0002"] * 2
    assert path.stat().st_mode & 0o777 == 0o600
    assert summary(keystore.load(tmp_path)) == expected
    assert (tmp_path / keystore.VERIFICATION_KEYS_FILE).exists()
    # and the migrated file rotates as any other
    rotated = keystore.rotate(tmp_path, 3000, overlap=10)
    assert len(rotated.keys) == 4  # the first pair retired at 3000: gone
    assert {k.key_id for k in rotated.keys} >= {k.key_id for k in v1_keys[2:]}


def test_a_rotation_migrates_a_version_1_file_too(
        tmp_path: Path, v1_keys: list[keystore.IssuerKey]) -> None:
    path = write_v1_file(tmp_path, v1_keys)
    keys = keystore.renew_if_due(tmp_path, 6000, overlap=10, lifetime=5000)
    assert keys is not None and len(keys.keys) == 4
    assert json.loads(path.read_text())["version"] == 2


def test_verification_keys_hold_public_keys_and_only_voprf_secrets(
        tmp_path: Path, v1_keys: list[keystore.IssuerKey]) -> None:
    write_v1_file(tmp_path, v1_keys)
    keys = keystore.load_or_create(tmp_path, 2500)
    vpath = tmp_path / keystore.VERIFICATION_KEYS_FILE
    assert vpath.stat().st_mode & 0o777 == 0o600
    text = vpath.read_text()
    doc = json.loads(text)
    assert doc["format"] == "privproc-issuer-verification-keys"
    by_key = {base64.b64decode(e["token_key"]): e for e in doc["keys"]}
    assert set(by_key) == {k.token_key for k in keys.keys}
    for k in keys.keys:
        entry = by_key[k.token_key]
        assert (entry["token_type"], entry["not_before"], entry["end_of_life"],
                entry["current"]) == (k.token_type, k.not_before, k.end_of_life,
                                      k.retire_at is None)
        if k.token_type == pp.TOKEN_TYPE_BLIND_RSA:
            assert "secret" not in entry
            assert base64.b64encode(k.secret).decode() not in text
        else:
            assert base64.b64decode(entry["secret"]) == k.secret
    assert "PRIVATE" not in text
    read = keystore.read_verification_keys(tmp_path)
    assert {i: (a.token_type, a.end_of_life) for i, a in read.accepted(2500).items()} == {
        k.key_id: (k.token_type, k.end_of_life) for k in keys.keys}
    assert set(read.accepted(3000)) == {k.key_id for k in keys.keys if k.retire_at is None}
    for t in keystore.TOKEN_TYPES:
        assert read.current_token_key(t) == keys.current(t).token_key


def test_every_key_change_rewrites_the_verification_keys(tmp_path: Path) -> None:
    first = keystore.load_or_create(tmp_path, 0, lifetime=100)

    def current_keys() -> set[bytes]:
        read = keystore.read_verification_keys(tmp_path)
        return {read.current_token_key(t) for t in keystore.TOKEN_TYPES}

    assert current_keys() == {first.current(t).token_key for t in keystore.TOKEN_TYPES}
    (tmp_path / keystore.VERIFICATION_KEYS_FILE).unlink()
    keystore.load_or_create(tmp_path, 10, lifetime=100)  # a restart writes it again
    assert current_keys() == {first.current(t).token_key for t in keystore.TOKEN_TYPES}
    renewed = keystore.renew_if_due(tmp_path, 80, overlap=10, lifetime=100)
    assert renewed is not None
    assert current_keys() == {renewed.current(t).token_key for t in keystore.TOKEN_TYPES}
    rotated = keystore.rotate(tmp_path, 90, overlap=10, lifetime=100)
    assert current_keys() == {rotated.current(t).token_key for t in keystore.TOKEN_TYPES}


def test_verification_key_files_are_checked(tmp_path: Path) -> None:
    keys = keystore.load_or_create(tmp_path, 0)
    vpath = tmp_path / keystore.VERIFICATION_KEYS_FILE
    good = vpath.read_text()
    vpath.chmod(0o644)
    with pytest.raises(keystore.IssuerKeyError, match="readable by others"):
        keystore.read_verification_keys(tmp_path)
    vpath.chmod(0o600)
    doc = json.loads(good)
    rsa_entry = next(e for e in doc["keys"] if e["token_type"] == 2)
    rsa_entry["secret"] = base64.b64encode(
        keys.current(pp.TOKEN_TYPE_BLIND_RSA).secret).decode()
    vpath.write_text(json.dumps(doc))
    with pytest.raises(keystore.IssuerKeyError, match="carries a secret"):
        keystore.read_verification_keys(tmp_path)
    doc = json.loads(good)
    voprf_entry = next(e for e in doc["keys"] if e["token_type"] == 1)
    voprf_entry["secret"] = base64.b64encode(b"\x01" * 48).decode()
    vpath.write_text(json.dumps(doc))
    with pytest.raises(keystore.IssuerKeyError, match="does not match"):
        keystore.read_verification_keys(tmp_path)
    vpath.write_text(good.replace('"current": true', '"current": false'))
    with pytest.raises(keystore.IssuerKeyError, match="no current key"):
        keystore.read_verification_keys(tmp_path)
    vpath.unlink()
    with pytest.raises(keystore.IssuerKeyError, match="does not exist: start the issuer"):
        keystore.read_verification_keys(tmp_path)


def test_issuer_key_file_errors(tmp_path: Path) -> None:
    with pytest.raises(keystore.IssuerKeyError, match="does not exist"):
        keystore.load(tmp_path)
    with pytest.raises(keystore.IssuerKeyError, match="does not exist"):
        keystore.rotate(tmp_path / "nowhere", 0)
    keystore.load_or_create(tmp_path, 0)
    path = tmp_path / keystore.KEYS_FILE
    path.chmod(0o640)
    with pytest.raises(keystore.IssuerKeyError, match="readable by others"):
        keystore.load(tmp_path)
    path.chmod(0o600)
    doc = json.loads(path.read_text())
    doc["keys"] = [k for k in doc["keys"] if k["kind"] != "privacypass-0001"]
    path.write_text(json.dumps(doc))
    with pytest.raises(keystore.IssuerKeyError, match="no current key of kind"):
        keystore.load(tmp_path)
    path.write_text('{"version": 1, "keys": [{"token_type": 1}]}')
    with pytest.raises(keystore.IssuerKeyError, match="malformed"):
        keystore.load(tmp_path)
    with pytest.raises(keystore.IssuerKeyError, match="> 0"):
        keystore.rotate(tmp_path, 0, lifetime=0)
