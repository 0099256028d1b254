"""The simulated platform: vendor-shaped PKI and byte-compatible SNP and Hopper evidence that
the real verifiers accept only under the simulated roots."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from privproc.attest import nvidia, sev_snp
from privproc.attest.errors import (
    CertificateChainError,
    CertificateValidityError,
    ChipMismatchError,
    NonceMismatchError,
    SignatureError,
)
from privproc.attest.evidence import gpu_nonce_for
from privproc.attest.sev_snp import SigningKey, SnpPolicy, parse_report, verify_snp
from privproc.attest.simulated import (
    DEFAULT_GPU_MEASUREMENTS,
    ORGANIZATION,
    ROOTS_FILE,
    STATE_FILE,
    SimulatedIdentity,
    SimulatedPlatform,
    SimulatedStateError,
    build_hopper_report,
    build_snp_report,
    warn_simulated,
)
from tests.attest.conftest import MEASUREMENT

REPORT_DATA = bytes(range(64))


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_chain_shape(sim: SimulatedIdentity) -> None:
    assert _cn(sim.ark) == "SIMULATED-ARK-Milan"
    assert _cn(sim.ask) == "SIMULATED-SEV-Milan"
    assert _cn(sim.vcek) == "SIMULATED-SEV-VCEK"
    for cert in (sim.ark, sim.ask, sim.vcek, sim.gpu_root, sim.gpu_leaf):
        org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        assert org == ORGANIZATION and "NOT A TEE" in ORGANIZATION
    for cert in (sim.ark, sim.ask, sim.vcek):  # AMD: RSASSA-PSS / SHA-384 everywhere
        assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
    assert isinstance(sim.ark.public_key(), rsa.RSAPublicKey)
    vcek_key = sim.vcek.public_key()
    assert isinstance(vcek_key, ec.EllipticCurvePublicKey)
    assert isinstance(vcek_key.curve, ec.SECP384R1)
    assert sev_snp.leaf_product(sim.vcek) == "Milan"
    chain = sev_snp.verify_chain(sim.vcek, sim.ask, sim.ark, sim.amd_roots,
                                 datetime.now(UTC))
    assert chain.simulated and chain.product == "Milan"
    assert chain.hw_id == sim.chip_id
    assert chain.tcb == sim.tcb


@pytest.mark.parametrize("version", [2, 3])
def test_report_parses_and_verifies(sim: SimulatedIdentity, now: datetime,
                                    version: int) -> None:
    platform = SimulatedPlatform(sim, MEASUREMENT, gpu=False, report_version=version)
    parts = platform.get_evidence(REPORT_DATA)
    assert parts.gpu is None
    assert len(parts.cpu_report) == sev_snp.REPORT_SIZE == 0x4A0
    r = parse_report(parts.cpu_report)
    assert r.version == version
    assert r.measurement == MEASUREMENT
    assert r.report_data == REPORT_DATA
    assert r.vmpl == 0 and not r.policy.debug_allowed and not r.policy.migrate_ma
    assert not r.has_migration_agent
    assert r.signing_key is SigningKey.VCEK and not r.mask_chip_key
    assert r.chip_id == sim.chip_id
    assert r.reported_tcb == r.current_tcb == r.committed_tcb == r.launch_tcb == sim.tcb
    assert r.product == ("Milan" if version == 3 else None)
    v = verify_snp(parts.cpu_report, parts.leaf_cert, [parts.ask_cert, parts.ark_cert],
                   SnpPolicy(expected_report_data=REPORT_DATA,
                             allowed_measurements=frozenset({MEASUREMENT})),
                   sim.amd_roots, now)
    assert v.simulated and v.product == "Milan" and v.trusted_tcb == sim.tcb
    # PEM chain input works as for AMD's
    verify_snp(parts.cpu_report, sim.vcek, sim.chain_pem(), None, sim.amd_roots, now)


def test_wrong_roots_refuse_the_report(sim: SimulatedIdentity, other_sim: SimulatedIdentity,
                                       now: datetime) -> None:
    parts = SimulatedPlatform(sim, MEASUREMENT, gpu=False).get_evidence(REPORT_DATA)
    chain = [parts.ask_cert, parts.ark_cert]
    with pytest.raises(CertificateChainError, match="pinned"):
        verify_snp(parts.cpu_report, parts.leaf_cert, chain, None, None, now)  # AMD's roots
    with pytest.raises(CertificateChainError, match="pinned"):
        verify_snp(parts.cpu_report, parts.leaf_cert, chain, None, other_sim.amd_roots, now)
    # the other platform's chain cannot vouch for this chip's report
    with pytest.raises(ChipMismatchError):
        verify_snp(parts.cpu_report, other_sim.vcek, other_sim.chain_pem(), None,
                   other_sim.amd_roots, now)
    with pytest.raises(CertificateValidityError):
        verify_snp(parts.cpu_report, parts.leaf_cert, chain, None, sim.amd_roots,
                   now + timedelta(days=3700))
    bad = bytearray(parts.cpu_report)
    bad[0x50] ^= 0xFF
    with pytest.raises(SignatureError):
        verify_snp(bytes(bad), parts.leaf_cert, chain, None, sim.amd_roots, now)


def test_hopper_evidence_verifies(sim: SimulatedIdentity, other_sim: SimulatedIdentity,
                                  now: datetime) -> None:
    parts = SimulatedPlatform(sim, MEASUREMENT).get_evidence(REPORT_DATA)
    assert parts.gpu is not None
    nonce = gpu_nonce_for(REPORT_DATA)
    chain = [sev_snp.load_certificate(d) for d in parts.gpu.cert_chain]
    reference = {i: {v} for i, v in DEFAULT_GPU_MEASUREMENTS.items()}
    v = nvidia.verify_hopper(parts.gpu.report, chain, nonce, reference, sim.nvidia_roots, now)
    assert v.report.measurements == DEFAULT_GPU_MEASUREMENTS
    assert v.report.nonce == nonce
    assert v.report.driver_version == "550.00-simulated"
    assert v.leaf == sim.gpu_leaf
    # leaf alone: the pinned root is appended
    nvidia.verify_hopper(parts.gpu.report, chain[:1], nonce, {}, sim.nvidia_roots, now)
    with pytest.raises(CertificateChainError, match="pinned"):
        nvidia.verify_hopper(parts.gpu.report, chain, nonce, {}, None, now)  # NVIDIA's root
    with pytest.raises(CertificateChainError, match="pinned"):
        nvidia.verify_hopper(parts.gpu.report, chain, nonce, {}, other_sim.nvidia_roots, now)
    with pytest.raises(NonceMismatchError):
        nvidia.verify_hopper(parts.gpu.report, chain, bytes(32), {}, sim.nvidia_roots, now)
    forged = build_hopper_report(other_sim.gpu_leaf_key, nonce=nonce,
                                 measurements=DEFAULT_GPU_MEASUREMENTS)
    with pytest.raises(SignatureError):
        nvidia.verify_hopper(forged, chain, nonce, {}, sim.nvidia_roots, now)


def test_builders_validate_inputs(sim: SimulatedIdentity) -> None:
    kw = {"report_data": REPORT_DATA, "measurement": MEASUREMENT, "chip_id": sim.chip_id,
          "tcb_raw": 0}
    with pytest.raises(ValueError, match="version"):
        build_snp_report(sim.vcek_key, version=5, **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="measurement"):
        build_snp_report(sim.vcek_key, **{**kw, "measurement": b"x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        build_hopper_report(sim.gpu_leaf_key, nonce=b"short", measurements={})
    with pytest.raises(ValueError, match=r"1\.\.254"):
        build_hopper_report(sim.gpu_leaf_key, nonce=bytes(32), measurements={0: b"x"})
    with pytest.raises(ValueError, match="48 bytes"):
        SimulatedPlatform(sim, b"short")
    with pytest.raises(ValueError, match="64 bytes"):
        SimulatedPlatform(sim, MEASUREMENT).get_evidence(b"short")
    with pytest.raises(ValueError, match="product"):
        SimulatedIdentity.generate(rsa_bits=1024, product="Rome")


def test_genoa_identity(now: datetime) -> None:
    g = SimulatedIdentity.generate(rsa_bits=1024, product="Genoa")
    parts = SimulatedPlatform(g, MEASUREMENT, gpu=False).get_evidence(REPORT_DATA)
    v = verify_snp(parts.cpu_report, parts.leaf_cert, [parts.ask_cert, parts.ark_cert], None,
                   g.amd_roots, now)
    assert v.product == "Genoa" == v.report.product


def test_state_dir(tmp_path: Path, now: datetime) -> None:
    state = tmp_path / "sim"
    first = SimulatedIdentity.load_or_create(state, rsa_bits=1024)
    assert (state / STATE_FILE).stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / ROOTS_FILE).read_bytes() == first.roots_pem()
    roots = x509.load_pem_x509_certificates((state / ROOTS_FILE).read_bytes())
    assert roots == [first.ark, first.gpu_root]
    again = SimulatedIdentity.load_or_create(state, rsa_bits=1024)
    assert again.chip_id == first.chip_id and again.ark == first.ark
    assert again.vcek_key.private_numbers() == first.vcek_key.private_numbers()
    parts = SimulatedPlatform(again, MEASUREMENT, gpu=False).get_evidence(REPORT_DATA)
    verify_snp(parts.cpu_report, parts.leaf_cert, [parts.ask_cert, parts.ark_cert], None,
               first.amd_roots, now)
    assert "private" not in (state / ROOTS_FILE).read_text().lower()

    os.chmod(state / STATE_FILE, 0o644)
    with pytest.raises(SimulatedStateError, match="readable by others"):
        SimulatedIdentity.load(state)
    os.chmod(state / STATE_FILE, 0o600)
    doc = json.loads((state / STATE_FILE).read_bytes())
    doc["keys"]["vcek"], doc["keys"]["gpu_leaf"] = doc["keys"]["gpu_leaf"], doc["keys"]["vcek"]
    with pytest.raises(SimulatedStateError, match="does not match"):
        SimulatedIdentity.from_json(json.dumps(doc).encode())
    doc["keys"]["vcek"] = doc["keys"]["ark"]
    with pytest.raises(SimulatedStateError, match="ECDSA"):
        SimulatedIdentity.from_json(json.dumps(doc).encode())
    with pytest.raises(SimulatedStateError, match="version"):
        SimulatedIdentity.from_json(json.dumps({**doc, "version": 9}).encode())
    with pytest.raises(SimulatedStateError, match="malformed"):
        SimulatedIdentity.from_json(b"{not json")
    with pytest.raises(SimulatedStateError, match="does not exist"):
        SimulatedIdentity.load(tmp_path / "nowhere")


def test_warning_is_loud() -> None:
    buf = io.StringIO()
    warn_simulated(buf)
    text = buf.getvalue()
    assert "WARNING" in text and "SIMULATED" in text and "NOTHING" in text
    assert text.count("\n") >= 4
