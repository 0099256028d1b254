"""The node's attestation evidence bundle: one strict binary format, and its verification.

A processing node publishes one *evidence bundle* per key: the platform's signed report
whose REPORT_DATA binds the node's public key configuration (an RFC 9458 ``KeyConfig``)
and that key's expiry, the certificates needed to check the report, and optionally the
GPU's evidence and a client nonce. :func:`verify_bundle` turns a bundle into
:class:`VerifiedClaims` or raises the precise :class:`~privproc.attest.errors.AttestationError`
subclass that says why it must not be trusted.

Encoding (version 1); all integers big-endian, ``field`` = u32 length || bytes::

    magic        4   b"PPEV"
    version      1   0x01 (any other value: UnsupportedVersionError)
    flags        1   bit 0: nonce present, bit 1: GPU evidence present,
                     bit 2: registration key present; other bits zero
    platform     1   0x01 "sev-snp", 0x02 "simulated"
    expiry       8   u64, the key's expiry in seconds since the Unix epoch (1 .. 2^63-1)
    key_config   field   one KeyConfig in its RFC 9458 wire form (decoded strictly)
    cpu_report   field   the 0x4A0-byte SEV-SNP ATTESTATION_REPORT
    leaf_cert    field   VCEK or VLEK, DER
    ask_cert     field   ASK or ASVK, DER
    ark_cert     field   ARK, DER
    nonce        field   (flag bit 0 only) 1..64 bytes
    reg_key      field   (flag bit 2 only) the node's 32-byte Ed25519 registration key
    gpu_report   field   (flag bit 1 only) Hopper SPDM GET_MEASUREMENTS request||response
    gpu_count    1       (flag bit 1 only) 1..8 certificates follow
    gpu_cert     field   x gpu_count, DER, leaf first

Nothing may follow the last field, every length must fit, and a whole bundle is at most
:data:`MAX_BUNDLE_SIZE` bytes. Decoding is therefore canonical: a bundle decodes to exactly
one value and re-encodes to the same bytes, so the SHA-256 of the encoding
(:attr:`VerifiedClaims.evidence_digest`) names exactly the bytes that were verified. (It is
not a unique name for the *claims*: ECDSA signatures are malleable, so a third party can
derive other valid encodings of the same evidence; receipts should keep the measurement
and chip id too.)

REPORT_DATA (64 bytes) is :func:`report_data_for` = SHA-512 over::

    b"privproc-evidence-v1\\x00" || u32 len || key_config || u64 expiry
      || (0x00 | 0x01 || u32 len || nonce) || ( | 0x01 || u32 len || reg_key)

The registration key signs the node's registrations with the directory, so only the
attested node can list itself, and names it: its node id is :func:`node_id_for` of the key.

and the GPU's 32-byte SPDM nonce is :func:`gpu_nonce_for` = SHA-256 over
``b"privproc-gpu-nonce-v1\\x00" || REPORT_DATA``, so the GPU evidence is bound to the same
key, expiry and nonce as the CPU report.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Protocol

from cryptography import x509

from privproc.attest import nvidia, sev_snp
from privproc.attest.errors import (
    CertificateChainError,
    EvidenceFormatError,
    GpuEvidenceMissingError,
    KeyExpiredError,
    KeyLifetimeError,
    NonceMismatchError,
    PlatformMismatchError,
    ReportDataMismatchError,
    SimulatedPlatformNotAllowedError,
    UnsupportedVersionError,
)
from privproc.attest.sev_snp import (
    SIMULATED_PREFIX,
    ChainCache,
    SigningKey,
    SnpPolicy,
    SnpReport,
    TcbVersion,
    TrustRoots,
    VerifiedSnp,
)
from privproc.wire import ohttp
from privproc.wire.errors import KeyConfigError

__all__ = [
    "DEFAULT_MAX_KEY_VALIDITY",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_BUNDLE_SIZE",
    "PLATFORMS",
    "PLATFORM_SEV_SNP",
    "PLATFORM_SIMULATED",
    "REGISTRATION_KEY_SIZE",
    "EvidenceBundle",
    "EvidenceParts",
    "EvidencePolicy",
    "GpuEvidence",
    "PlatformProvider",
    "TrustConfig",
    "VerifiedClaims",
    "collect_bundle",
    "decode_bundle",
    "encode_bundle",
    "evidence_digest",
    "gpu_nonce_for",
    "node_id_for",
    "policy_from_mapping",
    "report_data_for",
    "verify_bundle",
]

MAGIC: Final = b"PPEV"
FORMAT_VERSION: Final = 1
MAX_BUNDLE_SIZE: Final = 1 << 20
DEFAULT_MAX_KEY_VALIDITY: Final = 7 * 24 * 3600  # seconds; keys rotate hourly by default
PLATFORM_SEV_SNP: Final = "sev-snp"
PLATFORM_SIMULATED: Final = "simulated"
PLATFORMS: Final = (PLATFORM_SEV_SNP, PLATFORM_SIMULATED)
_PLATFORM_CODES: Final[Mapping[str, int]] = {PLATFORM_SEV_SNP: 1, PLATFORM_SIMULATED: 2}
_PLATFORM_NAMES: Final[Mapping[int, str]] = {v: k for k, v in _PLATFORM_CODES.items()}
_FLAG_NONCE: Final = 0x01
_FLAG_GPU: Final = 0x02
_FLAG_REGISTRATION_KEY: Final = 0x04
REGISTRATION_KEY_SIZE: Final = 32
_NODE_ID_LABEL: Final = b"privproc-node-id-v1\x00"
_MAX_NONCE: Final = 64
_MAX_GPU_CERTS: Final = 8
_MAX_EXPIRY: Final = (1 << 63) - 1
_REPORT_DATA_LABEL: Final = b"privproc-evidence-v1\x00"
_GPU_NONCE_LABEL: Final = b"privproc-gpu-nonce-v1\x00"
_HEADER: Final = struct.Struct("!4sBBBQ")
_U32: Final = struct.Struct("!I")


# ---------------------------------------------------------------------------------------
# Binding
# ---------------------------------------------------------------------------------------


def _lp(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def report_data_for(key_config: bytes, expiry: int, nonce: bytes | None,
                    registration_key: bytes | None = None) -> bytes:
    """The 64-byte REPORT_DATA that binds a key configuration, its expiry, a nonce and the
    node's registration key."""
    if not 0 <= expiry <= 0xFFFF_FFFF_FFFF_FFFF:
        raise ValueError(f"expiry must fit in 64 bits, got {expiry}")
    tail = b"\x00" if nonce is None else b"\x01" + _lp(bytes(nonce))
    if registration_key is not None:
        tail += b"\x01" + _lp(bytes(registration_key))
    return hashlib.sha512(_REPORT_DATA_LABEL + _lp(bytes(key_config))
                          + struct.pack("!Q", expiry) + tail).digest()


def node_id_for(registration_key: bytes) -> str:
    """A node's name in the directory: derived from its attested registration key, so no
    one can take over another node's entry."""
    return "n" + hashlib.sha256(_NODE_ID_LABEL + registration_key).hexdigest()[:31]


def gpu_nonce_for(report_data: bytes) -> bytes:
    """The 32-byte SPDM nonce the GPU signs for a given REPORT_DATA."""
    if len(report_data) != 64:
        raise ValueError(f"report_data must be 64 bytes, got {len(report_data)}")
    return hashlib.sha256(_GPU_NONCE_LABEL + report_data).digest()


# ---------------------------------------------------------------------------------------
# Structures
# ---------------------------------------------------------------------------------------


def _check_der(what: str, cert: bytes) -> None:
    # DER only (a DER certificate is a SEQUENCE): PEM would be a second encoding of the
    # same evidence. Full parsing happens during verification.
    if len(cert) < 2 or cert[0] != 0x30:
        raise EvidenceFormatError(f"{what} must be a DER certificate (got {len(cert)} bytes "
                                  f"starting {cert[:4].hex() or 'with nothing'})")


@dataclass(frozen=True, slots=True)
class GpuEvidence:
    """Hopper SPDM evidence (request||response bytes) and its certificate chain (DER,
    leaf first; the pinned root may be left out)."""

    report: bytes
    cert_chain: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.report:
            raise EvidenceFormatError("GPU evidence report is empty")
        if not 1 <= len(self.cert_chain) <= _MAX_GPU_CERTS:
            raise EvidenceFormatError(
                f"GPU certificate chain must hold 1..{_MAX_GPU_CERTS} certificates, got "
                f"{len(self.cert_chain)}")
        for i, cert in enumerate(self.cert_chain):
            _check_der(f"GPU certificate {i}", cert)


@dataclass(frozen=True, slots=True)
class EvidenceParts:
    """What a platform returns for one REPORT_DATA: the signed CPU report, the certificates
    that check it (DER), and optionally the GPU's evidence."""

    cpu_report: bytes
    leaf_cert: bytes  # VCEK or VLEK
    ask_cert: bytes  # ASK or ASVK
    ark_cert: bytes
    gpu: GpuEvidence | None = None

    def __post_init__(self) -> None:
        if len(self.cpu_report) != sev_snp.REPORT_SIZE:
            raise EvidenceFormatError(
                f"CPU report must be {sev_snp.REPORT_SIZE:#x} bytes, got "
                f"{len(self.cpu_report):#x}")
        for name in ("leaf_cert", "ask_cert", "ark_cert"):
            _check_der(name, getattr(self, name))


class PlatformProvider(Protocol):
    """A source of attestation evidence (configfs-tsm on real hardware, or simulated)."""

    @property
    def platform(self) -> str:
        """One of :data:`PLATFORMS`."""
        ...

    def get_evidence(self, report_data: bytes) -> EvidenceParts:
        """Evidence whose REPORT_DATA is ``report_data`` (64 bytes); GPU evidence, if any,
        signs :func:`gpu_nonce_for` of it."""
        ...


@dataclass(frozen=True, slots=True)
class EvidenceBundle:
    """A node's evidence for one key; see the module docstring for the encoding."""

    platform: str
    evidence: EvidenceParts
    key_config: bytes
    expiry: int
    nonce: bytes | None = None
    registration_key: bytes | None = None

    def __post_init__(self) -> None:
        if self.platform not in _PLATFORM_CODES:
            raise EvidenceFormatError(
                f"platform must be one of {PLATFORMS}, got {self.platform!r}")
        if not 1 <= self.expiry <= _MAX_EXPIRY:
            raise EvidenceFormatError(f"expiry must be 1..2^63-1, got {self.expiry}")
        if self.nonce is not None and not 1 <= len(self.nonce) <= _MAX_NONCE:
            raise EvidenceFormatError(
                f"nonce must be 1..{_MAX_NONCE} bytes, got {len(self.nonce)}")
        if self.registration_key is not None and len(
                self.registration_key) != REGISTRATION_KEY_SIZE:
            raise EvidenceFormatError(
                f"registration key must be {REGISTRATION_KEY_SIZE} bytes, got "
                f"{len(self.registration_key)}")
        try:
            ohttp.decode_key_config(self.key_config)
        except KeyConfigError as exc:
            raise EvidenceFormatError(f"key configuration is malformed: {exc}") from None

    @property
    def report_data(self) -> bytes:
        """The REPORT_DATA this bundle's report must carry."""
        return report_data_for(self.key_config, self.expiry, self.nonce, self.registration_key)

    @property
    def ohttp_key_config(self) -> ohttp.KeyConfig:
        return ohttp.decode_key_config(self.key_config)

    def encode(self) -> bytes:
        return encode_bundle(self)


def encode_bundle(bundle: EvidenceBundle) -> bytes:
    """The canonical binary encoding (see the module docstring)."""
    ev = bundle.evidence
    flags = (_FLAG_NONCE if bundle.nonce is not None else 0) | (
        _FLAG_GPU if ev.gpu is not None else 0) | (
        _FLAG_REGISTRATION_KEY if bundle.registration_key is not None else 0)
    out = bytearray(_HEADER.pack(MAGIC, FORMAT_VERSION, flags,
                                 _PLATFORM_CODES[bundle.platform], bundle.expiry))
    for part in (bundle.key_config, ev.cpu_report, ev.leaf_cert, ev.ask_cert, ev.ark_cert):
        out += _lp(part)
    if bundle.nonce is not None:
        out += _lp(bundle.nonce)
    if bundle.registration_key is not None:
        out += _lp(bundle.registration_key)
    if ev.gpu is not None:
        out += _lp(ev.gpu.report)
        out.append(len(ev.gpu.cert_chain))
        for cert in ev.gpu.cert_chain:
            out += _lp(cert)
    if len(out) > MAX_BUNDLE_SIZE:
        raise EvidenceFormatError(
            f"encoded bundle is {len(out)} bytes, the maximum is {MAX_BUNDLE_SIZE}")
    return bytes(out)


class _Reader:
    __slots__ = ("data", "off")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.off = 0

    def take(self, n: int, what: str) -> bytes:
        left = len(self.data) - self.off
        if n > left:
            raise EvidenceFormatError(
                f"bundle truncated in {what}: need {n} bytes at offset {self.off}, "
                f"{left} left")
        out = self.data[self.off:self.off + n]
        self.off += n
        return out

    def field(self, what: str) -> bytes:
        (n,) = _U32.unpack(self.take(4, f"{what} length"))
        return self.take(n, what)


def decode_bundle(data: bytes) -> EvidenceBundle:
    """Strictly decode a bundle; any deviation raises :class:`EvidenceFormatError` (or
    :class:`UnsupportedVersionError` for another format version)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EvidenceFormatError(f"bundle must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_BUNDLE_SIZE:
        raise EvidenceFormatError(
            f"bundle is {len(data)} bytes, the maximum is {MAX_BUNDLE_SIZE}")
    if len(data) < _HEADER.size:
        raise EvidenceFormatError(
            f"bundle is {len(data)} bytes, shorter than its {_HEADER.size}-byte header")
    magic, version, flags, code, expiry = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise EvidenceFormatError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise UnsupportedVersionError(
            f"evidence bundle version {version} is not supported (expected {FORMAT_VERSION})")
    if flags & ~(_FLAG_NONCE | _FLAG_GPU | _FLAG_REGISTRATION_KEY):
        raise EvidenceFormatError(f"unknown flag bits set: {flags:#04x}")
    platform = _PLATFORM_NAMES.get(code)
    if platform is None:
        raise EvidenceFormatError(f"unknown platform code {code}")
    r = _Reader(data)
    r.off = _HEADER.size
    key_config = r.field("key_config")
    cpu_report = r.field("cpu_report")
    leaf, ask, ark = r.field("leaf_cert"), r.field("ask_cert"), r.field("ark_cert")
    nonce = r.field("nonce") if flags & _FLAG_NONCE else None
    registration_key = (r.field("registration_key") if flags & _FLAG_REGISTRATION_KEY
                        else None)
    gpu: GpuEvidence | None = None
    if flags & _FLAG_GPU:
        gpu_report = r.field("gpu_report")
        count = r.take(1, "gpu_count")[0]
        certs = tuple(r.field(f"gpu_cert {i}") for i in range(count))
        gpu = GpuEvidence(gpu_report, certs)
    if r.off != len(data):
        raise EvidenceFormatError(f"{len(data) - r.off} trailing bytes after the bundle")
    return EvidenceBundle(platform=platform,
                          evidence=EvidenceParts(cpu_report, leaf, ask, ark, gpu),
                          key_config=key_config, expiry=expiry, nonce=nonce,
                          registration_key=registration_key)


def evidence_digest(bundle: EvidenceBundle | bytes) -> bytes:
    """SHA-256 of the canonical encoding: the name a client's receipt keeps."""
    raw = bundle if isinstance(bundle, bytes) else encode_bundle(bundle)
    return hashlib.sha256(raw).digest()


def collect_bundle(provider: PlatformProvider, key_config: bytes, expiry: int,
                   nonce: bytes | None = None, registration_key: bytes | None = None
                   ) -> EvidenceBundle:
    """Ask ``provider`` for evidence binding the key, its expiry, a nonce and the
    registration key."""
    parts = provider.get_evidence(report_data_for(key_config, expiry, nonce,
                                                  registration_key))
    return EvidenceBundle(platform=provider.platform, evidence=parts, key_config=key_config,
                          expiry=expiry, nonce=nonce, registration_key=registration_key)


# ---------------------------------------------------------------------------------------
# Trust and policy
# ---------------------------------------------------------------------------------------


def _cn(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if len(attrs) != 1:
        return ""
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class TrustConfig:
    """The pinned roots a verifier trusts.

    By default: AMD's ARKs and NVIDIA's device identity CA shipped with the package, and
    no simulated root. Simulated roots count only with ``allow_simulated=True`` (build it
    with :meth:`with_simulated_roots`); they are kept apart from the vendor roots, so a
    ``sev-snp`` bundle is always checked against the vendor roots only.
    """

    amd_roots: TrustRoots = field(default_factory=sev_snp.amd_trust_roots)
    nvidia_roots: tuple[x509.Certificate, ...] = field(
        default_factory=nvidia.nvidia_trust_roots)
    allow_simulated: bool = False
    simulated_amd_roots: TrustRoots = field(default_factory=lambda: TrustRoots(()))
    simulated_nvidia_roots: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        has_sim = bool(len(self.simulated_amd_roots) or self.simulated_nvidia_roots)
        if has_sim and not self.allow_simulated:
            raise ValueError("simulated roots were given without allow_simulated=True")
        if self.allow_simulated and not len(self.simulated_amd_roots):
            raise ValueError("allow_simulated=True needs at least one simulated ARK")
        bad = [c for c in self.simulated_amd_roots if not _cn(c).startswith(SIMULATED_PREFIX)]
        if bad:
            raise ValueError(f"simulated AMD roots must be {SIMULATED_PREFIX}ARK-*, got "
                             f"{[_cn(c) for c in bad]}")

    @classmethod
    def with_simulated_roots(cls, roots: Iterable[x509.Certificate],
                             base: TrustConfig | None = None) -> TrustConfig:
        """``base`` (default: the vendor roots) plus simulated roots: certificates named
        ``SIMULATED-ARK-*`` become simulated AMD roots, the others simulated GPU roots.
        Callers on a command line must also call :func:`simulated.warn_simulated`."""
        base = base if base is not None else cls()
        amd: list[x509.Certificate] = []
        gpu: list[x509.Certificate] = []
        for cert in roots:
            (amd if _cn(cert).startswith(SIMULATED_PREFIX + "ARK-") else gpu).append(cert)
        return replace(base, allow_simulated=True,
                       simulated_amd_roots=TrustRoots([*base.simulated_amd_roots, *amd]),
                       simulated_nvidia_roots=(*base.simulated_nvidia_roots, *gpu))


@dataclass(frozen=True, slots=True)
class EvidencePolicy:
    """What the verifier accepts beyond authenticity.

    ``snp`` holds the SEV-SNP rules (debug, VMPL, minimum TCB, allowed measurements; its
    ``expected_report_data``, if set, must equal the binding computed from the bundle).
    ``gpu_reference`` maps measurement index -> allowed values (empty: any value);
    ``max_key_validity`` bounds how far in the future a key's expiry may lie (seconds;
    None: no bound).
    """

    snp: SnpPolicy = field(default_factory=SnpPolicy)
    require_gpu: bool = False
    gpu_reference: Mapping[int, AbstractSet[bytes]] = field(
        default_factory=lambda: MappingProxyType({}))
    max_key_validity: int | None = DEFAULT_MAX_KEY_VALIDITY

    def __post_init__(self) -> None:
        ref = {int(k): frozenset(v) for k, v in self.gpu_reference.items()}
        object.__setattr__(self, "gpu_reference", MappingProxyType(ref))
        if self.max_key_validity is not None and self.max_key_validity <= 0:
            raise ValueError(f"max_key_validity must be positive, got {self.max_key_validity}")


_POLICY_KEYS: Final = frozenset({
    "allow_debug", "max_vmpl", "min_tcb", "allowed_measurements", "report_data",
    "require_no_smt", "allow_migration_agent", "require_single_socket", "min_abi",
    "require_gpu", "gpu_reference", "max_key_validity"})
_TCB_KEYS: Final = ("bootloader", "tee", "snp", "microcode", "fmc")


def _hexbytes(what: str, value: object, length: int | None) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a hex string, got {type(value).__name__}")
    try:
        out = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{what} is not valid hex: {value!r}") from None
    if length is not None and len(out) != length:
        raise ValueError(f"{what} must be {length} bytes, got {len(out)}")
    return out


def _typed(what: str, value: object, typ: type[Any]) -> Any:
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ValueError(f"{what} must be {typ.__name__}, got {type(value).__name__}")
    return value


def policy_from_mapping(doc: Mapping[str, object]) -> EvidencePolicy:
    """Build a policy from a parsed TOML/JSON document; unknown keys are an error.

    Keys: ``allow_debug``, ``max_vmpl``, ``min_tcb.{bootloader,tee,snp,microcode,fmc}``,
    ``allowed_measurements`` (hex list), ``report_data`` (hex), ``require_no_smt``,
    ``allow_migration_agent``, ``require_single_socket``, ``min_abi`` ("MAJOR.MINOR"),
    ``require_gpu``, ``gpu_reference`` (table: index -> hex list), ``max_key_validity``
    (seconds, 0 for no bound). Raises ValueError with the offending key.
    """
    unknown = sorted(set(doc) - _POLICY_KEYS)
    if unknown:
        raise ValueError(f"unknown policy key(s) {unknown}; known: {sorted(_POLICY_KEYS)}")
    snp: dict[str, Any] = {}
    for key in ("allow_debug", "require_no_smt", "allow_migration_agent",
                "require_single_socket"):
        if key in doc:
            snp[key] = _typed(key, doc[key], bool)
    if "max_vmpl" in doc:
        snp["max_vmpl"] = _typed("max_vmpl", doc["max_vmpl"], int)
    if "min_tcb" in doc:
        tcb = _typed("min_tcb", doc["min_tcb"], dict)
        bad = sorted(set(tcb) - set(_TCB_KEYS))
        if bad:
            raise ValueError(f"unknown min_tcb key(s) {bad}; known: {list(_TCB_KEYS)}")
        for key, value in tcb.items():
            snp[f"min_{key}"] = _typed(f"min_tcb.{key}", value, int)
    if "allowed_measurements" in doc:
        items = _typed("allowed_measurements", doc["allowed_measurements"], list)
        snp["allowed_measurements"] = frozenset(
            _hexbytes(f"allowed_measurements[{i}]", v, 48) for i, v in enumerate(items))
    if "report_data" in doc:
        snp["expected_report_data"] = _hexbytes("report_data", doc["report_data"], 64)
    if "min_abi" in doc:
        text = _typed("min_abi", doc["min_abi"], str)
        try:
            major, minor = (int(x) for x in text.split("."))
        except ValueError:
            raise ValueError(f"min_abi must be 'MAJOR.MINOR', got {text!r}") from None
        snp["min_abi"] = (major, minor)
    gpu_ref: dict[int, frozenset[bytes]] = {}
    if "gpu_reference" in doc:
        table = _typed("gpu_reference", doc["gpu_reference"], dict)
        for index, values in table.items():
            try:
                idx = int(index)
            except ValueError:
                raise ValueError(f"gpu_reference index {index!r} is not an integer") from None
            vals = _typed(f"gpu_reference.{index}", values, list)
            gpu_ref[idx] = frozenset(_hexbytes(f"gpu_reference.{index}[{i}]", v, None)
                                     for i, v in enumerate(vals))
    validity: int | None = DEFAULT_MAX_KEY_VALIDITY
    if "max_key_validity" in doc:
        validity = _typed("max_key_validity", doc["max_key_validity"], int) or None
    return EvidencePolicy(
        snp=SnpPolicy(**snp),
        require_gpu=_typed("require_gpu", doc.get("require_gpu", False), bool),
        gpu_reference=gpu_ref,
        max_key_validity=validity,
    )


# ---------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedClaims:
    """What a verified bundle vouches for."""

    platform: str
    product: str
    measurement: bytes
    key_config: bytes
    expiry: int
    nonce: bytes | None
    report_data: bytes
    tcb: TcbVersion
    signing_key: SigningKey
    gpu_measurements: Mapping[int, bytes] | None
    evidence_digest: bytes
    snp: VerifiedSnp = field(repr=False)
    registration_key: bytes | None = None

    @property
    def node_id(self) -> str | None:
        """The directory name the attested registration key gives the node."""
        return None if self.registration_key is None else node_id_for(self.registration_key)

    @property
    def simulated(self) -> bool:
        return self.platform == PLATFORM_SIMULATED

    @property
    def report(self) -> SnpReport:
        return self.snp.report

    @property
    def ohttp_key_config(self) -> ohttp.KeyConfig:
        return ohttp.decode_key_config(self.key_config)


def _load_der(what: str, der: bytes) -> x509.Certificate:
    try:
        return sev_snp.load_certificate(der)
    except CertificateChainError as exc:
        raise CertificateChainError(f"{what}: {exc}") from None


def _crl_for(ark_der: bytes, crls: tuple[bytes, ...]) -> bytes | None:
    """The CRL (of ``crls``) issued by the ARK, None when no CRLs are configured."""
    if not crls:
        return None
    ark = _load_der("ARK certificate", ark_der)
    for crl in crls:
        try:
            parsed = (x509.load_pem_x509_crl(crl) if crl.lstrip().startswith(b"-----BEGIN")
                      else x509.load_der_x509_crl(crl))
        except ValueError as exc:
            raise CertificateChainError(f"cannot parse a configured CRL: {exc}") from None
        if parsed.issuer == ark.subject:
            return crl
    raise CertificateChainError(
        f"CRL checking is on and no configured CRL is issued by {ark.subject.rfc4514_string()}")


def verify_bundle(bundle: EvidenceBundle | bytes,
                  policy: EvidencePolicy,
                  trust_roots: TrustConfig,
                  now: datetime,
                  *,
                  expected_nonce: bytes | None = None,
                  gpu_nonce: bytes | None = None,
                  cache: ChainCache | None = None,
                  crls: Iterable[bytes] = ()) -> VerifiedClaims:
    """Verify a bundle (decoded or encoded) at ``now`` (timezone-aware).

    Checks, failing closed with the precise error: the platform is allowed (simulated only
    with ``trust_roots.allow_simulated``); the nonce equals ``expected_nonce`` when given;
    the key has not expired and does not outlive ``policy.max_key_validity``; the report,
    its chain (up to the platform's pinned roots), chip binding, TCB and ``policy.snp``;
    REPORT_DATA equals :func:`report_data_for` of the carried key, expiry and nonce; the
    chain's kind matches the platform label; the GPU evidence (required if
    ``policy.require_gpu``; checked whenever present) verifies up to the pinned NVIDIA (or
    simulated) roots, signs ``gpu_nonce`` (default :func:`gpu_nonce_for` of REPORT_DATA)
    and matches ``policy.gpu_reference``. With ``crls`` (DER or PEM, signed by the ARKs),
    the certificate chain must be checked against the CRL of its own ARK: a chain whose
    ARK has none of them is refused, as is a revoked ASK or leaf.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be a timezone-aware datetime")
    if isinstance(bundle, bytes | bytearray | memoryview):
        raw = bytes(bundle)
        bundle = decode_bundle(raw)
    elif isinstance(bundle, EvidenceBundle):
        raw = encode_bundle(bundle)
    else:
        raise EvidenceFormatError(
            f"bundle must be bytes or an EvidenceBundle, got {type(bundle).__name__}")
    digest = hashlib.sha256(raw).digest()
    simulated = bundle.platform == PLATFORM_SIMULATED
    if simulated and not trust_roots.allow_simulated:
        raise SimulatedPlatformNotAllowedError(
            "evidence comes from the SIMULATED platform (no TEE) and the trust "
            "configuration does not allow simulated roots")

    if expected_nonce is not None and (bundle.nonce is None or not hmac.compare_digest(
            bundle.nonce, expected_nonce)):
        got = "none" if bundle.nonce is None else bundle.nonce.hex()
        raise NonceMismatchError(f"bundle nonce is {got}, expected {expected_nonce.hex()}")

    now_s = now.timestamp()
    if bundle.expiry <= now_s:
        raise KeyExpiredError(
            f"node key expired at {bundle.expiry} (unix), verification time is {int(now_s)}")
    if policy.max_key_validity is not None and bundle.expiry - now_s > policy.max_key_validity:
        raise KeyLifetimeError(
            f"node key expires at {bundle.expiry} (unix), {int(bundle.expiry - now_s)} s "
            f"after the verification time; the policy allows at most "
            f"{policy.max_key_validity} s")

    report_data = bundle.report_data
    wanted = policy.snp.expected_report_data
    if wanted is not None and not hmac.compare_digest(wanted, report_data):
        raise ReportDataMismatchError(
            f"policy expects REPORT_DATA {wanted.hex()}, the bundle binds {report_data.hex()}")
    ev = bundle.evidence
    roots = trust_roots.simulated_amd_roots if simulated else trust_roots.amd_roots
    crl = _crl_for(ev.ark_cert, tuple(crls))
    verified = sev_snp.verify_snp(
        ev.cpu_report, ev.leaf_cert, [ev.ask_cert, ev.ark_cert],
        replace(policy.snp, expected_report_data=report_data), roots, now, cache=cache,
        crl=crl)
    if verified.simulated != simulated:
        raise PlatformMismatchError(
            f"bundle says platform {bundle.platform!r} but its report is signed by a "
            f"{'simulated' if verified.simulated else 'vendor'} chain")

    gpu_measurements: Mapping[int, bytes] | None = None
    if ev.gpu is None:
        if policy.require_gpu:
            raise GpuEvidenceMissingError("the policy requires GPU evidence; the bundle has none")
    else:
        chain = [_load_der(f"GPU certificate {i}", d) for i, d in enumerate(ev.gpu.cert_chain)]
        gpu_roots = trust_roots.simulated_nvidia_roots if simulated else trust_roots.nvidia_roots
        nonce = gpu_nonce if gpu_nonce is not None else gpu_nonce_for(report_data)
        gpu = nvidia.verify_hopper(ev.gpu.report, chain, nonce, policy.gpu_reference,
                                   gpu_roots, now)
        gpu_measurements = MappingProxyType(dict(gpu.report.measurements))

    return VerifiedClaims(
        platform=bundle.platform,
        product=verified.product,
        measurement=verified.report.measurement,
        key_config=bundle.key_config,
        expiry=bundle.expiry,
        nonce=bundle.nonce,
        report_data=report_data,
        tcb=verified.trusted_tcb,
        signing_key=verified.signing_key,
        gpu_measurements=gpu_measurements,
        evidence_digest=digest,
        snp=verified,
        registration_key=bundle.registration_key,
    )
