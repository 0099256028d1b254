"""The verifier's policy: what a parsed, verified report must also satisfy."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from privproc.attest.errors import (
    AbiVersionTooLowError,
    DebugNotAllowedError,
    MeasurementNotAllowedError,
    MigrationAgentNotAllowedError,
    PlatformFlagError,
    ReportDataMismatchError,
    TcbTooLowError,
    VmplError,
)
from privproc.attest.sev_snp.report import SnpReport, TcbVersion

__all__ = ["SnpPolicy", "check_policy"]


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
