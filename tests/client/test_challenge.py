"""Attack: a gateway (the operator) answers 401 with a token challenge of its own, a
random redemption context, to tag this client: every later token would carry it (linking
all the client's requests), and the empty wallet would fetch from the issuer inside the
request (linking it to the account). The client takes a token only under the challenge
the trust file names; a 422 retry reuses the token the gateway could not open."""

from __future__ import annotations

import pytest

from privproc.client.errors import TokenChallengeRefusedError
from privproc.client.ohttp import OHTTPClient
from privproc.wire import bhttp, hpke, ohttp
from privproc.wire import privacypass as pp

PINNED = pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, "issuer.test", b"", ["gateway.test"])


class Wallet:
    """Hands out numbered fake tokens and records the challenge each was taken under."""

    token_type = pp.TOKEN_TYPE_BLIND_RSA

    def __init__(self) -> None:
        self.taken: list[pp.TokenChallenge] = []

    def take(self, challenge: pp.TokenChallenge) -> pp.Token:
        self.taken.append(challenge)
        n = len(self.taken)
        return pp.Token(pp.TOKEN_TYPE_BLIND_RSA, bytes([n]) * 32, bytes(32),
                        bytes([n]) * 32, bytes(256))


class Gateway:
    """Opens each sealed request and answers as scripted: an outer status, or an inner
    response; records the Authorization fields it saw."""

    def __init__(self, answers: list[int | bhttp.Response]) -> None:
        self.key = ohttp.GatewayKey.create(1, hpke.KeyPair.generate())
        self.keys = ohttp.GatewayKeys([self.key])
        self.answers = answers
        self.tokens: list[bytes | None] = []

    def post(self, sealed: bytes, timeout: float | None = None) -> tuple[int, str, bytes]:
        plain, ctx = self.keys.decapsulate_request(sealed)
        inner = bhttp.decode_request(plain)
        self.tokens.append(next((f.value for f in inner.headers
                                 if f.name == b"authorization"), None))
        answer = self.answers.pop(0)
        if isinstance(answer, int):
            return answer, "text/plain", b"refused"
        return 200, ohttp.MEDIA_TYPE_RESPONSE, ctx.encapsulate_response(
            bhttp.encode_response(answer))


def challenge_401(challenge: pp.TokenChallenge) -> bhttp.Response:
    value = pp.format_www_authenticate([(challenge, None)]).encode()
    return bhttp.Response(status=401, headers=(bhttp.Field(b"www-authenticate", value),))


def client(gateway: Gateway, wallet: Wallet, challenge: pp.TokenChallenge | None
           ) -> OHTTPClient:
    c = OHTTPClient("http://relay.test/", tokens=wallet,  # type: ignore[arg-type]
                    challenge=challenge, key_source=lambda refresh: gateway.key.config)
    c._post = gateway.post  # type: ignore[method-assign]
    return c


OK = bhttp.Response(status=200, content=b"answer")


@pytest.mark.parametrize("planted", [
    pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, "issuer.test", bytes(range(32)),
                      ["gateway.test"]),
    pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, "evil-issuer.example", b"", ["gateway.test"]),
    pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, "issuer.test", b"", ["elsewhere.test"]),
], ids=["own-context", "other-issuer", "other-origin"])
def test_a_challenge_the_trust_file_does_not_name_is_refused(planted: pp.TokenChallenge
                                                             ) -> None:
    gateway, wallet = Gateway([challenge_401(planted), OK]), Wallet()
    c = client(gateway, wallet, PINNED)
    with pytest.raises(TokenChallengeRefusedError, match="not the one the trust file names"):
        c.request("GET", "/x")
    assert wallet.taken == [PINNED]  # no token taken (nor fetched) under the planted one
    assert c.challenge == PINNED
    assert c.request("GET", "/x").status == 200  # and the next request is as before
    assert wallet.taken == [PINNED, PINNED]


def test_a_401_under_the_trust_files_challenge_is_answered_once_with_a_fresh_token() -> None:
    gateway, wallet = Gateway([challenge_401(PINNED), OK]), Wallet()
    assert client(gateway, wallet, PINNED).request("GET", "/x").status == 200
    assert len(wallet.taken) == 2 and len(set(gateway.tokens)) == 2


def test_without_a_pinned_challenge_only_one_without_a_context_is_taken() -> None:
    tagged = pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, "issuer.test", bytes(range(32)),
                               ["gateway.test"])
    gateway, wallet = Gateway([challenge_401(tagged)]), Wallet()
    with pytest.raises(TokenChallengeRefusedError, match="redemption context"):
        client(gateway, wallet, None).request("GET", "/x")
    gateway, wallet = Gateway([challenge_401(PINNED), OK]), Wallet()
    c = client(gateway, wallet, None)
    assert c.request("GET", "/x").status == 200 and c.challenge == PINNED


def test_a_422_retry_reuses_the_token_the_gateway_could_not_open() -> None:
    """A relay (or gateway) answering 422 cost a token per answer; the request was never
    opened, so the same token goes again: one token per request, not two or three."""
    gateway, wallet = Gateway([422, OK]), Wallet()
    assert client(gateway, wallet, PINNED).request("GET", "/x").status == 200
    assert len(wallet.taken) == 1
    assert gateway.tokens[0] == gateway.tokens[1] is not None


def test_a_redemption_context_the_trust_file_names_is_taken() -> None:
    """A gateway may name one context for every client (--redemption-context): a client
    whose trust file names it too takes tokens under it."""
    context = bytes(range(32))
    shared = pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, "issuer.test", context,
                               ["gateway.test"])
    gateway, wallet = Gateway([challenge_401(shared), OK]), Wallet()
    assert client(gateway, wallet, shared).request("GET", "/x").status == 200
    assert wallet.taken == [shared, shared]
