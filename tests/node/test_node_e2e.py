"""A processing node as a real process, registered with a gateway, reached through OHTTP."""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from privproc.attest.evidence import EvidencePolicy, TrustConfig, decode_bundle, verify_bundle
from privproc.attest.sev_snp import load_certificates
from privproc.client.node import open_task, seal_task
from privproc.client.sdk import PrivateProcessingClient
from privproc.client.tokens import TokenWallet
from privproc.client.trust import load_trust
from privproc.demo.up import node_id_from_log, start
from privproc.wire import inner, ohttp

pytestmark = pytest.mark.slow
MARKER = "MARKER-node-7b1e-secret-chat-line"


class NodeStack:
    """The whole system (``privproc up`` machinery) around one echo node."""

    def __init__(self, tmp: Path, rotate_every: int = 3600) -> None:
        self.tmp = tmp
        self.node_cwd = tmp / "node-cwd"
        self.node_cwd.mkdir()
        self.system = start(tmp / "up", nodes=1, backend="echo", node_cwd=self.node_cwd,
                            node_extra=("--heartbeat", "0.5", "--rotate-every",
                                        str(rotate_every), "--grace", "1",
                                        "--max-request", "65536"))
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
        return {str(p): p.stat().st_mtime for p in paths if p.exists()}

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


def test_rotation_destroys_old_keys_and_requests_sealed_to_them_fail(tmp_path: Path) -> None:
    stack = NodeStack(tmp_path, rotate_every=2)
    try:
        old = stack.key_config()
        captured, nonce, ctx = seal_task(old, inner.Task.SUMMARIZE, summarize_payload())
        status, body = stack.process(captured)
        assert status == 200 and open_task(ctx, nonce, body) == ["3 messages"]
        deadline = time.time() + 15
        while stack.key_config().key_id == old.key_id and time.time() < deadline:
            time.sleep(0.3)
        new = stack.key_config()
        assert new.key_id != old.key_id
        time.sleep(2.5)  # past the grace period of the old key
        captured2, _, _ = seal_task(old, inner.Task.SUMMARIZE, summarize_payload())
        assert stack.process(captured2)[0] == 422
        sealed, nonce, ctx = seal_task(stack.key_config(), inner.Task.SUMMARIZE,
                                       summarize_payload())
        status, body = stack.process(sealed)
        assert status == 200 and open_task(ctx, nonce, body) == ["3 messages"]
        assert "rotated: key_id=" in stack.sup.services["node-0"].log_text()
    finally:
        stack.sup.stop_all()


def test_node_reads_only_allowlisted_environment() -> None:
    from privproc.node.cli import allowed_env

    os.environ["PRIVPROC_NODE_TOKEN"] = "t"
    try:
        assert allowed_env("PRIVPROC_NODE_TOKEN") == "t"
    finally:
        del os.environ["PRIVPROC_NODE_TOKEN"]
    with pytest.raises(KeyError, match="allowlist"):
        allowed_env("HOME")
