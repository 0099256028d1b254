"""Issuance and redemption (RFC 9578), one function per role::

    request, state = begin_issuance(token_type, issuer_public_key, challenge)   # client
    response = issue(issuer_private_key, request)                               # issuer
    token = finalize_token(state, response)                                     # client
    verify_token(token, {key_id: key}, challenge=challenge)                     # verifier
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa
from voprf import p384

from privproc.wire import blindrsa
from privproc.wire.privacypass.common import (
    DIGEST_LEN,
    NONCE_LEN,
    RSA_VARIANT,
    TOKEN_TYPE_BLIND_RSA,
    TOKEN_TYPE_VOPRF,
    PrivacyPassError,
    _as_bytes,
    _check_bytes,
    _check_supported,
    _type_name,
)
from privproc.wire.privacypass.keys import (
    IssuerPrivateKey,
    IssuerPublicKey,
    VerificationKey,
    VoprfEvaluator,
    _load_element,
    _load_voprf_public_key,
    _rsa_public_key,
    encode_token_key,
    token_input,
    verification_key_id,
)
from privproc.wire.privacypass.structures import Token, TokenChallenge, TokenRequest, TokenResponse

__all__ = ["ClientState", "Rand", "begin_issuance", "finalize_token", "issue", "verify_token"]

Rand = Callable[[int], bytes]


@dataclass(repr=False, eq=False)
class ClientState:
    """What the client keeps between :func:`begin_issuance` and :func:`finalize_token`."""

    token_type: int
    nonce: bytes
    challenge_digest: bytes
    token_key_id: bytes
    token_input: bytes
    _voprf_client: p384.Client | None = field(default=None)
    _voprf_public_key: p384.PublicKey | None = field(default=None)
    _rsa_public_key: rsa.RSAPublicKey | None = field(default=None)
    _rsa_inv: int = 0

    def __repr__(self) -> str:
        return f"ClientState(token_type={_type_name(self.token_type)}, nonce={self.nonce.hex()})"


def begin_issuance(
    token_type: int,
    issuer_public_key: IssuerPublicKey,
    challenge: TokenChallenge | bytes,
    *,
    nonce: bytes | None = None,
    rand: Rand = os.urandom,
) -> tuple[TokenRequest, ClientState]:
    """Client: build the TokenRequest for ``challenge`` (RFC 9578 sections 5.1 / 6.1).

    ``challenge`` is a :class:`TokenChallenge` or the challenge bytes as received.
    ``rand`` supplies, in this order: the nonce (32 bytes, unless ``nonce`` is given) and,
    for type 0x0002, the PSS salt (48 bytes) then the RSA blinding factor (256 bytes,
    redrawn while not in [1, n)). The type 0x0001 blind comes from the ``voprf`` package's
    own CSPRNG and cannot be injected.
    """
    token_type = _check_supported(token_type, "begin_issuance")
    if isinstance(challenge, TokenChallenge):
        if challenge.token_type != token_type:
            raise PrivacyPassError(
                f"challenge is for token type {_type_name(challenge.token_type)}, "
                f"not {_type_name(token_type)}"
            )
        challenge_bytes = challenge.encode()
    else:
        challenge_bytes = _as_bytes(challenge, "challenge")
    if nonce is None:
        nonce = rand(NONCE_LEN)
    nonce = _check_bytes(nonce, NONCE_LEN, "nonce")
    digest = hashlib.sha256(challenge_bytes).digest()
    key_bytes = encode_token_key(token_type, issuer_public_key)
    key_id = hashlib.sha256(key_bytes).digest()
    t_input = token_input(token_type, nonce, digest, key_id)
    state = ClientState(token_type, nonce, digest, key_id, t_input)
    if token_type == TOKEN_TYPE_VOPRF:
        try:
            client, blinded = p384.Client.blind(t_input)
        except ValueError as exc:
            raise PrivacyPassError(f"VOPRF Blind failed: {exc}") from exc
        state._voprf_client = client
        state._voprf_public_key = _load_voprf_public_key(key_bytes)
        blinded_msg = blinded.serialize()
    else:
        pk = _rsa_public_key(issuer_public_key)
        try:
            blinded_msg, inv = blindrsa.blind(pk, t_input, RSA_VARIANT, rand=rand)
        except blindrsa.BlindRSAError as exc:
            raise PrivacyPassError(f"blind RSA Blind failed: {exc}") from exc
        state._rsa_public_key = pk
        state._rsa_inv = inv
    return TokenRequest(token_type, key_id[-1], blinded_msg), state


def finalize_token(state: ClientState, response: TokenResponse) -> Token:
    """Client: check the issuer's answer and build the Token (RFC 9578 sections 5.3 / 6.3)."""
    if response.token_type != state.token_type:
        raise PrivacyPassError(
            f"response is for token type {_type_name(response.token_type)}, "
            f"expected {_type_name(state.token_type)}"
        )
    if state.token_type == TOKEN_TYPE_VOPRF:
        if state._voprf_client is None or state._voprf_public_key is None:
            raise PrivacyPassError("client state has no VOPRF context")
        _load_element(response.evaluate_msg, "TokenResponse.evaluate_msg")
        try:
            output = p384.VerifiableOutput.deserialize(
                response.evaluate_proof + response.evaluate_msg
            )
            authenticator = state._voprf_client.finalize(output, state._voprf_public_key)
        except ValueError as exc:
            raise PrivacyPassError(f"VOPRF Finalize failed (bad proof or element): {exc}") from exc
    else:
        if state._rsa_public_key is None:
            raise PrivacyPassError("client state has no blind RSA context")
        try:
            authenticator = blindrsa.finalize(
                state._rsa_public_key,
                state.token_input,
                response.blind_sig,
                state._rsa_inv,
                RSA_VARIANT,
            )
        except blindrsa.BlindRSAError as exc:
            raise PrivacyPassError(f"blind RSA Finalize failed: {exc}") from exc
    return Token(
        state.token_type, state.nonce, state.challenge_digest, state.token_key_id, authenticator
    )


def issue(issuer_private_key: IssuerPrivateKey, request: TokenRequest) -> TokenResponse:
    """Issuer: answer a TokenRequest (RFC 9578 sections 5.2 / 6.2).

    Raises :class:`PrivacyPassError` (HTTP 422 territory) when the key does not suit the
    request's type, the truncated key id does not match, or the blinded message is invalid.
    """
    if request.token_type == TOKEN_TYPE_VOPRF:
        if not isinstance(issuer_private_key, VoprfEvaluator):
            raise PrivacyPassError("type 0x0001 request needs a VOPRF issuer key")
        key_id = hashlib.sha256(issuer_private_key.public_key).digest()
        if key_id[-1] != request.truncated_token_key_id:
            raise PrivacyPassError("truncated_token_key_id does not match the issuer key")
        evaluated, proof = issuer_private_key.blind_evaluate(request.blinded_msg)
        return TokenResponse(TOKEN_TYPE_VOPRF, evaluate_msg=evaluated, evaluate_proof=proof)
    if isinstance(issuer_private_key, rsa.RSAPrivateKey):
        try:
            signing_key = blindrsa.SigningKey.from_private_key(issuer_private_key)
        except blindrsa.BlindRSAError as exc:
            raise PrivacyPassError(f"bad type 0x0002 issuer key: {exc}") from exc
    elif isinstance(issuer_private_key, blindrsa.SigningKey):
        signing_key = issuer_private_key
    else:
        raise PrivacyPassError("type 0x0002 request needs an RSA issuer key")
    pk = _rsa_public_key(signing_key.public_key)
    if hashlib.sha256(blindrsa.pss_spki(pk)).digest()[-1] != request.truncated_token_key_id:
        raise PrivacyPassError("truncated_token_key_id does not match the issuer key")
    if int.from_bytes(request.blinded_msg, "big") >= signing_key.n:
        raise PrivacyPassError("TokenRequest.blinded_msg is not below the RSA modulus")
    blind_sig = blindrsa.blind_sign(signing_key, request.blinded_msg)
    return TokenResponse(TOKEN_TYPE_BLIND_RSA, blind_sig=blind_sig)


def verify_token(
    token: Token,
    issuer_keys: Mapping[bytes, VerificationKey],
    *,
    challenge: TokenChallenge | bytes | None = None,
    challenge_digest: bytes | None = None,
) -> None:
    """Verifier: accept ``token`` or raise :class:`PrivacyPassError` (fail closed).

    ``issuer_keys`` maps full 32-byte token_key_ids to keys: a :class:`VoprfEvaluator`
    (type 0x0001, needs the issuer's private key) or an RSA public key (type 0x0002).
    Give exactly one of ``challenge`` (a :class:`TokenChallenge` or its encoded bytes) and
    ``challenge_digest``. Double-spend checks are the caller's job.
    """
    if (challenge is None) == (challenge_digest is None):
        raise PrivacyPassError("give exactly one of challenge and challenge_digest")
    if challenge_digest is None:
        if isinstance(challenge, TokenChallenge):
            expected = challenge.digest()
        else:
            expected = hashlib.sha256(_as_bytes(challenge, "challenge")).digest()
    else:
        expected = _check_bytes(challenge_digest, DIGEST_LEN, "challenge_digest")
    if not hmac.compare_digest(token.challenge_digest, expected):
        raise PrivacyPassError("token is not for this challenge (challenge_digest mismatch)")
    key = issuer_keys.get(token.token_key_id)
    if key is None:
        raise PrivacyPassError("token names an unknown issuer key (token_key_id)")
    if token.token_type == TOKEN_TYPE_VOPRF:
        if not isinstance(key, VoprfEvaluator):
            raise PrivacyPassError("key for a type 0x0001 token must be a VOPRF issuer key")
        if verification_key_id(TOKEN_TYPE_VOPRF, key) != token.token_key_id:
            raise PrivacyPassError("issuer key does not match its token_key_id")
        expected_auth = key.evaluate(token.authenticator_input)
        if not hmac.compare_digest(expected_auth, token.authenticator):
            raise PrivacyPassError("invalid type 0x0001 token authenticator")
        return
    pk = _rsa_public_key(key)
    if verification_key_id(TOKEN_TYPE_BLIND_RSA, pk) != token.token_key_id:
        raise PrivacyPassError("issuer key does not match its token_key_id")
    try:
        blindrsa.verify(pk, token.authenticator_input, token.authenticator, RSA_VARIANT)
    except blindrsa.BlindRSAError as exc:
        raise PrivacyPassError("invalid type 0x0002 token authenticator") from exc
