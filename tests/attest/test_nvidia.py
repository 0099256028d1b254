"""NVIDIA Hopper evidence: NVIDIA's own sample report and certificate chain (nvtrust)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privproc.attest import nvidia
from privproc.attest.errors import (
    AttestationError,
    CertificateChainError,
    CertificateValidityError,
    GpuMeasurementError,
    NonceMismatchError,
    ReportFormatError,
    SignatureError,
    UnsupportedVersionError,
)
from privproc.attest.nvidia import (
    SIGNATURE_LEN,
    check_measurements,
    check_nonce,
    parse_hopper_report,
    verify_hopper,
    verify_hopper_signature,
    verify_nvidia_chain,
)

VEC = Path(__file__).resolve().parent.parent / "vectors" / "attest" / "nvidia"
REPORT_HEX = (VEC / "hopperAttestationReport.txt").read_text()
REPORT = bytes.fromhex(REPORT_HEX.strip())
CHAIN_PEM = (VEC / "hopperCertChain.txt").read_bytes()
CHAIN = x509.load_pem_x509_certificates(CHAIN_PEM)
NOW = datetime(2025, 6, 1, tzinfo=UTC)

# Read straight from the hex text: the verifier's nonce sits in the request (bytes 4..35).
NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
# Measurement index 2 of the sample (block "02 01 3300 01 3000 <48 bytes>").
MEAS_2 = bytes.fromhex("8048dfd18fe229bf16eb9d30cca0f11a24dafe6eb731de1462984645a0b189b7"
                       "7c4e4e17de727a5e19e3d07de51da338")
MEAS_3 = bytes.fromhex("164f445c3e282ca8e4ab07c2179b8e02c8e3a2ceb83f9fae8dddaee70aa57207"
                       "d87792d1481b46c02f9dba6e1fe1e77e")
REFERENCE: dict[int, set[bytes]] = {1: {bytes(48)}, 2: {MEAS_2, b"\x01" * 48}, 3: {MEAS_3}}


def test_sample_verifies() -> None:
    v = verify_hopper(REPORT_HEX, CHAIN_PEM, NONCE, REFERENCE, now=NOW)
    assert v.leaf == CHAIN[0]
    assert v.report.raw == REPORT
    # raw bytes and a list of certificates work too
    verify_hopper(REPORT, CHAIN, NONCE, REFERENCE, now=NOW)


def test_sample_layout() -> None:
    r = parse_hopper_report(REPORT_HEX)
    assert len(REPORT) == 4117
    assert (r.spdm_version, r.request_param1, r.request_param2, r.slot_id) == (0x11, 1, 0xFF, 0)
    assert r.nonce == NONCE
    assert r.responder_nonce != r.nonce  # the GPU adds its own nonce to the response
    assert len(r.blocks) == 64
    assert [b.index for b in r.blocks] == list(range(1, 65))
    assert all(len(b.value) == 48 and b.value_type == 1 for b in r.blocks)
    assert r.measurements[2] == MEAS_2
    assert len(r.opaque_data) == 422
    assert r.driver_version == "550.90.07"
    assert r.vbios_version == "96.00.9F.00.01"
    counts = r.measurement_counts
    assert counts is not None and len(counts) == 64
    assert len(r.signature) == SIGNATURE_LEN
    assert r.signed_bytes + r.signature == REPORT
    assert nvidia.OPAQUE_FIELD_NAMES[3] == "driver_version"


def test_every_signed_byte_tamper_fails() -> None:
    leaf = CHAIN[0]
    pub = leaf.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    base = bytearray(REPORT)
    signed_len = len(REPORT) - SIGNATURE_LEN
    for pos in range(signed_len):
        base[pos] ^= 0x01
        mutated = bytes(base)
        base[pos] ^= 0x01
        with pytest.raises(AttestationError):
            verify_hopper_signature(parse_hopper_report(mutated), pub)
    assert bytes(base) == REPORT


def test_signature_tamper_fails() -> None:
    for pos in (len(REPORT) - SIGNATURE_LEN, len(REPORT) - 49, len(REPORT) - 1):
        b = bytearray(REPORT)
        b[pos] ^= 0x80
        with pytest.raises(SignatureError):
            verify_hopper(bytes(b), CHAIN, NONCE, REFERENCE, now=NOW)
    zero = REPORT[:-SIGNATURE_LEN] + bytes(SIGNATURE_LEN)
    with pytest.raises(SignatureError, match="zero"):
        verify_hopper(zero, CHAIN, NONCE, REFERENCE, now=NOW)


def test_wrong_nonce_fails() -> None:
    r = parse_hopper_report(REPORT)
    with pytest.raises(NonceMismatchError, match=NONCE.hex()):
        verify_hopper(REPORT, CHAIN, bytes(32), REFERENCE, now=NOW)
    with pytest.raises(NonceMismatchError):
        check_nonce(r, r.responder_nonce)  # the responder's nonce is not the challenge
    with pytest.raises(ValueError, match="32 bytes"):
        check_nonce(r, b"short")


def test_wrong_reference_measurement_fails() -> None:
    r = parse_hopper_report(REPORT)
    with pytest.raises(GpuMeasurementError, match="index 2"):
        verify_hopper(REPORT, CHAIN, NONCE, {2: {bytes(48)}}, now=NOW)
    with pytest.raises(GpuMeasurementError, match="index 65 is missing"):
        check_measurements(r, {65: {bytes(48)}})
    check_measurements(r, {})
    check_measurements(r, {i: [v] for i, v in r.measurements.items()})


def test_wrong_leaf_fails() -> None:
    r = parse_hopper_report(REPORT)
    with pytest.raises(SignatureError):
        verify_hopper_signature(r, CHAIN[1])


def test_chain_checks() -> None:
    assert verify_nvidia_chain(CHAIN_PEM, now=NOW) == CHAIN[0]
    # root omitted from the bundle: the pinned root completes it
    assert verify_nvidia_chain(CHAIN[:-1], now=NOW) == CHAIN[0]
    with pytest.raises(CertificateChainError, match="not issued by"):
        verify_nvidia_chain([CHAIN[0], *CHAIN[2:]], now=NOW)  # intermediate removed
    with pytest.raises(CertificateChainError):
        verify_nvidia_chain([CHAIN[1], CHAIN[0], *CHAIN[2:]], now=NOW)  # swapped
    with pytest.raises(CertificateValidityError, match="verification time"):
        verify_nvidia_chain(CHAIN, now=datetime(2019, 1, 1, tzinfo=UTC))
    with pytest.raises(CertificateChainError, match="empty"):
        verify_nvidia_chain([], now=NOW)
    with pytest.raises(CertificateChainError, match="cannot parse"):
        verify_nvidia_chain(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def _self_signed(cn: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "NVIDIA")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA384()))


def test_wrong_root_fails() -> None:
    other = _self_signed("NVIDIA Device Identity CA")  # look-alike, same name
    with pytest.raises(CertificateChainError, match="pinned"):
        verify_hopper(REPORT, CHAIN, NONCE, REFERENCE, trust_roots=[other], now=NOW)
    with pytest.raises(CertificateChainError, match="pinned"):
        verify_hopper(REPORT, [*CHAIN[:-1], other], NONCE, REFERENCE, now=NOW)
    assert nvidia.nvidia_trust_roots() == (CHAIN[-1],)


def test_format_errors() -> None:
    with pytest.raises(UnsupportedVersionError, match="0x12"):
        parse_hopper_report(b"\x12" + REPORT[1:])
    with pytest.raises(ReportFormatError, match="request code"):
        parse_hopper_report(REPORT[:1] + b"\xe1" + REPORT[2:])
    with pytest.raises(ReportFormatError, match="signature requested"):
        parse_hopper_report(REPORT[:2] + b"\x00" + REPORT[3:])
    with pytest.raises(ReportFormatError, match="96-byte signature"):
        parse_hopper_report(REPORT + b"\x00")
    with pytest.raises(ReportFormatError, match="truncated"):
        parse_hopper_report(REPORT[:100])
    with pytest.raises(ReportFormatError, match="not valid hex"):
        parse_hopper_report("zz" + REPORT_HEX)
    with pytest.raises(ReportFormatError):
        parse_hopper_report(12345)  # type: ignore[arg-type]


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.one_of(st.binary(max_size=5000), st.text(max_size=200)))
def test_fuzz_random_input(data: bytes | str) -> None:
    with contextlib.suppress(AttestationError):
        parse_hopper_report(data)


@_FUZZ
@given(st.lists(st.tuples(st.integers(0, len(REPORT) - 1), st.integers(0, 255)),
                min_size=1, max_size=6),
       st.integers(-200, 8))
def test_fuzz_mutations(edits: list[tuple[int, int]], resize: int) -> None:
    b = bytearray(REPORT)
    for pos, val in edits:
        b[pos] = val
    if resize < 0:
        del b[resize:]
    else:
        b.extend(bytes(resize))
    data = bytes(b)
    try:
        r = parse_hopper_report(data)
        verify_hopper_signature(r, CHAIN[0])
    except AttestationError:
        assert data != REPORT
    else:
        assert data == REPORT
