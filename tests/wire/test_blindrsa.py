"""RFC 9474 RSABSSA-SHA384: the four vectors byte for byte, plus key encodings and failures."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import gmpy2  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from privproc.wire import blindrsa
from privproc.wire.blindrsa import BlindRSAError, Variant
from privproc.wire.errors import WireError

VECTORS = Path(__file__).parent.parent / "vectors/privacypass"
RFC9474: list[dict[str, str]] = json.loads((VECTORS / "test_vectors_rfc9474.json").read_text())
RFC9578: dict[str, Any] = json.loads((VECTORS / "rfc9578-issuance-vectors.json").read_text())


def _key(v: dict[str, str]) -> rsa.RSAPrivateKey:
    p, q, n, e, d = (int(v[x], 16) for x in ("p", "q", "n", "e", "d"))
    return rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, n),
    ).private_key()


@cache
def vector_key() -> rsa.RSAPrivateKey:
    return _key(RFC9474[0])  # all four vectors share one 4096-bit key


@cache
def other_key() -> rsa.RSAPrivateKey:
    return blindrsa.generate_private_key(2048)


def test_vector_file_covers_all_four_variants() -> None:
    assert sorted(v["name"] for v in RFC9474) == sorted(x.value for x in Variant)
    assert all(_key(v).private_numbers() == vector_key().private_numbers() for v in RFC9474)


@pytest.mark.parametrize("v", RFC9474, ids=[v["name"] for v in RFC9474])
def test_rfc9474_vector_byte_exact(v: dict[str, str]) -> None:
    variant = Variant(v["name"])
    sk = vector_key()
    pk = sk.public_key()
    n = pk.public_numbers().n
    assert variant.randomized == (v["is_randomized"] == "0x01")
    assert variant.salt_len == int(v["sLen"], 16)

    prefix = bytes.fromhex(v["msg_prefix"])
    prepared = blindrsa.prepare(bytes.fromhex(v["msg"]), variant, lambda k: prefix)
    assert prepared.hex() == v["input_msg"]

    salt = bytes.fromhex(v["salt"])
    if "encoded_msg" in v:
        encoded = blindrsa.emsa_pss_encode(prepared, n.bit_length() - 1, salt)
        assert encoded.hex() == v["encoded_msg"]

    inv = int(v["inv"], 16)
    r = int(gmpy2.invert(inv, n))  # the vectors give r^-1; blind() takes r
    blinded, got_inv = blindrsa.blind(pk, prepared, variant, r=r, salt=salt)
    assert blinded.hex() == v["blinded_msg"]
    assert got_inv == inv

    blind_sig = blindrsa.blind_sign(sk, blinded)
    assert blind_sig.hex() == v["blind_sig"]
    assert blindrsa.blind_sign(blindrsa.SigningKey.from_private_key(sk), blinded) == blind_sig

    sig = blindrsa.finalize(pk, prepared, blind_sig, inv, variant)
    assert sig.hex() == v["sig"]
    blindrsa.verify(pk, prepared, sig, variant)
    blindrsa.verify(pk, bytes.fromhex(v["input_msg"]), bytes.fromhex(v["sig"]), variant)


def test_blind_draws_salt_then_r_from_rand() -> None:
    v = RFC9474[0]
    pk = vector_key().public_key()
    n = pk.public_numbers().n
    inv = int(v["inv"], 16)
    r = int(gmpy2.invert(inv, n))
    script = [bytes.fromhex(v["salt"]), r.to_bytes(512, "big")]
    blinded, got_inv = blindrsa.blind(
        pk, bytes.fromhex(v["input_msg"]), Variant.PSS_RANDOMIZED, rand=lambda k: script.pop(0)
    )
    assert blinded.hex() == v["blinded_msg"] and got_inv == inv


@pytest.mark.parametrize("variant", list(Variant))
def test_round_trip_random(variant: Variant) -> None:
    sk = other_key()
    pk = sk.public_key()
    prepared = blindrsa.prepare(b"hello", variant)
    assert len(prepared) == (37 if variant.randomized else 5)
    blinded, inv = blindrsa.blind(pk, prepared, variant)
    sig = blindrsa.finalize(pk, prepared, blindrsa.blind_sign(sk, blinded), inv, variant)
    blindrsa.verify(pk, prepared, sig, variant)
    # the unblinded signature is an ordinary RSASSA-PSS signature
    assert len(sig) == 256
    # blinding hides the message: two blindings differ
    assert blindrsa.blind(pk, prepared, variant)[0] != blinded


def test_wrong_key_and_tampering_fail() -> None:
    v = RFC9474[2]  # PSS-Deterministic
    variant = Variant(v["name"])
    pk = vector_key().public_key()
    msg = bytes.fromhex(v["input_msg"])
    sig = bytes.fromhex(v["sig"])
    other = blindrsa.generate_private_key(4096).public_key()
    with pytest.raises(BlindRSAError, match="invalid"):
        blindrsa.verify(other, msg, sig, variant)
    tampered = bytearray(sig)
    tampered[100] ^= 1
    with pytest.raises(BlindRSAError):
        blindrsa.verify(pk, msg, bytes(tampered), variant)
    with pytest.raises(BlindRSAError):
        blindrsa.verify(pk, msg + b"x", sig, variant)
    with pytest.raises(BlindRSAError, match="bytes"):
        blindrsa.verify(pk, msg, sig[1:], variant)
    # the salt length is part of the variant: a PSS signature is no PSSZERO signature
    with pytest.raises(BlindRSAError):
        blindrsa.verify(pk, msg, sig, Variant.PSSZERO_DETERMINISTIC)
    # finalize refuses a blind signature that does not unblind to a valid signature
    blinded_sig = bytearray(bytes.fromhex(v["blind_sig"]))
    blinded_sig[-1] ^= 1
    with pytest.raises(BlindRSAError, match="invalid"):
        blindrsa.finalize(pk, msg, bytes(blinded_sig), int(v["inv"], 16), variant)


def test_blind_sign_refuses_out_of_range_and_bad_length() -> None:
    sk = vector_key()
    n = sk.public_key().public_numbers().n
    k = 512
    with pytest.raises(BlindRSAError, match="out of range"):
        blindrsa.blind_sign(sk, n.to_bytes(k, "big"))
    with pytest.raises(BlindRSAError, match="out of range"):
        blindrsa.blind_sign(sk, b"\xff" * k)
    with pytest.raises(BlindRSAError, match="512 bytes"):
        blindrsa.blind_sign(sk, b"\x01" * (k - 1))
    with pytest.raises(BlindRSAError, match="512 bytes"):
        blindrsa.blind_sign(sk, b"\x00" + (n - 1).to_bytes(k, "big"))
    # n - 1 is in range and signs fine
    assert len(blindrsa.blind_sign(sk, (n - 1).to_bytes(k, "big"))) == k


def test_blind_sign_detects_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    sk = other_key()
    blinded, _ = blindrsa.blind(sk.public_key(), b"m", Variant.PSS_DETERMINISTIC)
    real = gmpy2.powmod_sec
    calls: list[int] = []

    def faulty(x: Any, y: Any, m: Any) -> Any:
        calls.append(1)
        return real(x, y, m) + 1  # a glitched CRT half

    monkeypatch.setattr(gmpy2, "powmod_sec", faulty)
    with pytest.raises(BlindRSAError, match="fault"):
        blindrsa.blind_sign(sk, blinded)
    assert calls  # the CRT path really goes through powmod_sec
    monkeypatch.setattr(gmpy2, "powmod_sec", real)
    assert len(blindrsa.blind_sign(sk, blinded)) == 256


def test_blind_input_checks() -> None:
    pk = other_key().public_key()
    n = pk.public_numbers().n
    with pytest.raises(BlindRSAError, match="salt"):
        blindrsa.blind(pk, b"m", Variant.PSS_DETERMINISTIC, salt=b"\x00" * 47)
    with pytest.raises(BlindRSAError, match="salt"):
        blindrsa.blind(pk, b"m", Variant.PSSZERO_DETERMINISTIC, salt=b"\x00")
    with pytest.raises(BlindRSAError, match="range"):
        blindrsa.blind(pk, b"m", Variant.PSS_DETERMINISTIC, r=n)
    with pytest.raises(BlindRSAError, match="range"):
        blindrsa.blind(pk, b"m", Variant.PSS_DETERMINISTIC, r=0)
    with pytest.raises(BlindRSAError, match="random source"):
        blindrsa.blind(pk, b"m", Variant.PSSZERO_DETERMINISTIC, rand=lambda k: b"\xff" * k)
    with pytest.raises(BlindRSAError, match="random source returned"):
        blindrsa.prepare(b"m", Variant.PSS_RANDOMIZED, lambda k: b"short")
    with pytest.raises(BlindRSAError, match="too small"):
        small = rsa.RSAPublicNumbers(65537, (1 << 511) + 111).public_key()
        blindrsa.blind(small, b"m", Variant.PSS_DETERMINISTIC)
    inv = 5
    with pytest.raises(BlindRSAError, match="out of range"):
        blindrsa.finalize(pk, b"m", n.to_bytes(256, "big"), inv, Variant.PSS_DETERMINISTIC)
    with pytest.raises(BlindRSAError, match="inverse"):
        blindrsa.finalize(pk, b"m", b"\x01" * 256, 0, Variant.PSS_DETERMINISTIC)
    assert issubclass(BlindRSAError, WireError)


def test_mgf1_and_encoding_against_cryptography() -> None:
    # cryptography (OpenSSL) verifies signatures built from our EMSA-PSS encoding by raw RSA
    sk = other_key()
    key = blindrsa.SigningKey.from_private_key(sk)
    for variant in (Variant.PSS_DETERMINISTIC, Variant.PSSZERO_DETERMINISTIC):
        em = blindrsa.emsa_pss_encode(b"abc", key.n.bit_length() - 1, os.urandom(variant.salt_len))
        s = pow(int.from_bytes(em, "big"), sk.private_numbers().d, key.n)
        blindrsa.verify(sk.public_key(), b"abc", s.to_bytes(256, "big"), variant)
    assert len(blindrsa.mgf1_sha384(b"seed", 100)) == 100
    assert blindrsa.mgf1_sha384(b"seed", 48) == hashlib.sha384(b"seed\x00\x00\x00\x00").digest()


# --------------------------------------------------------------------------- SPKI


def test_pss_spki_matches_rfc9578_pks_and_key_id() -> None:
    for v in RFC9578["token_type_0x0002_blind_rsa_2048"]:
        sk = serialization.load_pem_private_key(v["skS_pem"].encode(), None)
        assert isinstance(sk, rsa.RSAPrivateKey)
        pks = bytes.fromhex(v["pkS"])
        assert blindrsa.pss_spki(sk.public_key()) == pks
        token = bytes.fromhex(v["token"])
        assert hashlib.sha256(pks).digest() == token[66:98]  # token_key_id
        loaded = blindrsa.load_public_key_spki(pks)
        assert loaded.public_numbers() == sk.public_key().public_numbers()
        plain = blindrsa.public_key_spki(loaded)
        assert plain != pks
        assert blindrsa.load_public_key_spki(plain).public_numbers() == loaded.public_numbers()
        assert blindrsa.pss_spki(blindrsa.load_public_key_spki(plain)) == pks


def test_pss_spki_asn1_structure() -> None:
    der = blindrsa.pss_spki(other_key().public_key())
    # the algorithm identifier from RFC 9578 section 6.5 (rsassaPss, sha384, mgf1(sha384), 48)
    assert der[4:67] == bytes.fromhex(
        "303d06092a864886f70d01010a3030a00d300b0609608648016503040202a11a301806092a864886"
        "f70d010108300b0609608648016503040202a203020130"
    )
    assert der[:4] == bytes.fromhex("30820152") and len(der) == 4 + 338


def test_load_public_key_spki_rejects() -> None:
    good = blindrsa.pss_spki(other_key().public_key())
    with pytest.raises(BlindRSAError, match="trailing"):
        blindrsa.load_public_key_spki(good + b"\x00")
    with pytest.raises(BlindRSAError):
        blindrsa.load_public_key_spki(good[:-1])
    # PSS with another salt length
    wrong_salt = bytearray(good)
    assert wrong_salt[66] == 0x30
    wrong_salt[66] = 0x20
    with pytest.raises(BlindRSAError, match="unsupported"):
        blindrsa.load_public_key_spki(bytes(wrong_salt))
    ec = bytes.fromhex(
        "3059301306072a8648ce3d020106082a8648ce3d03010703420004"
        + "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
        + "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
    )
    with pytest.raises(BlindRSAError, match="unsupported"):
        blindrsa.load_public_key_spki(ec)
    with pytest.raises(BlindRSAError):
        blindrsa.load_public_key_spki(b"")
    with pytest.raises(BlindRSAError):
        blindrsa.load_public_key_spki("text")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_load_public_key_spki_only_blindrsa_error(data: bytes) -> None:
    with contextlib.suppress(BlindRSAError):
        blindrsa.load_public_key_spki(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=341), st.integers(1, 255))
def test_fuzz_spki_bitflips(pos: int, delta: int) -> None:
    good = blindrsa.pss_spki(other_key().public_key())
    assert len(good) == 342
    bad = bytearray(good)
    bad[pos] = (bad[pos] + delta) % 256
    try:
        pk = blindrsa.load_public_key_spki(bytes(bad))
    except BlindRSAError:
        return
    # a mutation inside the modulus can still be a valid (different) key, canonically encoded
    assert blindrsa.pss_spki(pk) == bytes(bad)
