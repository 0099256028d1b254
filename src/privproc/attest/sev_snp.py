"""AMD SEV-SNP attestation: report parsing, VCEK/VLEK chain, signature and policy checks.

Layout follows the SEV-SNP Firmware ABI specification (ATTESTATION_REPORT structure,
report versions 2 to 5) and AMD's VCEK/VLEK certificate profile (extensions under
1.3.6.1.4.1.3704.1). All multi-byte report fields are little-endian.

Trust flows one way: ARK (pinned) -> ASK/ASVK -> VCEK/VLEK -> report signature. The TCB
that policy is evaluated against is the one *certified* in the VCEK/VLEK, never the
report's self-declared one (the two must agree, or :class:`TcbError` is raised).

A chain whose three common names all carry the ``SIMULATED-`` prefix (``SIMULATED-ARK-Milan``
-> ``SIMULATED-SEV-Milan`` -> ``SIMULATED-SEV-VCEK``, made by
:mod:`privproc.attest.simulated`) is checked exactly like AMD's, and is reported with
``simulated=True``. Its root is never among the shipped AMD roots: it verifies only when a
caller pins it explicitly.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import struct
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from functools import cache
from importlib import resources
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from privproc.attest.certcheck import CERT_PARSE_ERRORS, check_unsigned_parts, parsed_certificate
from privproc.attest.errors import (
    AbiVersionTooLowError,
    CertificateChainError,
    CertificateValidityError,
    ChipMismatchError,
    DebugNotAllowedError,
    MeasurementNotAllowedError,
    MigrationAgentNotAllowedError,
    PlatformFlagError,
    ReportDataMismatchError,
    ReportFormatError,
    RevokedError,
    SignatureError,
    TcbError,
    TcbTooLowError,
    UnsupportedVersionError,
    VmplError,
)

__all__ = [
    "REPORT_SIZE",
    "SIGNED_SIZE",
    "SIMULATED_PREFIX",
    "SUPPORTED_VERSIONS",
    "AmdChain",
    "ChainCache",
    "GuestPolicy",
    "PlatformInfo",
    "SigningKey",
    "SnpPolicy",
    "SnpReport",
    "TcbVersion",
    "TrustRoots",
    "VerifiedSnp",
    "amd_ark",
    "amd_intermediates",
    "amd_trust_roots",
    "certified_tcb",
    "check_policy",
    "der_blobs",
    "load_certificate",
    "leaf_product",
    "load_certificates",
    "parse_report",
    "verify_chain",
    "verify_report_signature",
    "verify_snp",
]

REPORT_SIZE: Final = 0x4A0
SIGNED_SIZE: Final = 0x2A0  # the signature covers bytes 0x000..0x29F
SUPPORTED_VERSIONS: Final = frozenset({2, 3, 4, 5})
SIG_ALGO_ECDSA_P384_SHA384: Final = 1
_SIG_COMPONENT_LEN: Final = 72  # R and S are each zero-extended to 72 bytes, little-endian
_P384_SCALAR_LEN: Final = 48
PRODUCTS: Final = ("Milan", "Genoa", "Turin")
SIMULATED_PREFIX: Final = "SIMULATED-"  # common-name prefix of the simulated platform's chain

_OID_PREFIX: Final = "1.3.6.1.4.1.3704.1."
OID_STRUCT_VERSION: Final = x509.ObjectIdentifier(_OID_PREFIX + "1")
OID_PRODUCT_NAME: Final = x509.ObjectIdentifier(_OID_PREFIX + "2")
OID_BL_SPL: Final = x509.ObjectIdentifier(_OID_PREFIX + "3.1")
OID_TEE_SPL: Final = x509.ObjectIdentifier(_OID_PREFIX + "3.2")
OID_SNP_SPL: Final = x509.ObjectIdentifier(_OID_PREFIX + "3.3")
OID_UCODE_SPL: Final = x509.ObjectIdentifier(_OID_PREFIX + "3.8")
OID_FMC_SPL: Final = x509.ObjectIdentifier(_OID_PREFIX + "3.9")
OID_HW_ID: Final = x509.ObjectIdentifier(_OID_PREFIX + "4")
OID_CSP_ID: Final = x509.ObjectIdentifier(_OID_PREFIX + "5")

_SHA384: Final = hashes.SHA384()
_SHA256: Final = hashes.SHA256()
# AMD signs ARK/ASK/ASVK/VCEK/VLEK (and the KDS CRL) with RSASSA-PSS, SHA-384, MGF1-SHA-384,
# salt length 48. A fixed salt length makes OpenSSL reject any other salt length.
_AMD_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_ECDSA_SHA384: Final = ec.ECDSA(hashes.SHA384())
_SERIAL_WARNING: Final = "Parsed a serial number which wasn't positive"

# Reserved ranges of the signed body that the ABI defines as zero, per report version.
# (start, end) half-open byte offsets.
_RESERVED_COMMON: Final = ((0x04C, 0x050), (0x1EB, 0x1EC), (0x1EF, 0x1F0))
_RESERVED_BY_VERSION: Final[dict[int, tuple[tuple[int, int], ...]]] = {
    2: ((0x188, 0x1A0), (0x1F8, 0x2A0)),
    3: ((0x18B, 0x1A0), (0x1F8, 0x2A0)),
    4: ((0x18B, 0x1A0), (0x1F8, 0x2A0)),
    5: ((0x18B, 0x1A0), (0x208, 0x2A0)),
}
_POLICY_MBO_BIT17: Final = 1 << 17
_POLICY_MBZ_MASK: Final = ~((1 << 26) - 1) & 0xFFFF_FFFF_FFFF_FFFF
_KEY_INFO_MBZ_MASK: Final = 0xFFFF_FFE0


# ---------------------------------------------------------------------------------------
# Report structure
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TcbVersion:
    """A TCB_VERSION: security patch levels of the firmware components.

    Milan/Genoa layout (bytes of the little-endian u64): 0 boot loader, 1 TEE, 2-5 reserved,
    6 SNP, 7 microcode. Turin layout: 0 FMC, 1 boot loader, 2 TEE, 3 SNP, 4-6 reserved,
    7 microcode. ``fmc`` is None for the pre-Turin layout. ``raw`` is the u64 as found (it
    keeps the reserved bytes) and is not part of equality.
    """

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None
    raw: int = field(default=0, compare=False)

    @classmethod
    def from_u64(cls, raw: int, *, turin: bool) -> TcbVersion:
        b = raw.to_bytes(8, "little")
        if turin:
            return cls(bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7], fmc=b[0], raw=raw)
        return cls(bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7], raw=raw)

    @property
    def is_turin_layout(self) -> bool:
        return self.fmc is not None

    def components(self) -> dict[str, int]:
        out = {"bootloader": self.bootloader, "tee": self.tee, "snp": self.snp,
               "microcode": self.microcode}
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.components().items())


@dataclass(frozen=True, slots=True)
class GuestPolicy:
    """The guest policy (u64 at 0x08), fixed at launch and enforced by the firmware."""

    raw: int
    abi_minor: int
    abi_major: int
    smt_allowed: bool
    migrate_ma: bool
    debug_allowed: bool
    single_socket: bool
    cxl_allowed: bool
    mem_aes_256_xts: bool
    rapl_disabled: bool
    ciphertext_hiding: bool
    page_swap_disabled: bool

    @classmethod
    def from_u64(cls, raw: int) -> GuestPolicy:
        def bit(n: int) -> bool:
            return bool(raw >> n & 1)

        return cls(raw=raw, abi_minor=raw & 0xFF, abi_major=raw >> 8 & 0xFF,
                   smt_allowed=bit(16), migrate_ma=bit(18), debug_allowed=bit(19),
                   single_socket=bit(20), cxl_allowed=bit(21), mem_aes_256_xts=bit(22),
                   rapl_disabled=bit(23), ciphertext_hiding=bit(24), page_swap_disabled=bit(25))


@dataclass(frozen=True, slots=True)
class PlatformInfo:
    """PLATFORM_INFO (u64 at 0x40): platform state when the report was generated."""

    raw: int
    smt_enabled: bool
    tsme_enabled: bool
    ecc_enabled: bool
    rapl_disabled: bool
    ciphertext_hiding_enabled: bool
    alias_check_complete: bool
    sev_tio_enabled: bool

    @classmethod
    def from_u64(cls, raw: int) -> PlatformInfo:
        def bit(n: int) -> bool:
            return bool(raw >> n & 1)

        return cls(raw=raw, smt_enabled=bit(0), tsme_enabled=bit(1), ecc_enabled=bit(2),
                   rapl_disabled=bit(3), ciphertext_hiding_enabled=bit(4),
                   alias_check_complete=bit(5), sev_tio_enabled=bit(7))


class SigningKey(IntEnum):
    """SIGNING_KEY field (bits 4:2 of the u32 at 0x48)."""

    VCEK = 0
    VLEK = 1
    NONE = 7


@dataclass(frozen=True, slots=True)
class SnpReport:
    """A parsed ATTESTATION_REPORT. ``raw`` holds the 0x4A0 input bytes."""

    version: int
    guest_svn: int
    policy: GuestPolicy
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: PlatformInfo
    author_key_en: bool
    mask_chip_key: bool
    signing_key: SigningKey
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb: TcbVersion
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: TcbVersion
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: bytes
    signature_s: bytes
    raw: bytes = field(repr=False)

    @property
    def signed_bytes(self) -> bytes:
        return self.raw[:SIGNED_SIZE]

    @property
    def product(self) -> str | None:
        """Product named by the CPUID fields (v3+), None when the report does not say."""
        return _product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)

    @property
    def has_migration_agent(self) -> bool:
        return self.report_id_ma != b"\xff" * 32


def _product_from_cpuid(family: int | None, model: int | None) -> str | None:
    if family is None or model is None:
        return None
    if family == 0x19:
        if model <= 0x0F:
            return "Milan"
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
            return "Genoa"
    if family == 0x1A and model <= 0x1F:
        return "Turin"
    return None


def _is_turin_family(family: int | None) -> bool:
    return family is not None and family >= 0x1A


_HEAD: Final = struct.Struct("<IIQ16s16sIIQQII")  # 0x000..0x04F
_U64: Final = struct.Struct("<Q")


def parse_report(data: bytes) -> SnpReport:
    """Parse a 0x4A0-byte ATTESTATION_REPORT (versions 2-5).

    Raises :class:`ReportFormatError` for a wrong length, a non-zero reserved (MBZ) field,
    a malformed policy or key-info word, or an unknown signature algorithm, and
    :class:`UnsupportedVersionError` for versions other than 2-5.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ReportFormatError(f"report must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) != REPORT_SIZE:
        raise ReportFormatError(f"report must be {REPORT_SIZE:#x} bytes, got {len(data):#x}")
    (version, guest_svn, policy_raw, family_id, image_id, vmpl, sig_algo, current_tcb,
     plat_info, key_info, reserved0) = _HEAD.unpack_from(data, 0)
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(
            f"report version {version} is not supported (expected one of "
            f"{sorted(SUPPORTED_VERSIONS)})")
    if sig_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise ReportFormatError(
            f"SIGNATURE_ALGO must be {SIG_ALGO_ECDSA_P384_SHA384} (ECDSA P-384 SHA-384), "
            f"got {sig_algo}")
    if not policy_raw & _POLICY_MBO_BIT17:
        raise ReportFormatError(f"guest policy bit 17 must be one, policy={policy_raw:#x}")
    if policy_raw & _POLICY_MBZ_MASK:
        raise ReportFormatError(
            f"guest policy reserved bits 63:26 must be zero, policy={policy_raw:#x}")
    if key_info & _KEY_INFO_MBZ_MASK or reserved0:
        raise ReportFormatError(
            f"reserved bits of the key-info word at 0x48 must be zero, got {key_info:#010x} "
            f"and {reserved0:#010x}")
    signing_key_raw = key_info >> 2 & 0x7
    try:
        signing_key = SigningKey(signing_key_raw)
    except ValueError:
        raise ReportFormatError(
            f"SIGNING_KEY must be 0 (VCEK), 1 (VLEK) or 7 (none), got {signing_key_raw}"
        ) from None

    for start, end in _RESERVED_COMMON + _RESERVED_BY_VERSION[version]:
        if any(data[start:end]):
            raise ReportFormatError(
                f"reserved bytes {start:#x}..{end - 1:#x} must be zero for a version "
                f"{version} report, got {data[start:end].hex()}")
    sig = data[SIGNED_SIZE:]
    r_field = sig[:_SIG_COMPONENT_LEN]
    s_field = sig[_SIG_COMPONENT_LEN:2 * _SIG_COMPONENT_LEN]
    if any(r_field[_P384_SCALAR_LEN:]) or any(s_field[_P384_SCALAR_LEN:]) or any(
            sig[2 * _SIG_COMPONENT_LEN:]):
        raise ReportFormatError(
            "signature padding (R/S bytes 48..71 and bytes 0x90..0x1FF of the signature) "
            "must be zero")

    if version >= 3:
        fam: int | None = data[0x188]
        mod: int | None = data[0x189]
        step: int | None = data[0x18A]
    else:
        fam = mod = step = None
    turin = _is_turin_family(fam)

    def tcb(offset: int) -> TcbVersion:
        return TcbVersion.from_u64(_U64.unpack_from(data, offset)[0], turin=turin)

    return SnpReport(
        version=version,
        guest_svn=guest_svn,
        policy=GuestPolicy.from_u64(policy_raw),
        family_id=family_id,
        image_id=image_id,
        vmpl=vmpl,
        signature_algo=sig_algo,
        current_tcb=TcbVersion.from_u64(current_tcb, turin=turin),
        platform_info=PlatformInfo.from_u64(plat_info),
        author_key_en=bool(key_info & 1),
        mask_chip_key=bool(key_info >> 1 & 1),
        signing_key=signing_key,
        report_data=data[0x050:0x090],
        measurement=data[0x090:0x0C0],
        host_data=data[0x0C0:0x0E0],
        id_key_digest=data[0x0E0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        report_id_ma=data[0x160:0x180],
        reported_tcb=tcb(0x180),
        cpuid_fam_id=fam,
        cpuid_mod_id=mod,
        cpuid_step=step,
        chip_id=data[0x1A0:0x1E0],
        committed_tcb=tcb(0x1E0),
        current_build=data[0x1E8],
        current_minor=data[0x1E9],
        current_major=data[0x1EA],
        committed_build=data[0x1EC],
        committed_minor=data[0x1ED],
        committed_major=data[0x1EE],
        launch_tcb=tcb(0x1F0),
        launch_mit_vector=_U64.unpack_from(data, 0x1F8)[0] if version >= 5 else None,
        current_mit_vector=_U64.unpack_from(data, 0x200)[0] if version >= 5 else None,
        signature_r=r_field,
        signature_s=s_field,
        raw=data,
    )


# ---------------------------------------------------------------------------------------
# Report signature
# ---------------------------------------------------------------------------------------


def _leaf_public_key(key: x509.Certificate | ec.EllipticCurvePublicKey
                     ) -> ec.EllipticCurvePublicKey:
    pub = key.public_key() if isinstance(key, x509.Certificate) else key
    if not isinstance(pub, ec.EllipticCurvePublicKey) or not isinstance(pub.curve,
                                                                         ec.SECP384R1):
        raise CertificateChainError(
            f"attestation key must be an ECDSA P-384 key, got {type(pub).__name__}"
            + (f" on {pub.curve.name}" if isinstance(pub, ec.EllipticCurvePublicKey) else ""))
    return pub


def verify_report_signature(report_bytes: bytes,
                            vcek_or_vlek: x509.Certificate | ec.EllipticCurvePublicKey) -> None:
    """Check the ECDSA P-384/SHA-384 signature over bytes 0x000..0x29F.

    Does not parse the body (so any change to the signed region is a
    :class:`SignatureError`); R and S are read as 72-byte little-endian integers at 0x2A0
    and 0x2E8.
    """
    pub = _leaf_public_key(vcek_or_vlek)
    if len(report_bytes) != REPORT_SIZE:
        raise ReportFormatError(
            f"report must be {REPORT_SIZE:#x} bytes, got {len(report_bytes):#x}")
    algo = int.from_bytes(report_bytes[0x34:0x38], "little")
    if algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise SignatureError(
            f"SIGNATURE_ALGO must be {SIG_ALGO_ECDSA_P384_SHA384} (ECDSA P-384 SHA-384), "
            f"got {algo}")
    r = int.from_bytes(report_bytes[SIGNED_SIZE:SIGNED_SIZE + _SIG_COMPONENT_LEN], "little")
    s = int.from_bytes(report_bytes[SIGNED_SIZE + _SIG_COMPONENT_LEN:
                                    SIGNED_SIZE + 2 * _SIG_COMPONENT_LEN], "little")
    if r == 0 or s == 0:
        raise SignatureError("report signature is zero (unsigned report, or MASK_CHIP_KEY set)")
    try:
        pub.verify(encode_dss_signature(r, s), report_bytes[:SIGNED_SIZE], _ECDSA_SHA384)
    except InvalidSignature:
        raise SignatureError(
            "report signature does not verify under the VCEK/VLEK public key "
            "(report altered, or signed by a different chip/key)") from None


# ---------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------


def load_certificate(data: bytes | str | x509.Certificate) -> x509.Certificate:
    """Load one certificate from DER or PEM (str or bytes), fully parsed.

    AMD's VCEK/VLEK carry serial number 0, which cryptography reports with a
    CryptographyDeprecationWarning; that one warning is silenced here.
    """
    if isinstance(data, x509.Certificate):
        return data
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SERIAL_WARNING,
                                category=CryptographyDeprecationWarning)
        try:
            if raw.lstrip().startswith(b"-----BEGIN"):
                cert = x509.load_pem_x509_certificate(raw)
            else:
                cert = x509.load_der_x509_certificate(raw)
        except CERT_PARSE_ERRORS as exc:
            raise CertificateChainError(f"cannot parse certificate: {exc}") from None
        return parsed_certificate(cert)


def load_certificates(data: bytes | str | x509.Certificate
                      | Sequence[bytes | str | x509.Certificate]) -> list[x509.Certificate]:
    """Load every certificate of a PEM bundle, a single DER/PEM, or a sequence of those."""
    if isinstance(data, x509.Certificate):
        return [data]
    if isinstance(data, str | bytes | bytearray):
        raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
        if b"-----BEGIN" in raw:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_SERIAL_WARNING,
                                        category=CryptographyDeprecationWarning)
                try:
                    certs = x509.load_pem_x509_certificates(raw)
                except CERT_PARSE_ERRORS as exc:
                    raise CertificateChainError(f"cannot parse PEM bundle: {exc}") from None
                return [parsed_certificate(c) for c in certs]
        return [load_certificate(raw)]
    out: list[x509.Certificate] = []
    for item in data:
        out.extend(load_certificates(item))
    return out


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


_PEM_CERT: Final = re.compile(
    rb"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*)-----END CERTIFICATE-----")


def der_blobs(data: bytes | str | x509.Certificate
              | Sequence[bytes | str | x509.Certificate]) -> list[bytes]:
    """The DER encoding of every certificate in ``data`` without parsing X.509.

    PEM blocks are base64-decoded (strictly); anything not PEM is taken as one DER blob.
    This is what :class:`ChainCache` keys on, so a cache hit costs no certificate parsing.
    """
    if isinstance(data, x509.Certificate):
        return [_der(data)]
    if isinstance(data, str | bytes | bytearray):
        raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
        if b"-----BEGIN" not in raw:
            return [raw]
        bodies = _PEM_CERT.findall(raw)
        if len(bodies) != raw.count(b"-----BEGIN"):
            raise CertificateChainError(
                f"PEM input has {raw.count(b'-----BEGIN')} BEGIN markers but "
                f"{len(bodies)} well-formed CERTIFICATE blocks")
        out: list[bytes] = []
        for body in bodies:
            try:
                out.append(binascii.a2b_base64(b"".join(body.split()), strict_mode=True))
            except binascii.Error as exc:
                raise CertificateChainError(f"invalid base64 in PEM certificate: {exc}") \
                    from None
        return out
    result: list[bytes] = []
    for item in data:
        result.extend(der_blobs(item))
    return result


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1:
        return ""
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _serial(cert: x509.Certificate) -> int:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SERIAL_WARNING,
                                category=CryptographyDeprecationWarning)
        return cert.serial_number


def _check_pss_declared(what: str, algorithm_oid: x509.ObjectIdentifier,
                        hash_alg: hashes.HashAlgorithm | None) -> None:
    if algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        raise CertificateChainError(
            f"{what} must be signed with RSASSA-PSS, got {algorithm_oid.dotted_string}")
    if not isinstance(hash_alg, hashes.SHA384):
        raise CertificateChainError(
            f"{what} must use SHA-384, got {getattr(hash_alg, 'name', None)}")


def _verify_pss(what: str, cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """cert must be issued (name) and RSA-PSS/SHA-384 signed by issuer."""
    if cert.issuer != issuer.subject:
        raise CertificateChainError(
            f"{what}: issuer is {cert.issuer.rfc4514_string()!r}, expected "
            f"{issuer.subject.rfc4514_string()!r}")
    check_unsigned_parts(cert, what)  # no variant encodings of a valid certificate
    try:
        _check_pss_declared(what, cert.signature_algorithm_oid, cert.signature_hash_algorithm)
    except UnsupportedAlgorithm as exc:
        raise CertificateChainError(f"{what}: unsupported signature algorithm: {exc}") from None
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CertificateChainError(
            f"{what}: issuer {_cn(issuer.subject)!r} has a {type(key).__name__}, "
            f"expected an RSA key")
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, _AMD_PSS, _SHA384)
    except InvalidSignature:
        raise CertificateChainError(
            f"{what}: RSA-PSS signature by {_cn(issuer.subject)!r} does not verify") from None


def _check_validity(what: str, cert: x509.Certificate, now: datetime) -> None:
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < nb:
        raise CertificateValidityError(
            f"{what} {_cn(cert.subject)!r} is not valid before {nb.isoformat()}, "
            f"verification time is {now.isoformat()}")
    if now > na:
        raise CertificateValidityError(
            f"{what} {_cn(cert.subject)!r} expired at {na.isoformat()}, "
            f"verification time is {now.isoformat()}")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca


def _ext_bytes(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    if not isinstance(value, x509.UnrecognizedExtension):
        return None
    return value.value


def _der_small_uint(what: str, raw: bytes) -> int:
    """A DER INTEGER holding 0..255 (e.g. 02 01 05, or 02 02 00 D3)."""
    if len(raw) < 3 or raw[0] != 0x02 or raw[1] != len(raw) - 2 or raw[1] > 2:
        raise CertificateChainError(f"extension {what} is not a small DER INTEGER: {raw.hex()}")
    content = raw[2:]
    if len(content) == 2 and (content[0] != 0 or content[1] < 0x80):
        raise CertificateChainError(f"extension {what} is not minimally encoded: {raw.hex()}")
    if len(content) == 1 and content[0] >= 0x80:
        raise CertificateChainError(f"extension {what} is negative: {raw.hex()}")
    return int.from_bytes(content, "big")


def _spl(cert: x509.Certificate, oid: x509.ObjectIdentifier, name: str) -> int | None:
    raw = _ext_bytes(cert, oid)
    return None if raw is None else _der_small_uint(name, raw)


def _hw_id(cert: x509.Certificate) -> bytes | None:
    raw = _ext_bytes(cert, OID_HW_ID)
    if raw is None:
        return None
    # AMD puts the raw chip id in the extension value; tolerate an OCTET STRING wrapper.
    if len(raw) in (66, 10) and raw[0] == 0x04 and raw[1] == len(raw) - 2:
        raw = raw[2:]
    if len(raw) not in (64, 8):
        raise CertificateChainError(f"hwID extension must be 64 or 8 bytes, got {len(raw)}")
    return raw


def _product_name(cert: x509.Certificate) -> str | None:
    raw = _ext_bytes(cert, OID_PRODUCT_NAME)
    if raw is None:
        return None
    if len(raw) < 2 or raw[0] != 0x16 or raw[1] != len(raw) - 2:
        raise CertificateChainError(f"productName extension is not an IA5String: {raw.hex()}")
    return raw[2:].decode("ascii", "replace")


def certified_tcb(leaf: x509.Certificate, product: str) -> TcbVersion:
    """The TCB certified by a VCEK/VLEK's SPL extensions (all SPL slots, for ``raw``)."""
    slots: dict[int, int] = {}
    for n in range(1, 10):
        v = _spl(leaf, x509.ObjectIdentifier(f"{_OID_PREFIX}3.{n}"), f"spl{n}")
        if v is not None:
            slots[n] = v
    required = {1: "blSPL", 2: "teeSPL", 3: "snpSPL", 8: "ucodeSPL"}
    turin = product == "Turin"
    if turin:
        required[9] = "fmcSPL"
    missing = [f"{name} (.3.{n})" for n, name in required.items() if n not in slots]
    if missing:
        raise CertificateChainError(
            f"{_cn(leaf.subject)} lacks TCB extension(s) {', '.join(missing)}")
    # Byte position of each SPL slot inside the TCB_VERSION u64.
    positions = ({9: 0, 1: 1, 2: 2, 3: 3, 5: 4, 6: 5, 7: 6, 8: 7} if turin
                 else {1: 0, 2: 1, 4: 2, 5: 3, 6: 4, 7: 5, 3: 6, 8: 7})
    raw = 0
    for n, pos in positions.items():
        raw |= slots.get(n, 0) << (8 * pos)
    return TcbVersion.from_u64(raw, turin=turin)


# ---------------------------------------------------------------------------------------
# Trust roots and chain verification
# ---------------------------------------------------------------------------------------


class TrustRoots:
    """An immutable set of pinned root certificates (matched by exact DER)."""

    __slots__ = ("_by_der", "key")

    def __init__(self, certs: Iterable[x509.Certificate]) -> None:
        self._by_der: dict[bytes, x509.Certificate] = {_der(c): c for c in certs}
        self.key: bytes = hashlib.sha256(b"".join(sorted(
            hashlib.sha256(d).digest() for d in self._by_der))).digest()

    def __contains__(self, cert: object) -> bool:
        return isinstance(cert, x509.Certificate) and _der(cert) in self._by_der

    def __iter__(self) -> Iterator[x509.Certificate]:
        return iter(self._by_der.values())

    def __len__(self) -> int:
        return len(self._by_der)



def _read_pem(*parts: str) -> list[x509.Certificate]:
    res = resources.files("privproc.attest").joinpath("roots", *parts)
    return x509.load_pem_x509_certificates(res.read_bytes())


@cache
def amd_trust_roots() -> TrustRoots:
    """AMD's ARKs for Milan, Genoa and Turin, shipped in privproc/attest/roots/amd/."""
    return TrustRoots(c for p in PRODUCTS for c in _read_pem("amd", f"ark_{p.lower()}.pem"))


@cache
def amd_intermediates(product: str, key_type: SigningKey = SigningKey.VCEK
                      ) -> x509.Certificate:
    """The shipped ASK (VCEK chains) or ASVK (VLEK chains) for a product."""
    if product not in PRODUCTS:
        raise ValueError(f"unknown product {product!r}, expected one of {PRODUCTS}")
    prefix = "ask" if key_type is SigningKey.VCEK else "asvk"
    return _read_pem("amd", f"{prefix}_{product.lower()}.pem")[0]


@cache
def amd_ark(product: str) -> x509.Certificate:
    """The shipped ARK of a product (one of :data:`PRODUCTS`)."""
    if product not in PRODUCTS:
        raise ValueError(f"unknown product {product!r}, expected one of {PRODUCTS}")
    return _read_pem("amd", f"ark_{product.lower()}.pem")[0]


def leaf_product(leaf: bytes | str | x509.Certificate) -> str | None:
    """The product (Milan, Genoa, Turin) a VCEK/VLEK's productName extension names, if any."""
    name = _product_name(load_certificate(leaf))
    product = None if name is None else name.split("-")[0]
    return product if product in PRODUCTS else None


@dataclass(frozen=True, slots=True)
class AmdChain:
    """Result of a successful chain check: what the chain vouches for."""

    product: str
    key_type: SigningKey
    leaf_public_key: ec.EllipticCurvePublicKey
    hw_id: bytes | None
    tcb: TcbVersion
    not_before: datetime
    not_after: datetime
    simulated: bool = False  # a SIMULATED-ARK-* chain (privproc.attest.simulated)

    def check_time(self, now: datetime) -> None:
        if now < self.not_before:
            raise CertificateValidityError(
                f"certificate chain is not valid before {self.not_before.isoformat()}, "
                f"verification time is {now.isoformat()}")
        if now > self.not_after:
            raise CertificateValidityError(
                f"certificate chain expired at {self.not_after.isoformat()}, "
                f"verification time is {now.isoformat()}")


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be a timezone-aware datetime")
    return now


def _check_crl(crl: x509.CertificateRevocationList, ark: x509.Certificate,
               certs: Sequence[tuple[str, x509.Certificate]], now: datetime) -> None:
    if crl.issuer != ark.subject:
        raise CertificateChainError(
            f"CRL issuer is {crl.issuer.rfc4514_string()!r}, expected "
            f"{ark.subject.rfc4514_string()!r}")
    try:
        _check_pss_declared("CRL", crl.signature_algorithm_oid, crl.signature_hash_algorithm)
    except UnsupportedAlgorithm as exc:
        raise CertificateChainError(f"CRL: unsupported signature algorithm: {exc}") from None
    key = ark.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CertificateChainError("CRL issuer key is not RSA")
    try:
        key.verify(crl.signature, crl.tbs_certlist_bytes, _AMD_PSS, _SHA384)
    except InvalidSignature:
        raise CertificateChainError("CRL signature by the ARK does not verify") from None
    next_update = crl.next_update_utc
    if next_update is not None and now > next_update:
        raise CertificateValidityError(
            f"CRL is stale: nextUpdate {next_update.isoformat()}, verification time "
            f"{now.isoformat()}")
    for what, cert in certs:
        entry = crl.get_revoked_certificate_by_serial_number(_serial(cert))
        if entry is not None:
            raise RevokedError(
                f"{what} {_cn(cert.subject)!r} serial {_serial(cert):#x} was revoked at "
                f"{entry.revocation_date_utc.isoformat()}")


def _load_crl(crl: bytes | x509.CertificateRevocationList) -> x509.CertificateRevocationList:
    if isinstance(crl, x509.CertificateRevocationList):
        return crl
    try:
        if crl.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(crl)
        return x509.load_der_x509_crl(crl)
    except ValueError as exc:
        raise CertificateChainError(f"cannot parse CRL: {exc}") from None


def verify_chain(leaf_cert: x509.Certificate | bytes | str,
                 ask_or_asvk: x509.Certificate | bytes | str,
                 ark: x509.Certificate | bytes | str,
                 pinned_roots: TrustRoots | Iterable[x509.Certificate] | None,
                 now: datetime,
                 *,
                 crl: bytes | x509.CertificateRevocationList | None = None) -> AmdChain:
    """Verify VCEK/VLEK <- ASK/ASVK <- ARK (pinned, self-signed), all RSA-PSS SHA-384.

    Also checks validity periods at ``now``, that the three certificates belong to the same
    product and key type, reads the certified TCB and hwID from the leaf, and (optionally)
    checks the ASK and leaf serials against ``crl`` (signed by the ARK).
    """
    now = _aware(now)
    roots = _as_roots(pinned_roots)
    leaf = load_certificate(leaf_cert)
    ask = load_certificate(ask_or_asvk)
    root = load_certificate(ark)

    if root not in roots:
        raise CertificateChainError(
            f"root {_cn(root.subject)!r} (sha256 {root.fingerprint(_SHA256).hex()[:16]}...) "
            f"is not one of the {len(roots)} pinned roots")
    if root.issuer != root.subject:
        raise CertificateChainError(f"root {_cn(root.subject)!r} is not self-issued")
    ark_cn = _cn(root.subject)
    # The simulated platform's chain carries the same names behind a SIMULATED- prefix.
    pre = SIMULATED_PREFIX if ark_cn.startswith(SIMULATED_PREFIX) else ""
    base_cn = ark_cn[len(pre):]
    if not base_cn.startswith("ARK-") or base_cn[4:] not in PRODUCTS:
        raise CertificateChainError(
            f"root CN must be ARK-<product> with product in {PRODUCTS}, got {ark_cn!r}")
    product = base_cn[4:]
    _verify_pss("ARK (self-signature)", root, root)
    if not _is_ca(root):
        raise CertificateChainError(f"{ark_cn} is not marked as a CA")

    ask_cn = _cn(ask.subject)
    if ask_cn == f"{pre}SEV-{product}":
        key_type, leaf_cn = SigningKey.VCEK, f"{pre}SEV-VCEK"
    elif ask_cn == f"{pre}SEV-VLEK-{product}":
        key_type, leaf_cn = SigningKey.VLEK, f"{pre}SEV-VLEK"
    else:
        raise CertificateChainError(
            f"intermediate CN must be '{pre}SEV-{product}' (ASK) or '{pre}SEV-VLEK-{product}' "
            f"(ASVK) under {ark_cn}, got {ask_cn!r}")
    _verify_pss(f"intermediate {ask_cn!r}", ask, root)
    if not _is_ca(ask):
        raise CertificateChainError(f"intermediate {ask_cn!r} is not marked as a CA")

    got_leaf_cn = _cn(leaf.subject)
    if got_leaf_cn != leaf_cn:
        raise CertificateChainError(
            f"leaf CN must be {leaf_cn!r} under {ask_cn!r}, got {got_leaf_cn!r}")
    _verify_pss(f"leaf {leaf_cn!r}", leaf, ask)
    leaf_key = _leaf_public_key(leaf)

    for what, cert in (("ARK", root), ("intermediate", ask), ("leaf", leaf)):
        _check_validity(what, cert, now)

    name = _product_name(leaf)
    if name is not None and name.split("-")[0] != product:
        raise CertificateChainError(
            f"leaf productName is {name!r}, expected {product!r} (from {ark_cn})")
    hw_id = _hw_id(leaf)
    if key_type is SigningKey.VCEK and hw_id is None:
        raise CertificateChainError("VCEK lacks the hwID extension (1.3.6.1.4.1.3704.1.4)")
    tcb = certified_tcb(leaf, product)

    if crl is not None:
        _check_crl(_load_crl(crl), root, (("intermediate", ask), ("leaf", leaf)), now)

    return AmdChain(
        product=product,
        key_type=key_type,
        leaf_public_key=leaf_key,
        hw_id=hw_id if key_type is SigningKey.VCEK else None,
        tcb=tcb,
        not_before=max(c.not_valid_before_utc for c in (root, ask, leaf)),
        not_after=min(c.not_valid_after_utc for c in (root, ask, leaf)),
        simulated=bool(pre),
    )



def _as_roots(roots: TrustRoots | Iterable[x509.Certificate] | None) -> TrustRoots:
    if roots is None:
        return amd_trust_roots()
    if isinstance(roots, TrustRoots):
        return roots
    return TrustRoots(roots)


class ChainCache:
    """Bounded LRU of successful chain checks, keyed on the DER of leaf+ASK+ARK (+CRL, roots).

    A hit skips the three RSA-PSS verifications and certificate parsing; validity periods
    are still re-checked against each call's ``now``. Failures are never cached.
    Thread-safe.
    """

    def __init__(self, maxsize: int = 256) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._entries: OrderedDict[bytes, AmdChain] = OrderedDict()
        # Memo of PEM/DER input bytes -> DER blobs (a pure function of the input), so a hit
        # does not even base64-decode the PEM bundle again.
        self._ders: OrderedDict[bytes, tuple[bytes, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._ders.clear()
            self.hits = self.misses = 0

    @staticmethod
    def key(leaf_der: bytes, chain_ders: Sequence[bytes], roots: TrustRoots,
            crl_der: bytes = b"") -> bytes:
        h = hashlib.sha256(roots.key)
        for part in (leaf_der, *chain_ders, b"--crl--", crl_der):
            h.update(len(part).to_bytes(4, "big"))
            h.update(part)
        return h.digest()

    def der_blobs(self, data: bytes | str | x509.Certificate
                  | Sequence[bytes | str | x509.Certificate]) -> tuple[bytes, ...]:
        """:func:`der_blobs`, memoised for bytes/str input."""
        if not isinstance(data, bytes | str):
            return tuple(der_blobs(data))
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
        with self._lock:
            found = self._ders.get(raw)
            if found is not None:
                self._ders.move_to_end(raw)
                return found
        blobs = tuple(der_blobs(raw))
        with self._lock:
            self._ders[raw] = blobs
            while len(self._ders) > self.maxsize:
                self._ders.popitem(last=False)
        return blobs

    def get(self, key: bytes) -> AmdChain | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                self.misses += 1
            else:
                self._entries.move_to_end(key)
                self.hits += 1
            return hit

    def put(self, key: bytes, chain: AmdChain) -> None:
        with self._lock:
            self._entries[key] = chain
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def verify(self, leaf: x509.Certificate, ask: x509.Certificate, ark: x509.Certificate,
               pinned_roots: TrustRoots | Iterable[x509.Certificate] | None, now: datetime,
               *, crl: bytes | None = None) -> AmdChain:
        """:func:`verify_chain` through the cache."""
        roots = _as_roots(pinned_roots)
        k = self.key(_der(leaf), [_der(ask), _der(ark)], roots, crl or b"")
        hit = self.get(k)
        if hit is not None:
            hit.check_time(_aware(now))
            return hit
        chain = verify_chain(leaf, ask, ark, roots, now, crl=crl)
        self.put(k, chain)
        return chain


# ---------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnpPolicy:
    """What the verifier accepts. Defaults are strict (no debug, VMPL 0, no MA)."""

    allow_debug: bool = False
    max_vmpl: int = 0
    min_bootloader: int = 0
    min_tee: int = 0
    min_snp: int = 0
    min_microcode: int = 0
    min_fmc: int = 0  # only applies to Turin (the TCB has no FMC component before)
    allowed_measurements: frozenset[bytes] = frozenset()  # empty = any
    expected_report_data: bytes | None = None
    require_no_smt: bool = False
    allow_migration_agent: bool = False
    min_abi: tuple[int, int] = (0, 0)  # firmware (CURRENT_MAJOR, CURRENT_MINOR)
    require_single_socket: bool = False

    def __post_init__(self) -> None:
        if self.expected_report_data is not None and len(self.expected_report_data) != 64:
            raise ValueError(
                f"expected_report_data must be 64 bytes, got {len(self.expected_report_data)}")
        bad = [m for m in self.allowed_measurements if len(m) != 48]
        if bad:
            raise ValueError(f"allowed measurements must be 48 bytes, got lengths "
                             f"{sorted({len(m) for m in bad})}")
        if not 0 <= self.max_vmpl <= 3:
            raise ValueError(f"max_vmpl must be 0..3, got {self.max_vmpl}")
        # accept any iterable passed for allowed_measurements
        object.__setattr__(self, "allowed_measurements", frozenset(self.allowed_measurements))


def check_policy(report: SnpReport, trusted_tcb: TcbVersion, policy: SnpPolicy) -> None:
    """Raise the precise :class:`PolicyError` subclass for the first violated rule."""
    if report.policy.debug_allowed and not policy.allow_debug:
        raise DebugNotAllowedError(
            f"guest policy allows debugging (policy={report.policy.raw:#x}, bit 19 set); "
            "the verifier requires it off")
    if report.vmpl > policy.max_vmpl:
        raise VmplError(f"report requested at VMPL {report.vmpl}, maximum allowed is "
                        f"{policy.max_vmpl}")
    if not policy.allow_migration_agent:
        if report.policy.migrate_ma:
            raise MigrationAgentNotAllowedError(
                "guest policy allows association with a migration agent (bit 18 set)")
        if report.has_migration_agent:
            raise MigrationAgentNotAllowedError(
                f"REPORT_ID_MA is {report.report_id_ma.hex()}, expected all ff (no MA)")
    if policy.require_no_smt and report.platform_info.smt_enabled:
        raise PlatformFlagError("SMT is enabled on the platform (PLATFORM_INFO.SMT_EN=1); "
                                "the verifier requires it disabled")
    if policy.require_single_socket and not report.policy.single_socket:
        raise PlatformFlagError("guest policy does not require single-socket (bit 20 clear)")
    current = (report.current_major, report.current_minor)
    if current < policy.min_abi:
        raise AbiVersionTooLowError(
            f"firmware ABI {current[0]}.{current[1]} is below the required "
            f"{policy.min_abi[0]}.{policy.min_abi[1]}")
    minimums = [("bootloader", trusted_tcb.bootloader, policy.min_bootloader),
                ("tee", trusted_tcb.tee, policy.min_tee),
                ("snp", trusted_tcb.snp, policy.min_snp),
                ("microcode", trusted_tcb.microcode, policy.min_microcode)]
    if trusted_tcb.fmc is not None:
        minimums.append(("fmc", trusted_tcb.fmc, policy.min_fmc))
    for name, got, want in minimums:
        if got < want:
            raise TcbTooLowError(f"certified TCB {name} SPL is {got}, minimum is {want}")
    if policy.allowed_measurements and report.measurement not in policy.allowed_measurements:
        raise MeasurementNotAllowedError(
            f"launch measurement {report.measurement.hex()} is not among the "
            f"{len(policy.allowed_measurements)} allowed measurement(s)")
    if policy.expected_report_data is not None and not hmac.compare_digest(
            report.report_data, policy.expected_report_data):
        raise ReportDataMismatchError(
            f"REPORT_DATA is {report.report_data.hex()}, expected "
            f"{policy.expected_report_data.hex()}")


# ---------------------------------------------------------------------------------------
# Top level
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedSnp:
    report: SnpReport
    trusted_tcb: TcbVersion
    product: str
    signing_key: SigningKey = SigningKey.VCEK
    simulated: bool = False  # signed by a SIMULATED-ARK-* chain: proves no TEE


def _split_chain(certs: Sequence[x509.Certificate]
                 ) -> tuple[x509.Certificate, x509.Certificate]:
    if len(certs) != 2:
        raise CertificateChainError(
            f"chain must hold exactly 2 certificates (ASK/ASVK and ARK), got {len(certs)}")
    a, b = certs
    a_root, b_root = a.issuer == a.subject, b.issuer == b.subject
    if a_root == b_root:
        raise CertificateChainError(
            "chain must hold one self-issued ARK and one intermediate, got "
            f"{_cn(a.subject)!r} and {_cn(b.subject)!r}")
    return (b, a) if a_root else (a, b)


def verify_snp(report_bytes: bytes,  # noqa: PLR0917 - positional API as specified
               leaf_cert_der_or_pem: bytes | str | x509.Certificate,
               chain_pems: bytes | str | Sequence[bytes | str | x509.Certificate],
               policy: SnpPolicy | None = None,
               trust_roots: TrustRoots | Iterable[x509.Certificate] | None = None,
               now: datetime | None = None,
               *,
               crl: bytes | None = None,
               cache: ChainCache | None = None) -> VerifiedSnp:
    """Full SEV-SNP verification: parse, chain, chip binding, signature, TCB, policy.

    ``chain_pems`` holds the ASK (or ASVK) and the ARK, in either order. ``trust_roots``
    defaults to the AMD ARKs shipped with the package, ``now`` to the current UTC time.
    """
    policy = policy if policy is not None else SnpPolicy()
    now = _aware(now) if now is not None else datetime.now(UTC)
    report = parse_report(report_bytes)
    roots = _as_roots(trust_roots)
    to_der = cache.der_blobs if cache is not None else der_blobs
    leaf_ders = to_der(leaf_cert_der_or_pem)
    if len(leaf_ders) != 1:
        raise CertificateChainError(
            f"expected exactly one leaf (VCEK/VLEK) certificate, got {len(leaf_ders)}")
    chain_ders = to_der(chain_pems)
    key = ChainCache.key(leaf_ders[0], chain_ders, roots, crl or b"") if cache is not None else b""
    chain = cache.get(key) if cache is not None else None
    if chain is not None:
        chain.check_time(now)
    else:
        leaf = load_certificate(leaf_ders[0])
        ask, ark = _split_chain([load_certificate(d) for d in chain_ders])
        chain = verify_chain(leaf, ask, ark, roots, now, crl=crl)
        if cache is not None:
            cache.put(key, chain)

    report_product = report.product
    if report_product is not None and report_product != chain.product:
        raise ChipMismatchError(
            f"report CPUID (family {report.cpuid_fam_id:#x}, model {report.cpuid_mod_id:#x}) "
            f"names {report_product}, certificate chain is for {chain.product}")
    if report.mask_chip_key:
        raise SignatureError("MASK_CHIP_KEY is set: the report is not signed")
    if report.signing_key is not chain.key_type:
        raise SignatureError(
            f"report says it is signed with the {report.signing_key.name}, the leaf "
            f"certificate is a {chain.key_type.name}")
    if chain.hw_id is not None:
        got = report.chip_id[:len(chain.hw_id)]
        if not hmac.compare_digest(got, chain.hw_id):
            raise ChipMismatchError(
                f"report CHIP_ID {report.chip_id.hex()} does not match the VCEK hwID "
                f"{chain.hw_id.hex()}")
    verify_report_signature(report.raw, chain.leaf_public_key)

    reported = TcbVersion.from_u64(report.reported_tcb.raw, turin=chain.product == "Turin")
    if reported.raw != chain.tcb.raw:
        raise TcbError(
            f"REPORTED_TCB ({reported}, raw {reported.raw:#018x}) differs from the TCB "
            f"certified by the {chain.key_type.name} ({chain.tcb}, raw {chain.tcb.raw:#018x})")
    check_policy(report, chain.tcb, policy)
    return VerifiedSnp(report=report, trusted_tcb=chain.tcb, product=chain.product,
                       signing_key=chain.key_type, simulated=chain.simulated)
