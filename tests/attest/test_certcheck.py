"""Certificates re-encoded outside their signed part must be refused (no malleability)."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from privproc.attest import nvidia, sev_snp
from privproc.attest.certcheck import CERT_PARSE_ERRORS, check_unsigned_parts, parsed_certificate
from privproc.attest.errors import CertificateChainError
from privproc.attest.simulated import SimulatedIdentity


def _outer_region(cert: x509.Certificate) -> tuple[bytes, int, int]:
    der = cert.public_bytes(Encoding.DER)
    start = der.index(cert.tbs_certificate_bytes) + len(cert.tbs_certificate_bytes)
    return der, start, der.index(cert.signature)


def test_real_and_simulated_certificates_pass(sim: SimulatedIdentity) -> None:
    for cert in (sim.ark, sim.ask, sim.vcek, sim.gpu_root, sim.gpu_leaf,
                 *sev_snp.amd_trust_roots(), *nvidia.nvidia_trust_roots()):
        check_unsigned_parts(cert)
        assert parsed_certificate(cert) is cert


def test_outer_signature_algorithm_variants_are_refused(sim: SimulatedIdentity,
                                                        now: datetime) -> None:
    der, start, end = _outer_region(sim.vcek)
    loaded = 0
    for pos in range(start, end):
        for value in (0x00, 0x01, 0x05, 0x31, 0xFF):
            if der[pos] == value:
                continue
            mutated = der[:pos] + bytes([value]) + der[pos + 1:]
            try:
                cert = parsed_certificate(x509.load_der_x509_certificate(mutated))
            except (CertificateChainError, *CERT_PARSE_ERRORS):
                continue
            loaded += 1
            with pytest.raises(CertificateChainError):
                check_unsigned_parts(cert)
            with pytest.raises(CertificateChainError):
                sev_snp.verify_chain(cert, sim.ask, sim.ark, sim.amd_roots, now)
    assert loaded > 0  # some variants do parse: the check is what refuses them


def test_unused_bits_in_the_signature_are_refused(now: datetime) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test root")])
    for serial in range(1, 200):
        root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(serial)
                .not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA384()))
        der, _, sig_at = _outer_region(root)
        if der[-1] & 1 == 0:  # the last signature bit is zero: "1 unused bit" is valid DER
            break
    else:  # pragma: no cover - 2^-199
        pytest.fail("no signature with a trailing zero bit")
    assert der[sig_at - 1] == 0  # the unused-bits byte precedes the signature bytes
    mutated = der[:sig_at - 1] + b"\x01" + der[sig_at:]
    variant = None
    with contextlib.suppress(*CERT_PARSE_ERRORS):
        variant = x509.load_der_x509_certificate(mutated)
    if variant is None:  # pragma: no cover - a stricter cryptography refuses it already
        return
    assert variant.signature == root.signature  # cryptography ignores the unused bits
    with pytest.raises(CertificateChainError, match="unused bits"):
        check_unsigned_parts(variant)
    with pytest.raises(CertificateChainError, match="unused bits"):
        nvidia.verify_nvidia_chain([variant], [variant], now)
    nvidia.verify_nvidia_chain([root], [root], now)
