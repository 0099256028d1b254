"""NVIDIA Hopper (H100) GPU attestation: SPDM 1.1 GET_MEASUREMENTS evidence.

The evidence is the SPDM GET_MEASUREMENTS request followed by the MEASUREMENTS response
(as produced by the driver and NVIDIA's local verifier samples, often hex text):

request (37 bytes, SPDM 1.1, signature requested)::

    0  SPDMVersion (0x11)   1  RequestResponseCode (0xE0)   2  Param1 (bit 0: sign)
    3  Param2 (operation; 0xFF = all blocks)   4  Nonce (32)   36  SlotIDParam

response::

    0  SPDMVersion   1  RequestResponseCode (0x60)   2  Param1   3  Param2 (slot id)
    4  NumberOfBlocks   5  MeasurementRecordLength (u24 LE)   8  MeasurementRecord
    +  Nonce (32, responder's)   +  OpaqueLength (u16 LE)   +  OpaqueData
    +  Signature (96: P-384 r||s, big-endian)

Each measurement block is Index(1) MeasurementSpecification(1, 0x01 = DMTF)
MeasurementSize(u16 LE) then the DMTF measurement ValueType(1) ValueSize(u16 LE) Value.
The opaque data is a list of NVIDIA TLVs: Type(u16 LE) Size(u16 LE) Value.
The signature is ECDSA P-384 / SHA-384 over request || response-without-signature
(the SPDM 1.1 L1/L2 transcript), made with the key of the device's leaf certificate.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from privproc.attest.certcheck import CERT_PARSE_ERRORS, check_unsigned_parts, parsed_certificate
from privproc.attest.errors import (
    CertificateChainError,
    CertificateValidityError,
    GpuMeasurementError,
    NonceMismatchError,
    ReportFormatError,
    SignatureError,
    UnsupportedVersionError,
)

__all__ = [
    "OPAQUE_FIELD_NAMES",
    "HopperReport",
    "MeasurementBlock",
    "VerifiedGpu",
    "check_measurements",
    "check_nonce",
    "nvidia_trust_roots",
    "parse_hopper_report",
    "verify_hopper",
    "verify_hopper_signature",
    "verify_nvidia_chain",
]

SPDM_VERSION_1_1: Final = 0x11
GET_MEASUREMENTS: Final = 0xE0
MEASUREMENTS: Final = 0x60
NONCE_LEN: Final = 32
REQUEST_LEN: Final = 4 + NONCE_LEN + 1
SIGNATURE_LEN: Final = 96  # ECDSA P-384 raw r || s
DMTF_MEASUREMENT_SPEC: Final = 0x01
_ECDSA_SHA384: Final = ec.ECDSA(hashes.SHA384())

OPAQUE_FIELD_NAMES: Final[Mapping[int, str]] = {
    1: "cert_issuer_name",
    2: "cert_authority_key_identifier",
    3: "driver_version",
    4: "gpu_info",
    5: "sku",
    6: "vbios_version",
    7: "manufacturer_id",
    8: "tamper_detection",
    9: "smc",
    10: "vpr",
    11: "nvdec0_status",
    12: "msrscnt",
    13: "cprinfo",
    14: "board_id",
    15: "chip_sku",
    16: "chip_sku_mod",
    17: "project",
    18: "project_sku",
    19: "project_sku_mod",
    20: "fwid",
    21: "protected_pcie_status",
}


@dataclass(frozen=True, slots=True)
class MeasurementBlock:
    index: int
    specification: int
    value_type: int  # DMTFSpecMeasurementValueType (bit 7: raw bit stream)
    value: bytes


@dataclass(frozen=True, slots=True)
class HopperReport:
    """A parsed SPDM GET_MEASUREMENTS request + MEASUREMENTS response."""

    spdm_version: int
    request_param1: int
    request_param2: int
    nonce: bytes  # the requester's nonce (the verifier's challenge)
    slot_id: int
    response_param1: int
    response_param2: int
    blocks: tuple[MeasurementBlock, ...]
    responder_nonce: bytes
    opaque_data: bytes
    opaque_fields: tuple[tuple[int, bytes], ...]
    signature: bytes
    raw: bytes = field(repr=False)

    @property
    def signed_bytes(self) -> bytes:
        return self.raw[:-SIGNATURE_LEN]

    @property
    def measurements(self) -> dict[int, bytes]:
        return {b.index: b.value for b in self.blocks}

    def opaque(self, type_id: int) -> bytes | None:
        for t, v in self.opaque_fields:
            if t == type_id:
                return v
        return None

    @property
    def driver_version(self) -> str | None:
        v = self.opaque(3)
        return None if v is None else v.split(b"\0", 1)[0].decode("ascii", "replace")

    @property
    def vbios_version(self) -> str | None:
        """Formatted like nvidia-smi, e.g. 96.00.9F.00.01."""
        v = self.opaque(6)
        if v is None or len(v) < 5:
            return None
        major = int.from_bytes(v[:4], "little").to_bytes(4, "big")
        return ".".join(f"{b:02X}" for b in (*major, v[4]))

    @property
    def measurement_counts(self) -> tuple[int, ...] | None:
        v = self.opaque(12)
        if v is None or len(v) % 4:
            return None
        return tuple(x for (x,) in struct.iter_unpack("<I", v))


def _to_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        text = "".join(data.split())
        try:
            return bytes.fromhex(text)
        except ValueError as exc:
            raise ReportFormatError(f"report hex text is not valid hex: {exc}") from None
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise ReportFormatError(f"report must be bytes or hex text, got {type(data).__name__}")


def _need(data: bytes, off: int, n: int, what: str) -> None:
    if off + n > len(data):
        raise ReportFormatError(
            f"truncated at {what}: need {n} bytes at offset {off}, only {len(data) - off} left")


def _parse_blocks(record: bytes, count: int) -> tuple[MeasurementBlock, ...]:
    blocks: list[MeasurementBlock] = []
    seen: set[int] = set()
    off = 0
    for i in range(count):
        _need(record, off, 4, f"measurement block {i} header")
        index, spec, size = record[off], record[off + 1], int.from_bytes(
            record[off + 2:off + 4], "little")
        off += 4
        if spec != DMTF_MEASUREMENT_SPEC:
            raise ReportFormatError(
                f"measurement block index {index}: specification must be {DMTF_MEASUREMENT_SPEC}"
                f" (DMTF), got {spec}")
        if index in seen or index in (0, 0xFF):
            raise ReportFormatError(f"measurement block index {index} is duplicated or invalid")
        seen.add(index)
        _need(record, off, size, f"measurement block index {index}")
        if size < 3:
            raise ReportFormatError(
                f"measurement block index {index}: size {size} is too small for a DMTF value")
        vtype = record[off]
        vsize = int.from_bytes(record[off + 1:off + 3], "little")
        if vsize != size - 3:
            raise ReportFormatError(
                f"measurement block index {index}: value size {vsize} does not match "
                f"block size {size} - 3")
        blocks.append(MeasurementBlock(index, spec, vtype, record[off + 3:off + size]))
        off += size
    if off != len(record):
        raise ReportFormatError(
            f"measurement record length is {len(record)} but {count} blocks use {off} bytes")
    return tuple(blocks)


def _parse_opaque(opaque: bytes) -> tuple[tuple[int, bytes], ...]:
    fields: list[tuple[int, bytes]] = []
    off = 0
    while off < len(opaque):
        _need(opaque, off, 4, "opaque field header")
        t = int.from_bytes(opaque[off:off + 2], "little")
        n = int.from_bytes(opaque[off + 2:off + 4], "little")
        off += 4
        _need(opaque, off, n, f"opaque field type {t}")
        fields.append((t, opaque[off:off + n]))
        off += n
    return tuple(fields)


def parse_hopper_report(data: bytes | bytearray | memoryview | str) -> HopperReport:
    """Parse the request||response evidence: raw bytes, or hex text given as ``str``."""
    raw = _to_bytes(data)
    _need(raw, 0, REQUEST_LEN, "GET_MEASUREMENTS request")
    version, code, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    if version != SPDM_VERSION_1_1:
        raise UnsupportedVersionError(
            f"SPDM version must be 0x11 (1.1) for Hopper evidence, got {version:#04x}")
    if code != GET_MEASUREMENTS:
        raise ReportFormatError(
            f"request code must be {GET_MEASUREMENTS:#04x} (GET_MEASUREMENTS), got {code:#04x}")
    if not p1 & 1:
        raise ReportFormatError("request Param1 bit 0 (signature requested) is clear")
    nonce = raw[4:4 + NONCE_LEN]
    slot = raw[4 + NONCE_LEN]
    off = REQUEST_LEN

    _need(raw, off, 8, "MEASUREMENTS response header")
    r_version, r_code, r_p1, r_p2, nblocks = raw[off:off + 5]
    if r_version != version:
        raise ReportFormatError(
            f"response SPDM version {r_version:#04x} differs from the request's {version:#04x}")
    if r_code != MEASUREMENTS:
        raise ReportFormatError(
            f"response code must be {MEASUREMENTS:#04x} (MEASUREMENTS), got {r_code:#04x}")
    if r_p2 & 0x0F != slot & 0x0F:
        raise ReportFormatError(
            f"response slot id {r_p2 & 0x0F} differs from the requested slot {slot & 0x0F}")
    rec_len = int.from_bytes(raw[off + 5:off + 8], "little")
    off += 8
    _need(raw, off, rec_len, "measurement record")
    blocks = _parse_blocks(raw[off:off + rec_len], nblocks)
    off += rec_len
    _need(raw, off, NONCE_LEN + 2, "responder nonce / opaque length")
    responder_nonce = raw[off:off + NONCE_LEN]
    off += NONCE_LEN
    opaque_len = int.from_bytes(raw[off:off + 2], "little")
    off += 2
    _need(raw, off, opaque_len, "opaque data")
    opaque = raw[off:off + opaque_len]
    off += opaque_len
    if len(raw) - off != SIGNATURE_LEN:
        raise ReportFormatError(
            f"expected a {SIGNATURE_LEN}-byte signature after the opaque data, found "
            f"{len(raw) - off} bytes")
    return HopperReport(
        spdm_version=version, request_param1=p1, request_param2=p2, nonce=nonce,
        slot_id=slot, response_param1=r_p1, response_param2=r_p2, blocks=blocks,
        responder_nonce=responder_nonce, opaque_data=opaque,
        opaque_fields=_parse_opaque(opaque), signature=raw[off:], raw=raw)


def verify_hopper_signature(report: HopperReport,
                            leaf: x509.Certificate | ec.EllipticCurvePublicKey) -> None:
    """ECDSA P-384 / SHA-384 over request || response-without-signature."""
    pub = leaf.public_key() if isinstance(leaf, x509.Certificate) else leaf
    if not isinstance(pub, ec.EllipticCurvePublicKey) or not isinstance(pub.curve,
                                                                         ec.SECP384R1):
        raise CertificateChainError(
            f"GPU attestation key must be ECDSA P-384, got {type(pub).__name__}")
    half = SIGNATURE_LEN // 2
    r = int.from_bytes(report.signature[:half], "big")
    s = int.from_bytes(report.signature[half:], "big")
    if r == 0 or s == 0:
        raise SignatureError("GPU evidence signature has a zero component")
    try:
        pub.verify(encode_dss_signature(r, s), report.signed_bytes, _ECDSA_SHA384)
    except InvalidSignature:
        raise SignatureError(
            "GPU evidence signature does not verify under the device leaf certificate") from None


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return name.rfc4514_string()
    v = attrs[0].value
    return v if isinstance(v, str) else v.decode("utf-8", "replace")


@cache
def nvidia_trust_roots() -> tuple[x509.Certificate, ...]:
    """NVIDIA Device Identity CA, shipped in privproc/attest/roots/nvidia/."""
    res = resources.files("privproc.attest").joinpath(
        "roots", "nvidia", "nvidia_device_identity_ca.pem")
    return tuple(x509.load_pem_x509_certificates(res.read_bytes()))


def _load_chain(chain: bytes | str | Sequence[x509.Certificate]) -> list[x509.Certificate]:
    if isinstance(chain, bytes | str):
        raw = chain.encode("ascii", "replace") if isinstance(chain, str) else chain
        try:
            certs = x509.load_pem_x509_certificates(raw)
        except CERT_PARSE_ERRORS as exc:
            raise CertificateChainError(f"cannot parse the GPU certificate chain: {exc}") from None
    else:
        certs = list(chain)
    return [parsed_certificate(c, f"GPU certificate {i}") for i, c in enumerate(certs)]


def verify_nvidia_chain(chain: bytes | str | Sequence[x509.Certificate],
                        trust_roots: Iterable[x509.Certificate] | None = None,
                        now: datetime | None = None) -> x509.Certificate:
    """Verify a leaf-first GPU certificate chain up to a pinned NVIDIA root.

    If the chain does not end with the root, a pinned root whose subject matches the last
    certificate's issuer is appended. Returns the leaf (attestation) certificate.
    """
    now = now if now is not None else datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("`now` must be a timezone-aware datetime")
    certs = _load_chain(chain)
    if not certs:
        raise CertificateChainError("GPU certificate chain is empty")
    roots = tuple(trust_roots) if trust_roots is not None else nvidia_trust_roots()
    pinned = {r.public_bytes(Encoding.DER) for r in roots}
    last = certs[-1]
    if last.issuer != last.subject:
        match = [r for r in roots if r.subject == last.issuer]
        if not match:
            raise CertificateChainError(
                f"chain ends at {_cn(last.subject)!r} issued by {_cn(last.issuer)!r}, which "
                "is not a pinned root")
        certs.append(match[0])
    root = certs[-1]
    if root.public_bytes(Encoding.DER) not in pinned:
        raise CertificateChainError(
            f"chain root {_cn(root.subject)!r} is not one of the {len(pinned)} pinned "
            "NVIDIA roots")
    for i, cert in enumerate(certs):
        issuer = certs[i + 1] if i + 1 < len(certs) else cert  # root: self-signed
        what = f"certificate {i} ({_cn(cert.subject)!r})"
        check_unsigned_parts(cert, what)
        if i > 0:
            try:
                bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            except x509.ExtensionNotFound:
                bc = None
            if bc is None or not bc.ca:
                raise CertificateChainError(f"{what} issues certificates but is not a CA")
        try:
            hash_alg = cert.signature_hash_algorithm
        except UnsupportedAlgorithm as exc:
            raise CertificateChainError(f"{what}: unsupported signature algorithm: {exc}") \
                from None
        if not isinstance(hash_alg, hashes.SHA384 | hashes.SHA512):
            raise CertificateChainError(
                f"{what}: signature hash must be SHA-384 or SHA-512, got "
                f"{getattr(hash_alg, 'name', None)}")
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError) as exc:
            raise CertificateChainError(
                f"{what} is not issued by {_cn(issuer.subject)!r}: {exc}") from None
        except InvalidSignature:
            raise CertificateChainError(
                f"{what}: signature by {_cn(issuer.subject)!r} does not verify") from None
        if now < cert.not_valid_before_utc or now > cert.not_valid_after_utc:
            raise CertificateValidityError(
                f"{what} is valid {cert.not_valid_before_utc.isoformat()} .. "
                f"{cert.not_valid_after_utc.isoformat()}, verification time is "
                f"{now.isoformat()}")
    return certs[0]


def check_nonce(report: HopperReport, expected_nonce: bytes) -> None:
    if len(expected_nonce) != NONCE_LEN:
        raise ValueError(f"expected nonce must be {NONCE_LEN} bytes, got {len(expected_nonce)}")
    if not hmac.compare_digest(report.nonce, expected_nonce):
        raise NonceMismatchError(
            f"evidence nonce is {report.nonce.hex()}, expected {expected_nonce.hex()}")


def check_measurements(report: HopperReport,
                       reference: Mapping[int, Iterable[bytes]]) -> None:
    """Every index named in ``reference`` must be present with one of its allowed values."""
    got = report.measurements
    for index in sorted(reference):
        allowed = set(reference[index])
        value = got.get(index)
        if value is None:
            raise GpuMeasurementError(
                f"measurement index {index} is missing (present: {sorted(got)})")
        if value not in allowed:
            raise GpuMeasurementError(
                f"measurement index {index} is {value.hex()}, expected one of "
                f"{sorted(v.hex() for v in allowed)}")


@dataclass(frozen=True, slots=True)
class VerifiedGpu:
    report: HopperReport
    leaf: x509.Certificate


def verify_hopper(report_data: bytes | str,  # noqa: PLR0917 - mirrors verify_snp
                  cert_chain: bytes | str | Sequence[x509.Certificate],
                  expected_nonce: bytes,
                  reference_measurements: Mapping[int, Iterable[bytes]],
                  trust_roots: Iterable[x509.Certificate] | None = None,
                  now: datetime | None = None) -> VerifiedGpu:
    """Parse, verify the chain and signature, then the nonce and reference measurements."""
    report = parse_hopper_report(report_data)
    leaf = verify_nvidia_chain(cert_chain, trust_roots, now)
    verify_hopper_signature(report, leaf)
    check_nonce(report, expected_nonce)
    check_measurements(report, reference_measurements)
    return VerifiedGpu(report=report, leaf=leaf)
