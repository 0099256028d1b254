"""Privacy Pass: RFC 9577 (HTTP authentication scheme) and RFC 9578 (issuance), sans-IO.

Wire structures (all strict: exact lengths, no trailing bytes, known token types only):

* :class:`TokenChallenge` -- RFC 9577 section 2.1.1, with ``origin_info`` as a list of names;
* :class:`TokenRequest` / :class:`TokenResponse` -- RFC 9578 sections 5.1/5.2 (type 0x0001,
  VOPRF(P-384, SHA-384)) and 6.1/6.2 (type 0x0002, blind RSA 2048);
* :class:`Token` -- RFC 9577 section 2.2.1.

Issuance, one function per role::

    request, state = begin_issuance(token_type, issuer_public_key, challenge)   # client
    response = issue(issuer_private_key, request)                               # issuer
    token = finalize_token(state, response)                                     # client
    verify_token(token, {key_id: key}, challenge=challenge)                     # verifier

Type 0x0001 uses the ``voprf`` package (RFC 9497 mode 1, suite P384-SHA384; keys from
``DeriveKeyPair(seed, "PrivacyPass")`` as RFC 9578 section 5.5 recommends) through
:class:`VoprfIssuerKey`; any object with the :class:`VoprfEvaluator` shape can stand in
for it. Type 0x0002 uses :mod:`privproc.wire.blindrsa` with RSABSSA-SHA384-PSS-Deterministic,
and the key identifier is SHA-256 of the RFC 9578 section 6.5 id-RSASSA-PSS SPKI.

Also here: the issuer directory (RFC 9578 section 4) and the ``PrivateToken`` header
fields (RFC 9577 section 2): :func:`format_www_authenticate`,
:func:`parse_www_authenticate`, :func:`format_authorization`, :func:`parse_authorization`.

Every failure on bad input raises :class:`PrivacyPassError`. The one exception is a fault
inside the issuer's own RSA signing, which :func:`issue` lets through as
:class:`~privproc.wire.blindrsa.BlindRSAError` (a server fault, not a bad request).

The package's modules, each importable on its own; every name is also re-exported here:

* :mod:`~privproc.wire.privacypass.common` -- :class:`PrivacyPassError`, token types,
  media types, sizes, base64url;
* :mod:`~privproc.wire.privacypass.structures` -- the wire structures;
* :mod:`~privproc.wire.privacypass.keys` -- issuer keys, their encodings and ids;
* :mod:`~privproc.wire.privacypass.issuance` -- the four roles' functions;
* :mod:`~privproc.wire.privacypass.directory` -- the issuer directory;
* :mod:`~privproc.wire.privacypass.auth` -- the ``PrivateToken`` header fields.

The ``name as name`` imports below keep the former module's other names (not in
``__all__``) reachable as ``privacypass.<name>``.
"""

from __future__ import annotations

from privproc.wire.privacypass.auth import (
    PrivateTokenChallenge,
    format_authorization,
    format_www_authenticate,
    parse_authorization,
    parse_www_authenticate,
)
from privproc.wire.privacypass.auth import _AuthParser as _AuthParser
from privproc.wire.privacypass.common import (
    AUTH_SCHEME,
    MEDIA_TYPE_ISSUER_DIRECTORY,
    MEDIA_TYPE_TOKEN_REQUEST,
    MEDIA_TYPE_TOKEN_RESPONSE,
    SUPPORTED_TOKEN_TYPES,
    TOKEN_TYPE_BLIND_RSA,
    TOKEN_TYPE_VOPRF,
    VOPRF_KEY_INFO,
    WELL_KNOWN_ISSUER_DIRECTORY,
    PrivacyPassError,
    b64url_decode,
    b64url_encode,
)
from privproc.wire.privacypass.common import DIGEST_LEN as DIGEST_LEN
from privproc.wire.privacypass.common import KEY_ID_LEN as KEY_ID_LEN
from privproc.wire.privacypass.common import NONCE_LEN as NONCE_LEN
from privproc.wire.privacypass.common import REDEMPTION_CONTEXT_LEN as REDEMPTION_CONTEXT_LEN
from privproc.wire.privacypass.common import RSA_BITS as RSA_BITS
from privproc.wire.privacypass.common import RSA_NK as RSA_NK
from privproc.wire.privacypass.common import RSA_VARIANT as RSA_VARIANT
from privproc.wire.privacypass.common import VOPRF_NE as VOPRF_NE
from privproc.wire.privacypass.common import VOPRF_NK as VOPRF_NK
from privproc.wire.privacypass.common import VOPRF_NS as VOPRF_NS
from privproc.wire.privacypass.directory import (
    IssuerDirectory,
    TokenKey,
    encode_issuer_directory,
    parse_issuer_directory,
)
from privproc.wire.privacypass.issuance import (
    ClientState,
    begin_issuance,
    finalize_token,
    issue,
    verify_token,
)
from privproc.wire.privacypass.issuance import Rand as Rand
from privproc.wire.privacypass.keys import IssuerPrivateKey as IssuerPrivateKey
from privproc.wire.privacypass.keys import IssuerPublicKey as IssuerPublicKey
from privproc.wire.privacypass.keys import VerificationKey as VerificationKey
from privproc.wire.privacypass.keys import (
    VoprfEvaluator,
    VoprfIssuerKey,
    encode_token_key,
    token_input,
    token_key_id,
    verification_key_id,
)
from privproc.wire.privacypass.structures import Token, TokenChallenge, TokenRequest, TokenResponse

__all__ = [
    "PrivacyPassError",
    "TOKEN_TYPE_VOPRF",
    "TOKEN_TYPE_BLIND_RSA",
    "SUPPORTED_TOKEN_TYPES",
    "AUTH_SCHEME",
    "MEDIA_TYPE_TOKEN_REQUEST",
    "MEDIA_TYPE_TOKEN_RESPONSE",
    "MEDIA_TYPE_ISSUER_DIRECTORY",
    "WELL_KNOWN_ISSUER_DIRECTORY",
    "VOPRF_KEY_INFO",
    "TokenChallenge",
    "TokenRequest",
    "TokenResponse",
    "Token",
    "VoprfEvaluator",
    "VoprfIssuerKey",
    "ClientState",
    "token_key_id",
    "verification_key_id",
    "encode_token_key",
    "token_input",
    "begin_issuance",
    "finalize_token",
    "issue",
    "verify_token",
    "TokenKey",
    "IssuerDirectory",
    "encode_issuer_directory",
    "parse_issuer_directory",
    "PrivateTokenChallenge",
    "format_www_authenticate",
    "parse_www_authenticate",
    "format_authorization",
    "parse_authorization",
    "b64url_encode",
    "b64url_decode",
]
