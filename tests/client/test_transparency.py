"""The client's key and release checks against the log, with no network: a log in
storage, the client's view over it, bundles built the way the log builds them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from privproc.attest.evidence import EvidencePolicy, TrustConfig
from privproc.client.errors import (
    KeyNotLoggedError,
    LogVerificationError,
    StaleLogError,
    TooManyKeysError,
)
from privproc.client.transparency import (
    check_issuer_key,
    pick_gateway_key,
    release_proofs,
    verify_key_bundle,
)
from privproc.client.trust import ClientTrust, TokenSettings
from privproc.tlog.bundle import LogBundle, build_bundle
from privproc.tlog.client import LogPolicy, LogReader
from privproc.tlog.record import KeyRecord, ReleaseRecord, RevocationRecord
from privproc.tlog.sequencer import Sequencer
from privproc.tlog.storage import SqliteStorage
from privproc.tlog.view import LogView
from privproc.wire import hpke, note, ohttp
from privproc.wire.checkpoint import CosignatureSigner, parse_checkpoint

from ..tlog.helpers import LOG_SIGNER, ORIGIN, fetcher

W1 = CosignatureSigner("w1.example", hashlib.sha256(b"w1").digest())
NOW = 1_800_000_000
GATEWAY = "gateway.test"
ISSUER = "issuer.test"


def gateway_config(key_id: int = 1) -> ohttp.KeyConfig:
    return ohttp.GatewayKey.create(key_id, hpke.KeyPair.generate()).config


def trust(max_keys: int = 2) -> ClientTrust:
    return ClientTrust(
        log=LogPolicy.from_keys(LOG_SIGNER.verifier_key, [W1.verifier_key], 1),
        roots=TrustConfig(), policy=EvidencePolicy(), relay_url="http://relay.invalid/",
        gateway_name=GATEWAY, max_keys=max_keys,
        tokens=TokenSettings("http://issuer.invalid", "t", ISSUER, GATEWAY, 2))


class Log:
    def __init__(self, path: Path) -> None:
        self.storage = SqliteStorage(path)
        self.seq = Sequencer(self.storage, LOG_SIGNER, ORIGIN)

    def add(self, *records: bytes) -> list[int]:
        first, _ = self.seq.integrate(list(records))
        self.storage.publish(self.seq.size, note.add_signatures(self.seq.checkpoint,
                                                                [W1.at(NOW)]))
        return list(range(first, first + len(records)))

    def bundle(self, indices: list[int]) -> LogBundle:
        state = self.storage.state()
        assert state is not None
        checkpoint = parse_checkpoint(note.parse_note(state.published).text)
        return build_bundle(LogReader(fetcher(self.storage)), checkpoint, state.published,
                            indices)

    def view(self) -> LogView:
        return LogView(fetcher(self.storage), trust().log)


def key(purpose: str, owner: str, data: bytes, start: int = NOW - 100,
        end: int = NOW + 1000) -> bytes:
    return KeyRecord(purpose, owner, data, start, end).encode()


def test_only_valid_logged_keys_of_the_named_owners_are_kept(tmp_path: Path) -> None:
    log = Log(tmp_path / "log.db")
    good, expired, foreign = gateway_config(1), gateway_config(2), gateway_config(3)
    issuer_key = b"\x30" * 40
    idx = log.add(key("ohttp-gateway", GATEWAY, good.encode()),
                  key("ohttp-gateway", GATEWAY, expired.encode(), NOW - 100, NOW - 1),
                  key("ohttp-gateway", "other.test", foreign.encode()),
                  key("privacypass-0002", ISSUER, issuer_key))
    view = log.view()
    keys = verify_key_bundle(log.bundle(idx).encode(), trust(), view, NOW)
    assert [k.config for k in keys.gateway] == [good]
    chosen = pick_gateway_key(keys, trust(), view, NOW)
    assert chosen.config == good and chosen.logged.proof.index == idx[0]
    logged = check_issuer_key(keys, trust(), view, token_type=2, token_key=issuer_key,
                              now=NOW)
    assert logged.record.owner == ISSUER
    with pytest.raises(KeyNotLoggedError, match="no key record"):
        check_issuer_key(keys, trust(), view, token_type=2, token_key=b"\x31" * 40, now=NOW)
    with pytest.raises(KeyNotLoggedError, match="no key record"):  # right key, wrong type
        check_issuer_key(keys, trust(), view, token_type=1, token_key=issuer_key, now=NOW)
    with pytest.raises(KeyNotLoggedError):  # past its not-after
        pick_gateway_key(keys, trust(), view, NOW + 2000)


def test_a_key_record_with_a_bad_proof_spoils_the_bundle(tmp_path: Path) -> None:
    log = Log(tmp_path / "log.db")
    idx = log.add(key("ohttp-gateway", GATEWAY, gateway_config().encode()))
    bundle = log.bundle(idx)
    evil = KeyRecord("ohttp-gateway", GATEWAY, gateway_config(9).encode(), NOW - 1,
                     NOW + 100).encode()
    forged = LogBundle(bundle.checkpoint, (bundle.entries[0].__class__(
        idx[0], evil, bundle.entries[0].proof),))
    with pytest.raises(LogVerificationError, match="not in the tree"):
        verify_key_bundle(forged.encode(), trust(), log.view(), NOW)
    with pytest.raises(LogVerificationError, match="not JSON"):
        verify_key_bundle(b"{", trust(), log.view(), NOW)


def test_more_keys_than_allowed_are_refused(tmp_path: Path) -> None:
    log = Log(tmp_path / "log.db")
    configs = [gateway_config(i) for i in range(3)]
    idx = log.add(*(key("ohttp-gateway", GATEWAY, c.encode()) for c in configs))
    view = log.view()
    keys = verify_key_bundle(log.bundle(idx[:1]).encode(), trust(), view, NOW)
    # The bundle shows one key; the view has seen all three in the log.
    with pytest.raises(TooManyKeysError, match="3 ohttp-gateway keys"):
        pick_gateway_key(keys, trust(max_keys=2), view, NOW)
    assert pick_gateway_key(keys, trust(max_keys=3), view, NOW).config == configs[0]


def test_release_proofs_and_revocations(tmp_path: Path) -> None:
    log = Log(tmp_path / "log.db")
    m1, m2 = bytes(48), b"\x01" * 48
    idx = log.add(ReleaseRecord(m1, bytes(32), "1", "s", NOW).encode(),
                  ReleaseRecord(m2, bytes(32), "2", "s", NOW).encode())
    view = log.view()
    proofs = release_proofs(log.bundle(idx).to_json(), trust(), view, NOW)
    assert set(proofs) == {m1, m2} and view.revocation(m1) is None
    assert release_proofs(None, trust(), view, NOW) == {}
    log.add(RevocationRecord(m1, "CVE-1", NOW).encode())
    view.sync()
    revoked = view.revocation(m1)
    assert revoked is not None and revoked.reason == "CVE-1"
    assert view.revocation(m2) is None


def test_a_frozen_view_is_refused_once_its_checkpoint_is_too_old(tmp_path: Path) -> None:
    """Attack: a relay keeps serving the bundles of a day it chose (genuine, consistent
    with every view), so that no client learns of a later revocation or key. Witnesses
    cosign at a time; past ``max_checkpoint_age`` by the client's clock the bundle is
    refused, key bundle and node list alike."""
    log = Log(tmp_path / "log.db")  # cosigned by W1 at NOW
    key_idx = log.add(key("ohttp-gateway", GATEWAY, gateway_config(1).encode(), NOW - 10,
                          NOW + 10 * 86400))
    release_idx = log.add(ReleaseRecord(bytes(48), bytes(32), "1", "s", NOW).encode())
    keys, releases = log.bundle(key_idx), log.bundle(release_idx)
    view = log.view()
    day = 86400
    verified = verify_key_bundle(keys.encode(), trust(), view, NOW + day)
    assert verified.gateway and verified.witnessed_at == NOW
    # a client that keeps the verified keys relies on them only as long (the SDK asks
    # for a new bundle before sealing once they are too old)
    assert verified.fresh_at(NOW + day, day) and not verified.fresh_at(NOW + day + 1, day)
    assert release_proofs(releases.to_json(), trust(), view, NOW + day)
    for check in (lambda: verify_key_bundle(keys.encode(), trust(), view, NOW + day + 1),
                  lambda: release_proofs(releases.to_json(), trust(), view, NOW + day + 1)):
        with pytest.raises(StaleLogError, match=r"stapled checkpoint refused: the checkpoint "
                                                r"of size 2 was last cosigned by a quorum of "
                                                r"witnesses 86401 s ago") as info:
            check()
        assert isinstance(info.value, LogVerificationError)
    shorter = type(trust())(**{**trust().__dict__, "max_checkpoint_age": 60.0})
    with pytest.raises(StaleLogError):
        verify_key_bundle(keys.encode(), shorter, view, NOW + 61)
