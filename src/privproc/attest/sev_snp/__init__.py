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

The package's modules, each importable on its own; every name is also re-exported here:

* :mod:`~privproc.attest.sev_snp.report` -- the report structure and :func:`parse_report`;
* :mod:`~privproc.attest.sev_snp.signature` -- :func:`verify_report_signature`;
* :mod:`~privproc.attest.sev_snp.certificates` -- loading certificates, AMD's signature
  profile and extensions, :func:`certified_tcb`;
* :mod:`~privproc.attest.sev_snp.chain` -- pinned roots, :func:`verify_chain`,
  :class:`ChainCache`;
* :mod:`~privproc.attest.sev_snp.policy` -- :class:`SnpPolicy`, :func:`check_policy`;
* :mod:`~privproc.attest.sev_snp.verify` -- the whole check, :func:`verify_snp`.

The ``name as name`` imports below keep the former module's other names (not in
``__all__``) reachable as ``sev_snp.<name>``.
"""

from __future__ import annotations

from privproc.attest.sev_snp.certificates import OID_BL_SPL as OID_BL_SPL
from privproc.attest.sev_snp.certificates import OID_CSP_ID as OID_CSP_ID
from privproc.attest.sev_snp.certificates import OID_FMC_SPL as OID_FMC_SPL
from privproc.attest.sev_snp.certificates import OID_HW_ID as OID_HW_ID
from privproc.attest.sev_snp.certificates import OID_PRODUCT_NAME as OID_PRODUCT_NAME
from privproc.attest.sev_snp.certificates import OID_SNP_SPL as OID_SNP_SPL
from privproc.attest.sev_snp.certificates import OID_STRUCT_VERSION as OID_STRUCT_VERSION
from privproc.attest.sev_snp.certificates import OID_TEE_SPL as OID_TEE_SPL
from privproc.attest.sev_snp.certificates import OID_UCODE_SPL as OID_UCODE_SPL
from privproc.attest.sev_snp.certificates import _serial as _serial
from privproc.attest.sev_snp.certificates import _verify_pss as _verify_pss
from privproc.attest.sev_snp.certificates import (
    certified_tcb,
    der_blobs,
    load_certificate,
    load_certificates,
)
from privproc.attest.sev_snp.chain import PRODUCTS as PRODUCTS
from privproc.attest.sev_snp.chain import (
    SIMULATED_PREFIX,
    AmdChain,
    ChainCache,
    TrustRoots,
    amd_ark,
    amd_intermediates,
    amd_trust_roots,
    leaf_product,
    verify_chain,
)
from privproc.attest.sev_snp.policy import SnpPolicy, check_policy
from privproc.attest.sev_snp.report import (
    REPORT_SIZE,
    SIGNED_SIZE,
    SUPPORTED_VERSIONS,
    GuestPolicy,
    PlatformInfo,
    SigningKey,
    SnpReport,
    TcbVersion,
    parse_report,
)
from privproc.attest.sev_snp.report import SIG_ALGO_ECDSA_P384_SHA384 as SIG_ALGO_ECDSA_P384_SHA384
from privproc.attest.sev_snp.signature import verify_report_signature
from privproc.attest.sev_snp.verify import VerifiedSnp, verify_snp

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
