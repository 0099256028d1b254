"""A simulated attestation platform for development: AMD- and NVIDIA-shaped, NOT A TEE.

It owns a local PKI shaped like the vendors' —

* ``SIMULATED-ARK-<product>`` (RSA, self-signed) -> ``SIMULATED-SEV-<product>`` (RSA, the
  ASK) -> ``SIMULATED-SEV-VCEK`` (ECDSA P-384 with AMD's productName, TCB/SPL and hwID
  extensions), every certificate signed with RSASSA-PSS / SHA-384 / salt 48 like AMD's;
* ``SIMULATED NVIDIA Device Identity CA`` (ECDSA P-384) -> a P-384 device attestation key,

all under the organisation ``privproc simulated platform — NOT A TEE`` — and emits
byte-for-byte SEV-SNP ATTESTATION_REPORT structures (0x4A0 bytes, version 2 or 3, debug
off, VMPL 0, CHIP_ID equal to the VCEK hwID) signed by its VCEK, and Hopper SPDM 1.1
GET_MEASUREMENTS evidence signed by its device key. The *same* verifiers
(:func:`privproc.attest.sev_snp.verify_snp`, :func:`privproc.attest.nvidia.verify_hopper`)
accept them, but only when handed the simulated roots explicitly: evidence from this
module proves nothing — whoever runs it holds every private key. Every command-line path
that trusts these roots must call :func:`warn_simulated`.

State directory (:meth:`SimulatedIdentity.load_or_create`): ``simulated-platform.json``
(mode 0600: private keys and certificates, created once, atomically) and
``simulated-roots.pem`` (the two public roots, for ``--allow-simulated-root``). RSA-4096
generation takes seconds, so the identity is generated once and then loaded; tests pass
``rsa_bits=2048`` (the verifier accepts any RSA size).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, TextIO

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from privproc.attest import sev_snp
from privproc.attest.errors import PlatformError
from privproc.attest.evidence import (
    PLATFORM_SIMULATED,
    EvidenceParts,
    GpuEvidence,
    TrustConfig,
    gpu_nonce_for,
)
from privproc.attest.sev_snp import SIMULATED_PREFIX, TcbVersion, TrustRoots
from privproc.files import replace_file, write_new_file

__all__ = [
    "DEFAULT_GPU_MEASUREMENTS",
    "ORGANIZATION",
    "ROOTS_FILE",
    "STATE_FILE",
    "SimulatedIdentity",
    "SimulatedPlatform",
    "SimulatedStateError",
    "build_hopper_report",
    "build_snp_report",
    "warn_simulated",
]

ORGANIZATION: Final = "privproc simulated platform — NOT A TEE"
STATE_FILE: Final = "simulated-platform.json"
ROOTS_FILE: Final = "simulated-roots.pem"
FORMAT_VERSION: Final = 1
GPU_ROOT_CN: Final = "SIMULATED NVIDIA Device Identity CA"
GPU_LEAF_CN: Final = "SIMULATED GH100 Attestation Key"

_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_OID: Final = "1.3.6.1.4.1.3704.1."
# CPUID family/model/stepping the report names (v3+), per product.
_CPUID: Final[Mapping[str, tuple[int, int, int]]] = {
    "Milan": (0x19, 0x01, 0x01),
    "Genoa": (0x19, 0x11, 0x01),
}
_PRODUCT_NAME: Final[Mapping[str, str]] = {"Milan": "Milan-B0", "Genoa": "Genoa-B1"}
# (bootloader, tee, snp, microcode) SPLs certified by the simulated VCEK.
DEFAULT_TCB: Final = (4, 0, 22, 213)
DEFAULT_GPU_MEASUREMENTS: Final[Mapping[int, bytes]] = {
    i: hashlib.sha384(b"privproc simulated GPU measurement %d" % i).digest() for i in range(1, 5)
}
_VALIDITY: Final = timedelta(days=3650)

_WARNING_LINES: Final = (
    "WARNING: trusting the SIMULATED attestation root (privproc simulated platform).",
    "Evidence signed by it proves NOTHING: there is no TEE, and whoever runs the node",
    "can read every request. Use it only for development and tests, never in service.",
)
_WARNING: Final = "".join(
    [f"{'*' * 88}\n", *(f"*  {line:<82}  *\n" for line in _WARNING_LINES), f"{'*' * 88}\n"])


def warn_simulated(stream: TextIO | None = None) -> None:
    """Print the loud warning every path that trusts simulated roots must show."""
    out = stream if stream is not None else sys.stderr
    out.write(_WARNING)
    out.flush()


class SimulatedStateError(PlatformError):
    """The simulated platform's state directory is unusable or its file is malformed."""


# ---------------------------------------------------------------------------------------
# Report builders
# ---------------------------------------------------------------------------------------


def build_snp_report(signing_key: ec.EllipticCurvePrivateKey, *,
                     report_data: bytes,
                     measurement: bytes,
                     chip_id: bytes,
                     tcb_raw: int,
                     version: int = 3,
                     cpuid: tuple[int, int, int] = _CPUID["Milan"],
                     vmpl: int = 0,
                     guest_policy: int = 0x3_0000,
                     platform_info: int = 0,
                     host_data: bytes = bytes(32),
                     report_id: bytes = bytes(32),
                     firmware: tuple[int, int, int] = (1, 55, 0)) -> bytes:
    """A signed SEV-SNP ATTESTATION_REPORT (Firmware ABI layout, versions 2 and 3).

    ``guest_policy`` defaults to SMT allowed, bit 17 set, debug off, no migration agent;
    ``firmware`` is (major, minor, build). The signature is ECDSA P-384 / SHA-384 over
    bytes 0x000..0x29F with R and S as 72-byte little-endian integers, as AMD's.
    """
    if version not in (2, 3):
        raise ValueError(f"report version must be 2 or 3, got {version}")
    for name, value, size in (("report_data", report_data, 64), ("measurement", measurement, 48),
                              ("chip_id", chip_id, 64), ("host_data", host_data, 32),
                              ("report_id", report_id, 32)):
        if len(value) != size:
            raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
    major, minor, build = firmware
    b = bytearray(sev_snp.REPORT_SIZE)
    struct.pack_into("<IIQ", b, 0x000, version, 0, guest_policy)  # version, guest SVN, policy
    struct.pack_into("<IIQQI", b, 0x030, vmpl, 1, tcb_raw, platform_info, 0)  # key: VCEK
    b[0x050:0x090] = report_data
    b[0x090:0x0C0] = measurement
    b[0x0C0:0x0E0] = host_data
    b[0x140:0x160] = report_id
    b[0x160:0x180] = b"\xff" * 32  # REPORT_ID_MA: no migration agent
    struct.pack_into("<Q", b, 0x180, tcb_raw)  # REPORTED_TCB
    if version >= 3:
        b[0x188:0x18B] = bytes(cpuid)
    b[0x1A0:0x1E0] = chip_id
    struct.pack_into("<Q", b, 0x1E0, tcb_raw)  # COMMITTED_TCB
    b[0x1E8:0x1EB] = bytes((build, minor, major))  # CURRENT_BUILD/MINOR/MAJOR
    b[0x1EC:0x1EF] = bytes((build, minor, major))  # COMMITTED_*
    struct.pack_into("<Q", b, 0x1F0, tcb_raw)  # LAUNCH_TCB
    r, s = decode_dss_signature(signing_key.sign(bytes(b[:sev_snp.SIGNED_SIZE]),
                                                 ec.ECDSA(hashes.SHA384())))
    b[0x2A0:0x2A0 + 72] = r.to_bytes(72, "little")
    b[0x2E8:0x2E8 + 72] = s.to_bytes(72, "little")
    return bytes(b)


def build_hopper_report(signing_key: ec.EllipticCurvePrivateKey, *,
                        nonce: bytes,
                        measurements: Mapping[int, bytes],
                        responder_nonce: bytes = bytes(32),
                        opaque: Sequence[tuple[int, bytes]] = (
                            (3, b"550.00-simulated\x00"), (17, b"SIMULATED\x00"))) -> bytes:
    """SPDM 1.1 GET_MEASUREMENTS request || MEASUREMENTS response, signed (P-384, r||s BE)."""
    if len(nonce) != 32 or len(responder_nonce) != 32:
        raise ValueError("SPDM nonces are 32 bytes")
    request = bytes((0x11, 0xE0, 0x01, 0xFF)) + nonce + b"\x00"
    record = bytearray()
    for index in sorted(measurements):
        value = measurements[index]
        if not 1 <= index <= 0xFE:
            raise ValueError(f"measurement index must be 1..254, got {index}")
        record += bytes((index, 0x01)) + struct.pack("<H", len(value) + 3)
        record += b"\x01" + struct.pack("<H", len(value)) + value
    opaque_bytes = b"".join(struct.pack("<HH", t, len(v)) + v for t, v in opaque)
    response = (bytes((0x11, 0x60, 0x00, 0x00, len(measurements)))
                + len(record).to_bytes(3, "little") + bytes(record) + responder_nonce
                + struct.pack("<H", len(opaque_bytes)) + opaque_bytes)
    signed = request + response
    r, s = decode_dss_signature(signing_key.sign(signed, ec.ECDSA(hashes.SHA384())))
    return signed + r.to_bytes(48, "big") + s.to_bytes(48, "big")


# ---------------------------------------------------------------------------------------
# Identity: the simulated PKI
# ---------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "SIMULATED"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _ext(suffix: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(_OID + suffix), value)


def _der_uint(value: int) -> bytes:
    if not 0 <= value <= 255:
        raise ValueError(f"SPL must be 0..255, got {value}")
    return bytes((0x02, 0x01, value)) if value < 0x80 else bytes((0x02, 0x02, 0x00, value))


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                         decipher_only=False)


def _builder(subject: str, issuer: x509.Name | None, public_key: rsa.RSAPublicKey
             | ec.EllipticCurvePublicKey, serial: int, now: datetime) -> x509.CertificateBuilder:
    name = _name(subject)
    return (x509.CertificateBuilder().subject_name(name)
            .issuer_name(issuer if issuer is not None else name)
            .public_key(public_key).serial_number(serial)
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False))


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _key_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True, slots=True)
class SimulatedIdentity:
    """The simulated platform's keys and certificates (one simulated chip)."""

    product: str
    chip_id: bytes
    tcb_spls: tuple[int, int, int, int]  # bootloader, tee, snp, microcode
    ark_key: rsa.RSAPrivateKey
    ask_key: rsa.RSAPrivateKey
    vcek_key: ec.EllipticCurvePrivateKey
    ark: x509.Certificate
    ask: x509.Certificate
    vcek: x509.Certificate
    gpu_root_key: ec.EllipticCurvePrivateKey
    gpu_leaf_key: ec.EllipticCurvePrivateKey
    gpu_root: x509.Certificate
    gpu_leaf: x509.Certificate

    @classmethod
    def generate(cls, *, rsa_bits: int = 4096, product: str = "Milan",
                 tcb: tuple[int, int, int, int] = DEFAULT_TCB,
                 now: datetime | None = None) -> SimulatedIdentity:
        """A fresh identity: RSA-``rsa_bits`` ARK/ASK (4096 like AMD), P-384 VCEK/GPU keys."""
        if product not in _CPUID:
            raise ValueError(f"simulated product must be one of {sorted(_CPUID)}, got {product!r}")
        now = now if now is not None else datetime.now(UTC)
        ark_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        ask_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        vcek_key = ec.generate_private_key(ec.SECP384R1())
        chip_id = os.urandom(64)
        ark = (_builder(f"{SIMULATED_PREFIX}ARK-{product}", None, ark_key.public_key(), 1, now)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(_ca_usage(), critical=True)
               .sign(ark_key, hashes.SHA384(), rsa_padding=_PSS))
        ask = (_builder(f"{SIMULATED_PREFIX}SEV-{product}", ark.subject, ask_key.public_key(),
                        2, now)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(_ca_usage(), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ark_key.public_key()), critical=False)
               .sign(ark_key, hashes.SHA384(), rsa_padding=_PSS))
        bl, tee, snp, ucode = tcb
        pname = _PRODUCT_NAME[product].encode("ascii")
        vb = (_builder(f"{SIMULATED_PREFIX}SEV-VCEK", ask.subject, vcek_key.public_key(), 3, now)
              .add_extension(_ext("1", b"\x02\x01\x00"), critical=False)
              .add_extension(_ext("2", bytes((0x16, len(pname))) + pname), critical=False))
        for slot, value in ((1, bl), (2, tee), (4, 0), (5, 0), (6, 0), (7, 0), (3, snp),
                            (8, ucode)):
            vb = vb.add_extension(_ext(f"3.{slot}", _der_uint(value)), critical=False)
        vcek = (vb.add_extension(_ext("4", chip_id), critical=False)
                .sign(ask_key, hashes.SHA384(), rsa_padding=_PSS))

        gpu_root_key = ec.generate_private_key(ec.SECP384R1())
        gpu_leaf_key = ec.generate_private_key(ec.SECP384R1())
        gpu_root = (_builder(GPU_ROOT_CN, None, gpu_root_key.public_key(), 1, now)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                   critical=True)
                    .add_extension(_ca_usage(), critical=True)
                    .sign(gpu_root_key, hashes.SHA384()))
        gpu_leaf = (_builder(GPU_LEAF_CN, gpu_root.subject, gpu_leaf_key.public_key(), 2, now)
                    .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                   critical=True)
                    .sign(gpu_root_key, hashes.SHA384()))
        return cls(product=product, chip_id=chip_id, tcb_spls=(bl, tee, snp, ucode),
                   ark_key=ark_key, ask_key=ask_key, vcek_key=vcek_key, ark=ark, ask=ask,
                   vcek=vcek, gpu_root_key=gpu_root_key, gpu_leaf_key=gpu_leaf_key,
                   gpu_root=gpu_root, gpu_leaf=gpu_leaf)

    # -- what verifiers need --------------------------------------------------------

    @property
    def tcb(self) -> TcbVersion:
        """The TCB the VCEK certifies (and every report declares)."""
        bl, tee, snp, ucode = self.tcb_spls
        raw = int.from_bytes(bytes((bl, tee, 0, 0, 0, 0, snp, ucode)), "little")
        return TcbVersion.from_u64(raw, turin=False)

    @property
    def amd_roots(self) -> TrustRoots:
        return TrustRoots([self.ark])

    @property
    def nvidia_roots(self) -> tuple[x509.Certificate, ...]:
        return (self.gpu_root,)

    @property
    def roots(self) -> tuple[x509.Certificate, ...]:
        """Both simulated roots (ARK first), as ``simulated-roots.pem`` holds them."""
        return (self.ark, self.gpu_root)

    def roots_pem(self) -> bytes:
        return "".join(_pem(c) for c in self.roots).encode("ascii")

    def chain_pem(self) -> bytes:
        """ASK + ARK, the ``--chain`` file for a raw simulated report."""
        return (_pem(self.ask) + _pem(self.ark)).encode("ascii")

    def trust_config(self, base: TrustConfig | None = None) -> TrustConfig:
        """``base`` (default: the vendor roots) plus this identity's roots, allowed
        explicitly. A command line that uses it must call :func:`warn_simulated`."""
        return TrustConfig.with_simulated_roots(self.roots, base)

    # -- persistence ------------------------------------------------------------------

    def to_json(self) -> bytes:
        doc = {
            "version": FORMAT_VERSION,
            "warning": ORGANIZATION,
            "product": self.product,
            "chip_id": self.chip_id.hex(),
            "tcb": dict(zip(("bootloader", "tee", "snp", "microcode"), self.tcb_spls,
                            strict=True)),
            "keys": {n: _key_pem(getattr(self, f"{n}_key"))
                     for n in ("ark", "ask", "vcek", "gpu_root", "gpu_leaf")},
            "certs": {n: _pem(getattr(self, n))
                      for n in ("ark", "ask", "vcek", "gpu_root", "gpu_leaf")},
        }
        return json.dumps(doc, indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, source: str = "simulated identity") -> SimulatedIdentity:
        try:
            doc = json.loads(data)
            if doc.get("version") != FORMAT_VERSION:
                raise SimulatedStateError(
                    f"{source}: unsupported format version {doc.get('version')!r}, expected "
                    f"{FORMAT_VERSION}")
            keys = {n: serialization.load_pem_private_key(v.encode("ascii"), None)
                    for n, v in doc["keys"].items()}
            certs = {n: x509.load_pem_x509_certificate(v.encode("ascii"))
                     for n, v in doc["certs"].items()}
            tcb = doc["tcb"]
            spls = (int(tcb["bootloader"]), int(tcb["tee"]), int(tcb["snp"]),
                    int(tcb["microcode"]))
            product, chip_id = str(doc["product"]), bytes.fromhex(doc["chip_id"])
            ark_key, ask_key = keys["ark"], keys["ask"]
            ec_keys = [keys[n] for n in ("vcek", "gpu_root", "gpu_leaf")]
            ark, ask, vcek, gpu_root, gpu_leaf = (
                certs[n] for n in ("ark", "ask", "vcek", "gpu_root", "gpu_leaf"))
        except (ValueError, KeyError, TypeError, AttributeError, UnsupportedAlgorithm) as exc:
            raise SimulatedStateError(
                f"{source}: malformed state ({type(exc).__name__}: {exc})") from None
        if not isinstance(ark_key, rsa.RSAPrivateKey) or not isinstance(
                ask_key, rsa.RSAPrivateKey):
            raise SimulatedStateError(f"{source}: the ARK and ASK keys must be RSA")
        vcek_key, gpu_root_key, gpu_leaf_key = ec_keys
        if not (isinstance(vcek_key, ec.EllipticCurvePrivateKey)
                and isinstance(gpu_root_key, ec.EllipticCurvePrivateKey)
                and isinstance(gpu_leaf_key, ec.EllipticCurvePrivateKey)):
            raise SimulatedStateError(f"{source}: the VCEK and GPU keys must be ECDSA")
        ident = cls(product=product, chip_id=chip_id, tcb_spls=spls, ark_key=ark_key,
                    ask_key=ask_key, vcek_key=vcek_key, ark=ark, ask=ask, vcek=vcek,
                    gpu_root_key=gpu_root_key, gpu_leaf_key=gpu_leaf_key, gpu_root=gpu_root,
                    gpu_leaf=gpu_leaf)
        ident._check(source)
        return ident

    def _check(self, source: str) -> None:
        pairs: tuple[tuple[str, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                           x509.Certificate], ...] = (
            ("ark", self.ark_key, self.ark), ("ask", self.ask_key, self.ask),
            ("vcek", self.vcek_key, self.vcek), ("gpu_root", self.gpu_root_key, self.gpu_root),
            ("gpu_leaf", self.gpu_leaf_key, self.gpu_leaf))
        for name, key, cert in pairs:
            if key.public_key() != cert.public_key():
                raise SimulatedStateError(f"{source}: {name} key does not match its certificate")
        if self.product not in _CPUID:
            raise SimulatedStateError(f"{source}: unknown simulated product {self.product!r}")
        if len(self.chip_id) != 64:
            raise SimulatedStateError(
                f"{source}: chip_id must be 64 bytes, got {len(self.chip_id)}")

    @classmethod
    def load(cls, state_dir: Path) -> SimulatedIdentity:
        """Read ``state_dir/simulated-platform.json`` (must be mode 0600)."""
        path = state_dir / STATE_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SimulatedStateError(f"{path} does not exist") from None
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SimulatedStateError(
                f"{path} is readable by others (mode {mode:o}); expected 0600")
        return cls.from_json(data, str(path))

    @classmethod
    def load_or_create(cls, state_dir: Path, *, rsa_bits: int = 4096,
                       product: str = "Milan") -> SimulatedIdentity:
        """Load the identity, generating and storing it on first use (atomically: if
        another process stores one first, that one is loaded)."""
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not state_dir.is_dir():
            raise SimulatedStateError(f"{state_dir} is not a directory")
        if not (state_dir / STATE_FILE).exists():
            ident = cls.generate(rsa_bits=rsa_bits, product=product)
            write_new_file(state_dir / STATE_FILE, ident.to_json(), 0o600)
        ident = cls.load(state_dir)
        roots_path = state_dir / ROOTS_FILE
        pem = ident.roots_pem()
        if not roots_path.exists() or roots_path.read_bytes() != pem:
            replace_file(roots_path, pem, 0o644)
        return ident


# ---------------------------------------------------------------------------------------
# The provider
# ---------------------------------------------------------------------------------------


class SimulatedPlatform:
    """A :class:`~privproc.attest.evidence.PlatformProvider` backed by a simulated chip."""

    platform: str = PLATFORM_SIMULATED

    def __init__(self, identity: SimulatedIdentity, measurement: bytes, *,
                 gpu: bool = True,
                 gpu_measurements: Mapping[int, bytes] | None = None,
                 report_version: int = 3,
                 host_data: bytes = bytes(32)) -> None:
        if len(measurement) != 48:
            raise ValueError(f"measurement must be 48 bytes, got {len(measurement)}")
        self.identity = identity
        self.measurement = bytes(measurement)
        self.gpu = gpu
        self.gpu_measurements = dict(gpu_measurements if gpu_measurements is not None
                                     else DEFAULT_GPU_MEASUREMENTS)
        self.report_version = report_version
        self.host_data = host_data

    def get_evidence(self, report_data: bytes) -> EvidenceParts:
        ident = self.identity
        if len(report_data) != 64:
            raise ValueError(f"report_data must be 64 bytes, got {len(report_data)}")
        report = build_snp_report(
            ident.vcek_key, report_data=report_data, measurement=self.measurement,
            chip_id=ident.chip_id, tcb_raw=ident.tcb.raw, version=self.report_version,
            cpuid=_CPUID[ident.product], host_data=self.host_data,
            report_id=hashlib.sha256(b"simulated report id" + ident.chip_id
                                     + self.measurement).digest())
        gpu: GpuEvidence | None = None
        if self.gpu:
            hopper = build_hopper_report(ident.gpu_leaf_key, nonce=gpu_nonce_for(report_data),
                                         measurements=self.gpu_measurements,
                                         responder_nonce=os.urandom(32))
            gpu = GpuEvidence(hopper, (_der(ident.gpu_leaf), _der(ident.gpu_root)))
        return EvidenceParts(cpu_report=report, leaf_cert=_der(ident.vcek),
                             ask_cert=_der(ident.ask), ark_cert=_der(ident.ark), gpu=gpu)
