"""The hybrid post-quantum KEM MLKEM768-X25519 (0x647A) and our own RFC 9180 key schedule:
X-Wing vectors, interoperability with ``cryptography``'s HPKE (both KEMs, every KDF and
AEAD) and with ``pyhpke`` (the auth modes), round trips and refusals."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke as chpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from hypothesis import given, settings
from hypothesis import strategies as st
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from privproc.wire import hpke, ohttp
from privproc.wire.errors import DecryptError, HPKEError

_DIR = Path(__file__).parent.parent / "vectors/hpke"
XWING = json.loads((_DIR / "xwing-test-vectors.json").read_text())
RFC9180 = json.loads((_DIR / "rfc9180-kem0020-kdf0001.json").read_text())
HYBRID = hpke.KEM_MLKEM768_X25519
CLASSIC = hpke.KEM_X25519_SHA256
KDFS = [hpke.KDF_HKDF_SHA256, hpke.KDF_HKDF_SHA384, hpke.KDF_HKDF_SHA512]
AEADS = [hpke.Aead.AES_128_GCM, hpke.Aead.AES_256_GCM, hpke.Aead.CHACHA20_POLY1305]
_C_KDF = {1: chpke.KDF.HKDF_SHA256, 2: chpke.KDF.HKDF_SHA384, 3: chpke.KDF.HKDF_SHA512}
_C_AEAD = {1: chpke.AEAD.AES_128_GCM, 2: chpke.AEAD.AES_256_GCM,
           3: chpke.AEAD.CHACHA20_POLY1305}
_C_KEM = {HYBRID: chpke.KEM.MLKEM768_X25519, CLASSIC: chpke.KEM.X25519}


def _h(s: str) -> bytes:
    return bytes.fromhex(s)


# --------------------------------------------------------------------------- sizes


def test_kem_sizes_follow_the_drafts() -> None:
    info = hpke.kem_info(HYBRID)
    assert (info.name, info.npk, info.nenc, info.nsk, info.nsecret) == (
        "MLKEM768-X25519", 1216, 1120, 32, 32)
    assert info.post_quantum and not info.auth
    classic = hpke.kem_info(CLASSIC)
    assert (classic.name, classic.npk, classic.nenc, classic.nsk) == ("X25519", 32, 32, 32)
    assert (hpke.NPK, hpke.NENC, hpke.NSK) == (32, 32, 32)  # the DHKEM constants stay
    assert hpke.DEFAULT_KEM == HYBRID
    assert hpke.kem_name(0x0010) == "KEM 0x0010"
    with pytest.raises(HPKEError, match=r"unsupported KEM 0x0010: supported are 0x0020"):
        hpke.kem_info(0x0010)


# --------------------------------------------------------------------------- X-Wing vectors


@pytest.mark.parametrize("v", XWING, ids=lambda v: v["pk"][:8])
def test_xwing_vector_key_from_seed_and_decapsulation(v: dict[str, Any]) -> None:
    pair = hpke.KeyPair.from_private_bytes(_h(v["seed"]), HYBRID)
    assert pair.public_bytes == _h(v["pk"])
    assert pair.private_bytes() == _h(v["seed"])
    assert len(_h(v["ct"])) == 1120
    assert hpke.decapsulate(_h(v["ct"]), pair) == _h(v["ss"])


@pytest.mark.parametrize("v", [v for v in RFC9180 if v["mode"] in (0, 1)][:4],
                         ids=lambda v: f"mode{v['mode']}-aead{v['aead_id']}")
def test_rfc9180_shared_secret_through_the_kem_api(v: dict[str, Any]) -> None:
    pair = hpke.KeyPair.from_private_bytes(_h(v["skRm"]))
    assert hpke.decapsulate(_h(v["enc"]), pair) == _h(v["shared_secret"])


def test_derive_key_pair_is_deterministic_and_checks_ikm() -> None:
    a = hpke.KeyPair.derive(bytes(range(32)), HYBRID)
    b = hpke.KeyPair.derive(bytes(range(32)), HYBRID)
    assert a.public_bytes == b.public_bytes and len(a.public_bytes) == 1216
    # SHAKE256.LabeledDerive(ikm, "DeriveKeyPair", "", 32), draft-ietf-hpke-pq
    labeled = (bytes(range(32)) + b"HPKE-v1" + b"KEM\x64\x7a" + b"\x00\x0dDeriveKeyPair"
               + b"\x00\x20")
    assert a.private_bytes() == hashlib.shake_256(labeled).digest(32)
    assert hpke.KeyPair.derive(bytes(range(1, 33)), HYBRID).public_bytes != a.public_bytes
    with pytest.raises(HPKEError, match="at least 32 bytes of ikm, got 31"):
        hpke.KeyPair.derive(bytes(31), HYBRID)


def test_generate_uses_the_injected_seed() -> None:
    pair = hpke.KeyPair.generate(lambda n: b"\x07" * n, HYBRID)
    assert pair.private_bytes() == b"\x07" * 32
    assert pair.kem_id == HYBRID and pair.kem.name == "MLKEM768-X25519"
    assert "MLKEM768-X25519" in repr(pair) and pair.private_bytes().hex() not in repr(pair)


# --------------------------------------------------------------------------- interop


def _their_private(pair: hpke.KeyPair) -> Any:
    if pair.kem_id == CLASSIC:
        return x25519.X25519PrivateKey.from_private_bytes(pair.private_bytes())
    full = hashlib.shake_256(pair.private_bytes()).digest(96)
    return chpke.MLKEM768X25519PrivateKey(mlkem.MLKEM768PrivateKey.from_seed_bytes(full[:64]),
                                          x25519.X25519PrivateKey.from_private_bytes(full[64:]))


_HAS_AAD = hasattr(chpke.rust_openssl.hpke, "_encrypt_with_aad")


def _their_encrypt(suite: Any, pt: bytes, public: Any, info: bytes, aad: bytes) -> bytes:
    if not aad:
        out: bytes = suite.encrypt(pt, public, info or None)
        return out
    fn: Callable[..., bytes] = chpke.rust_openssl.hpke._encrypt_with_aad
    return fn(suite, pt, public, info=info or None, aad=aad)


def _their_decrypt(suite: Any, ct: bytes, private: Any, info: bytes, aad: bytes) -> bytes:
    if not aad:
        out: bytes = suite.decrypt(ct, private, info or None)
        return out
    fn: Callable[..., bytes] = chpke.rust_openssl.hpke._decrypt_with_aad
    return fn(suite, ct, private, info=info or None, aad=aad)


_PAIRS = {kem: hpke.KeyPair.generate(kem_id=kem) for kem in (HYBRID, CLASSIC)}
_AADS = [b"", b"associated data"] if _HAS_AAD else [b""]


@pytest.mark.parametrize("aad", _AADS, ids=["no-aad", "aad"][: len(_AADS)])
@pytest.mark.parametrize("info", [b"", b"privproc info"], ids=["no-info", "info"])
@pytest.mark.parametrize("aead", AEADS, ids=lambda a: a.name)
@pytest.mark.parametrize("kdf", KDFS, ids=lambda k: f"kdf{k}")
@pytest.mark.parametrize("kem", [HYBRID, CLASSIC], ids=["hybrid", "x25519"])
def test_interop_with_cryptography_both_directions(
        *, kem: int, kdf: int, aead: hpke.Aead, info: bytes, aad: bytes) -> None:
    pair = _PAIRS[kem]
    nenc = hpke.kem_info(kem).nenc
    theirs = chpke.Suite(_C_KEM[kem], _C_KDF[kdf], _C_AEAD[aead.value])
    ours = hpke.Suite(kem, kdf, aead.value)
    # ours -> theirs: their single-shot decrypt takes enc || ct
    enc, sender = hpke.setup_sender(ours, pair.public_bytes, info)
    assert len(enc) == nenc
    sealed = enc + sender.seal(b"sealed by privproc", aad)
    assert _their_decrypt(theirs, sealed, _their_private(pair), info, aad) == (
        b"sealed by privproc")
    # theirs -> ours
    blob = _their_encrypt(theirs, b"sealed by cryptography", _their_private(pair).public_key(),
                          info, aad)
    recipient = hpke.setup_recipient(ours, blob[:nenc], pair, info)
    assert recipient.open(blob[nenc:], aad) == b"sealed by cryptography"


def test_their_ciphertext_does_not_open_with_other_info() -> None:
    pair = _PAIRS[HYBRID]
    theirs = chpke.Suite(chpke.KEM.MLKEM768_X25519, chpke.KDF.HKDF_SHA256,
                         chpke.AEAD.AES_128_GCM)
    blob = theirs.encrypt(b"x", _their_private(pair).public_key(), b"one")
    recipient = hpke.setup_recipient(hpke.Suite(HYBRID, 1, 1), blob[:1120], pair, b"two")
    with pytest.raises(HPKEError, match="not authentic"):
        recipient.open(blob[1120:])


_PY_KDF = {1: KDFId.HKDF_SHA256, 2: KDFId.HKDF_SHA384, 3: KDFId.HKDF_SHA512}


@settings(max_examples=40, deadline=None)
@given(kdf=st.sampled_from(KDFS), aead=st.sampled_from([*AEADS, hpke.Aead.EXPORT_ONLY]),
       mode=st.integers(0, 3), info=st.binary(max_size=64), pt=st.binary(max_size=256),
       aad=st.binary(max_size=64), ikm=st.binary(min_size=32, max_size=48))
def test_dhkem_matches_pyhpke_in_every_mode(*, kdf: int, aead: hpke.Aead, mode: int,
                                             info: bytes, pt: bytes, aad: bytes,
                                             ikm: bytes) -> None:
    """pyhpke is a test oracle for the auth modes, which cryptography does not offer."""
    psk, psk_id = (b"p" * 32, b"psk id") if mode & 1 else (b"", b"")
    sender_key = hpke.KeyPair.derive(ikm[::-1]) if mode & 2 else None
    recipient = hpke.KeyPair.derive(ikm)
    suite = hpke.Suite(CLASSIC, kdf, aead.value)
    enc, sender = hpke.setup_sender(suite, recipient.public_bytes, info, psk=psk,
                                    psk_id=psk_id, sender_key=sender_key)
    oracle = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, _PY_KDF[kdf], AEADId(aead.value))
    sk = oracle.kem.deserialize_private_key(recipient.private_bytes())
    pks = (oracle.kem.deserialize_public_key(sender_key.public_bytes)
           if sender_key is not None else None)
    theirs = oracle.create_recipient_context(enc, sk, info, pks=pks, psk=psk, psk_id=psk_id)
    assert sender.export(b"ctx", 42) == theirs.export(b"ctx", 42)
    if aead is not hpke.Aead.EXPORT_ONLY:
        for _ in range(2):  # the sequence number advances on both sides
            assert theirs.open(sender.seal(pt, aad), aad) == pt


# --------------------------------------------------------------------------- round trips


@settings(max_examples=25, deadline=None)
@given(kdf=st.sampled_from(KDFS), aead=st.sampled_from(AEADS), info=st.binary(max_size=64),
       messages=st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=32)),
                         min_size=1, max_size=4),
       psk=st.booleans())
def test_hybrid_round_trips(kdf: int, aead: hpke.Aead, info: bytes,
                            messages: list[tuple[bytes, bytes]], psk: bool) -> None:
    pair = _PAIRS[HYBRID]
    suite = hpke.Suite(HYBRID, kdf, aead.value)
    keys = {"psk": b"k" * 32, "psk_id": b"id"} if psk else {}
    enc, sender = hpke.setup_sender(suite, pair.public_bytes, info, **keys)
    recipient = hpke.setup_recipient(suite, enc, pair, info, **keys)
    for pt, aad in messages:
        assert recipient.open(sender.seal(pt, aad), aad) == pt
    assert sender.export(b"e", 64) == recipient.export(b"e", 64)


def test_hybrid_export_only_and_psk_binding() -> None:
    pair = _PAIRS[HYBRID]
    suite = hpke.Suite(HYBRID, 1, 0xFFFF)
    enc, sender = hpke.setup_sender(suite, pair.public_bytes, psk=b"a" * 32, psk_id=b"i")
    same = hpke.setup_recipient(suite, enc, pair, psk=b"a" * 32, psk_id=b"i")
    other = hpke.setup_recipient(suite, enc, pair, psk=b"b" * 32, psk_id=b"i")
    assert sender.export(b"x", 32) == same.export(b"x", 32) != other.export(b"x", 32)
    with pytest.raises(HPKEError, match="export-only"):
        sender.seal(b"x")


def test_messages_must_be_opened_in_order() -> None:
    pair = _PAIRS[HYBRID]
    suite = hpke.Suite(HYBRID, 1, 1)
    enc, sender = hpke.setup_sender(suite, pair.public_bytes)
    recipient = hpke.setup_recipient(suite, enc, pair)
    first, second = sender.seal(b"1"), sender.seal(b"2")
    with pytest.raises(HPKEError, match="not authentic"):
        recipient.open(second)
    assert recipient.open(first) == b"1"  # a failed open does not advance the sequence
    assert recipient.open(second) == b"2"


def test_export_length_limit_follows_the_kdf() -> None:
    pair = _PAIRS[HYBRID]
    _, ctx = hpke.setup_sender(hpke.Suite(HYBRID, 3, 1), pair.public_bytes)
    assert len(ctx.export(b"", 255 * 64)) == 255 * 64
    with pytest.raises(HPKEError, match=r"export length must be in 1\.\.16320, got 16321"):
        ctx.export(b"", 255 * 64 + 1)


# --------------------------------------------------------------------------- refusals


def test_wrong_sizes_are_refused() -> None:
    suite = hpke.Suite(HYBRID, 1, 1)
    pair = _PAIRS[HYBRID]
    with pytest.raises(HPKEError, match="MLKEM768-X25519 public key must be 1216 bytes, got 1215"):
        hpke.setup_sender(suite, pair.public_bytes[:-1])
    with pytest.raises(HPKEError, match="public key must be 1216 bytes, got 32"):
        hpke.setup_sender(suite, _PAIRS[CLASSIC].public_bytes)
    for size in (32, 1119, 1121):
        with pytest.raises(HPKEError, match=f"MLKEM768-X25519 enc must be 1120 bytes, got {size}"):
            hpke.setup_recipient(suite, bytes(size), pair)
    with pytest.raises(HPKEError, match="MLKEM768-X25519 seed must be 32 bytes, got 64"):
        hpke.KeyPair.from_private_bytes(bytes(64), HYBRID)


def test_tampered_enc_does_not_open() -> None:
    suite = hpke.Suite(HYBRID, 1, 1)
    pair = _PAIRS[HYBRID]
    enc, sender = hpke.setup_sender(suite, pair.public_bytes)
    ct = sender.seal(b"secret")
    for position in (0, 1087, 1088, 1119):  # the ML-KEM half and the X25519 half
        bad = bytearray(enc)
        bad[position] ^= 0x01
        recipient = hpke.setup_recipient(suite, bytes(bad), pair)  # ML-KEM rejects implicitly
        with pytest.raises(HPKEError, match="not authentic"):
            recipient.open(ct)


def test_all_zero_x25519_shares_are_refused() -> None:
    suite = hpke.Suite(HYBRID, 1, 1)
    pair = _PAIRS[HYBRID]
    enc, _ = hpke.setup_sender(suite, pair.public_bytes)
    with pytest.raises(HPKEError, match="all zero"):
        hpke.setup_recipient(suite, enc[:1088] + bytes(32), pair)  # a low-order share
    with pytest.raises(HPKEError, match="all zero"):
        hpke.setup_sender(suite, pair.public_bytes[:1184] + bytes(32))
    with pytest.raises(HPKEError, match="all zero"):
        hpke.setup_recipient(hpke.Suite(CLASSIC, 1, 1), bytes(32), _PAIRS[CLASSIC])


def test_invalid_mlkem_public_key_is_refused() -> None:
    bad = b"\xff" * 1184 + _PAIRS[HYBRID].public_bytes[1184:]  # coefficients >= q
    with pytest.raises(HPKEError, match="invalid MLKEM768-X25519 public key"):
        hpke.setup_sender(hpke.Suite(HYBRID, 1, 1), bad)


def test_modes_and_keys_the_hybrid_cannot_use() -> None:
    suite = hpke.Suite(HYBRID, 1, 1)
    pair = _PAIRS[HYBRID]
    with pytest.raises(HPKEError, match="auth modes need a DH-based KEM"):
        hpke.setup_sender(suite, pair.public_bytes, sender_key=pair)
    with pytest.raises(HPKEError, match="auth modes need a DH-based KEM"):
        hpke.setup_recipient(suite, bytes(1120), pair, sender_public=bytes(1216))
    with pytest.raises(HPKEError, match="takes no ephemeral key"):
        hpke.setup_sender(suite, pair.public_bytes, ephemeral=_PAIRS[CLASSIC])
    with pytest.raises(HPKEError, match="recipient key is X25519, the suite's KEM is MLKEM"):
        hpke.setup_recipient(suite, bytes(1120), _PAIRS[CLASSIC])
    with pytest.raises(HPKEError, match="ephemeral key is MLKEM768-X25519, expected X25519"):
        hpke.setup_sender(hpke.Suite(CLASSIC, 1, 1), _PAIRS[CLASSIC].public_bytes,
                          ephemeral=pair)


# --------------------------------------------------------------------------- OHTTP


def test_ohttp_round_trip_with_the_hybrid_key() -> None:
    key = ohttp.GatewayKey.create(5, hpke.KeyPair.generate(kem_id=HYBRID))
    config = key.config
    assert config.kem_id == HYBRID and config.kem_name == "MLKEM768-X25519"
    assert config.post_quantum and len(config.public_key) == 1216
    assert ohttp.decode_key_config(config.encode()) == config
    keys = ohttp.GatewayKeys([key])
    for suite in config.supported_suites():
        sealed, client = ohttp.encapsulate_request(config, b"request", suite=suite)
        assert len(sealed) == ohttp.HEADER_LEN + 1120 + len(b"request") + 16
        request, server = keys.decapsulate_request(sealed)
        assert request == b"request" and len(server.enc) == 1120
        assert client.decapsulate_response(server.encapsulate_response(b"answer")) == b"answer"


def test_ohttp_key_list_with_both_kems_and_truncation() -> None:
    hybrid = ohttp.GatewayKey.create(1, hpke.KeyPair.generate(kem_id=HYBRID))
    classic = ohttp.GatewayKey.create(2, hpke.KeyPair.generate())
    body = ohttp.encode_key_configs([classic.config, hybrid.config])
    assert [c.kem_id for c in ohttp.decode_key_configs(body)] == [CLASSIC, HYBRID]
    sealed, _ = ohttp.encapsulate_request(hybrid.config, b"x")
    keys = ohttp.GatewayKeys([hybrid, classic])
    with pytest.raises(DecryptError, match="need at least 1143 bytes, got 1142"):
        keys.decapsulate_request(sealed[: ohttp.HEADER_LEN + 1120 + 15])
    bad = bytearray(sealed)
    bad[ohttp.HEADER_LEN + 5] ^= 1
    with pytest.raises(DecryptError, match="failed authentication"):
        keys.decapsulate_request(bytes(bad))


def test_gateway_key_must_match_its_kem() -> None:
    pair = hpke.KeyPair.generate(kem_id=HYBRID)
    config = ohttp.KeyConfig(1, CLASSIC, pair.public_bytes[-32:], (ohttp.SymmetricSuite(1, 1),))
    with pytest.raises(ohttp.KeyConfigError, match="does not match its key pair"):
        ohttp.GatewayKey(config, pair)


@pytest.mark.parametrize("kdf", KDFS, ids=lambda k: f"kdf{k}")
def test_ohttp_response_keys_use_the_suites_kdf(kdf: int) -> None:
    """RFC 9458 section 4.4 derives the response key with the suite's KDF."""
    import hmac

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    pair = _PAIRS[HYBRID]
    config = ohttp.KeyConfig(3, HYBRID, pair.public_bytes, (ohttp.SymmetricSuite(kdf, 1),))
    keys = ohttp.GatewayKeys([ohttp.GatewayKey(config, pair)])
    sealed, client = ohttp.encapsulate_request(config, b"q")
    _, server = keys.decapsulate_request(sealed)
    response = server.encapsulate_response(b"answer")
    assert client.decapsulate_response(response) == b"answer"
    # the same by hand: secret = Export("message/bhttp response", 16), then HKDF
    enc = sealed[ohttp.HEADER_LEN : ohttp.HEADER_LEN + 1120]
    ctx = hpke.setup_recipient(hpke.Suite(HYBRID, kdf, 1), enc, pair,
                               ohttp.REQUEST_LABEL + b"\x00" + sealed[: ohttp.HEADER_LEN])
    secret = ctx.export(ohttp.RESPONSE_LABEL, 16)
    name = {1: "sha256", 2: "sha384", 3: "sha512"}[kdf]
    prk = hmac.digest(enc + response[:16], secret, name)
    key = hmac.digest(prk, b"key\x01", name)[:16]
    nonce = hmac.digest(prk, b"nonce\x01", name)[:12]
    assert AESGCM(key).decrypt(nonce, response[16:], b"") == b"answer"
