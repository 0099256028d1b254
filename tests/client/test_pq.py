"""Post-quantum by default on the client side: the hybrid KEM is preferred wherever a
choice is offered, and ``require_pq = true`` refuses classical-only gateways and nodes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from privproc.client import transparency
from privproc.client.errors import (
    ClassicalKeyRefusedError,
    KeyConfigFetchError,
    KeyDowngradeError,
    MeasurementNotLoggedError,
    NodeKeyNotPostQuantumError,
    NodeVerificationError,
)
from privproc.client.ohttp import pick_config
from privproc.client.transparency import pick_gateway_key, verify_key_bundle
from privproc.client.trust import TrustConfigError, load_trust
from privproc.wire import hpke, ohttp

from .test_transparency import GATEWAY, NOW, Log, key, trust
from .test_trust import good, keys, write

__all__ = ["keys"]  # the fixture, imported for its use below

HYBRID = hpke.KEM_MLKEM768_X25519


def config(key_id: int, kem: int) -> ohttp.KeyConfig:
    return ohttp.GatewayKey.create(key_id, hpke.KeyPair.generate(kem_id=kem)).config


def with_pq(require: bool) -> Any:
    base = trust(max_keys=3)
    return type(base)(**{**base.__dict__, "require_pq": require})


def test_the_trust_file_reads_require_pq(tmp_path: Path, keys: dict[str, str]) -> None:
    assert load_trust(write(tmp_path, good(keys))).require_pq is False
    text = good(keys, service='relay = "http://127.0.0.1:1/"\nrequire_pq = true')
    assert load_trust(write(tmp_path, text)).require_pq is True
    text = good(keys, service='relay = "http://127.0.0.1:1/"\nrequire_pq = "yes"')
    with pytest.raises(TrustConfigError, match="require_pq must be true or false, got 'yes'"):
        load_trust(write(tmp_path, text))


def test_the_client_prefers_the_logged_hybrid_key(tmp_path: Path) -> None:
    log = Log(tmp_path / "log.db")
    hybrid, classic = config(1, HYBRID), config(2, hpke.KEM_X25519_SHA256)
    # the classical key is newer: the hybrid one is still preferred
    idx = log.add(key("ohttp-gateway", GATEWAY, hybrid.encode(), NOW - 200),
                  key("ohttp-gateway", GATEWAY, classic.encode(), NOW - 100))
    view = log.view()
    found = verify_key_bundle(log.bundle(idx).encode(), with_pq(False), view, NOW)
    assert [k.config.kem_id for k in found.gateway] == [hpke.KEM_X25519_SHA256, HYBRID]
    assert pick_gateway_key(found, with_pq(False), view, NOW).config == hybrid
    assert pick_gateway_key(found, with_pq(True), view, NOW).config == hybrid


def test_require_pq_refuses_a_classical_only_gateway(tmp_path: Path) -> None:
    log = Log(tmp_path / "log.db")
    classic = config(4, hpke.KEM_X25519_SHA256)
    idx = log.add(key("ohttp-gateway", GATEWAY, classic.encode()))
    view = log.view()
    found = verify_key_bundle(log.bundle(idx).encode(), with_pq(True), view, NOW)
    assert pick_gateway_key(found, with_pq(False), view, NOW).config == classic
    with pytest.raises(ClassicalKeyRefusedError,
                       match=r"require_pq = true, but every valid OHTTP key of 'gateway.test' "
                             r"is classical \(key_id 4 X25519\); expected a post-quantum KEM "
                             r"\(MLKEM768-X25519, 0x647a\)"):
        pick_gateway_key(found, with_pq(True), view, NOW)


def test_pick_config_prefers_the_hybrid_and_can_require_it() -> None:
    classic, hybrid = config(1, hpke.KEM_X25519_SHA256), config(2, HYBRID)
    assert pick_config(ohttp.encode_key_configs([classic, hybrid])) == hybrid
    assert pick_config(ohttp.encode_key_configs([classic])) == classic
    assert pick_config(ohttp.encode_key_configs([classic, hybrid]), require_pq=True) == hybrid
    with pytest.raises(ClassicalKeyRefusedError, match=r"only classical keys \(key_id 1 X25519\)"):
        pick_config(ohttp.encode_key_configs([classic]), require_pq=True)
    with pytest.raises(KeyConfigFetchError):
        pick_config(b"\x00")


def test_require_pq_refuses_a_node_with_a_classical_key(monkeypatch: pytest.MonkeyPatch) -> None:
    def claims_for(kem: int) -> Any:
        cfg = config(3, kem).encode()
        return lambda *a, **k: SimpleNamespace(node_id="n1", key_config=cfg,
                                               measurement=bytes(48))

    def verify(kem: int, require: bool) -> None:
        monkeypatch.setattr(transparency, "verify_bundle", claims_for(kem))
        transparency.verify_node_evidence("n1", b"bundle", {}, trust=with_pq(require),
                                          view=None, now=NOW)  # type: ignore[arg-type]

    with pytest.raises(NodeKeyNotPostQuantumError,
                       match=r"n1: the trust file says require_pq = true, but the node's "
                             r"attested key 3 uses X25519 \(0x0020\)") as info:
        verify(hpke.KEM_X25519_SHA256, True)
    assert isinstance(info.value, NodeVerificationError)
    assert isinstance(info.value, ClassicalKeyRefusedError)
    # the key check passes: the next check (the release) is the one that fails here
    with pytest.raises(MeasurementNotLoggedError):
        verify(HYBRID, True)
    with pytest.raises(MeasurementNotLoggedError):
        verify(hpke.KEM_X25519_SHA256, False)


def test_the_sdk_picks_among_nodes_with_a_hybrid_key_first() -> None:
    from privproc.client.sdk import PrivateProcessingClient

    def node(name: str, kem: int) -> Any:
        return SimpleNamespace(node_id=name, key_config=config(1, kem))

    hybrid = [node("h1", HYBRID), node("h2", HYBRID)]
    classic = [node("c1", hpke.KEM_X25519_SHA256), node("c2", hpke.KEM_X25519_SHA256)]
    picked = {PrivateProcessingClient._pick(classic + hybrid).node_id for _ in range(60)}
    assert picked == {"h1", "h2"}  # still random among them
    assert {PrivateProcessingClient._pick(classic).node_id for _ in range(60)} == {"c1", "c2"}


def test_a_replayed_old_bundle_cannot_downgrade_the_client_to_a_classical_key(
        tmp_path: Path) -> None:
    """Attack (a relay that records for a future quantum computer): the gateway moved from
    a classical key to a hybrid one, whose record the log now holds; the old classical
    record is still valid (30 days by default). The relay replays the old key bundle,
    whose checkpoint is consistent with the client's view, to make the client seal to
    X25519 alone. The client's view knows the hybrid record, so it refuses."""
    log = Log(tmp_path / "log.db")
    classic, hybrid = config(1, hpke.KEM_X25519_SHA256), config(2, HYBRID)
    old = log.bundle(log.add(key("ohttp-gateway", GATEWAY, classic.encode(), NOW - 500)))
    new_index = log.add(key("ohttp-gateway", GATEWAY, hybrid.encode(), NOW - 100))
    view = log.view()
    view.sync()  # the client's own copy of the log: both records
    replayed = verify_key_bundle(old.encode(), with_pq(False), view, NOW)
    assert [k.config for k in replayed.gateway] == [classic]  # proofs and checkpoint hold
    with pytest.raises(KeyDowngradeError,
                       match=rf"offers only classical OHTTP keys of 'gateway.test' \(key_id 1 "
                             rf"X25519\), but the log holds a valid post-quantum key of it "
                             rf"\(record {new_index[0]}, MLKEM768-X25519, valid until ") as info:
        pick_gateway_key(replayed, with_pq(False), view, NOW)
    assert isinstance(info.value, ClassicalKeyRefusedError)
    # the bundle the gateway staples now carries the hybrid key: used
    fresh = verify_key_bundle(log.bundle(new_index).encode(), with_pq(False), view, NOW)
    assert pick_gateway_key(fresh, with_pq(False), view, NOW).config == hybrid


def test_a_classical_gateway_that_never_had_a_hybrid_key_is_still_used(tmp_path: Path) -> None:
    log = Log(tmp_path / "log.db")
    older, classic = config(1, hpke.KEM_X25519_SHA256), config(2, hpke.KEM_X25519_SHA256)
    log.add(key("ohttp-gateway", GATEWAY, older.encode(), NOW - 500))
    index = log.add(key("ohttp-gateway", GATEWAY, classic.encode(), NOW - 100),
                    key("ohttp-gateway", "other.test", config(3, HYBRID).encode()))
    view = log.view()
    view.sync()
    found = verify_key_bundle(log.bundle(index[:1]).encode(), with_pq(False), view, NOW)
    assert pick_gateway_key(found, with_pq(False), view, NOW).config == classic


def test_an_expired_hybrid_record_is_no_downgrade(tmp_path: Path) -> None:
    log = Log(tmp_path / "log.db")
    classic, hybrid = config(1, hpke.KEM_X25519_SHA256), config(2, HYBRID)
    index = log.add(key("ohttp-gateway", GATEWAY, classic.encode(), NOW - 500),
                    key("ohttp-gateway", GATEWAY, hybrid.encode(), NOW - 400, NOW - 1))
    view = log.view()
    view.sync()
    found = verify_key_bundle(log.bundle(index[:1]).encode(), with_pq(False), view, NOW)
    assert pick_gateway_key(found, with_pq(False), view, NOW).config == classic


@pytest.mark.parametrize("cfg", [
    # only the export-only AEAD: no suite a request can be sealed with
    ohttp.KeyConfig(3, HYBRID, config(3, HYBRID).public_key,
                    (ohttp.SymmetricSuite(1, 0xFFFF),)),
    # an X25519 share of low order (all zero): sealing fails
    ohttp.KeyConfig(3, hpke.KEM_X25519_SHA256, bytes(32), (ohttp.SymmetricSuite(1, 1),)),
    ohttp.KeyConfig(3, HYBRID, config(3, HYBRID).public_key[:1184] + bytes(32),
                    (ohttp.SymmetricSuite(1, 1),)),
], ids=["export-only", "x25519-zero", "hybrid-x25519-zero"])
def test_a_node_whose_attested_key_cannot_be_sealed_to_is_refused(
        monkeypatch: pytest.MonkeyPatch, cfg: ohttp.KeyConfig) -> None:
    """Attack: a node attests a key configuration that parses but that no request can be
    sealed to. Verified, it failed every call that picked it (a raw HPKEError, at random
    among the nodes); refused here, the client never picks it."""
    monkeypatch.setattr(transparency, "verify_bundle", lambda *a, **k: SimpleNamespace(
        node_id="n1", key_config=cfg.encode(), measurement=bytes(48)))
    with pytest.raises(NodeVerificationError, match=r"n1: the attested key 3 cannot be "
                                                    r"sealed to"):
        transparency.verify_node_evidence("n1", b"bundle", {}, trust=with_pq(False),
                                          view=None, now=NOW)  # type: ignore[arg-type]


def test_one_nodes_evidence_listed_under_many_names_costs_one_chain_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: a directory lists one real node's evidence under hundreds of made-up ids:
    the client checked the whole evidence chain (1 to 2 ms) for each before comparing the
    name. The name is compared first, against the registration key the bundle carries."""
    from privproc.attest import evidence as ev

    registration = bytes(range(32))
    bundle = ev.encode_bundle(ev.EvidenceBundle(
        platform="simulated",
        evidence=ev.EvidenceParts(bytes(0x4A0), b"\x30\x00", b"\x30\x00", b"\x30\x00", None),
        key_config=config(3, HYBRID).encode(), expiry=NOW + 3600,
        registration_key=registration))
    real = ev.node_id_for(registration)
    chain_checks: list[bytes] = []

    def verify_bundle(data: bytes, *args: Any, **kwargs: Any) -> Any:
        chain_checks.append(data)
        return SimpleNamespace(node_id=real, key_config=config(3, HYBRID).encode(),
                               measurement=bytes(48))

    monkeypatch.setattr(transparency, "verify_bundle", verify_bundle)
    for i in range(300):
        with pytest.raises(NodeVerificationError, match="not the one its registration key"):
            transparency.verify_node_evidence(f"n{i:031x}", bundle, {}, trust=with_pq(False),
                                              view=None, now=NOW)  # type: ignore[arg-type]
    assert chain_checks == []
    with pytest.raises(MeasurementNotLoggedError):  # the real name gets the full checks
        transparency.verify_node_evidence(real, bundle, {}, trust=with_pq(False),
                                          view=None, now=NOW)  # type: ignore[arg-type]
    assert chain_checks == [bundle]


def test_the_client_verifies_a_random_sample_of_a_directory_that_lists_thousands() -> None:
    from privproc.client.errors import NoVerifiedNodeError
    from privproc.client.sdk import MAX_NODES_VERIFIED, NodeList, PrivateProcessingClient

    from .test_transparency import trust as make_trust

    client = PrivateProcessingClient(make_trust())
    listed = [(f"n{i:031x}", b"bundle %d" % i) for i in range(1000)]
    client.candidates = lambda: NodeList(listed, {})  # type: ignore[method-assign]
    checked: list[str] = []

    def verify_node(node_id: str, bundle: bytes, releases: Any = None) -> Any:
        checked.append(node_id)
        raise MeasurementNotLoggedError("not logged")

    client.verify_node = verify_node  # type: ignore[method-assign]
    with pytest.raises(NoVerifiedNodeError):
        client.verified_nodes()
    first = set(checked)
    assert len(checked) == MAX_NODES_VERIFIED == len(first)
    checked.clear()
    with pytest.raises(NoVerifiedNodeError):
        client.verified_nodes()
    assert set(checked) != first  # a new sample each time: not the directory's choice
