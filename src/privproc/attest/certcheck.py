"""Strictness checks on X.509 certificates that cryptography leaves to the caller.

* cryptography parses names, validity and extensions lazily, so a corrupt field surfaces
  as a bare exception on first access: :func:`parsed_certificate` forces them up front.
* The parts of a certificate outside ``tbsCertificate`` are not covered by its signature.
  :func:`check_unsigned_parts` requires the outer ``signatureAlgorithm`` to equal the
  signed one (RFC 5280 4.1.1.2) and the signature BIT STRING to have no unused bits, so
  nobody can derive a different encoding of a certificate that still verifies.
"""

from __future__ import annotations

from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from privproc.attest.errors import CertificateChainError

__all__ = ["CERT_PARSE_ERRORS", "check_unsigned_parts", "parsed_certificate"]

# What cryptography raises for a malformed certificate, on load or on lazy field access
# (TypeError: a name attribute whose string type does not fit its OID).
CERT_PARSE_ERRORS: Final = (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion,
                            x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def parsed_certificate(cert: x509.Certificate, what: str = "certificate") -> x509.Certificate:
    """Force the lazily parsed parts of ``cert``; a failure is a CertificateChainError."""
    try:
        _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc,
             cert.extensions, cert.public_key())
    except CERT_PARSE_ERRORS as exc:
        raise CertificateChainError(f"cannot parse {what}: {exc}") from None
    return cert


def _tlv(data: bytes, off: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the DER element at ``off``."""
    if off + 2 > len(data):
        raise CertificateChainError(f"certificate DER truncated at offset {off}")
    tag, n, start = data[off], data[off + 1], off + 2
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 4 or start + k > len(data):
            raise CertificateChainError(f"bad DER length at offset {off}")
        n, start = int.from_bytes(data[start:start + k], "big"), start + k
    if start + n > len(data):
        raise CertificateChainError(f"DER element at offset {off} overruns the certificate")
    return tag, start, start + n


def check_unsigned_parts(cert: x509.Certificate, what: str = "certificate") -> None:
    """Refuse a certificate whose unsigned outer fields differ from the canonical ones."""
    der = cert.public_bytes(Encoding.DER)
    _, body, _ = _tlv(der, 0)  # Certificate ::= SEQUENCE
    _, tbs_body, tbs_end = _tlv(der, body)  # tbsCertificate
    _, _, outer_end = _tlv(der, tbs_end)  # signatureAlgorithm
    tag, bits, _ = _tlv(der, outer_end)  # signatureValue BIT STRING
    tag_v, _, end = _tlv(der, tbs_body)
    if tag_v == 0xA0:  # [0] EXPLICIT version
        _, _, end = _tlv(der, end)
    _, _, inner_end = _tlv(der, end)  # serialNumber, then the signed signature algorithm
    inner, outer = der[end:inner_end], der[tbs_end:outer_end]
    if inner != outer:
        raise CertificateChainError(
            f"{what}: signatureAlgorithm {outer.hex()} differs from the signed one "
            f"{inner.hex()} (RFC 5280 4.1.1.2)")
    if tag != 0x03 or bits >= len(der) or der[bits] != 0:
        raise CertificateChainError(f"{what}: the signature BIT STRING must have 0 unused bits")
