"""One test per guarantee: the whole system as real processes, attacked."""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from privproc.client.errors import LogVerificationError
from privproc.client.sdk import (
    EvidenceRefusedError,
    MeasurementNotLoggedError,
    PrivateProcessingClient,
)
from privproc.client.tokens import TokenWallet
from privproc.client.trust import ClientTrust, load_trust
from privproc.tlog.client import LogForkError, LogPolicy
from privproc.tlog.keys import read_signer
from privproc.tlog.witness_app import load_or_create_witness_key
from privproc.up.supervisor import Service
from privproc.up.system import (
    LOG_ORIGIN,
    System,
    node_args,
    node_id_from_log,
)
from privproc.wire import merkle, note
from privproc.wire.checkpoint import Checkpoint

from ..servers import ANY_PORT, start_service
from .conftest import up_system

pytestmark = pytest.mark.slow
MARKER = "MARKER-adversarial-4e2d-our-secret-plans"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    yield from up_system(tmp_path_factory, nodes=2)


def client(system: System, trust: ClientTrust | None = None,
           state_dir: Path | None = None) -> PrivateProcessingClient:
    trust = trust or load_trust(system.client_config)
    assert trust.tokens is not None
    wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token, None, batch=2)
    return PrivateProcessingClient(trust, tokens=wallet, state_dir=state_dir)


def chat() -> list[dict[str, str]]:
    return [{"sender": "Ana", "time": "2026-01-01T10:00", "text": MARKER}]


def test_full_path_works_and_returns_a_receipt(system: System) -> None:
    result = client(system).summarize(chat())
    assert result.output == ["1 messages"]
    assert result.receipt.node_id in {node_id_from_log(system.sup.services[f"node-{i}"]
                                                       .log_text()) for i in (0, 1)}


def test_1_changed_node_code_is_not_in_the_log_and_is_refused(system: System,
                                                              tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("changed = true\n")  # a different config: a different measurement
    rogue = start_service(system.sup, "rogue", node_args(
        system.state, f"http://{ANY_PORT}", system.urls["gateway"], "echo", config),
        timeout=120)
    url = rogue.url
    try:
        rogue_id = node_id_from_log(rogue.log_text())
        c = client(system)
        # The directory checks what a client checks: the rogue node is never listed ...
        offered = c.candidates()
        assert rogue_id not in dict(offered.nodes)
        assert "registration refused: status=403" in _wait_for_log(rogue, "refused")
        # ... and were it listed, the client would refuse it all the same.
        with urllib.request.urlopen(url + "/evidence", timeout=10) as resp:
            bundle = resp.read()
        with pytest.raises(MeasurementNotLoggedError):
            c.verify_node(rogue_id, bundle, offered.releases)
        assert rogue_id not in {n.node_id for n in c.verified_nodes()}
    finally:
        system.sup.stop("rogue")


def _wait_for_log(service: Service, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = service.log_text()
        if text in log:
            return log
        time.sleep(0.02)
    return service.log_text()


def test_2_evidence_binding_another_key_is_refused(system: System) -> None:
    from privproc.attest.evidence import decode_bundle, encode_bundle
    from privproc.wire import hpke, ohttp

    c = client(system)
    offered = c.candidates()
    node_id, bundle = offered.nodes[0]
    other = ohttp.GatewayKey.create(7, hpke.KeyPair.generate()).config.encode()
    swapped = encode_bundle(replace(decode_bundle(bundle), key_config=other))
    with pytest.raises(EvidenceRefusedError, match="ReportData"):
        c.verify_node(node_id, swapped, offered.releases)


def test_3_gateway_cannot_steer_to_an_unverified_or_unregistered_node(system: System) -> None:
    c = client(system)
    nodes = c.verified_nodes()
    assert len({n.node_id for n in nodes}) == 2
    # The directory is the same for every caller (no per-client node set) ...
    other = client(system)
    assert sorted(c.candidates().nodes) == sorted(other.candidates().nodes)
    # ... and the gateway forwards only to registered nodes.
    for evil in ("node-evil", "n" + "e" * 31, "n0%0Aforged"):
        response = c.ohttp.request("POST", f"/v1/nodes/{evil}/process", content=b"x",
                                   headers=[(b"content-type", b"application/privproc-request")])
        assert response.status == 404


def test_4_log_fork_raises_with_evidence(system: System, tmp_path: Path) -> None:
    log_key = read_signer(system.state / "log" / "log.key")
    witness = load_or_create_witness_key(system.state / "witness", "witness.privproc.local")
    forged_root = merkle.leaf_hash(b"another history")
    forged = Checkpoint(LOG_ORIGIN, 1, forged_root).to_text()
    forged_note = note.add_signatures(note.sign_note(forged, [log_key]),
                                      [witness.at(1_900_000_000)])
    # A client that was shown a split view earlier: its kept view is of the forged tree.
    (tmp_path / "log-view.json").write_text(json.dumps({
        "version": 1, "checkpoint": forged_note.decode(),
        "range": merkle.CompactRange(1, [forged_root]).to_bytes().hex(),
        "keys": [], "revoked": {}, "releases": {}}))
    with pytest.raises(LogForkError) as err:
        client(system, state_dir=tmp_path).refresh(tokens=False)
    assert forged_note in (err.value.first, err.value.second)


def test_5_missing_witness_quorum_is_refused(system: System) -> None:
    trust = load_trust(system.client_config)
    stranger = load_or_create_witness_key(system.state / "other-witness", "w2.example")
    policy = LogPolicy.from_keys(trust.log.log_verifier.verifier_key,
                                 [stranger.verifier_key], 1)
    with pytest.raises(LogVerificationError, match="quorum"):
        client(system, trust=replace(trust, log=policy)).summarize(chat())


def test_8_no_chat_text_in_traffic_logs_or_files(system: System) -> None:
    client(system).summarize(chat())
    for name, service in system.sup.services.items():
        assert MARKER not in service.log_text(), name
    for path in system.state.rglob("*"):
        if path.is_file():
            assert MARKER.encode() not in path.read_bytes(), path


def test_async_client_variant(system: System) -> None:
    import asyncio

    from privproc.client.sdk import AsyncPrivateProcessingClient

    trust = load_trust(system.client_config)
    assert trust.tokens is not None
    wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token, None, batch=2)
    c = AsyncPrivateProcessingClient(trust, tokens=wallet)

    async def run() -> list[str]:
        results = await asyncio.gather(c.summarize(chat()), c.write("hi", "funny"))
        return [r.output[0] for r in results]

    assert asyncio.run(run()) == ["1 messages", "2 characters"]


def test_unusable_bundle_from_the_directory_is_refused(system: System) -> None:
    c = client(system)
    with pytest.raises(EvidenceRefusedError):
        c.verify_node("node-x", base64.b64decode(base64.b64encode(b"PPEV garbage")), {})


def test_9_node_killed_mid_request_the_client_retries_on_another(system: System) -> None:
    # Last in this module: it kills node-1.
    c = client(system)
    assert len(c.verified_nodes()) >= 2
    victim = system.sup.services["node-1"]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    for _ in range(4):  # whichever node is picked, every call succeeds
        assert c.summarize(chat()).output == ["1 messages"]
