"""The report signature: ECDSA P-384/SHA-384 by the VCEK/VLEK over bytes 0x000..0x29F."""

from __future__ import annotations

from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from privproc.attest.errors import CertificateChainError, ReportFormatError, SignatureError
from privproc.attest.sev_snp.report import (
    _SIG_COMPONENT_LEN,
    REPORT_SIZE,
    SIG_ALGO_ECDSA_P384_SHA384,
    SIGNED_SIZE,
)

__all__ = ["verify_report_signature"]

_ECDSA_SHA384: Final = ec.ECDSA(hashes.SHA384())


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
