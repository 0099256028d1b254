"""The configfs-tsm provider against a fake configfs tree in tmp_path.

The fake behaves like the kernel's tsm report directory: mkdir makes an entry holding its
attributes, writing ``inblob`` (or an option) bumps ``generation`` and makes the report
that ``outblob`` then returns, and rmdir removes the entry with its attributes.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from privproc.attest import sev_snp
from privproc.attest.configfs_tsm import (
    ARK_GUID,
    ASK_GUID,
    VCEK_GUID,
    VLEK_GUID,
    ConfigfsIO,
    ConfigfsTsmProvider,
    TsmError,
    TsmRaceError,
    encode_cert_table,
    kds_vcek_url,
    parse_cert_table,
)
from privproc.attest.errors import CertificateChainError, PlatformError
from privproc.attest.evidence import (
    EvidencePolicy,
    GpuEvidence,
    TrustConfig,
    collect_bundle,
    gpu_nonce_for,
    verify_bundle,
)
from privproc.attest.simulated import SimulatedIdentity, build_snp_report
from tests.attest.conftest import MEASUREMENT, key_config

GOOGLE = Path(__file__).resolve().parent.parent / "vectors" / "attest" / "amd" / \
    "google-go-sev-guest"
REAL_REPORT = (GOOGLE / "attestation.bin").read_bytes()
REAL_VCEK = (GOOGLE / "vcek_milan.der").read_bytes()
REAL_ASK, REAL_ARK = sev_snp.der_blobs((GOOGLE / "ask_ark_milan.pem").read_bytes())
VECTOR_TIME = datetime(2025, 6, 1, tzinfo=UTC)


class FakeConfigfs(ConfigfsIO):
    """configfs-tsm semantics on a plain directory tree."""

    def __init__(self, root: Path, make_report: Callable[[bytes], bytes], auxblob: bytes,
                 *, provider: str = "sev_guest", races: int = 0) -> None:
        self.root = root
        self.make_report = make_report
        self.auxblob = auxblob
        self.provider = provider
        self.races = races  # how many reads of outblob see a concurrent writer
        self.calls: list[tuple[str, str]] = []
        root.mkdir(parents=True, exist_ok=True)

    def _bump(self, entry: Path) -> None:
        g = int((entry / "generation").read_text())
        (entry / "generation").write_text(f"{g + 1}\n")

    def mkdir(self, path: Path) -> None:
        self.calls.append(("mkdir", path.name))
        super().mkdir(path)
        (path / "provider").write_text(self.provider + "\n")
        (path / "generation").write_text("0\n")
        for attr in ("inblob", "outblob", "auxblob", "privlevel"):
            (path / attr).write_bytes(b"")

    def rmdir(self, path: Path) -> None:
        self.calls.append(("rmdir", path.name))
        shutil.rmtree(path)

    def write(self, path: Path, data: bytes) -> None:
        self.calls.append(("write", path.name))
        super().write(path, data)
        entry = path.parent
        self._bump(entry)
        if path.name == "inblob":
            (entry / "outblob").write_bytes(self.make_report(data))
            (entry / "auxblob").write_bytes(self.auxblob)

    def read(self, path: Path) -> bytes:
        self.calls.append(("read", path.name))
        if path.name == "outblob" and self.races > 0:
            self.races -= 1
            self._bump(path.parent)  # another process wrote an option meanwhile
        return super().read(path)


def _real_report(report_data: bytes) -> bytes:
    # the vector's REPORT_DATA is fixed: the fake only "produces" it for that input
    assert report_data == sev_snp.parse_report(REAL_REPORT).report_data
    return REAL_REPORT


def _real_rd() -> bytes:
    return sev_snp.parse_report(REAL_REPORT).report_data


def _sim_reporter(sim: SimulatedIdentity) -> Callable[[bytes], bytes]:
    def make(report_data: bytes) -> bytes:
        return build_snp_report(sim.vcek_key, report_data=report_data, measurement=MEASUREMENT,
                                chip_id=sim.chip_id, tcb_raw=sim.tcb.raw)
    return make


def test_real_vector_through_configfs(tmp_path: Path) -> None:
    table = encode_cert_table({VCEK_GUID: REAL_VCEK, ASK_GUID: REAL_ASK, ARK_GUID: REAL_ARK})
    fake = FakeConfigfs(tmp_path / "report", _real_report, table)
    provider = ConfigfsTsmProvider(tmp_path / "report", io=fake)
    assert provider.platform == "sev-snp"
    parts = provider.get_evidence(_real_rd())
    assert parts.cpu_report == REAL_REPORT
    assert (parts.leaf_cert, parts.ask_cert, parts.ark_cert) == (REAL_VCEK, REAL_ASK, REAL_ARK)
    v = sev_snp.verify_snp(parts.cpu_report, parts.leaf_cert, [parts.ask_cert, parts.ark_cert],
                           sev_snp.SnpPolicy(allow_debug=True), None, VECTOR_TIME)
    assert v.product == "Milan" and not v.simulated
    # the kernel protocol, in order, and the entry is gone afterwards
    ops = [op for op in fake.calls if op[0] != "read" or op[1] != "auxblob"]
    assert ops == [("mkdir", ops[0][1]), ("read", "provider"), ("read", "generation"),
                   ("write", "inblob"), ("read", "outblob"), ("read", "generation"),
                   ("rmdir", ops[0][1])]
    assert list((tmp_path / "report").iterdir()) == []


def test_missing_intermediates_fall_back_to_shipped(tmp_path: Path) -> None:
    table = encode_cert_table({VCEK_GUID: REAL_VCEK})
    provider = ConfigfsTsmProvider(
        tmp_path, io=FakeConfigfs(tmp_path, _real_report, table))
    parts = provider.get_evidence(_real_rd())
    # a v2 report names no product: it is read from the VCEK's productName
    assert parts.ask_cert == sev_snp.amd_intermediates("Milan").public_bytes(Encoding.DER)
    assert parts.ark_cert == sev_snp.amd_ark("Milan").public_bytes(Encoding.DER)
    sev_snp.verify_snp(parts.cpu_report, parts.leaf_cert, [parts.ask_cert, parts.ark_cert],
                       sev_snp.SnpPolicy(allow_debug=True), None, VECTOR_TIME)


def test_no_vcek_anywhere(tmp_path: Path) -> None:
    provider = ConfigfsTsmProvider(tmp_path, io=FakeConfigfs(tmp_path, _real_report, b""))
    with pytest.raises(TsmError, match=r"no VCEK.*kdsintf\.amd\.com/vcek/v1/Milan/"):
        provider.get_evidence(_real_rd())
    # ... unless configured (PEM is fine)
    pem = sev_snp.load_certificate(REAL_VCEK).public_bytes(Encoding.PEM)
    provider = ConfigfsTsmProvider(tmp_path, io=FakeConfigfs(tmp_path, _real_report, b""),
                                   leaf_cert=pem)
    assert provider.get_evidence(_real_rd()).leaf_cert == REAL_VCEK


def test_simulated_chip_behind_configfs(tmp_path: Path, sim: SimulatedIdentity,
                                        now: datetime) -> None:
    """A simulated chain served through the real-hardware path stays a simulated chain:
    labelled sev-snp it is checked against AMD's roots only and refused."""
    table = encode_cert_table({VCEK_GUID: sim.vcek.public_bytes(Encoding.DER),
                               ASK_GUID: sim.ask.public_bytes(Encoding.PEM),
                               ARK_GUID: sim.ark.public_bytes(Encoding.DER)})
    seen: list[bytes] = []

    def gpu(nonce: bytes) -> GpuEvidence:
        seen.append(nonce)
        return GpuEvidence(b"gpu report", (b"0\x00",))

    fake = FakeConfigfs(tmp_path, _sim_reporter(sim), table)
    provider = ConfigfsTsmProvider(tmp_path, io=fake, gpu=gpu, privlevel=0)
    bundle = collect_bundle(provider, key_config(), int(now.timestamp()) + 600, b"n")
    assert bundle.platform == "sev-snp"
    assert seen == [gpu_nonce_for(bundle.report_data)]
    assert ("write", "privlevel") in fake.calls
    assert bundle.evidence.ask_cert == sim.ask.public_bytes(Encoding.DER)  # PEM -> DER
    for trust in (TrustConfig(), sim.trust_config()):
        with pytest.raises(CertificateChainError, match="pinned"):
            verify_bundle(bundle, EvidencePolicy(), trust, now)


def test_provider_must_be_sev_guest(tmp_path: Path) -> None:
    fake = FakeConfigfs(tmp_path, _real_report, b"", provider="tdx_guest")
    with pytest.raises(TsmError, match="'tdx_guest'"):
        ConfigfsTsmProvider(tmp_path, io=fake).get_evidence(_real_rd())
    assert list(tmp_path.iterdir()) == []  # cleaned up on failure too


def test_generation_race_is_retried(tmp_path: Path) -> None:
    table = encode_cert_table({VCEK_GUID: REAL_VCEK})
    fake = FakeConfigfs(tmp_path, _real_report, table, races=2)
    provider = ConfigfsTsmProvider(tmp_path, io=fake, attempts=3)
    assert provider.get_evidence(_real_rd()).cpu_report == REAL_REPORT
    assert len([c for c in fake.calls if c[0] == "mkdir"]) == 3
    fake = FakeConfigfs(tmp_path, _real_report, table, races=5)
    with pytest.raises(TsmRaceError, match="3 attempts"):
        ConfigfsTsmProvider(tmp_path, io=fake, attempts=3).get_report(_real_rd())
    assert list(tmp_path.iterdir()) == []


def test_outblob_must_carry_our_report_data(tmp_path: Path) -> None:
    fake = FakeConfigfs(tmp_path, lambda _: REAL_REPORT, b"")
    with pytest.raises(TsmError, match="REPORT_DATA"):
        ConfigfsTsmProvider(tmp_path, io=fake).get_evidence(bytes(64))
    fake = FakeConfigfs(tmp_path, lambda _: b"short", b"")
    with pytest.raises(TsmError, match="not an SEV-SNP report"):
        ConfigfsTsmProvider(tmp_path, io=fake).get_evidence(bytes(64))


def test_missing_configfs(tmp_path: Path) -> None:
    provider = ConfigfsTsmProvider(tmp_path / "no" / "tsm")
    with pytest.raises(TsmError, match=r"6\.7"):
        provider.get_evidence(bytes(64))
    with pytest.raises(PlatformError):
        provider.get_evidence(bytes(64))
    with pytest.raises(ValueError, match="64 bytes"):
        provider.get_report(b"short")
    with pytest.raises(ValueError, match="attempts"):
        ConfigfsTsmProvider(tmp_path, attempts=0)


def test_unreadable_generation(tmp_path: Path) -> None:
    class Broken(FakeConfigfs):
        def read(self, path: Path) -> bytes:
            return b"many\n" if path.name == "generation" else super().read(path)

    with pytest.raises(TsmError, match="not a number"):
        ConfigfsTsmProvider(tmp_path, io=Broken(tmp_path, _real_report, b"")).get_report(
            _real_rd())


def test_cert_table_parsing() -> None:
    entries = {VCEK_GUID: b"v" * 10, VLEK_GUID: b"l" * 3, ASK_GUID: b"a", ARK_GUID: b"r" * 7,
               uuid.UUID(int=5): b"other"}
    blob = encode_cert_table(entries)
    assert parse_cert_table(blob) == entries
    assert parse_cert_table(b"") == {}
    assert parse_cert_table(bytes(4096)) == {}  # an all-zero page: no certificates
    # the mixed-endian GUID spelling some tools write is recognised too
    mixed = bytearray(blob)
    mixed[0:16] = VCEK_GUID.bytes_le
    assert parse_cert_table(bytes(mixed))[VCEK_GUID] == b"v" * 10
    # trailing padding after the certificates is fine (the host hands over whole pages)
    assert parse_cert_table(blob + bytes(100)) == entries


@pytest.mark.parametrize(("mutate", "match"), [
    # one entry whose certificate directly follows it: no terminator
    (lambda b: b[:16] + (24).to_bytes(4, "little") + b[20:24] + b"v" * 10, "no all-zero"),
    (lambda b: b[:16] + (10**6).to_bytes(4, "little") + b[20:], "does not fit"),
    (lambda b: b[:20] + bytes(4) + b[24:], "does not fit"),  # zero length
    (lambda b: b[:40] + (1).to_bytes(4, "little") + b[44:], "terminator entry"),
])
def test_cert_table_malformed(mutate: Callable[[bytes], bytes], match: str) -> None:
    blob = encode_cert_table({VCEK_GUID: b"v" * 10})
    with pytest.raises(TsmError, match=match):
        parse_cert_table(mutate(blob))


def test_cert_table_duplicates_and_size() -> None:
    one = encode_cert_table({VCEK_GUID: b"v"})
    entry = one[:24]
    dup = entry + entry + bytes(24) + b"v"
    # fix offsets: both entries point at the byte after the 3-entry header
    dup = (dup[:16] + (72).to_bytes(4, "little") + dup[20:40] + (72).to_bytes(4, "little")
           + dup[44:])
    with pytest.raises(TsmError, match="twice"):
        parse_cert_table(dup)
    many = b"".join(uuid.UUID(int=i + 1).bytes + bytes(4) + b"\x01" + bytes(3)
                    for i in range(70))
    with pytest.raises(TsmError, match="more than 64"):
        parse_cert_table(many + bytes(24))


def test_kds_url() -> None:
    r = sev_snp.parse_report(REAL_REPORT)
    url = kds_vcek_url(r)
    assert url.startswith("https://kdsintf.amd.com/vcek/v1/Milan/" + r.chip_id.hex() + "?")
    assert url.endswith("blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68")
