"""Issuer key ids are computed once per key, and the cache never answers for another key."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from privproc.gateway.redeem import VerificationKeyFile
from privproc.issuer import keystore
from privproc.wire import blindrsa
from privproc.wire import privacypass as pp
from privproc.wire.privacypass import keys as pp_keys

T0 = 1_700_000_000


@pytest.fixture(scope="module")
def rsa_keys() -> list[keystore.IssuerKey]:
    return [keystore.generate(pp.TOKEN_TYPE_BLIND_RSA, T0) for _ in range(2)]


def count_spki(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = blindrsa.pss_spki

    def counting(pk: object) -> bytes:
        calls[0] += 1
        return real(pk)  # type: ignore[arg-type]

    monkeypatch.setattr(blindrsa, "pss_spki", counting)
    return calls


def test_rsa_key_id_is_computed_once_per_key_object(
        rsa_keys: list[keystore.IssuerKey], monkeypatch: pytest.MonkeyPatch) -> None:
    pp_keys._RSA_KEY_IDS.clear()
    calls = count_spki(monkeypatch)
    a, b = (k.verification_key for k in rsa_keys)
    expected = {id(k): pp.token_key_id(pp.TOKEN_TYPE_BLIND_RSA, k) for k in (a, b)}
    calls[0] = 0
    for _ in range(5):
        assert pp.verification_key_id(pp.TOKEN_TYPE_BLIND_RSA, a) == expected[id(a)]
        assert pp.verification_key_id(pp.TOKEN_TYPE_BLIND_RSA, b) == expected[id(b)]
    assert calls[0] == 2
    assert expected[id(a)] != expected[id(b)]


def test_rsa_key_id_cache_is_bounded_and_stays_right(
        rsa_keys: list[keystore.IssuerKey]) -> None:
    pp_keys._RSA_KEY_IDS.clear()
    spki = pp.encode_token_key(pp.TOKEN_TYPE_BLIND_RSA, rsa_keys[0].verification_key)
    want = hashlib.sha256(spki).digest()
    # Many objects of the same key (as many file reloads make): each is answered right,
    # and the cache never holds more than its bound.
    for _ in range(3 * pp_keys._RSA_KEY_IDS_MAX):
        pk = blindrsa.load_public_key_spki(spki)
        assert pp.verification_key_id(pp.TOKEN_TYPE_BLIND_RSA, pk) == want
        assert len(pp_keys._RSA_KEY_IDS) <= pp_keys._RSA_KEY_IDS_MAX
    assert pp.verification_key_id(pp.TOKEN_TYPE_BLIND_RSA, spki) == want  # bytes too


def test_voprf_key_id_is_kept_by_the_key() -> None:
    key = pp.VoprfIssuerKey.generate()
    assert key.token_key_id == hashlib.sha256(key.public_key).digest()
    assert pp.verification_key_id(pp.TOKEN_TYPE_VOPRF, key) == key.token_key_id
    assert key.token_key_id == pp.token_key_id(pp.TOKEN_TYPE_VOPRF, key.public_key)


def test_verify_refuses_a_token_mapped_to_the_wrong_key(
        rsa_keys: list[keystore.IssuerKey]) -> None:
    """The cached ids still catch a key map that names the wrong key for a token."""
    right, wrong = rsa_keys
    challenge = pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, "issuer.test", b"", ["o.test"])
    request, state = pp.begin_issuance(pp.TOKEN_TYPE_BLIND_RSA, right.public, challenge)
    token = pp.finalize_token(state, pp.issue(right.private, request))
    pp.verify_token(token, {token.token_key_id: right.verification_key}, challenge=challenge)
    for _ in range(2):  # cold and cached
        with pytest.raises(pp.PrivacyPassError, match="does not match its token_key_id"):
            pp.verify_token(token, {token.token_key_id: wrong.verification_key},
                            challenge=challenge)


def test_issuer_and_redeemer_key_ids_are_cached_per_key(tmp_path: Path) -> None:
    keys = keystore.load_or_create(tmp_path, T0)
    for key in keys.keys:
        assert "key_id" not in vars(key)
        assert key.key_id == pp.token_key_id(key.token_type, key.public)
        assert vars(key)["key_id"] == key.key_id  # kept on the key
    accepted = VerificationKeyFile(tmp_path).get().keys
    for k in accepted:
        assert k.key_id == hashlib.sha256(k.token_key).digest()
        assert "key_id" in vars(k)
    assert {k.key_id for k in accepted} == {k.key_id for k in keys.keys}


def test_redeemer_lookup_follows_the_key_file(tmp_path: Path) -> None:
    keys = keystore.load_or_create(tmp_path, T0)
    source = VerificationKeyFile(tmp_path)
    old = keys.current(pp.TOKEN_TYPE_BLIND_RSA)
    found = source.lookup(old.key_id, T0)
    assert found is not None and found.token_key == old.token_key
    assert source.lookup(b"\x00" * 32, T0) is None
    time.sleep(0.01)  # a new mtime for the rewritten file
    rotated = keystore.rotate(tmp_path, T0 + 10, overlap=100)
    new = rotated.current(pp.TOKEN_TYPE_BLIND_RSA)
    assert source.lookup(new.key_id, T0 + 10) is not None  # the new key, after a re-read
    assert source.lookup(old.key_id, T0 + 50) is not None  # in its overlap
    assert source.lookup(old.key_id, T0 + 110) is None  # past its end of life
