"""Full SEV-SNP verification: parse, chain, chip binding, signature, TCB, policy."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509

from privproc.attest.errors import (
    CertificateChainError,
    ChipMismatchError,
    SignatureError,
    TcbError,
)
from privproc.attest.sev_snp.certificates import _cn, der_blobs, load_certificate
from privproc.attest.sev_snp.chain import ChainCache, TrustRoots, _as_roots, _aware, verify_chain
from privproc.attest.sev_snp.policy import SnpPolicy, check_policy
from privproc.attest.sev_snp.report import SigningKey, SnpReport, TcbVersion, parse_report
from privproc.attest.sev_snp.signature import verify_report_signature

__all__ = ["VerifiedSnp", "verify_snp"]


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
