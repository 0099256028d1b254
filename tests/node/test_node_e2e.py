"""A processing node as a real process, registered with a gateway, reached through OHTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privproc.attest.evidence import (
    EvidencePolicy,
    TrustConfig,
    decode_bundle,
    node_id_for,
    verify_bundle,
)
from privproc.attest.sev_snp import load_certificates
from privproc.attest.simulated import SimulatedIdentity, SimulatedPlatform
from privproc.client.node import open_task, seal_task
from privproc.client.sdk import PrivateProcessingClient
from privproc.client.tokens import TokenWallet
from privproc.client.trust import load_trust
from privproc.node.app import NodeConfig, create_app
from privproc.node.keys import NodeKeys
from privproc.node.registration import public_bytes, register_forever
from privproc.node.runner import EchoRunner
from privproc.up.system import HOST, node_id_from_log, node_measurement_from_log, start
from privproc.wire import inner, ohttp

from ..servers import listening_socket, serving

pytestmark = pytest.mark.slow
MARKER = "MARKER-node-7b1e-secret-chat-line"


class NodeStack:
    """The whole system (``privproc up`` machinery) around one echo node."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.node_cwd = tmp / "node-cwd"
        self.node_cwd.mkdir()
        self.system = start(tmp / "up", nodes=1, backend="echo", node_cwd=self.node_cwd,
                            node_extra=("--heartbeat", "0.5", "--rotate-every",
                                        "3600", "--grace", "1",
                                        "--max-body", "65536"))
        self.sup = self.system.sup
        self.node_id = node_id_from_log(self.sup.services["node-0"].log_text())
        trust = load_trust(self.system.client_config)
        assert trust.tokens is not None
        wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token, None,
                             batch=20)
        self.client = PrivateProcessingClient(trust, tokens=wallet).ohttp

    def nodes(self) -> list[dict[str, str]]:
        response = self.client.request("GET", "/v1/nodes")
        assert response.status == 200
        nodes: list[dict[str, str]] = json.loads(response.content)["nodes"]
        return nodes

    def trust(self) -> TrustConfig:
        roots = load_certificates((self.tmp / "up" / "node" / "simulated" /
                                   "simulated-roots.pem").read_bytes())
        return TrustConfig.with_simulated_roots(roots)

    def key_config(self) -> ohttp.KeyConfig:
        bundle = decode_bundle(base64.b64decode(self.nodes()[0]["bundle"]))
        return ohttp.decode_key_config(bundle.key_config)

    def process(self, sealed: bytes, node_id: str | None = None) -> tuple[int, bytes]:
        response = self.client.request(
            "POST", f"/v1/nodes/{node_id or self.node_id}/process", content=sealed,
            headers=[(b"content-type", inner.MEDIA_TYPE_REQUEST.encode())])
        return response.status, response.content


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    node_stack = NodeStack(tmp_path_factory.mktemp("node"))
    try:
        yield node_stack
    finally:
        node_stack.sup.stop_all()


def summarize_payload() -> dict[str, object]:
    return {"messages": [{"sender": "Ana", "time": "2026-01-01T10:00", "text": MARKER}] * 3,
            "max_bullets": 3}


def test_evidence_verifies_and_binds_the_served_key(stack: NodeStack) -> None:
    nodes = stack.nodes()
    assert [n["node_id"] for n in nodes] == [stack.node_id]
    bundle = base64.b64decode(nodes[0]["bundle"])
    claims = verify_bundle(bundle, EvidencePolicy(), stack.trust(), datetime.now(UTC))
    assert claims.simulated
    assert claims.key_config == decode_bundle(bundle).key_config
    with pytest.raises(Exception, match=r"[Ss]imulated"):
        verify_bundle(bundle, EvidencePolicy(), TrustConfig(), datetime.now(UTC))


def test_task_round_trip_through_relay_gateway_and_node(stack: NodeStack) -> None:
    sealed, nonce, ctx = seal_task(stack.key_config(), inner.Task.SUMMARIZE, summarize_payload())
    status, body = stack.process(sealed)
    assert status == 200
    assert open_task(ctx, nonce, body) == ["3 messages"]


def test_unknown_tampered_truncated_and_oversized_requests_are_refused(stack: NodeStack) -> None:
    config = stack.key_config()
    sealed, _, _ = seal_task(config, inner.Task.SUMMARIZE, summarize_payload())
    unknown = bytes([(sealed[0] + 1) % 256]) + sealed[1:]
    assert stack.process(unknown)[0] == 422
    tampered = bytearray(sealed)
    tampered[-5] ^= 1
    assert stack.process(bytes(tampered))[0] == 400
    assert stack.process(sealed[:40])[0] == 400
    big = {"messages": [{"sender": "A", "time": "t", "text": "x" * 3000}] * 30}
    sealed_big, _, _ = seal_task(config, inner.Task.SUMMARIZE, big)
    assert stack.process(sealed_big)[0] == 413
    assert stack.process(sealed, node_id="n" + "f" * 31)[0] == 404


def test_logs_and_files_hold_no_request_data(stack: NodeStack) -> None:
    def snapshot() -> dict[str, float]:
        paths = [*stack.node_cwd.rglob("*"), *(stack.tmp / "up" / "node").rglob("*"),
                 *Path("/tmp").glob("*")]
        stamps = {}
        for p in paths:
            with contextlib.suppress(FileNotFoundError):  # other tests' files come and go
                stamps[str(p)] = p.stat().st_mtime
        return stamps

    before = snapshot()
    for _ in range(5):
        sealed, nonce, ctx = seal_task(stack.key_config(), inner.Task.WRITE,
                                       {"draft": MARKER, "tone": "funny"})
        _, body = stack.process(sealed)
        assert open_task(ctx, nonce, body) == [f"{len(MARKER)} characters"]
    after = snapshot()
    changed = {p for p in after if before.get(p) != after[p]}
    # Only other tests' temporary folders may appear under /tmp, never the node's files.
    assert not {p for p in changed if p.startswith((str(stack.node_cwd), str(stack.tmp)))}
    for name in ("node-0", "gateway", "relay"):
        text = stack.sup.services[name].log_text()
        assert MARKER not in text
        assert "ok: task=WRITE" in text or name != "node-0"


class Clock:
    """The node's clock: the real time plus what the test adds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_rotation_destroys_old_keys_and_requests_sealed_to_them_fail(stack: NodeStack) -> None:
    """A node of the system (same platform, same logged measurement) served in this
    process on a clock the test moves: rotated, re-registered with the gateway, its old
    key accepted during the grace period and destroyed after it."""
    identity = SimulatedIdentity.load_or_create(stack.tmp / "up" / "node" / "simulated")
    measurement = node_measurement_from_log(stack.sup.services["node-0"].log_text())
    signing_key = Ed25519PrivateKey.generate()
    keys = NodeKeys(SimulatedPlatform(identity, measurement, gpu=False), lifetime=3600,
                    grace=60, registration_key=public_bytes(signing_key))
    keys.rotate(int(time.time()))
    node_id = node_id_for(public_bytes(signing_key))
    clock = Clock()
    sock = listening_socket()
    url = f"http://{HOST}:{sock.getsockname()[1]}"
    token = (stack.tmp / "up" / "node-token").read_text().strip()
    wake = asyncio.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    async def register() -> None:
        loops.append(asyncio.get_running_loop())
        await register_forever(stack.system.urls["gateway"], url, keys, signing_key,
                               interval=3600, token=token, wake=wake)

    app = create_app(NodeConfig(node_id=node_id, clock=clock), keys, EchoRunner(),
                     on_rotate=wake.set, background=register)

    def listed_key_id() -> int | None:
        bundle = next((n["bundle"] for n in stack.nodes() if n["node_id"] == node_id), None)
        return None if bundle is None else ohttp.decode_key_config(
            decode_bundle(base64.b64decode(bundle)).key_config).key_id

    def summarize(config: ohttp.KeyConfig) -> tuple[int, list[str] | None]:
        sealed, nonce, ctx = seal_task(config, inner.Task.SUMMARIZE, summarize_payload())
        status, body = stack.process(sealed, node_id)
        return status, open_task(ctx, nonce, body) if status == 200 else None

    with serving(app, sock=sock):
        poll_until(lambda: listed_key_id() is not None)
        old = keys.current.key.config
        assert summarize(old) == (200, ["3 messages"])

        keys.rotate(int(time.time()))  # what the rotation loop does when it is due
        loops[0].call_soon_threadsafe(wake.set)
        new = keys.current.key.config
        assert new.key_id != old.key_id
        poll_until(lambda: listed_key_id() == new.key_id)  # registered again, new evidence
        assert summarize(old) == (200, ["3 messages"])  # in its grace period
        clock.offset = 61  # past the grace period of the old key
        assert summarize(old)[0] == 422
        assert old.key_id in keys.destroyed and old.key_id not in keys.held()
        assert summarize(new) == (200, ["3 messages"])


def poll_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for something the system does, checking every 20 ms."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_node_reads_only_allowlisted_environment() -> None:
    from privproc.node.cli import allowed_env

    os.environ["PRIVPROC_NODE_TOKEN"] = "t"
    try:
        assert allowed_env("PRIVPROC_NODE_TOKEN") == "t"
    finally:
        del os.environ["PRIVPROC_NODE_TOKEN"]
    with pytest.raises(KeyError, match="allowlist"):
        allowed_env("HOME")
