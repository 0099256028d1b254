"""RFC 9180 vectors for DHKEM(X25519, HKDF-SHA256) with HKDF-SHA256 and HKDF-SHA512, all
modes and AEADs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from privproc.wire import hpke
from privproc.wire.errors import HPKEError

_DIR = Path(__file__).parent.parent / "vectors/hpke"
VECTORS = json.loads((_DIR / "rfc9180-kem0020-kdf0001.json").read_text())
VECTORS_SHA512 = json.loads((_DIR / "rfc9180-kem0020-kdf0003.json").read_text())


def _id(v: dict[str, Any]) -> str:
    return f"kdf{v['kdf_id']}-mode{v['mode']}-aead{v['aead_id']:04x}"


def _h(s: str) -> bytes:
    return bytes.fromhex(s)


def test_all_sixteen_mode_aead_combinations_are_present() -> None:
    for vectors, kdf in ((VECTORS, 1), (VECTORS_SHA512, 3)):
        assert {(v["mode"], v["aead_id"], v["kdf_id"]) for v in vectors} == {
            (m, a, kdf) for m in range(4) for a in (1, 2, 3, 0xFFFF)
        }


def _setup(v: dict[str, Any]) -> tuple[bytes, hpke.SenderContext, hpke.RecipientContext]:
    suite = hpke.Suite(v["kem_id"], v["kdf_id"], v["aead_id"])
    recipient = hpke.KeyPair.derive(_h(v["ikmR"]))
    ephemeral = hpke.KeyPair.derive(_h(v["ikmE"]))
    assert recipient.private_bytes() == _h(v["skRm"])
    assert recipient.public_bytes == _h(v["pkRm"])
    assert ephemeral.public_bytes == _h(v["pkEm"])
    psk = _h(v.get("psk", ""))
    psk_id = _h(v.get("psk_id", ""))
    sender_key = hpke.KeyPair.derive(_h(v["ikmS"])) if "ikmS" in v else None
    if sender_key is not None:
        assert sender_key.public_bytes == _h(v["pkSm"])
    enc, sender = hpke.setup_sender(
        suite, recipient.public_bytes, _h(v["info"]),
        psk=psk, psk_id=psk_id, sender_key=sender_key, ephemeral=ephemeral,
    )
    receiver = hpke.setup_recipient(
        suite, enc, hpke.KeyPair.from_private_bytes(_h(v["skRm"])), _h(v["info"]),
        psk=psk, psk_id=psk_id,
        sender_public=sender_key.public_bytes if sender_key else None,
    )
    return enc, sender, receiver


@pytest.mark.parametrize("v", VECTORS + VECTORS_SHA512, ids=_id)
def test_rfc9180_vector(v: dict[str, Any]) -> None:
    enc, sender, receiver = _setup(v)
    assert enc == _h(v["enc"])
    ephemeral = hpke.KeyPair.derive(_h(v["ikmE"]))
    assert ephemeral.private_bytes() == _h(v["skEm"])
    if v["aead_id"] != 0xFFFF:
        for e in v["encryptions"]:
            assert sender.seal(_h(e["pt"]), _h(e["aad"])) == _h(e["ct"])
            assert receiver.open(_h(e["ct"]), _h(e["aad"])) == _h(e["pt"])
    for x in v["exports"]:
        assert sender.export(_h(x["exporter_context"]), x["L"]) == _h(x["exported_value"])
        assert receiver.export(_h(x["exporter_context"]), x["L"]) == _h(x["exported_value"])


def test_open_rejects_tampered_ciphertext_and_wrong_aad() -> None:
    v = next(x for x in VECTORS if x["mode"] == 0 and x["aead_id"] == 1)
    _, sender, receiver = _setup(v)
    ct = bytearray(sender.seal(b"hello", b"aad"))
    ct[0] ^= 1
    with pytest.raises(HPKEError, match="not authentic"):
        receiver.open(bytes(ct), b"aad")
    _, sender, receiver = _setup(v)
    with pytest.raises(HPKEError, match="not authentic"):
        receiver.open(sender.seal(b"hello", b"aad"), b"other")


def test_wrong_recipient_key_cannot_open() -> None:
    suite = hpke.Suite(0x20, 1, 1)
    right = hpke.KeyPair.generate()
    wrong = hpke.KeyPair.generate()
    enc, sender = hpke.setup_sender(suite, right.public_bytes, b"info")
    receiver = hpke.setup_recipient(suite, enc, wrong, b"info")
    with pytest.raises(HPKEError):
        receiver.open(sender.seal(b"secret"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0x10, 1, 1), "unsupported KEM"),
        ((0x20, 0x10, 1), "unsupported KDF"),
        ((0x20, 1, 7), "unsupported AEAD"),
    ],
)
def test_unsupported_suites_are_refused(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(HPKEError, match=message):
        hpke.Suite(*args)


def test_bad_key_and_enc_lengths() -> None:
    suite = hpke.Suite(0x20, 1, 1)
    with pytest.raises(HPKEError, match="public key must be 32 bytes, got 31"):
        hpke.setup_sender(suite, bytes(31))
    with pytest.raises(HPKEError, match="enc must be 32 bytes, got 33"):
        hpke.setup_recipient(suite, bytes(33), hpke.KeyPair.generate())
    with pytest.raises(HPKEError, match="private key must be 32 bytes"):
        hpke.KeyPair.from_private_bytes(b"short")
    with pytest.raises(HPKEError, match="at least 32 bytes of ikm"):
        hpke.KeyPair.derive(b"short")


def test_low_order_share_is_refused() -> None:
    suite = hpke.Suite(0x20, 1, 1)
    with pytest.raises(HPKEError):
        hpke.setup_recipient(suite, bytes(32), hpke.KeyPair.generate())


def test_psk_inputs_must_come_together() -> None:
    suite = hpke.Suite(0x20, 1, 1)
    pk = hpke.KeyPair.generate().public_bytes
    with pytest.raises(HPKEError, match="together"):
        hpke.setup_sender(suite, pk, psk=bytes(32))
    with pytest.raises(HPKEError, match="entropy"):
        hpke.setup_sender(suite, pk, psk=b"x", psk_id=b"id")


def test_export_only_refuses_seal_and_open() -> None:
    suite = hpke.Suite(0x20, 1, 0xFFFF)
    kp = hpke.KeyPair.generate()
    enc, sender = hpke.setup_sender(suite, kp.public_bytes)
    receiver = hpke.setup_recipient(suite, enc, kp)
    assert sender.export(b"x", 32) == receiver.export(b"x", 32)
    with pytest.raises(HPKEError, match="export-only"):
        sender.seal(b"x")
    with pytest.raises(HPKEError, match="export-only"):
        receiver.open(b"x" * 16)


def test_keypair_repr_does_not_leak_private_key() -> None:
    kp = hpke.KeyPair.generate()
    assert kp.private_bytes().hex() not in repr(kp)
