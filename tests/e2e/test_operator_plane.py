"""The operator control plane under attack, real processes on loopback (issue 11).

Each test is one attack that worked before: open node registration (server-side request
forgery, take-over of another node's entry, crowding the directory out), unbounded
answers, injected log lines, secrets on command lines. Each fails if its fix is removed.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from privproc.client.ohttp import OHTTPClient
from privproc.client.sdk import PrivateProcessingClient
from privproc.client.tokens import TokenWallet
from privproc.client.trust import load_trust
from privproc.up.supervisor import Supervisor
from privproc.up.system import HOST, System, listed_nodes
from privproc.wire.registration import MEDIA_TYPE, sign_registration

from ..servers import ANY_PORT, listening_socket, serving, start_service
from .conftest import up_system

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    yield from up_system(tmp_path_factory, nodes=2)


def operator_token(system: System) -> str:
    return (system.state / "node-token").read_text().strip()


def register(system: System, body: bytes, token: str | None) -> tuple[int, str]:
    headers = {"Content-Type": MEDIA_TYPE}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(system.urls["gateway"] + "/nodes/register", data=body,
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def client(system: System) -> PrivateProcessingClient:
    trust = load_trust(system.client_config)
    assert trust.tokens is not None
    wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token, None, batch=4)
    return PrivateProcessingClient(trust, tokens=wallet)


def a_real_bundle(system: System) -> tuple[str, bytes]:
    offered = client(system).candidates()
    return offered.nodes[0]


def test_registration_needs_the_operator_credential(system: System) -> None:
    _, bundle = a_real_bundle(system)
    body = sign_registration(Ed25519PrivateKey.generate(), "http://127.0.0.1:1", 0,
                             bundle).encode()
    for token in (None, "", "guess", operator_token(system) + "x"):
        status, _ = register(system, body, token)
        assert status == 401


def test_no_forged_registration_reaches_an_internal_url(system: System) -> None:
    """The old attack: register {"node_id": "evil", "url": "<internal URL>?x="}, then have
    the gateway POST to it through OHTTP. Now: refused, and the gateway forwards nowhere."""
    hits: list[str] = []

    async def internal(request: Request) -> Response:
        hits.append(request.url.path)
        return Response(b"internal admin page", media_type="text/plain")

    app = Starlette(routes=[Route("/{path:path}", internal, methods=["GET", "POST"])])
    node_id, bundle = a_real_bundle(system)
    token = operator_token(system)
    with serving(app) as internal_url:
        attacker = Ed25519PrivateKey.generate()
        for url in (internal_url, internal_url + "/?x=", "http://169.254.169.254:80"):
            body = sign_registration(attacker, url, int(time.time()),
                                     bundle).encode()
            status, text = register(system, body, token)
            assert status == 403, text  # off the allowlist, or not the attested key
        c = client(system)
        for target in (node_id, "evil", "n" + "e" * 31):
            response = c.ohttp.request("POST", f"/v1/nodes/{target}/process", content=b"x",
                                       headers=[(b"content-type",
                                                 b"application/privproc-request")])
            assert response.status in (400, 404, 422) or target == node_id
    assert hits == []  # the internal service never heard from the gateway


def test_nobody_takes_over_another_nodes_entry(system: System) -> None:
    _, bundle = a_real_bundle(system)
    with listening_socket() as attacker:  # an allowed URL pattern, but the attacker's server
        body = sign_registration(Ed25519PrivateKey.generate(),
                                 f"http://{HOST}:{attacker.getsockname()[1]}",
                                 int(time.time()), bundle).encode()
        status, text = register(system, body, operator_token(system))
    assert status == 403 and "registration key" in text
    c = client(system)
    assert c.summarize([{"sender": "A", "time": "t", "text": "hi"}]).output == ["1 messages"]


def test_junk_registrations_do_not_crowd_out_the_nodes(system: System) -> None:
    token = operator_token(system)
    junk = [b"", b"{}", b"[" * 200_000, json.dumps({"node_id": "evil", "url": "http://x",
                                                      "bundle": "AAAA"}).encode()]
    for i in range(400):
        status, _ = register(system, junk[i % len(junk)], token if i % 2 else None)
        assert status in (400, 401, 413), status  # never a 500
    assert len(listed_nodes(system.urls["gateway"], token)) == 2
    assert len(client(system).verified_nodes()) == 2
    log = system.sup.services["gateway"].log_text()
    assert "Traceback" not in log and "RecursionError" not in log


def test_logs_carry_no_injected_lines(system: System) -> None:
    forged = "2026-01-01 gateway INFO node listed: n" + "0" * 31
    c = client(system)
    # (a raw newline cannot even be encoded in Binary HTTP; its escaped form is an id of
    # the wrong shape)
    response = c.ohttp.request("POST", "/v1/nodes/n0%0A" + forged.replace(" ", "%20")
                               + "/process", content=b"x")
    assert response.status in (400, 404)
    register(system, b'{"url": "x\\n' + forged.encode() + b'"}', operator_token(system))
    for name in ("gateway", "relay"):
        assert forged not in system.sup.services[name].log_text()


def test_no_secret_is_on_a_command_line_and_secret_files_are_private(system: System) -> None:
    trust = load_trust(system.client_config)
    assert trust.tokens is not None
    secrets = [trust.tokens.account_token, operator_token(system)]
    for name, service in system.sup.services.items():
        cmdline = Path(f"/proc/{service.process.pid}/cmdline").read_bytes().decode()
        for secret in secrets:
            assert secret not in cmdline, name
    for path in (system.client_config, system.state / "node-token", system.state / "accounts"):
        assert os.stat(path).st_mode & 0o077 == 0, path


# -- bounded answers: a separate gateway in front of an origin that answers too much ------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_an_oversized_upstream_answer_is_refused_without_filling_memory(
        tmp_path: Path) -> None:
    chunk = b"x" * (1 << 20)
    sent = threading.Event()

    async def huge(request: Request) -> StreamingResponse:
        async def body() -> object:
            for _ in range(200):  # 200 MiB, if anyone read it all
                yield chunk
            sent.set()
        return StreamingResponse(body(), media_type="application/octet-stream")  # type: ignore[arg-type]

    async def small(request: Request) -> Response:
        return Response(b"fine", media_type="text/plain")

    origin_app = Starlette(routes=[Route("/huge", huge), Route("/small", small)])
    with serving(origin_app) as origin, Supervisor(tmp_path / "logs") as sup:
        gateway = start_service(sup, "gateway", [
            "gateway", "serve", "--listen", ANY_PORT, "--upstream", origin, "--state",
            str(tmp_path / "gw"), "--max-upstream-body", str(1 << 20)]).url
        relay = start_service(sup, "relay", ["relay", "serve", "--listen", ANY_PORT,
                                             "--gateway", gateway + "/gateway"]).url
        pid = sup.services["gateway"].process.pid
        c = OHTTPClient(relay + "/", authority="origin")
        assert c.request("GET", "/small").content == b"fine"
        before = _rss_kib(pid)
        for _ in range(3):
            response = c.request("GET", "/huge")
            assert response.status == 502
        assert _rss_kib(pid) - before < 40 * 1024  # read at most the cap, not 200 MiB
        assert c.request("GET", "/small").content == b"fine"
