"""RFC 9577 / RFC 9578 Privacy Pass: vectors, issuance round trips, headers, directory, fuzzing.

Type 0x0002 vectors go through the production code byte for byte (token request, token
response, token). For type 0x0001 the ``voprf`` package draws its own blind and proof
randomness, so the test reference (``p384_voprf_ref``, itself checked against RFC 9497)
supplies the vector's blind: token request byte exact, evaluate_msg byte exact, the
vector's proof verified, token byte exact; the production client (package) then rebuilds
the vector's token byte for byte from the vector nonce with the reference holding skS as
issuer, and :func:`verify_token` accepts every vector token.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from privproc.wire import blindrsa
from privproc.wire import privacypass as pp
from privproc.wire.errors import WireError
from privproc.wire.privacypass import (
    PrivacyPassError,
    Token,
    TokenChallenge,
    TokenRequest,
    TokenResponse,
)

from . import p384_voprf_ref as ref

VECTORS = Path(__file__).parent.parent / "vectors/privacypass"
RFC9578: dict[str, Any] = json.loads((VECTORS / "rfc9578-issuance-vectors.json").read_text())
T1: list[dict[str, str]] = RFC9578["token_type_0x0001_voprf_p384"]
T2: list[dict[str, str]] = RFC9578["token_type_0x0002_blind_rsa_2048"]

# RFC 9578 section 4: the complete "token-key" example (a 2048-bit id-RSASSA-PSS SPKI)
RFC9578_S4_TOKEN_KEY = (
    "MIIBUjA9BgkqhkiG9w0BAQowMKANMAsGCWCGSAFlAwQCAqEaMBgGCSqGSIb3DQEBCDAL"
    "BglghkgBZQMEAgKiAwIBMAOCAQ8AMIIBCgKCAQEAmKHGAMyeoJt1pj3n7xTtqAPr_DhZAPhJM7"
    "Pc8ENR2BzdZwPTTF7KFKms5wt-mL01at0SC-cdBuIj6WYK8Ovz0AyaBuvTvW6SKCh7ZPXEqCGR"
    "sq5I0nthREtrYkGo113oMVPVp3sy4VHPgzd8KdzTLGzOrjiUOsSFWbjf21iaVjXJ2VdwdS-8O-"
    "430wkucYjGeOJwi8rWx_ZkcHtav0S67Q_SlExJel6nyRzpuuID9OQm1nxfs1Z4PhWBzt93T2oz"
    "Tnda3OklF5n0pIXD6bttmTekIw_8Xx2LMis0jfJ1QL99aA-muXRFN4ZUwORrF7cAcCUD_-56_6"
    "fh9s34FmqBGwIDAQAB"
)


def h(v: dict[str, str], name: str) -> bytes:
    return bytes.fromhex(v[name])


@cache
def rsa_key() -> rsa.RSAPrivateKey:
    sk = serialization.load_pem_private_key(T2[0]["skS_pem"].encode(), None)
    assert isinstance(sk, rsa.RSAPrivateKey)
    return sk


@cache
def rsa_3072_key() -> rsa.RSAPrivateKey:
    """A key of a size token type 2 does not use (made once)."""
    return blindrsa.generate_private_key(3072)


@cache
def voprf_key() -> pp.VoprfIssuerKey:
    return pp.VoprfIssuerKey(b"\x07" * 48)


def challenge(token_type: int, ctx: bytes = b"", origins: tuple[str, ...] = ()) -> TokenChallenge:
    return TokenChallenge(token_type, "issuer.example", ctx, origins)


def test_errors_are_wire_errors() -> None:
    assert issubclass(PrivacyPassError, WireError)
    assert pp.MEDIA_TYPE_TOKEN_REQUEST == "application/private-token-request"
    assert pp.MEDIA_TYPE_TOKEN_RESPONSE == "application/private-token-response"
    assert pp.MEDIA_TYPE_ISSUER_DIRECTORY == "application/private-token-issuer-directory"


# --------------------------------------------------------------------------- type 2 vectors


@pytest.mark.parametrize("v", T2, ids=[v["_label"] for v in T2])
def test_rfc9578_type2_vector_byte_exact(v: dict[str, str]) -> None:
    sk = serialization.load_pem_private_key(v["skS_pem"].encode(), None)
    assert isinstance(sk, rsa.RSAPrivateKey)
    pks = h(v, "pkS")
    assert h(v, "skS") == v["skS_pem"].encode()
    assert pp.encode_token_key(2, sk.public_key()) == pks
    key_id = pp.token_key_id(2, pks)
    assert key_id == hashlib.sha256(pks).digest()
    assert pp.token_key_id(2, blindrsa.public_key_spki(sk.public_key())) == key_id

    ch = TokenChallenge.decode(h(v, "token_challenge"))
    assert ch.encode() == h(v, "token_challenge")

    script = [h(v, "nonce"), h(v, "salt"), h(v, "blind")]  # rand draws: nonce, salt, r

    def rand(n: int) -> bytes:
        out = script.pop(0)
        assert len(out) == n
        return out

    request, state = pp.begin_issuance(2, pks, ch, rand=rand)
    assert not script
    assert request.encode() == h(v, "token_request")
    assert TokenRequest.decode(h(v, "token_request")) == request

    response = pp.issue(sk, request)
    assert response.encode() == h(v, "token_response")
    assert TokenResponse.decode(h(v, "token_response"), 2) == response

    token = pp.finalize_token(state, response)
    assert token.encode() == h(v, "token")
    assert Token.decode(h(v, "token")) == token
    assert token.token_key_id == key_id

    keys: dict[bytes, pp.VerificationKey] = {key_id: sk.public_key()}
    pp.verify_token(token, keys, challenge=ch)
    pp.verify_token(token, keys, challenge=h(v, "token_challenge"))
    pp.verify_token(token, keys, challenge_digest=hashlib.sha256(h(v, "token_challenge")).digest())


# --------------------------------------------------------------------------- type 1 vectors


@pytest.mark.parametrize("v", T1, ids=[v["_label"] for v in T1])
def test_rfc9578_type1_vector(v: dict[str, str]) -> None:
    sk = int(v["skS"], 16)
    pks = h(v, "pkS")
    assert ref.serialize_element(ref.mul(sk, ref.G)) == pks
    key_id = pp.token_key_id(1, pks)
    assert key_id == hashlib.sha256(pks).digest()

    ch = TokenChallenge.decode(h(v, "token_challenge"))
    assert ch.encode() == h(v, "token_challenge")
    nonce = h(v, "nonce")
    t_input = pp.token_input(1, nonce, ch.digest(), key_id)

    # token request: the reference blinds the production token_input with the vector blind
    blind = int(v["blind"], 16)
    blinded = ref.blind(t_input, blind)
    request = TokenRequest(1, key_id[-1], blinded)
    assert request.encode() == h(v, "token_request")
    assert TokenRequest.decode(h(v, "token_request")) == request

    # token response: the evaluated element is deterministic; the proof must verify
    response = TokenResponse.decode(h(v, "token_response"), 1)
    assert response.encode() == h(v, "token_response")
    assert response.evaluate_msg == ref.serialize_element(
        ref.mul(sk, ref.deserialize_element(blinded))
    )
    authenticator = ref.finalize(
        t_input, blind, response.evaluate_msg, blinded, pk=pks, proof=response.evaluate_proof
    )

    # token
    token = Token(1, nonce, ch.digest(), key_id, authenticator)
    assert token.encode() == h(v, "token")
    assert Token.decode(h(v, "token")) == token

    # the production verifier (with the vector key held by the reference evaluator)
    issuer = ref.RefIssuerKey(sk)
    pp.verify_token(token, {key_id: issuer}, challenge=ch)

    # the production client (voprf package, its own blind) makes the same token
    request2, state = pp.begin_issuance(1, pks, ch, nonce=nonce)
    assert request2.token_type == 1 and request2.truncated_token_key_id == key_id[-1]
    token2 = pp.finalize_token(state, pp.issue(issuer, request2))
    assert token2.encode() == h(v, "token")


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ctx", [b"", b"\x42" * 32])
@pytest.mark.parametrize("origins", [(), ("origin.example",), ("a.example", "b.example:8443")])
def test_round_trip_type1(ctx: bytes, origins: tuple[str, ...]) -> None:
    key = voprf_key()
    ch = challenge(1, ctx, origins)
    request, state = pp.begin_issuance(1, key.public_key, ch)
    request = TokenRequest.decode(request.encode())
    response = TokenResponse.decode(pp.issue(key, request).encode(), 1)
    token = Token.decode(pp.finalize_token(state, response).encode())
    assert token.token_key_id == key.token_key_id == pp.token_key_id(1, key.public_key)
    pp.verify_token(token, {key.token_key_id: key}, challenge=ch)
    # the package's proof is a valid RFC 9497 proof
    assert ref.verify_proof(
        ref.G,
        ref.deserialize_element(key.public_key),
        [ref.deserialize_element(request.blinded_msg)],
        [ref.deserialize_element(response.evaluate_msg)],
        response.evaluate_proof,
    )
    # and the reference agrees on the authenticator of the token_input
    assert token.authenticator == key.evaluate(token.authenticator_input)


@pytest.mark.parametrize("ctx", [b"", b"\x42" * 32])
def test_round_trip_type2(ctx: bytes) -> None:
    sk = rsa_key()
    ch = challenge(2, ctx, ("origin.example",))
    request, state = pp.begin_issuance(2, sk.public_key(), ch)
    request = TokenRequest.decode(request.encode())
    signing_key = blindrsa.SigningKey.from_private_key(sk)
    response = TokenResponse.decode(pp.issue(signing_key, request).encode(), 2)
    token = Token.decode(pp.finalize_token(state, response).encode())
    pp.verify_token(token, {pp.token_key_id(2, sk.public_key()): sk.public_key()}, challenge=ch)


def test_voprf_issuer_key_derivation_and_repr() -> None:
    a = pp.VoprfIssuerKey(b"\x01" * 48)
    b = pp.VoprfIssuerKey(b"\x01" * 48, pp.VOPRF_KEY_INFO)
    assert a.public_key == b.public_key and len(a.public_key) == 49
    _sk, pk = ref.derive_key_pair(b"\x01" * 48, b"PrivacyPass")
    assert ref.serialize_element(pk) == a.public_key
    assert pp.VoprfIssuerKey(b"\x01" * 48, b"other").public_key != a.public_key
    assert "01010101" not in repr(a)
    assert len(pp.VoprfIssuerKey.generate().seed) == 48
    with pytest.raises(PrivacyPassError, match="seed"):
        pp.VoprfIssuerKey(b"\x01" * 16)
    assert isinstance(a, pp.VoprfEvaluator)


# --------------------------------------------------------------------------- failures


def _type1_token() -> tuple[Token, TokenChallenge]:
    key = voprf_key()
    ch = challenge(1)
    request, state = pp.begin_issuance(1, key.public_key, ch)
    return pp.finalize_token(state, pp.issue(key, request)), ch


def test_verify_token_failures_type1() -> None:
    key = voprf_key()
    token, ch = _type1_token()
    keys: dict[bytes, pp.VerificationKey] = {key.token_key_id: key}
    with pytest.raises(PrivacyPassError, match="challenge_digest"):
        pp.verify_token(token, keys, challenge=challenge(1, b"\x01" * 32))
    with pytest.raises(PrivacyPassError, match="unknown issuer key"):
        pp.verify_token(token, {}, challenge=ch)
    bad = bytearray(token.authenticator)
    bad[0] ^= 1
    forged = Token(1, token.nonce, token.challenge_digest, token.token_key_id, bytes(bad))
    with pytest.raises(PrivacyPassError, match="authenticator"):
        pp.verify_token(forged, keys, challenge=ch)
    other_nonce = Token(
        1, b"\x00" * 32, token.challenge_digest, token.token_key_id, token.authenticator
    )
    with pytest.raises(PrivacyPassError, match="authenticator"):
        pp.verify_token(other_nonce, keys, challenge=ch)
    other = pp.VoprfIssuerKey(b"\x09" * 48)
    with pytest.raises(PrivacyPassError, match="does not match its token_key_id"):
        pp.verify_token(token, {key.token_key_id: other}, challenge=ch)
    with pytest.raises(PrivacyPassError, match="VOPRF issuer key"):
        pp.verify_token(token, {key.token_key_id: rsa_key().public_key()}, challenge=ch)
    with pytest.raises(PrivacyPassError, match="exactly one"):
        pp.verify_token(token, keys)
    with pytest.raises(PrivacyPassError, match="exactly one"):
        pp.verify_token(token, keys, challenge=ch, challenge_digest=ch.digest())


def test_verify_token_failures_type2() -> None:
    v = T2[0]
    token = Token.decode(h(v, "token"))
    pk = rsa_key().public_key()
    keys: dict[bytes, pp.VerificationKey] = {token.token_key_id: pk}
    ch = h(v, "token_challenge")
    pp.verify_token(token, keys, challenge=ch)
    bad = bytearray(token.authenticator)
    bad[10] ^= 1
    forged = Token(2, token.nonce, token.challenge_digest, token.token_key_id, bytes(bad))
    with pytest.raises(PrivacyPassError, match="authenticator"):
        pp.verify_token(forged, keys, challenge=ch)
    # the other vectors' tokens are valid, but for other challenges
    with pytest.raises(PrivacyPassError, match="challenge_digest"):
        pp.verify_token(token, keys, challenge=h(T2[1], "token_challenge"))
    other = blindrsa.generate_private_key(2048).public_key()
    with pytest.raises(PrivacyPassError, match="token_key_id"):
        pp.verify_token(token, {token.token_key_id: other}, challenge=ch)
    with pytest.raises(PrivacyPassError, match="RSA public key"):
        pp.verify_token(token, {token.token_key_id: voprf_key()}, challenge=ch)


def test_issue_failures() -> None:
    key = voprf_key()
    sk = rsa_key()
    request1, _ = pp.begin_issuance(1, key.public_key, challenge(1))
    request2, _ = pp.begin_issuance(2, sk.public_key(), challenge(2))
    with pytest.raises(PrivacyPassError, match="VOPRF issuer key"):
        pp.issue(sk, request1)
    with pytest.raises(PrivacyPassError, match="RSA issuer key"):
        pp.issue(key, request2)
    wrong_kid = TokenRequest(1, (request1.truncated_token_key_id + 1) % 256, request1.blinded_msg)
    with pytest.raises(PrivacyPassError, match="truncated_token_key_id"):
        pp.issue(key, wrong_kid)
    wrong_kid2 = TokenRequest(2, (request2.truncated_token_key_id + 1) % 256, request2.blinded_msg)
    with pytest.raises(PrivacyPassError, match="truncated_token_key_id"):
        pp.issue(sk, wrong_kid2)
    kid1 = request1.truncated_token_key_id
    for bad in (b"\x05" + request1.blinded_msg[1:], b"\x02" + b"\xff" * 48, b"\x00" * 49):
        with pytest.raises(PrivacyPassError, match=r"P-384|canonical"):
            pp.issue(key, TokenRequest(1, kid1, bad))
    too_big = TokenRequest(2, request2.truncated_token_key_id, b"\xff" * 256)
    with pytest.raises(PrivacyPassError, match="modulus"):
        pp.issue(sk, too_big)
    small = rsa_3072_key()
    with pytest.raises(PrivacyPassError, match="2048"):
        pp.issue(small, request2)


def test_finalize_failures() -> None:
    key = voprf_key()
    request, state = pp.begin_issuance(1, key.public_key, challenge(1))
    response = pp.issue(key, request)
    bad_proof = bytearray(response.evaluate_proof)
    bad_proof[-1] ^= 1
    with pytest.raises(PrivacyPassError, match="Finalize"):
        pp.finalize_token(state, TokenResponse(1, response.evaluate_msg, bytes(bad_proof)))
    other = pp.VoprfIssuerKey(b"\x0a" * 48)
    wrong_key_response = TokenResponse(1, *other.blind_evaluate(request.blinded_msg))
    with pytest.raises(PrivacyPassError, match="Finalize"):
        pp.finalize_token(state, wrong_key_response)
    with pytest.raises(PrivacyPassError, match="compressed"):
        pp.finalize_token(
            state, TokenResponse(1, b"\x05" + response.evaluate_msg[1:], response.evaluate_proof)
        )
    with pytest.raises(PrivacyPassError, match="token type"):
        pp.finalize_token(state, TokenResponse(2, blind_sig=b"\x00" * 256))

    sk = rsa_key()
    request2, state2 = pp.begin_issuance(2, sk.public_key(), challenge(2))
    good = pp.issue(sk, request2).blind_sig
    with pytest.raises(PrivacyPassError, match="blind RSA Finalize"):
        pp.finalize_token(state2, TokenResponse(2, blind_sig=good[:-1] + bytes([good[-1] ^ 1])))
    assert pp.finalize_token(state2, TokenResponse(2, blind_sig=good)).token_type == 2


def test_begin_issuance_checks() -> None:
    key = voprf_key()
    with pytest.raises(PrivacyPassError, match="token type"):
        pp.begin_issuance(2, rsa_key().public_key(), challenge(1))
    with pytest.raises(PrivacyPassError, match="nonce"):
        pp.begin_issuance(1, key.public_key, challenge(1), nonce=b"\x00" * 31)
    with pytest.raises(PrivacyPassError, match="2048"):
        pp.begin_issuance(2, rsa_3072_key().public_key(), challenge(2))
    with pytest.raises(PrivacyPassError, match="compressed"):
        pp.begin_issuance(1, b"\x04" + key.public_key[1:], challenge(1))
    with pytest.raises(PrivacyPassError, match="unsupported token type 0x0003"):
        pp.begin_issuance(3, key.public_key, challenge(1))
    with pytest.raises(PrivacyPassError, match="type 0x0002 token key"):
        pp.begin_issuance(2, b"\x30\x00", challenge(2))
    # a raw challenge is hashed as given
    raw = challenge(1).encode()
    _request, state = pp.begin_issuance(1, key.public_key, raw)
    assert state.challenge_digest == hashlib.sha256(raw).digest()
    assert "nonce" in repr(state) and "client" not in repr(state)


# --------------------------------------------------------------------------- structures


def test_token_challenge_encoding() -> None:
    ch = TokenChallenge(2, "issuer.example", b"\x01" * 32, ["foo.example", "bar.example"])
    raw = ch.encode()
    assert raw == (
        b"\x00\x02\x00\x0eissuer.example\x20" + b"\x01" * 32 + b"\x00\x17foo.example,bar.example"
    )
    assert TokenChallenge.decode(raw) == ch
    assert ch.origin_info == ("foo.example", "bar.example")
    assert TokenChallenge(1, "i.example").encode() == b"\x00\x01\x00\x09i.example\x00\x00\x00"
    # the RFC 9578 vector challenges
    assert TokenChallenge.decode(h(T2[2], "token_challenge")).origin_info == (
        "foo.example",
        "bar.example",
    )


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "truncated"),
        (b"\x00", "truncated"),
        (b"\x00\x03\x00\x01i\x00\x00\x00", "unsupported token type 0x0003"),
        (b"\x00\x01\x00\x00\x00\x00\x00", "empty issuer_name"),
        (b"\x00\x01\x00\x01i\x10" + b"\x00" * 16 + b"\x00\x00", "0 or 32"),
        (b"\x00\x01\x00\x01i\x00\x00\x00\x00", "trailing"),
        (b"\x00\x01\x00\x05i", "truncated in issuer_name"),
        (b"\x00\x01\x00\x01\xff\x00\x00\x00", "ASCII"),
        (b"\x00\x01\x00\x01i\x00\x00\x02a,", "must not be empty"),
        (b"\x00\x01\x00\x01i\x00\x00\x03a b", "bad character"),
        (b"\x00\x01\x00\x03u@h\x00\x00\x00", "bad character"),
    ],
)
def test_token_challenge_decode_rejects(raw: bytes, match: str) -> None:
    with pytest.raises(PrivacyPassError, match=match):
        TokenChallenge.decode(raw)


def test_token_challenge_constructor_rejects() -> None:
    with pytest.raises(PrivacyPassError, match="0 or 32"):
        TokenChallenge(1, "i.example", b"\x00" * 31)
    with pytest.raises(PrivacyPassError, match="not a str"):
        TokenChallenge(1, "i.example", b"", "a.example")
    with pytest.raises(PrivacyPassError, match="bad character"):
        TokenChallenge(1, "i.example", b"", ["a,b"])
    with pytest.raises(PrivacyPassError, match="empty"):
        TokenChallenge(1, "")
    with pytest.raises(PrivacyPassError, match="16 bits"):
        TokenChallenge(0x10000, "i.example")


def test_request_response_token_strict_lengths() -> None:
    req1 = TokenRequest(1, 7, b"\x02" * 49)
    assert len(req1.encode()) == 52 and TokenRequest.decode(req1.encode()) == req1
    req2 = TokenRequest(2, 7, b"\x01" * 256)
    assert len(req2.encode()) == 259
    with pytest.raises(PrivacyPassError, match="trailing"):
        TokenRequest.decode(req1.encode() + b"\x00")
    with pytest.raises(PrivacyPassError, match="truncated"):
        TokenRequest.decode(req2.encode()[:-1])
    with pytest.raises(PrivacyPassError, match="unsupported token type 0x0005"):
        TokenRequest.decode(b"\x00\x05" + req1.encode()[2:])
    with pytest.raises(PrivacyPassError, match="49 bytes"):
        TokenRequest(1, 7, b"\x02" * 48)
    with pytest.raises(PrivacyPassError, match=r"0\.\.255"):
        TokenRequest(1, 256, b"\x02" * 49)

    assert len(TokenResponse(1, b"\x02" * 49, b"\x00" * 96).encode()) == 145
    with pytest.raises(PrivacyPassError, match="145 bytes"):
        TokenResponse.decode(b"\x00" * 146, 1)
    with pytest.raises(PrivacyPassError, match="256 bytes"):
        TokenResponse.decode(b"\x00" * 145, 2)
    with pytest.raises(PrivacyPassError, match="blind_sig"):
        TokenResponse(1, b"\x02" * 49, b"\x00" * 96, b"\x00")
    with pytest.raises(PrivacyPassError, match="unsupported"):
        TokenResponse.decode(b"", 0)

    t1 = Token(1, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, b"\x04" * 48)
    assert len(t1.encode()) == 146 and Token.decode(t1.encode()) == t1
    t2 = Token(2, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, b"\x04" * 256)
    assert len(t2.encode()) == 354 and Token.decode(t2.encode()) == t2
    with pytest.raises(PrivacyPassError, match="trailing"):
        Token.decode(t1.encode() + b"\x00")
    with pytest.raises(PrivacyPassError, match="truncated in authenticator"):
        Token.decode(t2.encode()[:-1])
    with pytest.raises(PrivacyPassError, match="48 bytes"):
        Token(1, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, b"\x04" * 256)
    with pytest.raises(PrivacyPassError, match="unsupported token type 0x0000"):
        Token.decode(b"\x00\x00" + t1.encode()[2:])


# --------------------------------------------------------------------------- directory


def test_issuer_directory_round_trip_and_select() -> None:
    k1 = pp.TokenKey(2, blindrsa.pss_spki(rsa_key().public_key()), 1686913811)
    k2 = pp.TokenKey(2, base64.urlsafe_b64decode(RFC9578_S4_TOKEN_KEY))
    k3 = pp.TokenKey(1, voprf_key().public_key)
    directory = pp.IssuerDirectory("https://issuer.example.net/request", [k1, k2, k3])
    raw = pp.encode_issuer_directory(directory)
    doc = json.loads(raw)
    assert doc["token-keys"][0] == {
        "token-type": 2,
        "token-key": base64.urlsafe_b64encode(k1.token_key).decode(),
        "not-before": 1686913811,
    }
    assert "not-before" not in doc["token-keys"][1]
    assert doc["token-keys"][1]["token-key"] == RFC9578_S4_TOKEN_KEY
    assert pp.parse_issuer_directory(raw) == directory
    assert directory.select(2, 1686913810) == k2
    assert directory.select(2, 1686913811) == k1
    assert directory.select(1, 0) == k3
    assert directory.select(3, 0) is None
    assert k1.token_key_id == pp.token_key_id(2, rsa_key().public_key())


def test_issuer_directory_rfc_example_shape() -> None:
    text = (
        '{"issuer-request-uri": "https://issuer.example.net/request",'
        ' "token-keys": [{"token-type": 2, "token-key": "' + RFC9578_S4_TOKEN_KEY + '",'
        ' "not-before": 1686913811, "extra": true}, {"token-type": 99, "token-key": "AA=="}],'
        ' "future-field": {}}'
    )
    directory = pp.parse_issuer_directory(text)
    assert directory.issuer_request_uri == "https://issuer.example.net/request"
    key = directory.token_keys[0]
    pk = blindrsa.load_public_key_spki(key.token_key)
    assert pk.key_size == 2048 and blindrsa.pss_spki(pk) == key.token_key
    assert directory.token_keys[1] == pp.TokenKey(99, b"\x00")  # unknown type kept opaque
    assert directory.select(99, 0) is not None  # the caller chooses the types it wants


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        (b"\xff", "UTF-8"),
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        ('{"token-keys": []}', "issuer-request-uri"),
        ('{"issuer-request-uri": "u"}', "token-keys"),
        ('{"issuer-request-uri": "u", "token-keys": [1]}', "not an object"),
        (
            '{"issuer-request-uri": "u", "token-keys": [{"token-type": true, "token-key": ""}]}',
            "token-type",
        ),
        (
            '{"issuer-request-uri": "u", "token-keys": [{"token-type": 2.0, "token-key": ""}]}',
            "token-type",
        ),
        (
            '{"issuer-request-uri": "u", "token-keys": [{"token-type": 2, "token-key": 5}]}',
            "token-key",
        ),
        (
            '{"issuer-request-uri": "u", "token-keys": [{"token-type": 2, "token-key": "AA==",'
            ' "not-before": NaN}]}',
            "NaN",
        ),
        (
            '{"issuer-request-uri": "u", "token-keys": [{"token-type": 2, "token-key": "AA==",'
            ' "not-before": -1}]}',
            "not-before",
        ),
        (
            '{"issuer-request-uri": "u", "token-keys": [{"token-type": 2, "token-key": "A+=="}]}',
            "base64url",
        ),
        (
            '{"issuer-request-uri": "u", "token-keys": [{"token-type": 2, "token-key": "AA=="}]}',
            "type 0x0002 token key",
        ),
        (
            '{"issuer-request-uri": "u", "token-keys": [{"token-type": 1, "token-key": "AA=="}]}',
            "49 bytes",
        ),
        ('{"issuer-request-uri": "", "token-keys": []}', "non-empty"),
    ],
)
def test_issuer_directory_rejects(doc: bytes | str, match: str) -> None:
    with pytest.raises(PrivacyPassError, match=match):
        pp.parse_issuer_directory(doc)


# --------------------------------------------------------------------------- base64url


def test_b64url() -> None:
    assert pp.b64url_encode(b"\xfb\xff") == "-_8="
    assert pp.b64url_decode("-_8=") == b"\xfb\xff"
    assert pp.b64url_decode("-_8") == b"\xfb\xff"  # padding may be omitted
    assert pp.b64url_decode("") == b""
    for bad in ("+/8=", "-_9=", "-_8==", "A", "AA=A", "-_8 ", "AAA==", "=", "AA="):
        with pytest.raises(PrivacyPassError):
            pp.b64url_decode(bad)


# --------------------------------------------------------------------------- headers


def test_www_authenticate_round_trip() -> None:
    ch1 = challenge(1, b"\x01" * 32, ("origin.example",))
    ch2 = challenge(2)
    key1 = voprf_key().public_key
    key2 = blindrsa.pss_spki(rsa_key().public_key())
    value = pp.format_www_authenticate([(ch1, key1), (ch2, key2)], max_age=60)
    assert value.startswith('PrivateToken challenge="')
    assert value.count("PrivateToken ") == 2 and value.count("max-age=60") == 2
    parsed = pp.parse_www_authenticate(value)
    assert parsed == [
        pp.PrivateTokenChallenge(ch1, key1, 60),
        pp.PrivateTokenChallenge(ch2, key2, 60),
    ]
    assert parsed[0].challenge_digest == ch1.digest()
    single = pp.format_www_authenticate([(ch2, None)])
    assert single == f'PrivateToken challenge="{pp.b64url_encode(ch2.encode())}"'
    assert pp.parse_www_authenticate(single) == [pp.PrivateTokenChallenge(ch2)]


def test_www_authenticate_lenient_syntax() -> None:
    ch = challenge(1)
    c64 = pp.b64url_encode(ch.encode())
    k64 = pp.b64url_encode(voprf_key().public_key)
    want = [pp.PrivateTokenChallenge(ch, voprf_key().public_key, 10)]
    variants = [
        f'privatetoken challenge="{c64}", token-key="{k64}", max-age="10"',
        f'PRIVATETOKEN   challenge = "{c64}" ,token-key="{k64}",max-age=10',
        f'Basic realm="x, y", PrivateToken challenge="{c64}", token-key="{k64}", max-age=10',
        f'Bearer abc==, PrivateToken realm=r, challenge="{c64}", token-key="{k64}", max-age=10',
        f', ,PrivateToken challenge="{c64}",, token-key="{k64}", max-age=10 , Basic',
        f"PrivateToken challenge={c64.rstrip('=')}, token-key={k64.rstrip('=')}, max-age=10",
        f'PrivateToken challenge="{c64}", token-key="{k64}", max-age=10, future="a\\"b"',
        f'PrivateToken\tchallenge="{c64}",\ttoken-key="\\{k64[0]}{k64[1:]}", max-age=10',
    ]
    for value in variants:
        assert pp.parse_www_authenticate(value) == want, value


def test_www_authenticate_skips_unsupported_and_other_schemes() -> None:
    unknown = pp.b64url_encode(b"\x00\x07\x00\x01i\x00\x00\x00")
    known = challenge(2)
    value = (
        f'PrivateToken challenge="{unknown}", Basic realm="r", '
        f'PrivateToken challenge="{pp.b64url_encode(known.encode())}"'
    )
    assert pp.parse_www_authenticate(value) == [pp.PrivateTokenChallenge(known)]
    assert pp.parse_www_authenticate('Basic realm="r"') == []
    assert pp.parse_www_authenticate("") == []


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ('PrivateToken token-key="AA=="', "lacks the challenge"),
        ("PrivateToken abc==", "token68"),
        ('PrivateToken challenge="AA==", challenge="AA=="', "duplicate"),
        ('PrivateToken challenge="AAEA', "unterminated"),
        ('PrivateToken challenge="!!"', "base64url"),
        ('PrivateToken challenge="AAEAAA=="', "empty issuer_name"),
        ("PrivateToken challenge=x y", "expected ','"),
        ('"quoted" challenge=x', "auth-scheme"),
        ("PrivateToken,challenge=x", "auth-scheme"),
        ('PrivateToken challenge="\x01"', "invalid character"),
        ('PrivateToken challenge="a\\\x01"', "quoted-pair"),
        ("PrivateTokenchallenge=x", "expected whitespace"),
        ("PrivateToken =x", "auth-params or token68"),
    ],
)
def test_www_authenticate_rejects(value: str, match: str) -> None:
    with pytest.raises(PrivacyPassError, match=match):
        pp.parse_www_authenticate(value)


def test_www_authenticate_rejects_bad_key_and_max_age() -> None:
    ch1 = pp.b64url_encode(challenge(1).encode())
    ch2 = pp.b64url_encode(challenge(2).encode())
    with pytest.raises(PrivacyPassError, match="49 bytes"):
        pp.parse_www_authenticate(f'PrivateToken challenge="{ch1}", token-key="AA=="')
    with pytest.raises(PrivacyPassError, match="token key"):
        pp.parse_www_authenticate(f'PrivateToken challenge="{ch2}", token-key="AA=="')
    for bad in ("-1", "1.5", "x", '""', "99999999999999999999"):
        with pytest.raises(PrivacyPassError, match="max-age"):
            pp.parse_www_authenticate(f'PrivateToken challenge="{ch1}", max-age={bad}')
    with pytest.raises(PrivacyPassError, match="max-age"):
        pp.format_www_authenticate([(challenge(1), None)], max_age=-1)
    with pytest.raises(PrivacyPassError, match="at least one"):
        pp.format_www_authenticate([])


def test_authorization_round_trip_and_syntax() -> None:
    token = Token.decode(h(T2[0], "token"))
    value = pp.format_authorization(token)
    b64 = pp.b64url_encode(token.encode())
    assert value == f'PrivateToken token="{b64}"'
    assert pp.parse_authorization(value) == token
    for variant in (
        f'privatetoken token="{b64}"',
        f'PrivateToken   token = "{b64}" ',
        f"PrivateToken token={b64.rstrip('=')}",
        f'PrivateToken token="{b64}", future=1',
    ):
        assert pp.parse_authorization(variant) == token, variant


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("", "exactly one credential"),
        ('Bearer token="AA=="', "scheme"),
        ('PrivateToken token="AA==", PrivateToken token="AA=="', "exactly one"),
        ("PrivateToken", "lack the token"),
        ("PrivateToken AAAA", "token68"),
        ('PrivateToken token="AA=="', "truncated"),
        ('PrivateToken token="AAE="', "non"),  # non-canonical trailing bits
    ],
)
def test_authorization_rejects(value: str, match: str) -> None:
    with pytest.raises(PrivacyPassError, match=match):
        pp.parse_authorization(value)


# --------------------------------------------------------------------------- fuzzing

_VALID_CHALLENGE = challenge(1, b"\x05" * 32, ("a.example", "b.example")).encode()
_VALID_TOKEN = bytes.fromhex(T2[0]["token"])
_VALID_HEADER = (
    f'PrivateToken challenge="{pp.b64url_encode(_VALID_CHALLENGE)}", max-age=5, Basic realm="x\\"y"'
)

FUZZ = settings(max_examples=300, deadline=None)


def _only_pp_error(fn: Any, *args: Any) -> None:
    with contextlib.suppress(PrivacyPassError):
        fn(*args)


def _mutate(base: bytes) -> st.SearchStrategy[bytes]:
    return st.tuples(st.integers(0, len(base)), st.integers(0, 8), st.binary(max_size=8)).map(
        lambda t: base[: t[0]] + t[2] + base[t[0] + t[1] :]
    )


@FUZZ
@given(st.one_of(st.binary(max_size=200), _mutate(_VALID_CHALLENGE)))
def test_fuzz_token_challenge(data: bytes) -> None:
    try:
        ch = TokenChallenge.decode(data)
    except PrivacyPassError:
        return
    assert ch.encode() == data  # canonical: whatever decodes re-encodes identically


@FUZZ
@given(st.one_of(st.binary(max_size=400), _mutate(_VALID_TOKEN), _mutate(_VALID_TOKEN[:259])))
def test_fuzz_token_request_response_token(data: bytes) -> None:
    for fn in (TokenRequest.decode, Token.decode):
        try:
            obj = fn(data)
        except PrivacyPassError:
            continue
        assert obj.encode() == data
    for token_type in (1, 2, 3):
        _only_pp_error(TokenResponse.decode, data, token_type)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "issuer-request-uri",
                            "token-keys",
                            "token-type",
                            "token-key",
                            "not-before",
                            "x",
                        ]
                    ),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=12,
        ).map(json.dumps),
    )
)
def test_fuzz_issuer_directory(data: bytes | str) -> None:
    _only_pp_error(pp.parse_issuer_directory, data)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=200),
        st.text(alphabet=' \t,="\\=abcAZ09-_PrivateTokenchallengmax-', max_size=80),
        _mutate(_VALID_HEADER.encode()).map(lambda b: b.decode("latin-1")),
    )
)
def test_fuzz_headers(value: str) -> None:
    _only_pp_error(pp.parse_www_authenticate, value)
    _only_pp_error(pp.parse_authorization, value)
    _only_pp_error(pp.b64url_decode, value)


def test_unquoted_padded_values_are_accepted_but_not_inner_equals() -> None:
    from privproc.wire import privacypass as _pp

    items = _pp._AuthParser('PrivateToken token=AAE=, other=x', 'test').parse()
    assert items[0].params["token"] == "AAE="
    with pytest.raises(_pp.PrivacyPassError):
        _pp._AuthParser("PrivateToken token=AA=E", "test").parse()
