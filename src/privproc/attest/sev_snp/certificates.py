"""VCEK/VLEK/ASK/ASVK/ARK certificates: loading, AMD's signature profile, extensions.

AMD's certificate profile puts its extensions under 1.3.6.1.4.1.3704.1: the product
name, the hardware id (hwID) and the security patch levels (SPLs) that make up the TCB a
VCEK/VLEK certifies.
"""

from __future__ import annotations

import binascii
import re
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from privproc.attest.certcheck import CERT_PARSE_ERRORS, check_unsigned_parts, parsed_certificate
from privproc.attest.errors import CertificateChainError, CertificateValidityError
from privproc.attest.sev_snp.report import TcbVersion

__all__ = [
    "OID_BL_SPL",
    "OID_CSP_ID",
    "OID_FMC_SPL",
    "OID_HW_ID",
    "OID_PRODUCT_NAME",
    "OID_SNP_SPL",
    "OID_STRUCT_VERSION",
    "OID_TEE_SPL",
    "OID_UCODE_SPL",
    "certified_tcb",
    "der_blobs",
    "load_certificate",
    "load_certificates",
]

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
# AMD signs ARK/ASK/ASVK/VCEK/VLEK (and the KDS CRL) with RSASSA-PSS, SHA-384, MGF1-SHA-384,
# salt length 48. A fixed salt length makes OpenSSL reject any other salt length.
_AMD_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_SERIAL_WARNING: Final = "Parsed a serial number which wasn't positive"


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
