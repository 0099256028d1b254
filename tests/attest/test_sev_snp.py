"""AMD SEV-SNP verification against real reports/certificates, plus a synthetic AMD-style PKI
for the cases no real vector covers (VMPL > 0, Turin layout, CRLs, TCB disagreement)."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import warnings
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privproc.attest import sev_snp
from privproc.attest.errors import (
    AbiVersionTooLowError,
    AttestationError,
    CertificateChainError,
    CertificateValidityError,
    ChipMismatchError,
    DebugNotAllowedError,
    MeasurementNotAllowedError,
    MigrationAgentNotAllowedError,
    PlatformFlagError,
    PolicyError,
    ReportDataMismatchError,
    ReportFormatError,
    RevokedError,
    SignatureError,
    TcbError,
    TcbTooLowError,
    UnsupportedVersionError,
    VmplError,
)
from privproc.attest.sev_snp import (
    REPORT_SIZE,
    SIGNED_SIZE,
    ChainCache,
    SigningKey,
    SnpPolicy,
    TcbVersion,
    TrustRoots,
    check_policy,
    load_certificate,
    load_certificates,
    parse_report,
    verify_chain,
    verify_report_signature,
    verify_snp,
)

VEC = Path(__file__).resolve().parent.parent / "vectors" / "attest" / "amd"
GOOGLE = VEC / "google-go-sev-guest"
VIRTEE = VEC / "virtee-sev"
NOW = datetime(2025, 6, 1, tzinfo=UTC)  # inside every real certificate's validity


def _read(p: Path) -> bytes:
    return p.read_bytes()


@dataclasses.dataclass(frozen=True)
class RealCase:
    name: str
    report: bytes
    vcek: bytes
    chain: bytes
    policy: SnpPolicy


GOOGLE_CASE = RealCase("google-go-sev-guest", _read(GOOGLE / "attestation.bin"),
                       _read(GOOGLE / "vcek_milan.der"), _read(GOOGLE / "ask_ark_milan.pem"),
                       SnpPolicy(allow_debug=True))  # this real guest was launched with DEBUG
VIRTEE_CASE = RealCase("virtee-sev", _read(VIRTEE / "report_milan.bin"),
                       _read(VIRTEE / "vcek_milan.der"), _read(VIRTEE / "cert_chain_milan.pem"),
                       SnpPolicy())
CASES = [GOOGLE_CASE, VIRTEE_CASE]
CASE_IDS = [c.name for c in CASES]


def _pems(name: str) -> list[x509.Certificate]:
    return load_certificates(_read(GOOGLE / name))


def _cert(p: Path) -> x509.Certificate:
    return load_certificate(_read(p))


# --------------------------------------------------------------------------------------
# Real reports
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_real_report_verifies(case: RealCase) -> None:
    v = verify_snp(case.report, case.vcek, case.chain, case.policy, None, NOW)
    assert v.product == "Milan"
    assert v.signing_key is SigningKey.VCEK
    assert v.report.version == 2
    assert v.report.chip_id == _hw_id(case.vcek)
    # certified TCB == reported TCB (decoded with the Milan layout)
    assert v.trusted_tcb == v.report.reported_tcb


def _hw_id(der: bytes) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        ext = x509.load_der_x509_certificate(der).extensions.get_extension_for_oid(
            x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.4")).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    return ext.value


def test_real_report_fields_google() -> None:
    r = parse_report(GOOGLE_CASE.report)
    assert (r.version, r.guest_svn, r.vmpl, r.signature_algo) == (2, 0, 0, 1)
    assert r.policy.raw == 0x0B_0000
    assert r.policy.debug_allowed and r.policy.smt_allowed and not r.policy.migrate_ma
    assert (r.policy.abi_major, r.policy.abi_minor) == (0, 0)
    assert r.platform_info.smt_enabled and not r.platform_info.tsme_enabled
    assert r.signing_key is SigningKey.VCEK and not r.author_key_en and not r.mask_chip_key
    assert r.report_data == bytes([1, 2, 3, 4, 5]) + bytes(59)
    assert r.measurement.hex().startswith("b07af9620f3b839b")
    assert r.reported_tcb == TcbVersion(bootloader=2, tee=0, snp=5, microcode=0x44)
    assert r.current_tcb == r.reported_tcb == r.committed_tcb == r.launch_tcb
    assert (r.current_major, r.current_minor, r.current_build) == (1, 0x31, 3)
    assert (r.committed_major, r.committed_minor, r.committed_build) == (1, 0x31, 3)
    assert r.cpuid_fam_id is None and r.product is None  # v2: no CPUID fields
    assert r.launch_mit_vector is None and r.current_mit_vector is None
    assert r.report_id_ma == b"\xff" * 32 and not r.has_migration_agent
    assert len(r.signature_r) == len(r.signature_s) == 72
    assert r.signed_bytes == GOOGLE_CASE.report[:SIGNED_SIZE]


def test_real_report_fields_virtee() -> None:
    r = parse_report(VIRTEE_CASE.report)
    assert r.policy.raw == 0x03_0000 and not r.policy.debug_allowed
    assert r.reported_tcb == TcbVersion(bootloader=3, tee=0, snp=8, microcode=0x73)
    assert (r.current_major, r.current_minor) == (1, 0x34)


def test_real_turin_vcek_chain() -> None:
    ask, ark = load_certificates(_read(VIRTEE / "cert_chain_turin.pem"))
    chain = verify_chain(_read(VIRTEE / "vcek_turin.der"), ask, ark, None, NOW)
    assert chain.product == "Turin"
    assert chain.hw_id is not None and len(chain.hw_id) == 8  # Turin hwID is 8 bytes
    assert chain.tcb == TcbVersion(bootloader=0, tee=0, snp=0, microcode=9, fmc=0)
    assert chain.tcb.raw == 0x09 << 56


def test_shipped_roots_match_vectors() -> None:
    roots = sev_snp.amd_trust_roots()
    assert len(roots) == 3
    for name, product in (("ask_ark_milan.pem", "Milan"), ("ask_ark_genoa.pem", "Genoa"),
                          ("ask_ark_turin_vcek.pem", "Turin")):
        ask, ark = _pems(name)
        assert ark in roots
        assert sev_snp.amd_intermediates(product) == ask
    for name, product in (("ask_ark_milan_vlek.pem", "Milan"),
                          ("ask_ark_genoa_vlek.pem", "Genoa"),
                          ("ask_ark_turin_vlek.pem", "Turin")):
        asvk, ark = _pems(name)
        assert sev_snp.amd_intermediates(product, SigningKey.VLEK) == asvk
        # the real ASVKs chain to the shipped ARKs (RSA-PSS)
        sev_snp._verify_pss("ASVK", asvk, ark)


def test_vcek_serial_warning_is_suppressed() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cert = load_certificate(GOOGLE_CASE.vcek)
        verify_snp(GOOGLE_CASE.report, cert, GOOGLE_CASE.chain, GOOGLE_CASE.policy, None, NOW)


# --------------------------------------------------------------------------------------
# Systematic tampering: every byte of every real report
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_signed_byte_flip_is_refused(case: RealCase) -> None:
    cert = load_certificate(case.vcek)
    pub = cert.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    cache_ = ChainCache()
    chain = load_certificates(case.chain)
    verify_snp(case.report, cert, chain, case.policy, None, NOW, cache=cache_)
    base = bytearray(case.report)
    sig_failures = full_failures = 0
    for pos in range(SIGNED_SIZE):
        base[pos] ^= 0x01
        mutated = bytes(base)
        base[pos] ^= 0x01
        with pytest.raises(SignatureError):
            verify_report_signature(mutated, pub)
        sig_failures += 1
        with pytest.raises(AttestationError):
            verify_snp(mutated, cert, chain, case.policy, None, NOW, cache=cache_)
        full_failures += 1
    assert sig_failures == full_failures == SIGNED_SIZE == 672
    assert bytes(base) == case.report


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_signature_byte_flip_is_refused(case: RealCase) -> None:
    cert = load_certificate(case.vcek)
    chain = load_certificates(case.chain)
    cache_ = ChainCache()
    base = bytearray(case.report)
    for pos in range(SIGNED_SIZE, REPORT_SIZE):
        base[pos] ^= 0x01
        mutated = bytes(base)
        base[pos] ^= 0x01
        with pytest.raises((SignatureError, ReportFormatError)):
            verify_snp(mutated, cert, chain, case.policy, None, NOW, cache=cache_)


# --------------------------------------------------------------------------------------
# Wrong chip, swapped and broken chains, validity
# --------------------------------------------------------------------------------------


def test_report_with_other_chips_vcek_fails() -> None:
    with pytest.raises(ChipMismatchError, match="hwID"):
        verify_snp(GOOGLE_CASE.report, VIRTEE_CASE.vcek, VIRTEE_CASE.chain,
                   GOOGLE_CASE.policy, None, NOW)
    with pytest.raises(ChipMismatchError):
        verify_snp(VIRTEE_CASE.report, GOOGLE_CASE.vcek, GOOGLE_CASE.chain,
                   VIRTEE_CASE.policy, None, NOW)
    # and the raw signature check alone also refuses
    with pytest.raises(SignatureError):
        verify_report_signature(GOOGLE_CASE.report, load_certificate(VIRTEE_CASE.vcek))


def test_swapped_certificates_fail() -> None:
    vcek = load_certificate(GOOGLE_CASE.vcek)
    milan_ask, milan_ark = _pems("ask_ark_milan.pem")
    genoa_ask, genoa_ark = _pems("ask_ark_genoa.pem")
    milan_asvk, _ = _pems("ask_ark_milan_vlek.pem")
    turin_ask, turin_ark = _pems("ask_ark_turin_vcek.pem")
    bad = {
        "genoa ASK + milan VCEK + genoa ARK": (vcek, genoa_ask, genoa_ark),
        "genoa ASK + milan VCEK + milan ARK": (vcek, genoa_ask, milan_ark),
        "milan ASK under genoa ARK": (vcek, milan_ask, genoa_ark),
        "VCEK where ASK expected": (vcek, vcek, milan_ark),
        "ASK where VCEK expected": (milan_ask, milan_ask, milan_ark),
        "ARK where ASK expected": (vcek, milan_ark, milan_ark),
        "ASK where ARK expected": (vcek, milan_ask, milan_ask),
        "ASVK (VLEK chain) for a VCEK": (vcek, milan_asvk, milan_ark),
        "turin chain for milan VCEK": (vcek, turin_ask, turin_ark),
    }
    for label, (leaf, ask, ark) in bad.items():
        with pytest.raises(CertificateChainError):
            verify_chain(leaf, ask, ark, None, NOW)
            pytest.fail(label)


def test_wrong_root_is_refused() -> None:
    milan_ask, milan_ark = _pems("ask_ark_milan.pem")
    _, genoa_ark = _pems("ask_ark_genoa.pem")
    with pytest.raises(CertificateChainError, match="not one of the 1 pinned roots"):
        verify_chain(GOOGLE_CASE.vcek, milan_ask, milan_ark, [genoa_ark], NOW)
    # a look-alike self-signed "ARK-Milan" that is not pinned
    fake = FakeAmd("Milan")
    with pytest.raises(CertificateChainError, match="pinned"):
        verify_chain(GOOGLE_CASE.vcek, milan_ask, fake.ark, None, NOW)
    # via the top-level API with custom trust roots
    with pytest.raises(CertificateChainError):
        verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.vcek, GOOGLE_CASE.chain,
                   GOOGLE_CASE.policy, [genoa_ark], NOW)


def test_tampered_certificate_signature_fails() -> None:
    ask, ark = _pems("ask_ark_milan.pem")
    der = bytearray(ask.public_bytes(Encoding.DER))
    der[-5] ^= 0x01  # inside the signature BIT STRING
    with pytest.raises(CertificateChainError, match="does not verify"):
        verify_chain(GOOGLE_CASE.vcek, bytes(der), ark, None, NOW)
    vcek = bytearray(GOOGLE_CASE.vcek)
    vcek[-5] ^= 0x01
    with pytest.raises(CertificateChainError, match="does not verify"):
        verify_chain(bytes(vcek), ask, ark, None, NOW)


def test_chain_bundle_shape_is_checked() -> None:
    ask, ark = _pems("ask_ark_milan.pem")
    with pytest.raises(CertificateChainError, match="exactly 2"):
        verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.vcek, [ask], GOOGLE_CASE.policy, None, NOW)
    with pytest.raises(CertificateChainError, match="self-issued"):
        verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.vcek, [ark, ark], GOOGLE_CASE.policy,
                   None, NOW)
    # order does not matter
    verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.vcek, [ark, ask], GOOGLE_CASE.policy, None, NOW)
    with pytest.raises(CertificateChainError, match="cannot parse"):
        verify_snp(GOOGLE_CASE.report, b"\x30\x03garbage", GOOGLE_CASE.chain,
                   GOOGLE_CASE.policy, None, NOW)


def test_expired_and_not_yet_valid() -> None:
    vcek = load_certificate(GOOGLE_CASE.vcek)
    after = vcek.not_valid_after_utc + timedelta(seconds=1)
    before = vcek.not_valid_before_utc - timedelta(seconds=1)
    for when in (after, before):
        with pytest.raises(CertificateValidityError):
            verify_snp(GOOGLE_CASE.report, vcek, GOOGLE_CASE.chain, GOOGLE_CASE.policy,
                       None, when)
    assert issubclass(CertificateValidityError, CertificateChainError)
    # a cached chain is re-checked against each call's time
    cache_ = ChainCache()
    verify_snp(GOOGLE_CASE.report, vcek, GOOGLE_CASE.chain, GOOGLE_CASE.policy, None, NOW,
               cache=cache_)
    with pytest.raises(CertificateValidityError, match="expired"):
        verify_snp(GOOGLE_CASE.report, vcek, GOOGLE_CASE.chain, GOOGLE_CASE.policy, None,
                   after, cache=cache_)
    assert cache_.hits == 1
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_snp(GOOGLE_CASE.report, vcek, GOOGLE_CASE.chain, GOOGLE_CASE.policy, None,
                   datetime(2025, 1, 1))


def test_chain_cache_lru() -> None:
    cache_ = ChainCache(maxsize=1)
    for case in (GOOGLE_CASE, GOOGLE_CASE, VIRTEE_CASE, GOOGLE_CASE):
        verify_snp(case.report, case.vcek, case.chain, case.policy, None, NOW, cache=cache_)
    assert (cache_.hits, cache_.misses, len(cache_)) == (1, 3, 1)
    # a failing chain is not cached
    _, genoa_ark = _pems("ask_ark_genoa.pem")
    with pytest.raises(CertificateChainError):
        verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.vcek, GOOGLE_CASE.chain,
                   GOOGLE_CASE.policy, [genoa_ark], NOW, cache=cache_)
    with pytest.raises(CertificateChainError):
        verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.vcek, GOOGLE_CASE.chain,
                   GOOGLE_CASE.policy, [genoa_ark], NOW, cache=cache_)
    cache_.clear()
    assert len(cache_) == 0
    with pytest.raises(ValueError, match="maxsize"):
        ChainCache(0)


# --------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------


def test_debug_policy_refused_by_default() -> None:
    with pytest.raises(DebugNotAllowedError, match="debugging"):
        verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.vcek, GOOGLE_CASE.chain, SnpPolicy(),
                   None, NOW)


def test_low_tcb_refused() -> None:
    cases = {"bootloader": SnpPolicy(min_bootloader=4), "tee": SnpPolicy(min_tee=1),
             "snp": SnpPolicy(min_snp=9), "microcode": SnpPolicy(min_microcode=0x74)}
    for component, pol in cases.items():
        with pytest.raises(TcbTooLowError, match=component):
            verify_snp(VIRTEE_CASE.report, VIRTEE_CASE.vcek, VIRTEE_CASE.chain, pol, None, NOW)
    ok = SnpPolicy(min_bootloader=3, min_tee=0, min_snp=8, min_microcode=0x73)
    verify_snp(VIRTEE_CASE.report, VIRTEE_CASE.vcek, VIRTEE_CASE.chain, ok, None, NOW)


def test_report_data_and_measurement_policies() -> None:
    r = parse_report(VIRTEE_CASE.report)
    good = SnpPolicy(expected_report_data=r.report_data,
                     allowed_measurements=frozenset({r.measurement, bytes(48)}))
    verify_snp(VIRTEE_CASE.report, VIRTEE_CASE.vcek, VIRTEE_CASE.chain, good, None, NOW)
    with pytest.raises(ReportDataMismatchError, match="expected"):
        verify_snp(VIRTEE_CASE.report, VIRTEE_CASE.vcek, VIRTEE_CASE.chain,
                   SnpPolicy(expected_report_data=bytes(64)), None, NOW)
    with pytest.raises(MeasurementNotAllowedError, match=r.measurement.hex()):
        verify_snp(VIRTEE_CASE.report, VIRTEE_CASE.vcek, VIRTEE_CASE.chain,
                   SnpPolicy(allowed_measurements=frozenset({bytes(48)})), None, NOW)


def test_platform_flag_and_abi_policies() -> None:
    with pytest.raises(PlatformFlagError, match="SMT"):
        verify_snp(VIRTEE_CASE.report, VIRTEE_CASE.vcek, VIRTEE_CASE.chain,
                   SnpPolicy(require_no_smt=True), None, NOW)
    with pytest.raises(PlatformFlagError, match="single-socket"):
        verify_snp(VIRTEE_CASE.report, VIRTEE_CASE.vcek, VIRTEE_CASE.chain,
                   SnpPolicy(require_single_socket=True), None, NOW)
    with pytest.raises(AbiVersionTooLowError, match=r"1\.52 is below the required 1\.53"):
        verify_snp(VIRTEE_CASE.report, VIRTEE_CASE.vcek, VIRTEE_CASE.chain,
                   SnpPolicy(min_abi=(1, 53)), None, NOW)
    verify_snp(VIRTEE_CASE.report, VIRTEE_CASE.vcek, VIRTEE_CASE.chain,
               SnpPolicy(min_abi=(1, 52)), None, NOW)


def test_check_policy_on_modified_reports() -> None:
    r = parse_report(VIRTEE_CASE.report)
    tcb = r.reported_tcb
    check_policy(r, tcb, SnpPolicy())
    with pytest.raises(VmplError, match="VMPL 2, maximum allowed is 0"):
        check_policy(dataclasses.replace(r, vmpl=2), tcb, SnpPolicy())
    check_policy(dataclasses.replace(r, vmpl=2), tcb, SnpPolicy(max_vmpl=2))
    with pytest.raises(MigrationAgentNotAllowedError):
        check_policy(dataclasses.replace(r, report_id_ma=bytes(32)), tcb, SnpPolicy())
    check_policy(dataclasses.replace(r, report_id_ma=bytes(32)), tcb,
                 SnpPolicy(allow_migration_agent=True))
    # the policy uses the TCB it is given (the certified one), not the report's
    low = dataclasses.replace(tcb, snp=1)
    with pytest.raises(TcbTooLowError, match="snp SPL is 1, minimum is 8"):
        check_policy(r, low, SnpPolicy(min_snp=8))
    for err in (DebugNotAllowedError, VmplError, MeasurementNotAllowedError,
                ReportDataMismatchError, TcbTooLowError, PlatformFlagError):
        assert issubclass(err, PolicyError)
    assert issubclass(TcbTooLowError, TcbError)


def test_policy_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        SnpPolicy(expected_report_data=b"short")
    with pytest.raises(ValueError, match="48 bytes"):
        SnpPolicy(allowed_measurements=frozenset({b"x"}))
    with pytest.raises(ValueError, match="max_vmpl"):
        SnpPolicy(max_vmpl=4)


# --------------------------------------------------------------------------------------
# Parser: versions, lengths, MBZ
# --------------------------------------------------------------------------------------


def _with(report: bytes, offset: int, value: bytes) -> bytes:
    b = bytearray(report)
    b[offset:offset + len(value)] = value
    return bytes(b)


@pytest.mark.parametrize("version", [0, 1, 6, 7, 0xFFFF_FFFF])
def test_unsupported_versions_rejected(version: int) -> None:
    bad = _with(VIRTEE_CASE.report, 0, struct.pack("<I", version))
    with pytest.raises(UnsupportedVersionError, match=f"version {version} is not supported"):
        parse_report(bad)
    with pytest.raises(UnsupportedVersionError):
        verify_snp(bad, VIRTEE_CASE.vcek, VIRTEE_CASE.chain, VIRTEE_CASE.policy, None, NOW)


@pytest.mark.parametrize("version", [3, 4, 5])
def test_later_versions_parse(version: int) -> None:
    b = _with(VIRTEE_CASE.report, 0, struct.pack("<I", version))
    b = _with(b, 0x188, bytes([0x19, 0x01, 0x01]))  # Milan family/model/stepping
    if version == 5:
        b = _with(b, 0x1F8, struct.pack("<QQ", 0x5, 0x7))
    r = parse_report(b)
    assert (r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step) == (0x19, 0x01, 0x01)
    assert r.product == "Milan"
    if version == 5:
        assert (r.launch_mit_vector, r.current_mit_vector) == (5, 7)
    else:
        assert r.launch_mit_vector is None
        with pytest.raises(ReportFormatError, match="reserved bytes 0x1f8"):
            parse_report(_with(b, 0x1F8, b"\x01"))


def test_length_and_mbz_checks() -> None:
    rep = VIRTEE_CASE.report
    for n in (0, 0x2A0, REPORT_SIZE - 1, REPORT_SIZE + 1):
        with pytest.raises(ReportFormatError, match="must be 0x4a0 bytes"):
            parse_report(rep[:n] if n <= REPORT_SIZE else rep + b"\0")
    cases = {
        "reserved bits of the key-info": _with(rep, 0x4C, b"\x01"),
        "reserved bytes 0x188": _with(rep, 0x190, b"\x01"),  # v2: no CPUID bytes
        "reserved bytes 0x1eb": _with(rep, 0x1EB, b"\x01"),
        "reserved bytes 0x1f8": _with(rep, 0x290, b"\x01"),
        "bit 17 must be one": _with(rep, 0x08, struct.pack("<Q", 0x1_0000)),
        "63:26 must be zero": _with(rep, 0x08, struct.pack("<Q", 0x3_0000 | 1 << 40)),
        "SIGNING_KEY": _with(rep, 0x48, struct.pack("<I", 3 << 2)),
        "SIGNATURE_ALGO": _with(rep, 0x34, struct.pack("<I", 2)),
        "signature padding": _with(rep, 0x2A0 + 50, b"\x01"),
    }
    for msg, bad in cases.items():
        with pytest.raises(ReportFormatError, match=msg):
            parse_report(bad)
    with pytest.raises(ReportFormatError):
        parse_report("not bytes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Hypothesis fuzzing of the parser and the signature check
# --------------------------------------------------------------------------------------

_FUZZ = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.one_of(st.binary(max_size=2 * REPORT_SIZE),
                 st.binary(min_size=REPORT_SIZE, max_size=REPORT_SIZE)))
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        parse_report(data)


@_FUZZ
@given(st.sampled_from(CASES),
       st.lists(st.tuples(st.integers(0, REPORT_SIZE - 1), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.integers(-8, 8))
def test_fuzz_mutations(case: RealCase, edits: list[tuple[int, int]], resize: int) -> None:
    b = bytearray(case.report)
    for pos, val in edits:
        b[pos] = val
    if resize < 0:
        del b[resize:]
    else:
        b.extend(bytes(resize))
    data = bytes(b)
    changed = data != case.report
    with contextlib.suppress(AttestationError):
        parse_report(data)
    cert = _CERTS[case.name]
    try:
        verify_snp(data, cert, case.chain, case.policy, None, NOW, cache=_FUZZ_CACHE)
    except AttestationError:
        assert changed
    else:
        assert not changed


_CERTS = {c.name: load_certificate(c.vcek) for c in CASES}
_FUZZ_CACHE = ChainCache()


# --------------------------------------------------------------------------------------
# Synthetic AMD-style PKI (RSA-PSS, SEV extensions) for cases without real vectors
# --------------------------------------------------------------------------------------

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_T0 = datetime(2024, 1, 1, tzinfo=UTC)
_T1 = datetime(2030, 1, 1, tzinfo=UTC)


@cache
def _rsa(label: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@cache
def _ec(label: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _amd_name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _ext(suffix: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.3704.1." + suffix),
                                      value)


class FakeAmd:
    """ARK -> ASK/ASVK -> VCEK/VLEK with AMD's names, PSS parameters and extensions."""

    def __init__(self, product: str, *, vlek: bool = False, tag: str = "") -> None:
        self.product = product
        self.ark_key = _rsa(f"ark-{product}{tag}")
        self.ask_key = _rsa(f"ask-{product}{tag}")
        self.ark = self._ca(f"ARK-{product}", self.ark_key, None, serial=1)
        ask_cn = f"SEV-VLEK-{product}" if vlek else f"SEV-{product}"
        self.ask = self._ca(ask_cn, self.ask_key, (self.ark, self.ark_key), serial=2)
        self.vlek = vlek
        self.roots = TrustRoots([self.ark])

    def _ca(self, cn: str, key: rsa.RSAPrivateKey,
            issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None,
            serial: int) -> x509.Certificate:
        name = _amd_name(cn)
        b = (x509.CertificateBuilder().subject_name(name)
             .issuer_name(issuer[0].subject if issuer else name)
             .public_key(key.public_key()).serial_number(serial)
             .not_valid_before(_T0).not_valid_after(_T1)
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
        return b.sign(issuer[1] if issuer else key, hashes.SHA384(), rsa_padding=_PSS)

    def leaf(self, spls: dict[int, int], hw_id: bytes | None,
             key: ec.EllipticCurvePrivateKey, *, cn: str | None = None,
             product_name: str | None = None) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(
                _amd_name(cn or ("SEV-VLEK" if self.vlek else "SEV-VCEK")))
             .issuer_name(self.ask.subject).public_key(key.public_key()).serial_number(7)
             .not_valid_before(_T0).not_valid_after(_T1)
             .add_extension(_ext("1", b"\x02\x01\x00"), critical=False))
        pname = (product_name or self.product).encode()
        b = b.add_extension(_ext("2", bytes([0x16, len(pname)]) + pname), critical=False)
        for n, v in spls.items():
            enc = bytes([0x02, 0x01, v]) if v < 0x80 else bytes([0x02, 0x02, 0x00, v])
            b = b.add_extension(_ext(f"3.{n}", enc), critical=False)
        if hw_id is not None:
            b = b.add_extension(_ext("4", hw_id), critical=False)
        return b.sign(self.ask_key, hashes.SHA384(), rsa_padding=_PSS)

    def crl(self, revoked_serials: list[int], *, signer: rsa.RSAPrivateKey | None = None,
            next_update: datetime = _T1) -> bytes:
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.ark.subject)
             .last_update(_T0).next_update(next_update))
        for s in revoked_serials:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(s).revocation_date(_T0).build())
        return b.sign(signer or self.ark_key, hashes.SHA384(),
                      rsa_padding=_PSS).public_bytes(Encoding.DER)


def make_report(key: ec.EllipticCurvePrivateKey, *, version: int = 2, vmpl: int = 0,
                tcb_raw: int = 0, chip_id: bytes = bytes(64), cpuid: bytes | None = None,
                policy: int = 0x3_0000, key_info: int = 0) -> bytes:
    b = bytearray(REPORT_SIZE)
    struct.pack_into("<IIQ", b, 0, version, 0, policy)
    struct.pack_into("<II", b, 0x30, vmpl, 1)
    for off in (0x38, 0x180, 0x1E0, 0x1F0):
        struct.pack_into("<Q", b, off, tcb_raw)
    struct.pack_into("<I", b, 0x48, key_info)
    b[0x160:0x180] = b"\xff" * 32
    b[0x1A0:0x1E0] = chip_id
    b[0x1E8:0x1EB] = bytes([5, 0x37, 1])
    if cpuid is not None:
        b[0x188:0x18B] = cpuid
    der = key.sign(bytes(b[:SIGNED_SIZE]), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    b[0x2A0:0x2A0 + 72] = r.to_bytes(72, "little")
    b[0x2E8:0x2E8 + 72] = s.to_bytes(72, "little")
    return bytes(b)


MILAN_SPLS = {1: 3, 2: 0, 3: 8, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0xD3}
MILAN_TCB_RAW = int.from_bytes(bytes([3, 0, 0, 0, 0, 0, 8, 0xD3]), "little")
CHIP = bytes(range(64))


@pytest.fixture(scope="module")
def milan() -> FakeAmd:
    return FakeAmd("Milan")


def test_synthetic_chain_verifies(milan: FakeAmd) -> None:
    key = _ec("vcek")
    vcek = milan.leaf(MILAN_SPLS, CHIP, key)
    rep = make_report(key, tcb_raw=MILAN_TCB_RAW, chip_id=CHIP)
    v = verify_snp(rep, vcek, [milan.ask, milan.ark], SnpPolicy(), milan.roots, NOW)
    assert v.trusted_tcb == TcbVersion(bootloader=3, tee=0, snp=8, microcode=0xD3)
    # not pinned by default: the shipped roots are AMD's
    with pytest.raises(CertificateChainError, match="pinned"):
        verify_snp(rep, vcek, [milan.ask, milan.ark], SnpPolicy(), None, NOW)


def test_synthetic_vmpl_above_max(milan: FakeAmd) -> None:
    key = _ec("vcek")
    vcek = milan.leaf(MILAN_SPLS, CHIP, key)
    rep = make_report(key, vmpl=2, tcb_raw=MILAN_TCB_RAW, chip_id=CHIP)
    with pytest.raises(VmplError, match="VMPL 2"):
        verify_snp(rep, vcek, [milan.ask, milan.ark], SnpPolicy(), milan.roots, NOW)
    verify_snp(rep, vcek, [milan.ask, milan.ark], SnpPolicy(max_vmpl=3), milan.roots, NOW)


def test_synthetic_tcb_disagreement(milan: FakeAmd) -> None:
    key = _ec("vcek")
    vcek = milan.leaf(MILAN_SPLS, CHIP, key)
    higher = int.from_bytes(bytes([3, 0, 0, 0, 0, 0, 9, 0xD3]), "little")  # claims snp=9
    rep = make_report(key, tcb_raw=higher, chip_id=CHIP)
    with pytest.raises(TcbError, match="differs from the TCB certified"):
        verify_snp(rep, vcek, [milan.ask, milan.ark], SnpPolicy(), milan.roots, NOW)
    # a VCEK lacking a required SPL extension is refused
    partial = {k: v for k, v in MILAN_SPLS.items() if k != 8}
    with pytest.raises(CertificateChainError, match="ucodeSPL"):
        verify_chain(milan.leaf(partial, CHIP, key), milan.ask, milan.ark, milan.roots, NOW)


def test_synthetic_flags(milan: FakeAmd) -> None:
    key = _ec("vcek")
    vcek = milan.leaf(MILAN_SPLS, CHIP, key)
    chain = [milan.ask, milan.ark]
    masked = make_report(key, tcb_raw=MILAN_TCB_RAW, chip_id=CHIP, key_info=0b10)
    with pytest.raises(SignatureError, match="MASK_CHIP_KEY"):
        verify_snp(masked, vcek, chain, SnpPolicy(), milan.roots, NOW)
    vlek_flag = make_report(key, tcb_raw=MILAN_TCB_RAW, chip_id=CHIP, key_info=1 << 2)
    with pytest.raises(SignatureError, match="VLEK"):
        verify_snp(vlek_flag, vcek, chain, SnpPolicy(), milan.roots, NOW)
    genoa_cpuid = make_report(key, version=3, tcb_raw=MILAN_TCB_RAW, chip_id=CHIP,
                              cpuid=bytes([0x19, 0x11, 0x01]))
    with pytest.raises(ChipMismatchError, match="Genoa"):
        verify_snp(genoa_cpuid, vcek, chain, SnpPolicy(), milan.roots, NOW)
    v1 = make_report(key, version=1, tcb_raw=MILAN_TCB_RAW, chip_id=CHIP)
    with pytest.raises(UnsupportedVersionError):
        verify_snp(v1, vcek, chain, SnpPolicy(), milan.roots, NOW)
    with pytest.raises(CertificateChainError, match="productName"):
        verify_chain(milan.leaf(MILAN_SPLS, CHIP, key, product_name="Genoa"), milan.ask,
                     milan.ark, milan.roots, NOW)
    with pytest.raises(CertificateChainError, match="leaf CN"):
        verify_chain(milan.leaf(MILAN_SPLS, CHIP, key, cn="SEV-VLEK"), milan.ask,
                     milan.ark, milan.roots, NOW)


def test_synthetic_vlek_chain() -> None:
    fake = FakeAmd("Genoa", vlek=True)
    key = _ec("vlek")
    vlek = fake.leaf(MILAN_SPLS, None, key)
    rep = make_report(key, version=3, tcb_raw=MILAN_TCB_RAW, chip_id=bytes(64),
                      cpuid=bytes([0x19, 0x11, 0x01]), key_info=1 << 2)
    v = verify_snp(rep, vlek, [fake.ask, fake.ark], SnpPolicy(), fake.roots, NOW)
    assert v.signing_key is SigningKey.VLEK and v.product == "Genoa"


def test_synthetic_turin_layout() -> None:
    fake = FakeAmd("Turin")
    key = _ec("turin")
    spls = {9: 1, 1: 2, 2: 3, 3: 4, 5: 0, 6: 0, 7: 0, 8: 0x50}
    hw = bytes.fromhex("1e550a8ee5cf9f4d")
    vcek = fake.leaf(spls, hw, key)
    raw = int.from_bytes(bytes([1, 2, 3, 4, 0, 0, 0, 0x50]), "little")
    rep = make_report(key, version=3, tcb_raw=raw, chip_id=hw + bytes(56),
                      cpuid=bytes([0x1A, 0x02, 0x01]))
    r = parse_report(rep)
    assert r.product == "Turin"
    assert r.reported_tcb == TcbVersion(bootloader=2, tee=3, snp=4, microcode=0x50, fmc=1)
    v = verify_snp(rep, vcek, [fake.ask, fake.ark], SnpPolicy(min_fmc=1), fake.roots, NOW)
    assert v.trusted_tcb.fmc == 1
    with pytest.raises(TcbTooLowError, match="fmc"):
        verify_snp(rep, vcek, [fake.ask, fake.ark], SnpPolicy(min_fmc=2), fake.roots, NOW)
    # the same u64 read with the Milan layout would be different
    assert TcbVersion.from_u64(raw, turin=False) != r.reported_tcb
    other_chip = make_report(key, version=3, tcb_raw=raw, chip_id=bytes(64),
                             cpuid=bytes([0x1A, 0x02, 0x01]))
    with pytest.raises(ChipMismatchError):
        verify_snp(other_chip, vcek, [fake.ask, fake.ark], SnpPolicy(), fake.roots, NOW)


def test_synthetic_crl(milan: FakeAmd) -> None:
    key = _ec("vcek")
    vcek = milan.leaf(MILAN_SPLS, CHIP, key)
    rep = make_report(key, tcb_raw=MILAN_TCB_RAW, chip_id=CHIP)
    chain = [milan.ask, milan.ark]
    verify_snp(rep, vcek, chain, SnpPolicy(), milan.roots, NOW, crl=milan.crl([99]))
    with pytest.raises(RevokedError, match="serial 0x2"):
        verify_snp(rep, vcek, chain, SnpPolicy(), milan.roots, NOW, crl=milan.crl([2]))
    with pytest.raises(RevokedError, match="leaf"):
        verify_snp(rep, vcek, chain, SnpPolicy(), milan.roots, NOW, crl=milan.crl([7]))
    with pytest.raises(CertificateChainError, match="CRL signature"):
        verify_snp(rep, vcek, chain, SnpPolicy(), milan.roots, NOW,
                   crl=milan.crl([], signer=_rsa("rogue")))
    with pytest.raises(CertificateValidityError, match="stale"):
        verify_snp(rep, vcek, chain, SnpPolicy(), milan.roots, NOW,
                   crl=milan.crl([], next_update=NOW - timedelta(days=1)))
    with pytest.raises(CertificateChainError, match="cannot parse CRL"):
        verify_snp(rep, vcek, chain, SnpPolicy(), milan.roots, NOW, crl=b"junk")
    # a CRL not signed by the real ARK is refused for the real chain; the real VCEK's
    # serial (0) is read without the cryptography warning escaping
    ask, ark = _pems("ask_ark_milan.pem")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CertificateChainError, match="CRL signature"):
            verify_chain(GOOGLE_CASE.vcek, ask, ark, None, NOW, crl=milan.crl([1]))
        assert sev_snp._serial(load_certificate(GOOGLE_CASE.vcek)) == 0


def test_der_extraction_is_strict() -> None:
    pem = GOOGLE_CASE.chain.decode()
    ask, ark = _pems("ask_ark_milan.pem")
    assert sev_snp.der_blobs(pem) == [ask.public_bytes(Encoding.DER),
                                      ark.public_bytes(Encoding.DER)]
    broken = {
        "BEGIN markers": pem.replace("-----END CERTIFICATE-----", "-----END CERT-----", 1),
        "invalid base64": pem.replace("\n-----END CERTIFICATE-----", "A\n-----END "
                                      "CERTIFICATE-----", 1),
    }
    for msg, bad in broken.items():
        for cache_ in (None, ChainCache()):
            with pytest.raises(CertificateChainError, match=msg):
                verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.vcek, bad, GOOGLE_CASE.policy,
                           None, NOW, cache=cache_)
    with pytest.raises(CertificateChainError, match="exactly one leaf"):
        verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.chain, GOOGLE_CASE.chain,
                   GOOGLE_CASE.policy, None, NOW)


def test_cache_never_vouches_for_a_different_chain() -> None:
    cache_ = ChainCache()
    verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.vcek, GOOGLE_CASE.chain, GOOGLE_CASE.policy,
               None, NOW, cache=cache_)
    genoa_ask, _ = _pems("ask_ark_genoa.pem")
    _, milan_ark = _pems("ask_ark_milan.pem")
    for _ in range(2):
        with pytest.raises(CertificateChainError):
            verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.vcek, [genoa_ask, milan_ark],
                       GOOGLE_CASE.policy, None, NOW, cache=cache_)
    # other trust roots -> other key: the cached Milan result is not reused
    _, genoa_ark = _pems("ask_ark_genoa.pem")
    with pytest.raises(CertificateChainError, match="pinned"):
        verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.vcek, GOOGLE_CASE.chain,
                   GOOGLE_CASE.policy, [genoa_ark], NOW, cache=cache_)
    # the same chain given as certificate objects hits the DER-keyed entry
    verify_snp(GOOGLE_CASE.report, GOOGLE_CASE.vcek, _pems("ask_ark_milan.pem"),
               GOOGLE_CASE.policy, None, NOW, cache=cache_)
    assert cache_.hits == 1
