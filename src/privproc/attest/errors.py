"""Exception hierarchy for attestation verification (AMD SEV-SNP, NVIDIA Hopper).

Every failure raised by :mod:`privproc.attest` is an :class:`AttestationError`; callers
that only need "trusted or not" catch that, callers that want to report *why* catch the
precise subclass. Messages state what was expected and what was found.
"""

from __future__ import annotations

from privproc.errors import PrivprocError

__all__ = [
    "AbiVersionTooLowError",
    "AttestationError",
    "CertificateChainError",
    "CertificateValidityError",
    "ChipMismatchError",
    "DebugNotAllowedError",
    "EvidenceFormatError",
    "GpuEvidenceMissingError",
    "GpuMeasurementError",
    "KeyExpiredError",
    "KeyLifetimeError",
    "MeasurementNotAllowedError",
    "MigrationAgentNotAllowedError",
    "NonceMismatchError",
    "PlatformError",
    "PlatformFlagError",
    "PlatformMismatchError",
    "PolicyError",
    "ReportDataMismatchError",
    "ReportFormatError",
    "RevokedError",
    "SignatureError",
    "SimulatedPlatformNotAllowedError",
    "TcbError",
    "TcbTooLowError",
    "UnsupportedVersionError",
    "VmplError",
]


class AttestationError(PrivprocError):
    """Base class: the evidence must not be trusted."""


class ReportFormatError(AttestationError):
    """The report (or SPDM transcript) is malformed: wrong length, non-zero MBZ field, ..."""


class UnsupportedVersionError(ReportFormatError):
    """The report's format version is not one this verifier understands."""


class SignatureError(AttestationError):
    """The report's signature does not verify under the attestation key."""


class CertificateChainError(AttestationError):
    """The certificate chain is broken: wrong issuer, bad signature, unpinned root, swap."""


class CertificateValidityError(CertificateChainError):
    """A certificate (or CRL) is not valid at the verification time."""


class RevokedError(AttestationError):
    """A certificate of the chain is listed on the issuer's CRL."""


class TcbError(AttestationError):
    """The report's TCB disagrees with the TCB certified in the VCEK/VLEK."""


class ChipMismatchError(AttestationError):
    """The report was produced by a different chip (or product) than the certificate's."""


class NonceMismatchError(AttestationError):
    """The evidence is not bound to the nonce the verifier sent."""


class GpuMeasurementError(AttestationError):
    """A GPU measurement block does not match the reference values."""


class PolicyError(AttestationError):
    """The evidence is authentic but the verifier's policy refuses it."""


class DebugNotAllowedError(PolicyError):
    """The guest policy permits debugging (the hypervisor can read guest memory)."""


class VmplError(PolicyError):
    """The report was requested from a VMPL less privileged than allowed."""


class MeasurementNotAllowedError(PolicyError):
    """The launch measurement is not in the allowed set."""


class ReportDataMismatchError(PolicyError):
    """REPORT_DATA is not the value the verifier expected (key/nonce binding)."""


class TcbTooLowError(PolicyError, TcbError):
    """A TCB component's security patch level is below the required minimum."""


class PlatformFlagError(PolicyError):
    """A platform or guest-policy flag (SMT, single-socket, ...) is not acceptable."""


class MigrationAgentNotAllowedError(PolicyError):
    """The guest may be associated with a migration agent and the policy forbids it."""


class AbiVersionTooLowError(PolicyError):
    """The guest policy's minimum firmware ABI version is below the required one."""


class EvidenceFormatError(ReportFormatError):
    """An evidence bundle is malformed: bad magic, wrong field length, trailing bytes, ..."""


class PlatformMismatchError(AttestationError):
    """The bundle's platform label disagrees with the chain that signed its report."""


class SimulatedPlatformNotAllowedError(PolicyError):
    """The evidence comes from the simulated platform and the trust configuration does not
    explicitly allow it (simulated evidence proves nothing about a TEE)."""


class KeyExpiredError(PolicyError):
    """The node key bound in the evidence has expired at the verification time."""


class KeyLifetimeError(PolicyError):
    """The node key's expiry lies further in the future than the policy allows."""


class GpuEvidenceMissingError(PolicyError):
    """The policy requires GPU evidence and the bundle carries none."""


class PlatformError(PrivprocError):
    """A platform provider could not produce evidence (node side; not a verification
    result): the TEE interface is missing, busy, or returned something unusable."""
