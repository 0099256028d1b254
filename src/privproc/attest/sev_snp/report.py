"""The SEV-SNP ATTESTATION_REPORT: its layout, its fields, and the strict parser.

Layout follows the SEV-SNP Firmware ABI specification (ATTESTATION_REPORT structure,
report versions 2 to 5). All multi-byte report fields are little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from privproc.attest.errors import ReportFormatError, UnsupportedVersionError

__all__ = [
    "REPORT_SIZE",
    "SIGNED_SIZE",
    "SIG_ALGO_ECDSA_P384_SHA384",
    "SUPPORTED_VERSIONS",
    "GuestPolicy",
    "PlatformInfo",
    "SigningKey",
    "SnpReport",
    "TcbVersion",
    "parse_report",
]

REPORT_SIZE: Final = 0x4A0
SIGNED_SIZE: Final = 0x2A0  # the signature covers bytes 0x000..0x29F
SUPPORTED_VERSIONS: Final = frozenset({2, 3, 4, 5})
SIG_ALGO_ECDSA_P384_SHA384: Final = 1
_SIG_COMPONENT_LEN: Final = 72  # R and S are each zero-extended to 72 bytes, little-endian
_P384_SCALAR_LEN: Final = 48

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
