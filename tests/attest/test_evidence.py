"""Evidence bundles: canonical encoding, REPORT_DATA binding and full verification."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privproc.attest import evidence, sev_snp
from privproc.attest.errors import (
    AttestationError,
    CertificateChainError,
    EvidenceFormatError,
    GpuEvidenceMissingError,
    GpuMeasurementError,
    KeyExpiredError,
    KeyLifetimeError,
    MeasurementNotAllowedError,
    NonceMismatchError,
    PlatformMismatchError,
    ReportDataMismatchError,
    RevokedError,
    SignatureError,
    SimulatedPlatformNotAllowedError,
    TcbTooLowError,
    UnsupportedVersionError,
)
from privproc.attest.evidence import (
    EvidenceBundle,
    EvidenceParts,
    EvidencePolicy,
    GpuEvidence,
    TrustConfig,
    collect_bundle,
    decode_bundle,
    encode_bundle,
    gpu_nonce_for,
    policy_from_mapping,
    report_data_for,
    verify_bundle,
)
from privproc.attest.sev_snp import ChainCache, SnpPolicy
from privproc.attest.simulated import (
    DEFAULT_GPU_MEASUREMENTS,
    SimulatedIdentity,
    SimulatedPlatform,
    build_snp_report,
)
from tests.attest.conftest import MEASUREMENT, key_config

GOOGLE = Path(__file__).resolve().parent.parent / "vectors" / "attest" / "amd" / \
    "google-go-sev-guest"
HOUR = 3600


def _bundle(sim: SimulatedIdentity, now: datetime, *, nonce: bytes | None = b"client nonce",
            gpu: bool = True, kc: bytes | None = None, ttl: int = HOUR) -> EvidenceBundle:
    platform = SimulatedPlatform(sim, MEASUREMENT, gpu=gpu)
    return collect_bundle(platform, kc or key_config(), int(now.timestamp()) + ttl, nonce)


# --------------------------------------------------------------------------------------
# Binding and encoding
# --------------------------------------------------------------------------------------


def test_report_data_known_answer() -> None:
    kc = key_config()
    want = hashlib.sha512(b"privproc-evidence-v1\x00" + struct.pack("!I", len(kc)) + kc
                          + struct.pack("!Q", 1234) + b"\x01" + struct.pack("!I", 3) + b"abc")
    assert report_data_for(kc, 1234, b"abc") == want.digest()
    no_nonce = hashlib.sha512(b"privproc-evidence-v1\x00" + struct.pack("!I", len(kc)) + kc
                              + struct.pack("!Q", 1234) + b"\x00")
    assert report_data_for(kc, 1234, None) == no_nonce.digest()
    assert len(report_data_for(kc, 1234, None)) == 64
    # every input matters, and "no nonce" differs from any nonce
    variants = {report_data_for(kc, 1234, None), report_data_for(kc, 1235, None),
                report_data_for(key_config(fill=1), 1234, None),
                report_data_for(kc, 1234, b"\x00"), report_data_for(kc, 1234, b"abc")}
    assert len(variants) == 5
    assert gpu_nonce_for(bytes(64)) == hashlib.sha256(
        b"privproc-gpu-nonce-v1\x00" + bytes(64)).digest()
    with pytest.raises(ValueError, match="64 bits"):
        report_data_for(kc, -1, None)


@pytest.mark.parametrize(("nonce", "gpu"), [(None, False), (b"n", False), (None, True),
                                            (b"x" * 64, True)])
def test_round_trip(sim: SimulatedIdentity, now: datetime, nonce: bytes | None,
                    gpu: bool) -> None:
    b = _bundle(sim, now, nonce=nonce, gpu=gpu)
    raw = encode_bundle(b)
    assert raw.startswith(b"PPEV\x01")
    assert b.encode() == raw
    back = decode_bundle(raw)
    assert back == b
    assert encode_bundle(back) == raw
    assert evidence.evidence_digest(b) == evidence.evidence_digest(raw) == \
        hashlib.sha256(raw).digest()
    assert back.report_data == sev_snp.parse_report(b.evidence.cpu_report).report_data
    assert back.ohttp_key_config.encode() == key_config()


def test_strict_decoding(sim: SimulatedIdentity, now: datetime) -> None:
    raw = encode_bundle(_bundle(sim, now))
    with pytest.raises(EvidenceFormatError, match="trailing"):
        decode_bundle(raw + b"\x00")
    with pytest.raises(EvidenceFormatError, match="magic"):
        decode_bundle(b"XPEV" + raw[4:])
    with pytest.raises(UnsupportedVersionError, match="version 2"):
        decode_bundle(raw[:4] + b"\x02" + raw[5:])
    with pytest.raises(EvidenceFormatError, match="flag"):
        decode_bundle(raw[:5] + bytes([raw[5] | 0x80]) + raw[6:])
    with pytest.raises(EvidenceFormatError, match="platform code"):
        decode_bundle(raw[:6] + b"\x09" + raw[7:])
    with pytest.raises(EvidenceFormatError, match="maximum"):
        decode_bundle(raw + bytes(evidence.MAX_BUNDLE_SIZE))
    with pytest.raises(EvidenceFormatError):
        decode_bundle("PPEV")  # type: ignore[arg-type]
    # every proper prefix is refused
    for n in range(len(raw)):
        with pytest.raises(EvidenceFormatError):
            decode_bundle(raw[:n])


def test_field_validation(sim: SimulatedIdentity, now: datetime) -> None:
    b = _bundle(sim, now)
    ev = b.evidence
    with pytest.raises(EvidenceFormatError, match="0x4a0"):
        dataclasses.replace(ev, cpu_report=ev.cpu_report[:-1])
    with pytest.raises(EvidenceFormatError, match=r"ask_cert must be a DER.*nothing"):
        dataclasses.replace(ev, ask_cert=b"")
    with pytest.raises(EvidenceFormatError, match="platform"):
        dataclasses.replace(b, platform="tdx")
    with pytest.raises(EvidenceFormatError, match="nonce"):
        dataclasses.replace(b, nonce=b"")
    with pytest.raises(EvidenceFormatError, match="nonce"):
        dataclasses.replace(b, nonce=bytes(65))
    with pytest.raises(EvidenceFormatError, match="expiry"):
        dataclasses.replace(b, expiry=0)
    with pytest.raises(EvidenceFormatError, match="key configuration"):
        dataclasses.replace(b, key_config=key_config()[:-1])
    with pytest.raises(EvidenceFormatError, match=r"1\.\.8"):
        GpuEvidence(b"r", ())
    with pytest.raises(EvidenceFormatError, match="empty"):
        GpuEvidence(b"", (b"0\x00",))
    with pytest.raises(EvidenceFormatError, match="GPU certificate 0 must be a DER"):
        GpuEvidence(b"r", (b"",))
    pem = sim.ark.public_bytes(Encoding.PEM)
    with pytest.raises(EvidenceFormatError, match="ark_cert must be a DER"):
        dataclasses.replace(ev, ark_cert=pem)
    # a report field of the wrong length inside an otherwise well-formed encoding
    raw = bytearray(encode_bundle(b))
    kc_len = struct.unpack_from("!I", raw, 15)[0]
    off = 15 + 4 + kc_len
    assert struct.unpack_from("!I", raw, off)[0] == 0x4A0
    short = bytes(raw[:off]) + struct.pack("!I", 0x49F) + bytes(raw[off + 4:off + 4 + 0x49F])
    with pytest.raises(EvidenceFormatError):
        decode_bundle(short + bytes(raw[off + 4 + 0x4A0:]))


_FUZZ = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_decode_random(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        decode_bundle(b"PPEV\x01" + data)
    with contextlib.suppress(AttestationError):
        decode_bundle(data)


_CACHE = ChainCache()


@_FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                      max_size=4),
       cut=st.integers(-4, 4))
def test_fuzz_mutated_bundles(sim: SimulatedIdentity, now: datetime,
                              edits: list[tuple[int, int]], cut: int) -> None:
    original = encode_bundle(_bundle(sim, now, nonce=b"n"))
    b = bytearray(original)
    for pos, val in edits:
        b[pos % len(b)] = val
    data = bytes(b[:cut]) if cut < 0 else bytes(b) + bytes(cut)
    try:
        back = decode_bundle(data)
    except AttestationError:
        pass
    else:
        assert encode_bundle(back) == data  # canonical: one encoding per value
    try:
        verify_bundle(data, EvidencePolicy(), sim.trust_config(), now, cache=_CACHE)
    except AttestationError:
        return
    assert data == original


# --------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------


def test_simulated_bundle_verifies(sim: SimulatedIdentity, now: datetime) -> None:
    b = _bundle(sim, now)
    raw = encode_bundle(b)
    claims = verify_bundle(raw, EvidencePolicy(require_gpu=True), sim.trust_config(), now,
                           expected_nonce=b"client nonce")
    assert claims.platform == "simulated" and claims.simulated
    assert claims.product == "Milan"
    assert claims.measurement == MEASUREMENT
    assert claims.key_config == key_config()
    assert claims.ohttp_key_config.key_id == 1
    assert claims.expiry == b.expiry and claims.nonce == b"client nonce"
    assert claims.report_data == b.report_data
    assert claims.tcb == sim.tcb
    assert claims.signing_key is sev_snp.SigningKey.VCEK
    assert claims.gpu_measurements == DEFAULT_GPU_MEASUREMENTS
    assert claims.evidence_digest == hashlib.sha256(raw).digest()
    assert claims.report.chip_id == sim.chip_id
    # the decoded object verifies to the same claims
    assert verify_bundle(b, EvidencePolicy(), sim.trust_config(), now) == claims
    with pytest.raises(ValueError, match="timezone"):
        verify_bundle(b, EvidencePolicy(), sim.trust_config(), now.replace(tzinfo=None))


def test_simulated_refused_without_explicit_trust(sim: SimulatedIdentity,
                                                  now: datetime) -> None:
    raw = encode_bundle(_bundle(sim, now))
    with pytest.raises(SimulatedPlatformNotAllowedError, match="SIMULATED"):
        verify_bundle(raw, EvidencePolicy(), TrustConfig(), now)


def test_vendor_roots_do_not_accept_the_simulated_chain(sim: SimulatedIdentity,
                                                        now: datetime) -> None:
    b = _bundle(sim, now)
    ev = b.evidence
    with pytest.raises(CertificateChainError, match="pinned"):
        sev_snp.verify_snp(ev.cpu_report, ev.leaf_cert, [ev.ask_cert, ev.ark_cert], None,
                           None, now)
    # relabelled as real SEV-SNP: checked against AMD's roots only, even when simulated
    # roots are allowed
    relabelled = dataclasses.replace(b, platform="sev-snp")
    for trust in (TrustConfig(), sim.trust_config()):
        with pytest.raises(CertificateChainError, match="pinned"):
            verify_bundle(relabelled, EvidencePolicy(), trust, now)
    # a simulated root smuggled into the vendor slot is still recognised as simulated
    smuggled = TrustConfig(amd_roots=sim.amd_roots)
    with pytest.raises(PlatformMismatchError, match="simulated"):
        verify_bundle(relabelled, EvidencePolicy(), smuggled, now)


def test_real_report_labelled_simulated_is_refused(sim: SimulatedIdentity) -> None:
    report = (GOOGLE / "attestation.bin").read_bytes()
    vcek = (GOOGLE / "vcek_milan.der").read_bytes()
    ask, ark = sev_snp.der_blobs((GOOGLE / "ask_ark_milan.pem").read_bytes())
    parsed = sev_snp.parse_report(report)
    assert parsed.product is None  # v2 report
    at = datetime(2025, 6, 1, tzinfo=UTC)
    b = EvidenceBundle("simulated", EvidenceParts(report, vcek, ask, ark), key_config(),
                       int(at.timestamp()) + HOUR)
    with pytest.raises(CertificateChainError, match="pinned"):
        verify_bundle(b, EvidencePolicy(), sim.trust_config(), at)
    # as sev-snp the chain is fine, but its REPORT_DATA binds no privproc key
    real = dataclasses.replace(b, platform="sev-snp")
    with pytest.raises(ReportDataMismatchError):
        verify_bundle(real, EvidencePolicy(snp=SnpPolicy(allow_debug=True)), TrustConfig(), at)


def test_wrong_simulated_root(sim: SimulatedIdentity, other_sim: SimulatedIdentity,
                              now: datetime) -> None:
    b = _bundle(sim, now)
    with pytest.raises(CertificateChainError, match="pinned"):
        verify_bundle(b, EvidencePolicy(), other_sim.trust_config(), now)
    # right AMD-side root but the other platform's GPU root
    mixed = TrustConfig.with_simulated_roots([sim.ark, other_sim.gpu_root])
    with pytest.raises(CertificateChainError, match="pinned"):
        verify_bundle(b, EvidencePolicy(), mixed, now)


def test_report_binding_other_key_is_refused(sim: SimulatedIdentity, now: datetime) -> None:
    b = _bundle(sim, now)
    trust = sim.trust_config()
    swapped = dataclasses.replace(b, key_config=key_config(fill=0x43))
    with pytest.raises(ReportDataMismatchError, match="REPORT_DATA"):
        verify_bundle(swapped, EvidencePolicy(), trust, now)
    later = dataclasses.replace(b, expiry=b.expiry + 1)
    with pytest.raises(ReportDataMismatchError):
        verify_bundle(later, EvidencePolicy(), trust, now)
    no_nonce = dataclasses.replace(b, nonce=None)
    with pytest.raises(ReportDataMismatchError):
        verify_bundle(no_nonce, EvidencePolicy(), trust, now)
    # a policy REPORT_DATA that disagrees with the binding
    pol = EvidencePolicy(snp=SnpPolicy(expected_report_data=bytes(64)))
    with pytest.raises(ReportDataMismatchError, match="policy expects"):
        verify_bundle(b, pol, trust, now)
    verify_bundle(b, EvidencePolicy(snp=SnpPolicy(expected_report_data=b.report_data)),
                  trust, now)


def test_key_expiry(sim: SimulatedIdentity, now: datetime) -> None:
    b = _bundle(sim, now, ttl=HOUR)
    trust = sim.trust_config()
    verify_bundle(b, EvidencePolicy(), trust, now + timedelta(seconds=HOUR - 1))
    with pytest.raises(KeyExpiredError, match="expired"):
        verify_bundle(b, EvidencePolicy(), trust, now + timedelta(seconds=HOUR))
    long = _bundle(sim, now, ttl=30 * 24 * HOUR)
    with pytest.raises(KeyLifetimeError, match="at most"):
        verify_bundle(long, EvidencePolicy(), trust, now)
    verify_bundle(long, EvidencePolicy(max_key_validity=None), trust, now)
    with pytest.raises(ValueError, match="positive"):
        EvidencePolicy(max_key_validity=0)


def test_nonce(sim: SimulatedIdentity, now: datetime) -> None:
    trust = sim.trust_config()
    b = _bundle(sim, now, nonce=b"fresh")
    verify_bundle(b, EvidencePolicy(), trust, now, expected_nonce=b"fresh")
    with pytest.raises(NonceMismatchError, match="expected"):
        verify_bundle(b, EvidencePolicy(), trust, now, expected_nonce=b"other")
    without = _bundle(sim, now, nonce=None)
    with pytest.raises(NonceMismatchError, match="none"):
        verify_bundle(without, EvidencePolicy(), trust, now, expected_nonce=b"fresh")
    verify_bundle(without, EvidencePolicy(), trust, now)


def test_measurement_and_platform_policy(sim: SimulatedIdentity, now: datetime) -> None:
    trust = sim.trust_config()
    b = _bundle(sim, now)
    deny = EvidencePolicy(snp=SnpPolicy(allowed_measurements=frozenset({bytes(48)})))
    with pytest.raises(MeasurementNotAllowedError, match=MEASUREMENT.hex()):
        verify_bundle(b, deny, trust, now)
    allow = EvidencePolicy(snp=SnpPolicy(allowed_measurements=frozenset({MEASUREMENT})))
    verify_bundle(b, allow, trust, now)
    tcb = sim.tcb
    with pytest.raises(TcbTooLowError):
        verify_bundle(b, EvidencePolicy(snp=SnpPolicy(min_snp=tcb.snp + 1)), trust, now)


def test_tampered_report_is_refused(sim: SimulatedIdentity, now: datetime) -> None:
    b = _bundle(sim, now)
    rep = bytearray(b.evidence.cpu_report)
    rep[0x90] ^= 1  # measurement
    bad = dataclasses.replace(b, evidence=dataclasses.replace(b.evidence, cpu_report=bytes(rep)))
    with pytest.raises(SignatureError):
        verify_bundle(bad, EvidencePolicy(), sim.trust_config(), now)
    # a report signed by the right key over other REPORT_DATA
    forged = build_snp_report(sim.vcek_key, report_data=bytes(64), measurement=MEASUREMENT,
                              chip_id=sim.chip_id, tcb_raw=sim.tcb.raw)
    other = dataclasses.replace(b, evidence=dataclasses.replace(b.evidence, cpu_report=forged))
    with pytest.raises(ReportDataMismatchError):
        verify_bundle(other, EvidencePolicy(), sim.trust_config(), now)


def test_gpu_checks(sim: SimulatedIdentity, other_sim: SimulatedIdentity,
                    now: datetime) -> None:
    trust = sim.trust_config()
    no_gpu = _bundle(sim, now, gpu=False)
    verify_bundle(no_gpu, EvidencePolicy(), trust, now)
    with pytest.raises(GpuEvidenceMissingError):
        verify_bundle(no_gpu, EvidencePolicy(require_gpu=True), trust, now)
    b = _bundle(sim, now)
    good_ref = {i: {v} for i, v in DEFAULT_GPU_MEASUREMENTS.items()}
    verify_bundle(b, EvidencePolicy(gpu_reference=good_ref), trust, now)
    with pytest.raises(GpuMeasurementError, match="index 2"):
        verify_bundle(b, EvidencePolicy(gpu_reference={2: {bytes(48)}}), trust, now)
    with pytest.raises(NonceMismatchError):
        verify_bundle(b, EvidencePolicy(), trust, now, gpu_nonce=bytes(32))
    # GPU evidence from another (simulated) GPU
    foreign = SimulatedPlatform(other_sim, MEASUREMENT).get_evidence(b.report_data).gpu
    assert foreign is not None
    swapped = dataclasses.replace(b, evidence=dataclasses.replace(b.evidence, gpu=foreign))
    with pytest.raises(CertificateChainError, match="pinned"):
        verify_bundle(swapped, EvidencePolicy(), trust, now)
    # GPU evidence signed for other REPORT_DATA (replayed from another key)
    stale = SimulatedPlatform(sim, MEASUREMENT).get_evidence(bytes(64)).gpu
    replayed = dataclasses.replace(b, evidence=dataclasses.replace(b.evidence, gpu=stale))
    with pytest.raises(NonceMismatchError):
        verify_bundle(replayed, EvidencePolicy(), trust, now)
    # a GPU certificate that is not DER
    assert b.evidence.gpu is not None
    junk = GpuEvidence(b.evidence.gpu.report, (b"\x30\x00",))
    broken = dataclasses.replace(b, evidence=dataclasses.replace(b.evidence, gpu=junk))
    with pytest.raises(CertificateChainError, match="GPU certificate 0"):
        verify_bundle(broken, EvidencePolicy(), trust, now)


def test_trust_config_validation(sim: SimulatedIdentity) -> None:
    with pytest.raises(ValueError, match="allow_simulated"):
        TrustConfig(simulated_amd_roots=sim.amd_roots)
    with pytest.raises(ValueError, match="simulated ARK"):
        TrustConfig(allow_simulated=True)
    with pytest.raises(ValueError, match="SIMULATED-ARK"):
        TrustConfig(allow_simulated=True,
                    simulated_amd_roots=sev_snp.TrustRoots([sev_snp.amd_ark("Milan")]))
    cfg = TrustConfig.with_simulated_roots(sim.roots)
    assert cfg.allow_simulated
    assert list(cfg.simulated_amd_roots) == [sim.ark]
    assert cfg.simulated_nvidia_roots == (sim.gpu_root,)
    assert len(cfg.amd_roots) == 3  # AMD's, untouched
    assert not TrustConfig().allow_simulated


def test_policy_from_mapping() -> None:
    pol = policy_from_mapping({
        "allow_debug": False, "max_vmpl": 1,
        "min_tcb": {"bootloader": 2, "snp": 5, "microcode": 68},
        "allowed_measurements": [MEASUREMENT.hex()],
        "require_gpu": True, "gpu_reference": {"2": ["00" * 48]},
        "min_abi": "1.51", "max_key_validity": 0,
    })
    assert pol.snp.max_vmpl == 1 and pol.snp.min_snp == 5 and pol.snp.min_microcode == 68
    assert pol.snp.allowed_measurements == frozenset({MEASUREMENT})
    assert pol.snp.min_abi == (1, 51)
    assert pol.require_gpu and pol.gpu_reference == {2: frozenset({bytes(48)})}
    assert pol.max_key_validity is None
    assert policy_from_mapping({}) == EvidencePolicy()
    for bad, msg in (({"allow_debugs": True}, "unknown policy key"),
                     ({"max_vmpl": "0"}, "max_vmpl must be int"),
                     ({"allow_debug": 1}, "must be bool"),
                     ({"min_tcb": {"sn": 1}}, "unknown min_tcb"),
                     ({"allowed_measurements": ["zz"]}, "not valid hex"),
                     ({"allowed_measurements": ["00"]}, "48 bytes"),
                     ({"report_data": "00"}, "64 bytes"),
                     ({"min_abi": "1"}, "MAJOR.MINOR"),
                     ({"gpu_reference": {"x": []}}, "not an integer")):
        with pytest.raises(ValueError, match=msg):
            policy_from_mapping(bad)


def _crl(sim: SimulatedIdentity, now: datetime, revoked: list[int],
         issuer: x509.Name | None = None) -> bytes:
    from cryptography.hazmat.primitives import hashes as _hashes
    from cryptography.hazmat.primitives.asymmetric import padding as _padding

    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer or sim.ark.subject)
               .last_update(now - timedelta(days=1)).next_update(now + timedelta(days=30)))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(now - timedelta(days=1)).build())
    pss = _padding.PSS(mgf=_padding.MGF1(_hashes.SHA384()), salt_length=48)
    return builder.sign(sim.ark_key, _hashes.SHA384(), rsa_padding=pss).public_bytes(
        Encoding.DER)


def test_crls_from_the_trust_file_check_the_chain(sim: SimulatedIdentity,
                                                  other_sim: SimulatedIdentity,
                                                  now: datetime) -> None:
    raw = encode_bundle(_bundle(sim, now))
    trust = sim.trust_config()
    claims = verify_bundle(raw, EvidencePolicy(), trust, now, crls=[_crl(sim, now, [99])])
    assert claims.measurement == MEASUREMENT
    with pytest.raises(RevokedError):
        verify_bundle(raw, EvidencePolicy(), trust, now,
                      crls=[_crl(sim, now, [sim.vcek.serial_number])])
    # CRL checking on, but no CRL from this chain's ARK: refused, never skipped.
    other_ark = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "SIMULATED-ARK-Genoa")])
    with pytest.raises(CertificateChainError, match="no configured CRL is issued by"):
        verify_bundle(raw, EvidencePolicy(), trust, now,
                      crls=[_crl(other_sim, now, [], issuer=other_ark)])
    with pytest.raises(CertificateChainError, match="CRL signature"):  # a forged CRL
        verify_bundle(raw, EvidencePolicy(), trust, now, crls=[_crl(other_sim, now, [])])
    with pytest.raises(CertificateChainError, match="cannot parse a configured CRL"):
        verify_bundle(raw, EvidencePolicy(), trust, now, crls=[b"junk"])
