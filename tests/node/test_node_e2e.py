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
from privproc.client.ohttp import OHTTPClient
from privproc.demo.supervisor import Supervisor, free_port
from privproc.wire import inner, ohttp

pytestmark = pytest.mark.slow
HOST = "127.0.0.1"
MARKER = "MARKER-node-7b1e-secret-chat-line"


class NodeStack:
    def __init__(self, tmp: Path, sup: Supervisor, rotate_every: int = 3600) -> None:
        self.tmp, self.sup = tmp, sup
        ports = {n: free_port() for n in ("origin", "gateway", "relay", "node")}
        self.gateway = f"http://{HOST}:{ports['gateway']}"
        self.node = f"http://{HOST}:{ports['node']}"
        origin = f"http://{HOST}:{ports['origin']}"
        sup.start("origin", ["echo", "--listen", f"{HOST}:{ports['origin']}"], origin)
        sup.start("gateway", ["gateway", "--listen", f"{HOST}:{ports['gateway']}", "--upstream",
                              origin, "--state", str(tmp / "gw"), "--node-directory",
                              "--node-ttl", "5"], self.gateway)
        self.relay = f"http://{HOST}:{ports['relay']}"
        sup.start("relay", ["relay", "--listen", f"{HOST}:{ports['relay']}", "--gateway",
                            self.gateway + "/gateway"], self.relay)
        self.node_cwd = tmp / "node-cwd"
        self.node_cwd.mkdir()
        sup.start("node", ["node", "serve", "--listen", f"{HOST}:{ports['node']}", "--state",
                           str(tmp / "node"), "--backend", "echo", "--directory", self.gateway,
                           "--node-id", "node-a", "--heartbeat", "0.5", "--rotate-every",
                           str(rotate_every), "--grace", "1", "--max-request", "65536"],
                  self.node, timeout=120, cwd=self.node_cwd)
        self.client = OHTTPClient(self.relay + "/", authority="a.test")
        self.wait_registered()

    def wait_registered(self) -> None:
        for _ in range(100):
            if self.nodes():
                return
            time.sleep(0.1)
        raise AssertionError("node never registered")

    def nodes(self) -> list[dict[str, str]]:
        response = self.client.request("GET", "/v1/nodes")
        assert response.status == 200
        nodes: list[dict[str, str]] = json.loads(response.content)["nodes"]
        return nodes

    def trust(self) -> TrustConfig:
        roots = load_certificates((self.tmp / "node" / "simulated" / "simulated-roots.pem")
                                  .read_bytes())
        return TrustConfig.with_simulated_roots(roots)

    def key_config(self) -> ohttp.KeyConfig:
        bundle = decode_bundle(base64.b64decode(self.nodes()[0]["bundle"]))
        return ohttp.decode_key_config(bundle.key_config)

    def process(self, sealed: bytes, node_id: str = "node-a") -> tuple[int, bytes]:
        response = self.client.request(
            "POST", f"/v1/nodes/{node_id}/process", content=sealed,
            headers=[(b"content-type", inner.MEDIA_TYPE_REQUEST.encode())])
        return response.status, response.content


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("node")
    with Supervisor(tmp / "logs") as sup:
        yield NodeStack(tmp, sup)


def summarize_payload() -> dict[str, object]:
    return {"messages": [{"sender": "Ana", "time": "2026-01-01T10:00", "text": MARKER}] * 3,
            "max_bullets": 3}


def test_evidence_verifies_and_binds_the_served_key(stack: NodeStack) -> None:
    nodes = stack.nodes()
    assert [n["node_id"] for n in nodes] == ["node-a"]
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
    assert stack.process(sealed, node_id="node-unknown")[0] == 404


def test_logs_and_files_hold_no_request_data(stack: NodeStack) -> None:
    def snapshot() -> dict[str, float]:
        paths = [*stack.node_cwd.rglob("*"), *(stack.tmp / "node").rglob("*"),
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
    for name in ("node", "gateway", "relay"):
        text = stack.sup.services[name].log_text()
        assert MARKER not in text
        assert "ok: task=WRITE" in text or name != "node"


def test_rotation_destroys_old_keys_and_requests_sealed_to_them_fail(tmp_path: Path) -> None:
    with Supervisor(tmp_path / "logs") as sup:
        stack = NodeStack(tmp_path, sup, rotate_every=2)
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
        assert "rotated: key_id=" in stack.sup.services["node"].log_text()


def test_node_reads_only_allowlisted_environment() -> None:
    from privproc.node.cli import allowed_env

    os.environ["PRIVPROC_NODE_TOKEN"] = "t"
    try:
        assert allowed_env("PRIVPROC_NODE_TOKEN") == "t"
    finally:
        del os.environ["PRIVPROC_NODE_TOKEN"]
    with pytest.raises(KeyError, match="allowlist"):
        allowed_env("HOME")
