"""Privacy Pass interoperability with Cloudflare's ``@cloudflare/privacypass-ts``.

Both directions, for both token types that library and privproc share (0x0001 VOPRF
P-384/SHA-384, 0x0002 blind RSA 2048):

* TS client -> our issuer (a real ``privproc issuer serve`` process): the tokens verify
  with :func:`privproc.wire.privacypass.verify_token` and the keys from the issuer's state
  directory (what our gateway does), tampered tokens and tokens for other challenges are
  refused; the TS verifier also accepts what our issuer issues.
* our client (``begin_issuance`` / ``finalize_token`` over HTTP) -> TS issuer
  (``ts_issuer.mjs``): the TS verifier accepts the tokens.
* headers: ``WWW-Authenticate`` / ``Authorization`` values written by one side parse on
  the other.

Needs Node.js >= 20 and ``npm ci`` in tests/interop. Without them the tests skip, except
under CI (env ``CI`` set), where they fail instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import selectors
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from privproc.client.ohttp import OHTTPClient
from privproc.issuer import keystore
from privproc.up.supervisor import Supervisor
from privproc.wire import blindrsa
from privproc.wire import privacypass as pp

from ..servers import ANY_PORT, start_service

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "node_modules" / "@cloudflare" / "privacypass-ts" / "package.json"
HOST = "127.0.0.1"
ISSUER_NAME = "issuer.privproc.local"
TS_ISSUER_NAME = "ts-issuer.example"
ORIGINS = ["gateway.example"]
BEARER = "interop-account-token"
CONTEXT = hashlib.sha256(b"privproc interop redemption context").digest()
TYPES = [pp.TOKEN_TYPE_VOPRF, pp.TOKEN_TYPE_BLIND_RSA]
CONTEXTS = [b"", CONTEXT]
NODE_TIMEOUT = 60.0
GATEWAY_REDEEMS = importlib.util.find_spec("privproc.gateway.redeem") is not None


def _type_id(token_type: int) -> str:
    return {pp.TOKEN_TYPE_VOPRF: "voprf", pp.TOKEN_TYPE_BLIND_RSA: "blindrsa"}[token_type]


def _ctx_id(context: bytes) -> str:
    return "ctx" if context else "noctx"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing() -> str | None:
    node = shutil.which("node")
    if node is None:
        return "Node.js (`node`) is not on PATH"
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return f"`node --version` failed: {exc}"
    if major < 20:
        return f"Node.js >= 20 is needed, found {version}"
    if not PACKAGE.is_file():
        return "tests/interop/node_modules is missing (run `npm ci` in tests/interop)"
    return None


MISSING = _missing()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        MISSING is not None and not _in_ci(),
        reason=f"privacypass-ts interop needs Node.js and its packages: {MISSING}",
    ),
]


@pytest.fixture(scope="session")
def node() -> str:
    if MISSING is not None:  # only reached under CI: the tests must run there
        pytest.fail(f"CI is set but the privacypass-ts interop tests cannot run: {MISSING}")
    path = shutil.which("node")
    assert path is not None
    return path


def run_node(node: str, script: str, *args: str, stdin: str | None = None) -> Any:
    """Run a script of tests/interop and decode the JSON it prints."""
    proc = subprocess.run(
        [node, str(HERE / script), *args], cwd=HERE, input=stdin, capture_output=True,
        text=True, timeout=NODE_TIMEOUT, check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{script} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         ) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, data=body, headers=headers or {},
                                 method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("content-type", "")


# --------------------------------------------------------------------------- services


@dataclass
class OurIssuer:
    url: str
    state: Path
    sup: Supervisor

    def keys(self) -> keystore.IssuerKeys:
        return keystore.load(self.state)

    def verification_keys(self) -> dict[bytes, pp.VerificationKey]:
        accepted = self.keys().accepted(time.time())
        return {kid: key.verification_key for kid, key in accepted.items()}


@pytest.fixture(scope="module")
def our_issuer(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OurIssuer]:
    tmp = tmp_path_factory.mktemp("issuer")
    with Supervisor(tmp / "logs") as sup:
        issuer = start_service(sup, "issuer", [
            "issuer", "serve", "--listen", ANY_PORT, "--state", str(tmp / "state"),
            "--static-account", f"{BEARER}=alice", "--quota", "100000"])
        yield OurIssuer(issuer.url, tmp / "state", sup)


@dataclass
class TsIssuer:
    url: str

    def directory(self) -> pp.IssuerDirectory:
        status, body, ctype = http(self.url + pp.WELL_KNOWN_ISSUER_DIRECTORY)
        assert status == 200
        assert ctype.split(";")[0] == pp.MEDIA_TYPE_ISSUER_DIRECTORY
        return pp.IssuerDirectory.decode(body)

    def verify(self, **doc: str) -> dict[str, Any]:
        status, body, _ = http(self.url + "/verify", json.dumps(doc).encode(),
                               {"Content-Type": "application/json"})
        assert status == 200, body
        result: dict[str, Any] = json.loads(body)
        return result

    def challenge(self, token_type: int, context: bytes, origins: Sequence[str]
                  ) -> dict[str, str]:
        query = urllib.parse.urlencode({"type": token_type, "context": context.hex(),
                                        "origin": ",".join(origins)})
        status, body, _ = http(f"{self.url}/challenge?{query}")
        assert status == 200, body
        result: dict[str, str] = json.loads(body)
        return result


@pytest.fixture(scope="module")
def ts_issuer(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TsIssuer]:
    log = tmp_path_factory.mktemp("ts-issuer") / "stderr.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([node, str(HERE / "ts_issuer.mjs"), "0", "--issuer-name",
                                 TS_ISSUER_NAME], cwd=HERE, stdout=subprocess.PIPE,
                                stderr=err, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = b""
        deadline = time.monotonic() + 30
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n") and time.monotonic() < deadline:
                if sel.select(timeout=0.5):
                    chunk = os.read(proc.stdout.fileno(), 256)
                    if not chunk:
                        break
                    line += chunk
        words = line.decode(errors="replace").split()
        if len(words) != 2 or words[0] != "listening":
            raise AssertionError(f"ts_issuer.mjs did not start ({line!r}):\n"
                                 f"{log.read_text(errors='replace')[-4000:]}")
        yield TsIssuer(f"http://{HOST}:{int(words[1])}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- helpers


def ts_client(node: str, issuer: OurIssuer | TsIssuer, token_type: int, count: int,
              *extra: str, bearer: str = BEARER) -> dict[str, Any]:
    out: dict[str, Any] = run_node(
        node, "ts_client.mjs", "--issuer", issuer.url, "--bearer", bearer,
        "--type", str(token_type), "--count", str(count), *extra,
    )
    assert len(out["tokens"]) == count
    return out


def challenge_args(challenge: pp.TokenChallenge) -> list[str]:
    return ["--issuer-name", challenge.issuer_name, "--context",
            challenge.redemption_context.hex(), "--origin-info",
            ",".join(challenge.origin_info)]


def tampered(token: pp.Token) -> dict[str, pp.Token]:
    def flip(data: bytes, i: int) -> bytes:
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]

    return {
        "authenticator": dataclasses.replace(token, authenticator=flip(token.authenticator, 7)),
        "nonce": dataclasses.replace(token, nonce=flip(token.nonce, 0)),
        "challenge_digest": dataclasses.replace(
            token, challenge_digest=flip(token.challenge_digest, 31)),
        "token_key_id": dataclasses.replace(token, token_key_id=flip(token.token_key_id, 3)),
    }


# What each verifier says about a token with one field flipped (see tampered()).
OUR_REFUSAL = {
    "authenticator": "invalid type 0x000[12] token authenticator",
    "nonce": "invalid type 0x000[12] token authenticator",
    "challenge_digest": "challenge_digest mismatch",
    "token_key_id": "unknown issuer key",
}
TS_REFUSAL = {
    "authenticator": "bad authenticator",
    "nonce": "bad authenticator",
    "challenge_digest": "challenge_digest mismatch",
    "token_key_id": "token_key_id mismatch",
}


def other_challenges(challenge: pp.TokenChallenge) -> dict[str, pp.TokenChallenge]:
    replace = dataclasses.replace
    other_type = (pp.TOKEN_TYPE_BLIND_RSA if challenge.token_type == pp.TOKEN_TYPE_VOPRF
                  else pp.TOKEN_TYPE_VOPRF)
    return {
        "context": replace(challenge, redemption_context=(
            b"" if challenge.redemption_context else CONTEXT)),
        "other-context": replace(challenge, redemption_context=bytes(32)),
        "origin": replace(challenge, origin_info=["other.example"]),
        "no-origin": replace(challenge, origin_info=[]),
        "issuer": replace(challenge, issuer_name="other-issuer.example"),
        "type": replace(challenge, token_type=other_type),
    }


def decode_tokens(out: dict[str, Any]) -> list[pp.Token]:
    return [pp.Token.decode(pp.b64url_decode(t)) for t in out["tokens"]]


def our_issuance(issuer_url: str, directory: pp.IssuerDirectory, challenge: pp.TokenChallenge,
                 count: int, bearer: str | None = None) -> list[pp.Token]:
    """privproc's client over HTTP: begin_issuance, POST, finalize_token."""
    key = directory.select(challenge.token_type, int(time.time()))
    assert key is not None, f"no key of type {challenge.token_type} in the directory"
    request_url = urllib.parse.urljoin(issuer_url + "/", directory.issuer_request_uri)
    headers = {"Content-Type": pp.MEDIA_TYPE_TOKEN_REQUEST,
               "Accept": pp.MEDIA_TYPE_TOKEN_RESPONSE}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    tokens = []
    for _ in range(count):
        request, state = pp.begin_issuance(challenge.token_type, key.token_key, challenge)
        status, body, ctype = http(request_url, request.encode(), headers)
        assert status == 200, body
        assert ctype == pp.MEDIA_TYPE_TOKEN_RESPONSE
        token = pp.finalize_token(state, pp.TokenResponse.decode(body, challenge.token_type))
        assert token.token_key_id == key.token_key_id
        tokens.append(token)
    return tokens


# --------------------------------------------------------------------------- TS client -> us


@pytest.mark.parametrize("context", CONTEXTS, ids=_ctx_id)
@pytest.mark.parametrize("token_type", TYPES, ids=_type_id)
def test_ts_client_tokens_verify_with_privproc(
    node: str, our_issuer: OurIssuer, token_type: int, context: bytes
) -> None:
    challenge = pp.TokenChallenge(token_type, ISSUER_NAME, context, ORIGINS)
    out = ts_client(node, our_issuer, token_type, 3, *challenge_args(challenge))
    # Both sides serialize the TokenChallenge to the same bytes.
    assert pp.b64url_decode(out["challenge"]) == challenge.encode()
    current = our_issuer.keys().current(token_type)
    assert pp.b64url_decode(out["token_key"]) == current.token_key
    keys = our_issuer.verification_keys()
    tokens = decode_tokens(out)
    assert len({t.nonce for t in tokens}) == len(tokens)
    for token, authorization in zip(tokens, out["authorization"], strict=True):
        assert token.token_type == token_type
        assert token.token_key_id == current.key_id
        assert token.challenge_digest == challenge.digest()
        pp.verify_token(token, keys, challenge=challenge)
        pp.verify_token(token, keys, challenge=challenge.encode())
        # The TS library's (quoted) Authorization value parses with ours.
        assert pp.parse_authorization(authorization) == token
    for what, bad in tampered(tokens[0]).items():
        with pytest.raises(pp.PrivacyPassError, match=OUR_REFUSAL[what]):
            pp.verify_token(bad, keys, challenge=challenge)
            pytest.fail(f"token with a tampered {what} was accepted")
    for what, other in other_challenges(challenge).items():
        with pytest.raises(pp.PrivacyPassError, match="challenge"):
            pp.verify_token(tokens[0], keys, challenge=other)
            pytest.fail(f"token accepted for a challenge with another {what}")


@pytest.mark.parametrize("token_type", TYPES, ids=_type_id)
def test_ts_client_token_for_another_challenge_is_refused(
    node: str, our_issuer: OurIssuer, token_type: int
) -> None:
    ours = pp.TokenChallenge(token_type, ISSUER_NAME, b"", ORIGINS)
    theirs = pp.TokenChallenge(token_type, ISSUER_NAME, CONTEXT, ["elsewhere.example"])
    out = ts_client(node, our_issuer, token_type, 1, *challenge_args(theirs))
    (token,) = decode_tokens(out)
    keys = our_issuer.verification_keys()
    pp.verify_token(token, keys, challenge=theirs)
    with pytest.raises(pp.PrivacyPassError, match="challenge_digest mismatch"):
        pp.verify_token(token, keys, challenge=ours)


def test_ts_client_answers_our_www_authenticate(node: str, our_issuer: OurIssuer) -> None:
    """Our WWW-Authenticate (both types in one field) parses with privacypass-ts's parser."""
    keys = our_issuer.keys()
    challenges = [pp.TokenChallenge(t, ISSUER_NAME, CONTEXT, ORIGINS) for t in TYPES]
    header = pp.format_www_authenticate(
        [(c, keys.current(c.token_type).token_key) for c in reversed(challenges)], max_age=300)
    verification = our_issuer.verification_keys()
    for challenge in challenges:
        out = ts_client(node, our_issuer, challenge.token_type, 1, "--www-authenticate", header)
        assert pp.b64url_decode(out["challenge"]) == challenge.encode()
        (token,) = decode_tokens(out)
        pp.verify_token(token, verification, challenge=challenge)


def test_ts_client_needs_an_account(node: str, our_issuer: OurIssuer) -> None:
    challenge = pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, ISSUER_NAME, b"", ORIGINS)
    proc = subprocess.run(
        [node, str(HERE / "ts_client.mjs"), "--issuer", our_issuer.url, "--bearer", "nobody",
         "--type", "2", "--count", "1", *challenge_args(challenge)],
        cwd=HERE, capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False,
    )
    assert proc.returncode != 0
    assert "code:401" in proc.stderr


@pytest.mark.parametrize("token_type", TYPES, ids=_type_id)
def test_ts_verifier_accepts_privproc_issued_tokens(
    node: str, our_issuer: OurIssuer, token_type: int
) -> None:
    """Our client + our issuer; privacypass-ts verifies (type 1 re-derives our key)."""
    challenge = pp.TokenChallenge(token_type, ISSUER_NAME, CONTEXT, ORIGINS)
    status, body, _ = http(our_issuer.url + pp.WELL_KNOWN_ISSUER_DIRECTORY)
    assert status == 200
    tokens = our_issuance(our_issuer.url, pp.IssuerDirectory.decode(body), challenge, 2,
                          bearer=BEARER)
    current = our_issuer.keys().current(token_type)
    args = ["--type", str(token_type), "--token-key", pp.b64url_encode(current.token_key),
            "--challenge", pp.b64url_encode(challenge.encode())]
    if token_type == pp.TOKEN_TYPE_VOPRF:
        # voprf-ts DeriveKeyPair(seed, "PrivacyPass") must give our key (RFC 9578 5.5).
        args += ["--voprf-seed", current.secret.hex()]
    bad = tampered(tokens[0])
    texts = [pp.b64url_encode(t.encode()) for t in [*tokens, *bad.values()]]
    results = run_node(node, "ts_verify.mjs", *args, "-", stdin="\n".join(texts))
    assert results == ([{"valid": True, "reason": "ok"}] * len(tokens)
                       + [{"valid": False, "reason": TS_REFUSAL[what]} for what in bad])


# --------------------------------------------------------------------------- us -> TS issuer


@pytest.mark.parametrize("context", CONTEXTS, ids=_ctx_id)
@pytest.mark.parametrize("token_type", TYPES, ids=_type_id)
def test_privproc_client_tokens_verify_with_ts(
    ts_issuer: TsIssuer, token_type: int, context: bytes
) -> None:
    directory = ts_issuer.directory()
    challenge = pp.TokenChallenge(token_type, TS_ISSUER_NAME, context, ORIGINS)
    tokens = our_issuance(ts_issuer.url, directory, challenge, 3)
    encoded_challenge = pp.b64url_encode(challenge.encode())
    for token in tokens:
        result = ts_issuer.verify(token=pp.b64url_encode(token.encode()),
                                  challenge=encoded_challenge)
        assert result == {"valid": True, "reason": "ok"}
        # privacypass-ts parses our Authorization value.
        result = ts_issuer.verify(authorization=pp.format_authorization(token),
                                  challenge=encoded_challenge)
        assert result == {"valid": True, "reason": "ok"}
    for what, bad in tampered(tokens[0]).items():
        result = ts_issuer.verify(token=pp.b64url_encode(bad.encode()),
                                  challenge=encoded_challenge)
        assert result == {"valid": False, "reason": TS_REFUSAL[what]}, what
    for what, other in other_challenges(challenge).items():
        result = ts_issuer.verify(token=pp.b64url_encode(tokens[0].encode()),
                                  challenge=pp.b64url_encode(other.encode()))
        assert result == {"valid": False, "reason": "challenge_digest mismatch"}, what
    if token_type == pp.TOKEN_TYPE_BLIND_RSA:
        # Publicly verifiable: our verifier accepts the TS issuer's tokens too.
        key = directory.select(token_type, int(time.time()))
        assert key is not None
        keys: dict[bytes, pp.VerificationKey] = {
            key.token_key_id: blindrsa.load_public_key_spki(key.token_key)}
        for token in tokens:
            pp.verify_token(token, keys, challenge=challenge)


@pytest.mark.parametrize("token_type", TYPES, ids=_type_id)
def test_privproc_client_answers_ts_www_authenticate(
    ts_issuer: TsIssuer, token_type: int
) -> None:
    """A challenge made by privacypass-ts's Origin + WWWAuthenticateHeader (quoted form)."""
    made = ts_issuer.challenge(token_type, CONTEXT, ORIGINS)
    (parsed,) = pp.parse_www_authenticate(made["www-authenticate"])
    assert parsed.challenge == pp.TokenChallenge(token_type, TS_ISSUER_NAME, CONTEXT, ORIGINS)
    assert parsed.challenge.encode() == pp.b64url_decode(made["challenge"])
    assert parsed.max_age == 60
    directory = ts_issuer.directory()
    key = directory.select(token_type, int(time.time()))
    assert key is not None and parsed.token_key == key.token_key
    (token,) = our_issuance(ts_issuer.url, directory, parsed.challenge, 1)
    result = ts_issuer.verify(token=pp.b64url_encode(token.encode()),
                              challenge=made["challenge"])
    assert result == {"valid": True, "reason": "ok"}


def test_ts_issuer_refuses_wrong_truncated_key_id(ts_issuer: TsIssuer) -> None:
    directory = ts_issuer.directory()
    key = directory.select(pp.TOKEN_TYPE_BLIND_RSA, int(time.time()))
    assert key is not None
    challenge = pp.TokenChallenge(pp.TOKEN_TYPE_BLIND_RSA, TS_ISSUER_NAME, b"", ORIGINS)
    request, _ = pp.begin_issuance(pp.TOKEN_TYPE_BLIND_RSA, key.token_key, challenge)
    wrong = dataclasses.replace(request,
                                truncated_token_key_id=request.truncated_token_key_id ^ 0xFF)
    status, _, _ = http(ts_issuer.url + "/token-request", wrong.encode(),
                        {"Content-Type": pp.MEDIA_TYPE_TOKEN_REQUEST})
    assert status == 400


# privacypass-ts's default toString() writes unquoted auth-params with base64url padding,
# which is not token syntax (RFC 9110 11.2); privproc's parser accepts trailing padding.
@pytest.mark.parametrize("token_type", TYPES, ids=_type_id)
def test_ts_unquoted_headers(node: str, our_issuer: OurIssuer, ts_issuer: TsIssuer,
                             token_type: int) -> None:
    made = ts_issuer.challenge(token_type, CONTEXT, ORIGINS)
    (parsed,) = pp.parse_www_authenticate(made["www-authenticate-unquoted"])
    assert parsed.challenge.encode() == pp.b64url_decode(made["challenge"])
    challenge = pp.TokenChallenge(token_type, ISSUER_NAME, b"", ORIGINS)
    out = ts_client(node, our_issuer, token_type, 1, *challenge_args(challenge))
    (token,) = decode_tokens(out)
    assert pp.parse_authorization(out["authorization_unquoted"][0]) == token


# --------------------------------------------------------------------------- our gateway


@pytest.mark.skipif(not GATEWAY_REDEEMS, reason="the gateway does not redeem tokens yet")
def test_ts_tokens_redeemed_through_relay_and_gateway(
    node: str, our_issuer: OurIssuer, tmp_path: Path
) -> None:
    """401 challenge from our gateway -> TS client gets a token from our issuer -> 200."""
    with Supervisor(tmp_path / "logs") as sup:
        origin = start_service(sup, "origin", ["echo", "serve", "--listen", ANY_PORT]).url
        gateway = start_service(sup, "gateway", [
            "gateway", "serve", "--listen", ANY_PORT, "--upstream", origin,
            "--state", str(tmp_path / "gateway"), "--issuer-keys", str(our_issuer.state),
            "--issuer-name", ISSUER_NAME, "--origin-name", ORIGINS[0],
            "--redemption-context", CONTEXT.hex(),
        ]).url
        relay = start_service(sup, "relay", ["relay", "serve", "--listen", ANY_PORT,
                                             "--gateway", gateway + "/gateway"]).url
        client = OHTTPClient(relay + "/", authority="assistant.example")
        refused = client.request("GET", "/v1/echo")
        assert refused.status == 401
        header = next(f.value for f in refused.headers if f.name == b"www-authenticate")
        for token_type in TYPES:
            out = ts_client(node, our_issuer, token_type, 1, "--www-authenticate",
                            header.decode("latin-1"))
            assert pp.b64url_decode(out["challenge"]) == pp.TokenChallenge(
                token_type, ISSUER_NAME, CONTEXT, ORIGINS).encode()
            authorization = [(b"authorization", out["authorization"][0].encode())]
            response = client.request("POST", "/v1/echo", headers=authorization,
                                      content=b"hello")
            assert response.status == 200, response.content
            seen = json.loads(response.content)
            assert seen["body"] == "hello"
            assert "authorization" not in {name for name, _ in seen["headers"]}
            again = client.request("POST", "/v1/echo", headers=authorization, content=b"x")
            assert again.status == 401  # spent
