"""The gateway's new OHTTP keys use the hybrid post-quantum KEM; stored X25519 keys from
before keep working."""

from __future__ import annotations

import json
from pathlib import Path

from privproc.gateway import keystore
from privproc.wire import hpke, ohttp


def test_new_keys_are_hybrid_and_survive_a_reload(tmp_path: Path) -> None:
    state = keystore.load_or_create(tmp_path, now=0.0)
    pair = state.current.key_pair
    assert pair.kem_id == hpke.KEM_MLKEM768_X25519
    config = state.published()[0]
    assert config.kem_id == 0x647A and len(config.public_key) == 1216
    doc = json.loads((tmp_path / keystore.KEYS_FILE).read_text())
    assert doc["keys"][0]["secret"] == "mlkem768-x25519:" + pair.private_bytes().hex()
    again = keystore.load(tmp_path).current.key_pair
    assert again.public_bytes == pair.public_bytes and again.kem_id == pair.kem_id
    record = state.current.key_record("gateway.example")
    assert ohttp.decode_key_config(record.key) == config  # the key record is the config
    sealed, client = ohttp.encapsulate_request(config, b"hi")
    request, server = state.accepted(1.0).decapsulate_request(sealed)
    assert request == b"hi"
    assert client.decapsulate_response(server.encapsulate_response(b"ok")) == b"ok"


def test_a_stored_x25519_key_stays_x25519_and_rotation_goes_hybrid(tmp_path: Path) -> None:
    state = keystore.load_or_create(tmp_path, now=0.0)
    path = tmp_path / keystore.KEYS_FILE
    doc = json.loads(path.read_text())
    classic = hpke.KeyPair.derive(bytes(32))
    doc["keys"][0]["secret"] = classic.private_bytes().hex()  # as written before 0x647A
    path.write_text(json.dumps(doc))
    old = keystore.load(tmp_path).current
    assert old.key_pair.kem_id == hpke.KEM_X25519_SHA256
    assert old.key_pair.public_bytes == classic.public_bytes
    rotated = keystore.rotate(tmp_path, now=10.0, grace_seconds=100.0)
    assert rotated.current.key_pair.kem_id == hpke.KEM_MLKEM768_X25519
    accepted = rotated.accepted(20.0)  # during the grace both KEMs open requests
    assert {k.config.kem_id for k in accepted.keys.values()} == {0x0020, 0x647A}
    assert state.current.key_id in accepted.keys
