"""Who may be listed in the node directory: the attacks of issue 11, sans-IO.

Anyone could register a node (no credential), point an entry at an internal URL, take over
another node's entry with its public bundle, or fill the directory with junk. Each test
fails if the registrar's corresponding check is removed.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privproc.attest.evidence import EvidencePolicy, collect_bundle, encode_bundle, node_id_for
from privproc.attest.simulated import SimulatedIdentity, SimulatedPlatform
from privproc.client.transparency import release_proofs
from privproc.client.trust import ClientTrust
from privproc.gateway.directory import MemoryRegistry, NodeEntry, RegistryFull
from privproc.gateway.registrar import Refused, Registrar, RegistrarConfig, url_allowed
from privproc.node.registration import public_bytes
from privproc.tlog.bundle import build_bundle
from privproc.tlog.client import LogPolicy, LogReader
from privproc.tlog.record import ReleaseRecord, RevocationRecord
from privproc.tlog.sequencer import Sequencer
from privproc.tlog.storage import SqliteStorage
from privproc.tlog.view import LogView
from privproc.wire import note
from privproc.wire.checkpoint import CosignatureSigner, parse_checkpoint
from privproc.wire.registration import decode_registration, sign_registration

from ..attest.conftest import MEASUREMENT, SIM_RSA_BITS, key_config
from ..tlog.helpers import LOG_SIGNER, ORIGIN, fetcher

W1 = CosignatureSigner("w1.example", hashlib.sha256(b"w1").digest())
TOKEN = "operator-secret"
ALLOW = ("http://10.0.0.*:8443",)
URL = "http://10.0.0.7:8443"


@pytest.fixture(scope="module")
def sim() -> SimulatedIdentity:
    return SimulatedIdentity.generate(rsa_bits=SIM_RSA_BITS)


@pytest.fixture
def now() -> float:
    return float(int(datetime.now(UTC).timestamp()))


class World:
    """A log with the node's release, a simulated node, and a registrar."""

    def __init__(self, tmp: Path, sim: SimulatedIdentity, now: float) -> None:
        self.now = now
        self.storage = SqliteStorage(tmp / "log.db")
        self.seq = Sequencer(self.storage, LOG_SIGNER, ORIGIN)
        self.add(ReleaseRecord(MEASUREMENT, bytes(32), "1", "s", int(now) - 60).encode())
        self.trust = ClientTrust(
            log=LogPolicy.from_keys(LOG_SIGNER.verifier_key, [W1.verifier_key], 1),
            roots=sim.trust_config(), policy=EvidencePolicy(),
            relay_url="http://relay.invalid/")
        self.view = LogView(fetcher(self.storage), self.trust.log)
        self.registrar = Registrar(RegistrarConfig(self.trust, TOKEN, ALLOW))
        self.sim = sim
        self.signing_key = Ed25519PrivateKey.generate()

    def add(self, record: bytes) -> None:
        self.seq.integrate([record])
        self.storage.publish(self.seq.size, note.add_signatures(self.seq.checkpoint,
                                                                [W1.at(int(self.now))]))

    def bundle(self, measurement: bytes = MEASUREMENT, reg_key: bytes | None = None) -> bytes:
        platform = SimulatedPlatform(self.sim, measurement, gpu=False)
        key = public_bytes(self.signing_key) if reg_key is None else reg_key
        return encode_bundle(collect_bundle(platform, key_config(), int(self.now) + 3600,
                                            registration_key=key))

    def releases(self) -> dict[bytes, object]:
        state = self.storage.state()
        assert state is not None
        checkpoint = parse_checkpoint(note.parse_note(state.published).text)
        bundle = build_bundle(LogReader(fetcher(self.storage)), checkpoint, state.published,
                              self.storage.find_subject(MEASUREMENT))
        return release_proofs(bundle.to_json(), self.trust, self.view,  # type: ignore[return-value]
                              self.now)

    def register(self, body: bytes, auth: str = f"Bearer {TOKEN}") -> NodeEntry | Refused:
        admitted = self.registrar.admit(auth, body, self.now)
        if isinstance(admitted, Refused):
            return admitted
        registration, _ = admitted
        return self.registrar.verify(registration, self.releases(),  # type: ignore[arg-type]
                                     self.view, self.now)

    def signed(self, url: str = URL, bundle: bytes | None = None,
               key: Ed25519PrivateKey | None = None, time: float | None = None) -> bytes:
        return sign_registration(key or self.signing_key, url,
                                 int(self.now if time is None else time),
                                 bundle if bundle is not None else self.bundle()).encode()


@pytest.fixture
def world(tmp_path: Path, sim: SimulatedIdentity, now: float) -> World:
    return World(tmp_path, sim, now)


def test_an_attested_logged_node_is_listed_under_its_derived_id(world: World) -> None:
    entry = world.register(world.signed())
    assert isinstance(entry, NodeEntry), entry
    assert entry.node_id == node_id_for(public_bytes(world.signing_key))
    assert entry.url == URL


@pytest.mark.parametrize("auth", ["", "Bearer wrong", f"Bearer {TOKEN}x", TOKEN])
def test_no_credential_no_registration(world: World, auth: str) -> None:
    refused = world.register(world.signed(), auth=auth)
    assert isinstance(refused, Refused) and refused.status == 401


@pytest.mark.parametrize("url", [
    "http://169.254.169.254:80", "http://10.0.0.7:8443/x?x=", "http://10.0.0.7:8443?x=",
    "http://user:pw@10.0.0.7:8443", "http://10.0.0.7:8444", "ftp://10.0.0.7:8443",
    "http://10.0.0.7", "http://10.0.1.7:8443", "http://10.0.0.7:8443#frag",
])
def test_urls_off_the_allowlist_are_refused(world: World, url: str) -> None:
    refused = world.register(world.signed(url=url))
    assert isinstance(refused, Refused) and refused.status == 403, refused


def test_allowlist_patterns() -> None:
    assert url_allowed("http://127.0.0.1:5000", ("http://127.0.0.1:*",))
    assert url_allowed("http://127.0.0.1:5000/", ("http://127.0.0.1:*",))
    assert not url_allowed("http://127.0.0.1:5000/process", ("http://127.0.0.1:*",))
    assert not url_allowed("http://127.0.0.10:5000", ("http://127.0.0.1:5*",))
    assert url_allowed("https://[::1]:443", ("https://[::1]:*",))
    assert not url_allowed("http://[::1", ("*",))
    # '*' is one label or byte: it cannot stretch over dots into another host
    assert not url_allowed("http://10.0.0.1.evil.example:8443", ("http://10.0.0.*:8443",))


def test_a_bundle_signed_by_another_key_is_refused(world: World) -> None:
    # The attacker replays the real node's public bundle with its own URL and key: the
    # bundle binds the real node's registration key, not the attacker's.
    thief = Ed25519PrivateKey.generate()
    refused = world.register(world.signed(key=thief))
    assert isinstance(refused, Refused) and refused.status == 403
    assert "registration key" in refused.reason


def test_evidence_without_a_registration_key_is_refused(world: World) -> None:
    platform = SimulatedPlatform(world.sim, MEASUREMENT, gpu=False)
    bare = encode_bundle(collect_bundle(platform, key_config(), int(world.now) + 3600))
    refused = world.register(world.signed(bundle=bare))
    assert isinstance(refused, Refused) and refused.status == 403


def test_an_unlogged_or_revoked_measurement_is_refused(world: World) -> None:
    other = world.register(world.signed(bundle=world.bundle(measurement=bytes(48))))
    assert isinstance(other, Refused) and "MeasurementNotLogged" in other.reason
    world.add(RevocationRecord(MEASUREMENT, "CVE-1", int(world.now)).encode())
    world.view.sync()
    revoked = world.register(world.signed())
    assert isinstance(revoked, Refused) and "ReleaseRevoked" in revoked.reason


def test_stale_and_malformed_registrations_are_refused(world: World) -> None:
    stale = world.register(world.signed(time=world.now - 3600))
    assert isinstance(stale, Refused) and stale.status == 400
    for body in (b"", b"[" * 100000, b'{"version":1}', world.signed()[:-5], b"\xff" * 40):
        refused = world.register(body)
        assert isinstance(refused, Refused) and refused.status == 400, body[:20]


def test_registration_signatures_cover_url_time_and_bundle(world: World) -> None:
    good = decode_registration(world.signed())
    assert world.registrar.admit(f"Bearer {TOKEN}", good.encode(), world.now)
    for forged in (replace(good, url="http://10.0.0.8:8443"), replace(good, time=good.time + 1),
                   replace(good, bundle=world.bundle(reg_key=public_bytes(
                       world.signing_key)) + b"")):
        if forged.bundle == good.bundle and forged.url == good.url and (
                forged.time == good.time):
            continue
        refused = world.register(forged.encode())
        assert isinstance(refused, Refused) and refused.status == 403


def test_the_registry_is_bounded_and_expires_on_write() -> None:
    registry = MemoryRegistry(max_nodes=3, max_bytes=10_000)
    for i in range(3):
        registry.register(NodeEntry(f"n{i}", "http://u", b"x" * 100, 100.0), ttl=30)
    with pytest.raises(RegistryFull):
        registry.register(NodeEntry("n9", "http://u", b"x", 100.0), ttl=30)
    registry.register(NodeEntry("n1", "http://u", b"y" * 100, 110.0), ttl=30)  # an update
    registry.register(NodeEntry("n9", "http://u", b"x", 135.0), ttl=30)  # n0, n2 expired
    assert [e.node_id for e in registry.live(135.0, 30)] == ["n1", "n9"]
    with pytest.raises(RegistryFull, match="bytes"):
        registry.register(NodeEntry("big", "http://u", b"x" * 20_000, 135.0), ttl=30)
