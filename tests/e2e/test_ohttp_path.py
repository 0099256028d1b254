"""End to end on loopback: client -> relay -> gateway -> echo origin and back."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from privproc.client.errors import KeyConfigFetchError, RelayRefusedError
from privproc.client.ohttp import AsyncOHTTPClient, OHTTPClient, seal_request
from privproc.gateway import keystore as gateway_keystore
from privproc.up.supervisor import Supervisor
from privproc.wire import bhttp, hpke, ohttp

from ..keyfiles import end_grace
from ..servers import ANY_PORT, not_http, start_service
from .conftest import HOST, Stack

pytestmark = pytest.mark.slow

MARKER = "MARKER-5f1d0c-the-secret-chat-text"
CLIENT_ADDR = "127.0.0.2"  # the client's own loopback address, distinct from services'


def post(url: str, body: bytes, content_type: str = ohttp.MEDIA_TYPE_REQUEST,
         headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("content-type", "")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body


class CaptureProxy:
    """A TCP proxy in front of the relay that records every byte it carries."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.seen = bytearray()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.seen += data
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))


def test_round_trip_through_relay_and_gateway(stack: Stack) -> None:
    client = OHTTPClient(stack.relay + "/", authority="assistant.example")
    response = client.request("POST", "/v1/echo?x=1", headers=[(b"content-type", b"text/plain")],
                              content=MARKER.encode())
    assert response.status == 200
    seen = json.loads(response.content)
    assert seen["method"] == "POST"
    assert seen["path"] == "/v1/echo"
    assert seen["query"] == "x=1"
    assert seen["body"] == MARKER


def test_relay_never_sees_plaintext_and_origin_never_sees_client(stack: Stack) -> None:
    async def run() -> tuple[dict[str, Any], bytes]:
        relay_port = int(stack.relay.rsplit(":", 1)[1])
        proxy = CaptureProxy(relay_port)
        server = await asyncio.start_server(proxy.handle, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        async with server, AsyncOHTTPClient(
            f"http://{HOST}:{port}/", authority="assistant.example", local_addr=(CLIENT_ADDR, 0)
        ) as client:
            # The client's own outer request carries identifying headers; none may pass.
            client.session.headers.update({
                "User-Agent": "SecretPhone/1.0", "Cookie": "session=abc",
                "X-Forwarded-For": "198.51.100.7",
            })
            response = await client.request(
                "POST", "/v1/echo", headers=[(b"x-inner", b"kept")], content=MARKER.encode()
            )
        return json.loads(response.content), bytes(proxy.seen)

    seen, relay_bytes = asyncio.run(run())
    assert seen["body"] == MARKER
    assert MARKER.encode() not in relay_bytes
    assert b"/v1/echo" not in relay_bytes
    assert len(relay_bytes) > 200  # the proxy did carry the exchange
    assert seen["client"] != CLIENT_ADDR
    names = {name for name, _ in seen["headers"]}
    assert "x-inner" in names
    assert not names & {"user-agent", "cookie", "x-forwarded-for", "forwarded", "via"}
    values = " ".join(v for _, v in seen["headers"])
    assert CLIENT_ADDR not in values and "SecretPhone" not in values
    for name in ("relay", "gateway"):
        assert MARKER not in stack.sup.services[name].log_text()
        assert CLIENT_ADDR not in stack.sup.services[name].log_text()


def test_relay_forwards_only_the_content_type(tmp_path: Any) -> None:
    # Point a relay straight at the echo origin: what it sends is what the gateway would get.
    with Supervisor(tmp_path) as sup:
        origin = start_service(sup, "origin", ["echo", "serve", "--listen", ANY_PORT]).url
        relay = start_service(sup, "relay", ["relay", "serve", "--listen", ANY_PORT,
                                             "--gateway", f"{origin}/gateway"]).url
        status, body, _ = post(
            f"{relay}/", b"opaque",
            headers={"User-Agent": "SecretPhone/1.0", "Cookie": "a=b",
                     "X-Forwarded-For": "198.51.100.7", "X-Real-IP": "198.51.100.7"},
        )
    # The echo answers JSON, not message/ohttp-res, with 200: the relay passes it through.
    assert status == 200
    names = sorted(name for name, _ in json.loads(body)["headers"])
    assert names == ["content-length", "content-type", "host"]


def test_replayed_request_fails_cleanly(stack: Stack) -> None:
    client = OHTTPClient(stack.relay + "/", authority="a.example")
    sealed, ctx = seal_request(client.key_config(), "GET", "/once", authority="a.example",
                               now=time.time())
    status, body, ctype = post(stack.relay + "/", sealed)
    assert status == 200 and ctype == ohttp.MEDIA_TYPE_RESPONSE
    assert bhttp.decode_response(ctx.decapsulate_response(body)).status == 200
    status, body, ctype = post(stack.relay + "/", sealed)
    assert status == 400
    assert json.loads(body)["title"] == "replayed request"


def test_stale_date_is_refused_inside_the_encapsulation(stack: Stack) -> None:
    client = OHTTPClient(stack.relay + "/", authority="a.example")
    sealed, ctx = seal_request(client.key_config(), "GET", "/", authority="a.example",
                               now=time.time() - 3600)
    status, body, _ = post(stack.relay + "/", sealed)
    assert status == 200
    inner = bhttp.decode_response(ctx.decapsulate_response(body))
    assert inner.status == 400
    problem = json.loads(inner.content)
    assert problem["type"] == "https://iana.org/assignments/http-problem-types#date"
    assert any(f.name == b"date" for f in inner.headers)


def test_bit_flipped_requests_fail_cleanly(stack: Stack) -> None:
    client = OHTTPClient(stack.relay + "/", authority="a.example")
    sealed, _ = seal_request(client.key_config(), "GET", "/", authority="a.example",
                             now=time.time())
    for position in (7, 20, len(sealed) // 2, len(sealed) - 1):
        flipped = bytearray(sealed)
        flipped[position] ^= 0x01
        status, body, _ = post(stack.relay + "/", bytes(flipped))
        assert status == 400
        assert body == b""  # nothing that tells parsing and decryption failures apart
    flipped = bytearray(sealed)
    flipped[0] ^= 0xFF
    status, body, ctype = post(stack.relay + "/", bytes(flipped))
    assert status == 422 and ctype == "application/problem+json"
    assert json.loads(body)["type"] == "https://iana.org/assignments/http-problem-types#ohttp-key"


def test_media_type_and_size_limits(stack: Stack) -> None:
    assert post(stack.relay + "/", b"x", content_type="text/plain")[0] == 415
    assert post(stack.relay + "/", bytes(65537))[0] == 413
    assert post(stack.gateway + "/gateway", b"x", content_type="text/plain")[0] == 415


def test_upstream_timeout_comes_back_sealed_as_504(stack: Stack) -> None:
    client = OHTTPClient(stack.relay + "/", authority="a.example")
    assert client.request("GET", "/slow?sleep=3").status == 504


@pytest.mark.parametrize("code", [b"600", b"999"])
def test_an_origin_status_outside_http_comes_back_sealed_as_502(tmp_path: Any, code: bytes
                                                                ) -> None:
    """Attack: the origin answers a status HTTP does not define (aiohttp takes any three
    digits); binary HTTP cannot carry it, and the gateway failed with an unsealed 500."""
    answer = b"HTTP/1.1 " + code + b" Odd\r\ncontent-length: 0\r\n\r\n"
    with not_http(answer) as origin, Supervisor(tmp_path) as sup:
        gateway = start_service(sup, "gateway", [
            "gateway", "serve", "--listen", ANY_PORT, "--upstream", origin, "--state",
            str(tmp_path / "gw")]).url
        relay = start_service(sup, "relay", ["relay", "serve", "--listen", ANY_PORT,
                                             "--gateway", gateway + "/gateway"]).url
        answered = OHTTPClient(relay + "/", authority="a.example").request("GET", "/x")
    assert answered.status == 502 and b"upstream answered status" in answered.content


def test_a_control_character_in_an_inner_header_is_a_sealed_400(stack: Stack) -> None:
    """Attack: a client's inner header carries 0x01 (binary HTTP refuses only NUL, CR and
    LF); aiohttp refused to send it and the gateway failed with an unsealed 500."""
    client = OHTTPClient(stack.relay + "/", authority="a.example")
    for value in (b"a\x01b", b"a\x7fb", b"a\x1bb"):
        answer = client.request("GET", "/echo", headers=[(b"x-a", value)])
        assert answer.status == 400 and b"control character" in answer.content
    assert client.request("GET", "/echo", headers=[(b"x-a", b"a\tb \xe9")]).status == 200


def test_relay_answers_502_when_gateway_is_down(tmp_path: Any) -> None:
    # A port bound and held but not listening: every connection to it is refused.
    with socket.socket() as dead, Supervisor(tmp_path) as sup:
        dead.bind((HOST, 0))
        relay = start_service(sup, "relay", [
            "relay", "serve", "--listen", ANY_PORT, "--gateway",
            f"http://{HOST}:{dead.getsockname()[1]}/gateway"]).url
        status, body, ctype = post(f"{relay}/", b"opaque")
    assert status == 502
    assert ctype == "application/problem+json"
    assert json.loads(body)["title"] == "gateway unreachable"


def test_relay_answers_504_when_gateway_is_slow(tmp_path: Any) -> None:
    # A gateway that takes the connection and the request and never answers.
    with socket.create_server((HOST, 0)) as silent, Supervisor(tmp_path) as sup:
        relay = start_service(sup, "relay", [
            "relay", "serve", "--listen", ANY_PORT, "--timeout", "0.2", "--gateway",
            f"http://{HOST}:{silent.getsockname()[1]}/gateway"]).url
        status, body, _ = post(f"{relay}/", b"opaque")
    assert status == 504
    assert json.loads(body)["title"] == "gateway timed out"


def test_gateway_restart_keeps_its_keys(stack: Stack, tmp_path: Path) -> None:
    def start_gateway() -> str:
        return start_service(sup, "gateway", [
            "gateway", "serve", "--listen", ANY_PORT, "--upstream", stack.origin, "--state",
            str(tmp_path / "gw")]).url

    with Supervisor(tmp_path / "logs") as sup:
        gateway = start_gateway()
        before = get(gateway + "/ohttp-keys")
        config = OHTTPClient(gateway + "/gateway", keys_url=gateway + "/ohttp-keys",
                             authority="a.example").key_config()
        sup.stop("gateway")
        gateway = start_gateway()
        assert get(gateway + "/ohttp-keys") == before
        # A request sealed to the key fetched before the restart is opened after it.
        sealed, ctx = seal_request(config, "GET", "/after-restart", authority="a.example",
                                   now=time.time())
        status, body, _ = post(gateway + "/gateway", sealed)
        assert status == 200
        assert bhttp.decode_response(ctx.decapsulate_response(body)).status == 200
    mode = os.stat(tmp_path / "gw" / "ohttp-keys.json").st_mode & 0o777
    assert mode == 0o600


def test_rotation_keeps_both_key_ids_during_grace(stack: Stack) -> None:
    direct = {"keys_url": stack.gateway + "/ohttp-keys", "authority": "a.example"}
    old_client = OHTTPClient(stack.gateway + "/gateway", **direct)
    old = old_client.key_config()
    out = subprocess.run(
        [sys.executable, "-m", "privproc.cli", "gateway", "rotate-keys", "--state",
         str(stack.state), "--grace", "3600"],
        capture_output=True, text=True, check=True,
    )
    assert "new current key_id" in out.stdout
    new_client = OHTTPClient(stack.gateway + "/gateway", **direct)
    new = new_client.key_config()
    assert new.key_id != old.key_id
    assert old_client.request("GET", "/old-key").status == 200
    assert new_client.request("GET", "/new-key").status == 200
    # The grace period ends (as an hour passing would end it) ...
    assert end_grace(gateway_keystore._store(stack.state)) == [old.key_id]
    # ... and the old key is refused with 422 ...
    sealed, _ = seal_request(old, "GET", "/", authority="a.example", now=time.time())
    status, _, _ = post(stack.gateway + "/gateway", sealed)
    assert status == 422
    # ... and a client holding it recovers by refetching the configuration once.
    assert old_client.request("GET", "/recovered").status == 200
    assert old_client.key_config().key_id == new.key_id


def test_async_client_concurrent_requests(stack: Stack) -> None:
    async def run() -> list[int]:
        async with AsyncOHTTPClient(stack.relay + "/", authority="a.example") as client:
            responses = await asyncio.gather(
                *(client.request("POST", f"/n/{i}", content=str(i).encode()) for i in range(20))
            )
        return [int(json.loads(r.content)["body"]) for r in responses]

    assert asyncio.run(run()) == list(range(20))


def test_relay_refusal_surfaces_as_client_error(stack: Stack) -> None:
    client = OHTTPClient(stack.relay + "/", authority="a.example")
    # The gateway's current key id, from the gateway itself: the relay may still serve a
    # configuration cached before test_rotation... ended a key's grace (a 422 would make
    # the client refetch and succeed).
    config = OHTTPClient(stack.gateway + "/gateway", keys_url=stack.gateway + "/ohttp-keys",
                         authority="a.example").key_config()
    other = hpke.KeyPair.generate(kem_id=config.kem_id).public_bytes
    bogus = ohttp.KeyConfig(config.key_id, config.kem_id, other, config.symmetric)
    client._config = bogus  # a forged key: the gateway cannot open what is sealed to it
    with pytest.raises(RelayRefusedError) as err:
        client.request("GET", "/")
    assert err.value.status == 400


def test_unusable_gateway_key_is_a_client_error() -> None:
    config = ohttp.KeyConfig(1, 0x20, bytes(32), (ohttp.SymmetricSuite(1, 1),))
    with pytest.raises(KeyConfigFetchError, match="cannot seal"):
        seal_request(config, "GET", "/", authority="a", now=0.0)
