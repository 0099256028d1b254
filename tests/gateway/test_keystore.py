from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from privproc.files import replace_file
from privproc.gateway import keystore
from privproc.gateway.redeem import Redeemer, RedemptionConfig
from privproc.gateway.spend import SqliteSpendStore
from privproc.issuer import keystore as issuer_keystore
from privproc.wire import bhttp, hpke, ohttp
from privproc.wire import privacypass as pp


def test_first_start_creates_one_current_key_with_mode_0600(tmp_path: Path) -> None:
    state = keystore.load_or_create(tmp_path / "gw", now=1000.0)
    path = tmp_path / "gw" / keystore.KEYS_FILE
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "gw").st_mode & 0o777 == 0o700
    assert [k.key_id for k in state.keys] == [1]
    assert state.current.retire_at is None
    again = keystore.load_or_create(tmp_path / "gw", now=2000.0)
    assert again.current.key_pair.private_bytes() == state.current.key_pair.private_bytes()


def test_rotation_keeps_the_old_key_for_the_grace_period(tmp_path: Path) -> None:
    first = keystore.load_or_create(tmp_path, now=0.0)
    rotated = keystore.rotate(tmp_path, now=100.0, grace_seconds=50.0)
    assert rotated.current.key_id == 2
    assert {k.key_id: k.retire_at for k in rotated.keys} == {1: 150.0, 2: None}
    assert set(rotated.accepted(now=149.0).keys) == {1, 2}
    assert set(rotated.accepted(now=150.0).keys) == {2}
    assert rotated.published() == [rotated.current.gateway_key.config]
    old = first.current.gateway_key.config
    sealed, _ = ohttp.encapsulate_request(old, b"r")
    assert rotated.accepted(now=120.0).decapsulate_request(sealed)[0] == b"r"


def test_rotation_drops_keys_past_their_grace_from_disk(tmp_path: Path) -> None:
    keystore.load_or_create(tmp_path, now=0.0)
    keystore.rotate(tmp_path, now=10.0, grace_seconds=5.0)
    state = keystore.rotate(tmp_path, now=20.0, grace_seconds=5.0)
    assert [k.key_id for k in state.keys] == [2, 3]
    first_key_hex = keystore.load(tmp_path).keys[0].key_pair.private_bytes().hex()
    assert first_key_hex in (tmp_path / keystore.KEYS_FILE).read_text()
    assert len(json.loads((tmp_path / keystore.KEYS_FILE).read_text())["keys"]) == 2


def test_key_ids_wrap_and_skip_ids_in_use(tmp_path: Path) -> None:
    keystore.load_or_create(tmp_path, now=0.0)
    for i in range(300):
        state = keystore.rotate(tmp_path, now=float(i), grace_seconds=0.5)
    assert all(0 <= k.key_id <= 255 for k in state.keys)
    assert len({k.key_id for k in state.keys}) == len(state.keys)


def test_refuses_world_readable_or_malformed_files(tmp_path: Path) -> None:
    keystore.load_or_create(tmp_path, now=0.0)
    path = tmp_path / keystore.KEYS_FILE
    path.chmod(0o644)
    with pytest.raises(keystore.KeyStoreError, match="readable by others"):
        keystore.load(tmp_path)
    path.chmod(0o600)
    path.write_text('{"version": 9, "keys": []}')
    with pytest.raises(keystore.KeyStoreError, match="unsupported format version 9"):
        keystore.load(tmp_path)
    path.write_text('{"version": 1, "keys": [{"key_id": 1}]}')
    with pytest.raises(keystore.KeyStoreError, match="malformed"):
        keystore.load(tmp_path)
    path.write_text("not json")
    with pytest.raises(keystore.KeyStoreError, match="malformed"):
        keystore.load(tmp_path)


def test_rotate_without_state_and_negative_grace(tmp_path: Path) -> None:
    with pytest.raises(keystore.KeyStoreError, match="does not exist"):
        keystore.rotate(tmp_path, now=0.0)
    keystore.load_or_create(tmp_path, now=0.0)
    with pytest.raises(keystore.KeyStoreError, match=">= 0"):
        keystore.rotate(tmp_path, now=0.0, grace_seconds=-1)


def test_keys_carry_not_after_and_a_key_record(tmp_path: Path) -> None:
    state = keystore.load_or_create(tmp_path, now=1000.5, lifetime=100)
    record = state.current.key_record("gateway.test")
    assert record.purpose == "ohttp-gateway" and record.owner == "gateway.test"
    assert record.key == state.current.gateway_key.config.encode()
    assert (record.not_before, record.not_after) == (1000, 1100)


def test_renewal_happens_once_a_quarter_of_the_lifetime_is_left(tmp_path: Path) -> None:
    keystore.load_or_create(tmp_path, now=0.0, lifetime=100)
    assert keystore.renew_if_due(tmp_path, 75.0, grace_seconds=10, lifetime=100) is None
    renewed = keystore.renew_if_due(tmp_path, 76.0, grace_seconds=10, lifetime=100)
    assert renewed is not None and renewed.current.key_id == 2
    assert renewed.current.not_after == 176.0
    assert {k.key_id: k.retire_at for k in renewed.keys} == {1: 86.0, 2: None}
    assert keystore.renew_if_due(tmp_path, 77.0, grace_seconds=10, lifetime=100) is None


# --------------------------------------------------------------------------- format 1


def write_v1_file(state_dir: Path, keys: list[keystore.StoredKey]) -> Path:
    """A key file as the code before the key ring (format version 1) wrote it."""
    doc = {"version": 1, "keys": [
        {"key_id": k.key_id, "private_key": k.key_pair.private_bytes().hex(),
         "created_at": k.created_at, "retire_at": k.retire_at, "not_after": k.not_after}
        for k in keys]}
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / keystore.KEYS_FILE
    replace_file(path, json.dumps(doc, indent=1).encode() + b"\n", 0o600)
    return path


def v1_keys() -> list[keystore.StoredKey]:
    pair = hpke.KeyPair.from_private_bytes
    return [keystore.StoredKey(7, pair(bytes(range(1, 33))), 100.0, 250.0, 1000.0),
            keystore.StoredKey(8, pair(bytes(range(2, 34))), 200.0, None, 1100.0)]


def summary(state: keystore.KeyState) -> list[tuple[object, ...]]:
    return [(k.key_id, k.key_pair.private_bytes(), k.created_at, k.retire_at, k.not_after)
            for k in state.keys]


def test_version_1_files_are_read_and_migrated_at_start(tmp_path: Path) -> None:
    path = write_v1_file(tmp_path, v1_keys())
    before = path.read_bytes()
    expected = summary(keystore.KeyState(tuple(v1_keys())))
    state = keystore.load(tmp_path)  # a running gateway re-reading: no rewrite
    assert summary(state) == expected and path.read_bytes() == before
    assert set(state.accepted(240.0).keys) == {7, 8}
    assert set(state.accepted(250.0).keys) == {8}

    migrated = keystore.load_or_create(tmp_path, now=240.0)  # the gateway starts
    assert summary(migrated) == expected
    doc = json.loads(path.read_text())
    assert (doc["format"], doc["version"], doc["secret_type"]) == (
        "privproc-key-ring", 2, "hpke-x25519-private-key")
    assert [(k["id"], k["kind"], k["retire_at"]) for k in doc["keys"]] == [
        (7, "ohttp-gateway", 250.0), (8, "ohttp-gateway", None)]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert summary(keystore.load(tmp_path)) == expected
    rotated = keystore.rotate(tmp_path, now=260.0, grace_seconds=10.0)
    assert [k.key_id for k in rotated.keys] == [8, 9]  # the ids go on after 8


def test_version_1_files_without_not_after_get_the_default_lifetime(tmp_path: Path) -> None:
    path = write_v1_file(tmp_path, v1_keys())
    doc = json.loads(path.read_text())
    for k in doc["keys"]:
        del k["not_after"]
    path.write_text(json.dumps(doc))
    assert [k.not_after for k in keystore.load(tmp_path).keys] == [
        100.0 + keystore.DEFAULT_LIFETIME_SECONDS, 200.0 + keystore.DEFAULT_LIFETIME_SECONDS]


def test_the_gateway_accepts_a_key_until_it_retires_even_past_not_after(
        tmp_path: Path) -> None:
    keystore.load_or_create(tmp_path, now=0.0, lifetime=100)
    state = keystore.load(tmp_path)
    assert set(state.accepted(500.0).keys) == {1}  # no renewal ran: still opens requests
    rotated = keystore.rotate(tmp_path, now=500.0, grace_seconds=10.0, lifetime=100)
    assert {k.key_id: k.retire_at for k in rotated.keys} == {1: 510.0, 2: None}
    assert set(rotated.accepted(509.0).keys) == {1, 2}


def test_all_key_ids_in_use(tmp_path: Path) -> None:
    pair = hpke.KeyPair.derive(bytes(32))
    write_v1_file(tmp_path, [keystore.StoredKey(i, pair, 0.0, None if i == 255 else 1e6, 1e6)
                             for i in range(256)])
    with pytest.raises(keystore.KeyStoreError, match="all 256 key identifiers are in use"):
        keystore.rotate(tmp_path, now=300.0, grace_seconds=1e6)
    assert len(keystore.load(tmp_path).keys) == 256
    assert json.loads((tmp_path / keystore.KEYS_FILE).read_text())["version"] == 1  # unwritten
    state = keystore.rotate(tmp_path, now=1e6, grace_seconds=5.0)  # the grace has ended
    assert [(k.key_id, k.retire_at) for k in state.keys] == [(255, 1e6 + 5.0), (0, None)]


# --------------------------------------------------------------------------- redemption


ISSUER = "issuer.test"
ORIGIN = "gateway.test"
T0 = 1_700_000_000


@pytest.fixture(scope="module")
def issuer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An issuer's state directory, as the issuer leaves it at start."""
    path = tmp_path_factory.mktemp("issuer")
    issuer_keystore.load_or_create(path, T0)
    return path


def redeem(redeemer: Redeemer, key: issuer_keystore.IssuerKey, now: float
           ) -> tuple[int | None, bytes]:
    """Redeem a fresh token of ``key``: (None, b"") when admitted, else (status, header)."""
    challenge = pp.TokenChallenge(key.token_type, ISSUER, b"", [ORIGIN])
    request, state = pp.begin_issuance(key.token_type, key.public, challenge)
    token = pp.finalize_token(state, pp.issue(key.private, request))
    inner = bhttp.Request(
        method=b"POST", scheme=b"https", authority=ORIGIN.encode(), path=b"/v1/chat",
        headers=(bhttp.Field(b"authorization", pp.format_authorization(token).encode()),),
        content=b"{}")
    _, refusal = asyncio.run(redeemer.redeem(inner, now))
    if refusal is None:
        return None, b""
    header = next((f.value for f in refusal.response.headers
                   if f.name == b"www-authenticate"), b"")
    return refusal.response.status, header


def test_the_gateway_redeems_with_the_verification_file_only(
        tmp_path: Path, issuer_dir: Path) -> None:
    keydir = tmp_path / "issuer"
    shutil.copytree(issuer_dir, keydir)
    keys = issuer_keystore.load(keydir)
    (keydir / issuer_keystore.KEYS_FILE).unlink()  # the gateway must not need it
    for lock in keydir.glob(".*"):
        lock.unlink()
    assert [p.name for p in keydir.iterdir()] == [issuer_keystore.VERIFICATION_KEYS_FILE]
    redeemer = Redeemer(RedemptionConfig(
        issuer_keys=keydir, issuer_name=ISSUER, origin_name=ORIGIN,
        spend_store=SqliteSpendStore(tmp_path / "spent.db")))
    for t in (pp.TOKEN_TYPE_BLIND_RSA, pp.TOKEN_TYPE_VOPRF):
        assert redeem(redeemer, keys.current(t), T0 + 10) == (None, b"")
    # the 401 challenge names the current keys, from the verification file too
    status, header = redeem(redeemer, keys.current(pp.TOKEN_TYPE_BLIND_RSA),
                            T0 + issuer_keystore.DEFAULT_LIFETIME)
    assert status == 401
    offered = {c.token_key for c in pp.parse_www_authenticate(header.decode())}
    assert offered == {keys.current(t).token_key for t in issuer_keystore.TOKEN_TYPES}
    # what gateway/app.py staples: every accepted key's token_key
    assert {k.token_key for k in redeemer.keys.get().accepted(T0).values()} == offered
    assert {k.token_key for k in redeemer.keys.accepted(T0).values()} == offered


def test_the_verification_file_holds_no_type_2_private_key(issuer_dir: Path) -> None:
    key = issuer_keystore.load(issuer_dir).current(pp.TOKEN_TYPE_BLIND_RSA)
    text = (issuer_dir / issuer_keystore.VERIFICATION_KEYS_FILE).read_text()
    rsa_key = serialization.load_der_private_key(key.secret, password=None)
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    numbers = rsa_key.private_numbers()
    for secret in (numbers.d, numbers.p, numbers.q):
        raw = secret.to_bytes((secret.bit_length() + 7) // 8, "big")
        for encoded in (raw.hex(), base64.b64encode(raw).decode(), str(secret)):
            assert encoded not in text
    assert base64.b64encode(key.secret).decode() not in text
    entries = json.loads(text)["keys"]
    assert all("secret" not in e for e in entries if e["token_type"] == 2)


def test_the_redeemer_follows_an_issuer_rotation(tmp_path: Path, issuer_dir: Path) -> None:
    keydir = tmp_path / "issuer"
    shutil.copytree(issuer_dir, keydir)
    first = issuer_keystore.load(keydir)
    redeemer = Redeemer(RedemptionConfig(
        issuer_keys=keydir, issuer_name=ISSUER, origin_name=ORIGIN,
        spend_store=SqliteSpendStore(tmp_path / "spent.db")))
    rotated = issuer_keystore.rotate(keydir, T0 + 100, overlap=50)  # the issuer CLI
    (keydir / issuer_keystore.KEYS_FILE).chmod(0)
    for t in (pp.TOKEN_TYPE_BLIND_RSA, pp.TOKEN_TYPE_VOPRF):
        assert redeem(redeemer, rotated.current(t), T0 + 120)[0] is None
        assert redeem(redeemer, first.current(t), T0 + 149)[0] is None  # in the overlap
        assert redeem(redeemer, first.current(t), T0 + 150)[0] == 401


def test_the_redeemer_needs_the_verification_file(tmp_path: Path) -> None:
    with pytest.raises(issuer_keystore.IssuerKeyError, match="does not exist"):
        Redeemer(RedemptionConfig(issuer_keys=tmp_path, issuer_name=ISSUER,
                                  origin_name=ORIGIN,
                                  spend_store=SqliteSpendStore(tmp_path / "spent.db")))
