"""RFC 9458: key configurations and encapsulation, against Appendix A byte for byte."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privproc.wire import hpke, ohttp
from privproc.wire.errors import DecryptError, KeyConfigError, OHTTPError, UnknownKeyError

A = json.loads((Path(__file__).parent.parent / "vectors/ohttp/rfc9458-appendixA.json").read_text())


def h(name: str) -> bytes:
    return bytes.fromhex(A[name])


def gateway_key() -> ohttp.GatewayKey:
    config = ohttp.decode_key_config(h("key_config"))
    return ohttp.GatewayKey(config, hpke.KeyPair.from_private_bytes(h("server_secret_key_skR")))


def test_appendix_a_key_config_decodes_and_reencodes() -> None:
    config = ohttp.decode_key_config(h("key_config"))
    assert config.key_id == 1
    assert config.kem_id == 0x0020
    assert config.public_key == h("server_public_key_pkR")
    assert config.symmetric == (ohttp.SymmetricSuite(1, 1), ohttp.SymmetricSuite(1, 3))
    assert config.encode() == h("key_config")


def test_appendix_a_client_side_byte_exact() -> None:
    config = ohttp.decode_key_config(h("key_config"))
    eph = hpke.KeyPair.from_private_bytes(h("client_ephemeral_secret_key_skE"))
    assert eph.public_bytes == h("client_ephemeral_public_key_enc")
    sealed, ctx = ohttp.encapsulate_request(config, h("request_bhttp"), ephemeral=eph)
    assert sealed == h("encapsulated_request")
    assert len(sealed) == 80  # the RFC's example HTTP message wrongly says 78
    assert ctx.decapsulate_response(h("encapsulated_response")) == h("response_bhttp")


def test_appendix_a_gateway_side_byte_exact() -> None:
    keys = ohttp.GatewayKeys([gateway_key()])
    request, ctx = keys.decapsulate_request(h("encapsulated_request"))
    assert request == h("request_bhttp")
    assert ctx.enc == h("client_ephemeral_public_key_enc")
    sealed = ctx.encapsulate_response(h("response_bhttp"), response_nonce=h("response_nonce"))
    assert sealed == h("encapsulated_response")
    assert len(sealed) == 35  # the RFC's example HTTP message wrongly says 38


def test_ohttp_keys_list_round_trip_and_skips_unknown_kem() -> None:
    k1 = ohttp.GatewayKey.create(7, hpke.KeyPair.generate()).config
    k2 = ohttp.GatewayKey.create(8, hpke.KeyPair.generate()).config
    unknown = bytes.fromhex("09 0010".replace(" ", "")) + bytes(65) + bytes.fromhex("000400010001")
    body = ohttp.encode_key_configs([k1]) + len(unknown).to_bytes(2, "big") + unknown
    body += ohttp.encode_key_configs([k2])
    assert ohttp.decode_key_configs(body) == [k1, k2]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "need 3 header bytes"),
        (bytes.fromhex("010010") + bytes(65), "unsupported KEM 0x0010"),
        (bytes.fromhex("010020") + bytes(10), "truncated"),
        (bytes.fromhex("010020") + bytes(32) + bytes.fromhex("0003000100"), "multiple of 4"),
        (bytes.fromhex("010020") + bytes(32) + bytes.fromhex("0000"), "multiple of 4"),
        (bytes.fromhex("010020") + bytes(32) + bytes.fromhex("0008000100"), "truncated"),
    ],
)
def test_malformed_key_configs(data: bytes, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message):
        ohttp.decode_key_config(data)


def test_key_config_trailing_bytes() -> None:
    with pytest.raises(KeyConfigError, match="1 trailing bytes"):
        ohttp.decode_key_config(h("key_config") + b"\x00")


def test_key_configs_list_errors() -> None:
    with pytest.raises(KeyConfigError, match="no usable key configuration"):
        ohttp.decode_key_configs(b"")
    with pytest.raises(KeyConfigError, match="announces 200 bytes"):
        ohttp.decode_key_configs(b"\x00\xc8" + h("key_config"))
    with pytest.raises(KeyConfigError, match="truncated length prefix"):
        ohttp.decode_key_configs(ohttp.encode_key_configs([gateway_key().config]) + b"\x00")


def test_unknown_key_id_and_suite() -> None:
    keys = ohttp.GatewayKeys([gateway_key()])
    msg = bytearray(h("encapsulated_request"))
    msg[0] = 2
    with pytest.raises(UnknownKeyError, match="unknown key identifier 2"):
        keys.decapsulate_request(bytes(msg))
    msg = bytearray(h("encapsulated_request"))
    msg[6] = 2  # AES-256-GCM, not offered by this configuration
    with pytest.raises(UnknownKeyError, match="does not accept suite"):
        keys.decapsulate_request(bytes(msg))


def test_short_messages() -> None:
    keys = ohttp.GatewayKeys([gateway_key()])
    with pytest.raises(DecryptError, match="7-byte header"):
        keys.decapsulate_request(b"\x01\x00")
    with pytest.raises(DecryptError, match="at least 55 bytes"):
        keys.decapsulate_request(h("encapsulated_request")[:54])
    config = ohttp.decode_key_config(h("key_config"))
    _, ctx = ohttp.encapsulate_request(config, b"x")
    with pytest.raises(DecryptError, match="too short"):
        ctx.decapsulate_response(bytes(31))


def test_every_single_bit_flip_of_the_request_is_refused() -> None:
    keys = ohttp.GatewayKeys([gateway_key()])
    original = h("encapsulated_request")
    for i in range(len(original)):
        for bit in range(8):
            msg = bytearray(original)
            msg[i] ^= 1 << bit
            with pytest.raises(OHTTPError):
                keys.decapsulate_request(bytes(msg))


def test_every_single_bit_flip_of_the_response_is_refused() -> None:
    config = ohttp.decode_key_config(h("key_config"))
    eph = hpke.KeyPair.from_private_bytes(h("client_ephemeral_secret_key_skE"))
    _, ctx = ohttp.encapsulate_request(config, h("request_bhttp"), ephemeral=eph)
    original = h("encapsulated_response")
    for i in range(len(original)):
        msg = bytearray(original)
        msg[i] ^= 0x80
        with pytest.raises(DecryptError):
            ctx.decapsulate_response(bytes(msg))


@pytest.mark.parametrize(
    "aead", [hpke.Aead.AES_128_GCM, hpke.Aead.AES_256_GCM, hpke.Aead.CHACHA20_POLY1305]
)
def test_round_trip_each_aead_and_custom_labels(aead: hpke.Aead) -> None:
    key = ohttp.GatewayKey.create(3, hpke.KeyPair.generate(), aeads=[aead])
    keys = ohttp.GatewayKeys([key])
    labels = {"request_label": b"app/req", "response_label": b"app/res"}
    sealed, cctx = ohttp.encapsulate_request(key.config, b"ping", **labels)
    with pytest.raises(DecryptError):
        keys.decapsulate_request(sealed)  # wrong labels: bound into the HPKE info
    req, sctx = keys.decapsulate_request(sealed, **labels)
    assert req == b"ping"
    assert cctx.decapsulate_response(sctx.encapsulate_response(b"pong")) == b"pong"


def test_several_key_ids_for_rotation() -> None:
    old = ohttp.GatewayKey.create(1, hpke.KeyPair.generate())
    new = ohttp.GatewayKey.create(2, hpke.KeyPair.generate())
    keys = ohttp.GatewayKeys([old, new])
    for key in (old, new):
        sealed, _ = ohttp.encapsulate_request(key.config, b"r")
        assert keys.decapsulate_request(sealed)[0] == b"r"
    with pytest.raises(KeyConfigError, match="share key_id 1"):
        ohttp.GatewayKeys([old, old])


def test_config_and_key_pair_must_match() -> None:
    config = ohttp.GatewayKey.create(1, hpke.KeyPair.generate()).config
    with pytest.raises(KeyConfigError, match="does not match"):
        ohttp.GatewayKey(config, hpke.KeyPair.generate())


def test_suite_choice_must_be_offered() -> None:
    config = ohttp.decode_key_config(h("key_config"))
    with pytest.raises(UnknownKeyError, match="does not offer"):
        ohttp.encapsulate_request(config, b"x", suite=hpke.Suite(0x20, 1, 2))
    only_export = ohttp.KeyConfig(1, 0x20, bytes(32), (ohttp.SymmetricSuite(1, 0xFFFF),))
    with pytest.raises(UnknownKeyError, match="no supported HPKE suite"):
        ohttp.encapsulate_request(only_export, b"x")


@given(st.binary(max_size=200))
def test_fuzz_gateway_raises_only_ohttp_errors(data: bytes) -> None:
    keys = ohttp.GatewayKeys([gateway_key()])
    with pytest.raises(OHTTPError):
        keys.decapsulate_request(data)


@given(st.binary(max_size=120))
def test_fuzz_key_config_parsers(data: bytes) -> None:
    for parse in (ohttp.decode_key_config, ohttp.decode_key_configs):
        with contextlib.suppress(KeyConfigError):
            parse(data)
