from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from privproc.gateway import keystore
from privproc.wire import ohttp


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
