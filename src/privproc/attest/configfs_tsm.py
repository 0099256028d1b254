"""SEV-SNP evidence from the Linux configfs-tsm report interface (kernel 6.7+).

One report is one configfs directory under ``/sys/kernel/config/tsm/report``: make it,
check ``provider`` is ``sev_guest``, read ``generation``, write the 64 REPORT_DATA bytes to
``inblob``, read ``outblob`` (the 0x4A0-byte ATTESTATION_REPORT) and ``auxblob`` (the
host's certificate table), read ``generation`` again — it must have advanced by exactly our
one write, or another writer raced us and the report is retried — and remove the
directory.

The certificate table (GHCB specification, "SNP extended guest request") is a list of
24-byte entries ``GUID(16) || offset u32 LE || length u32 LE`` ended by an all-zero entry;
offsets count from the start of the table. GUIDs (RFC 4122 byte order; the mixed-endian
order some tools write is accepted too):

* VCEK ``63da758d-e664-4564-adc5-f4b93be8accd``
* VLEK ``a8074bc2-a25a-483e-aae6-39c045a0b8a1``
* ASK  ``4ab7b379-bbac-4fe4-a02f-05aef327c782``
* ARK  ``c0b406a4-a803-4952-9743-3fb6014cd0ae``

When the host supplies no ASK/ARK, the ones shipped with privproc for the report's
product are used; when it supplies no VCEK/VLEK, pass one (fetched from AMD's KDS, see
:func:`kds_vcek_url`) as ``leaf_cert``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.serialization import Encoding

from privproc.attest import sev_snp
from privproc.attest.errors import AttestationError, PlatformError
from privproc.attest.evidence import (
    PLATFORM_SEV_SNP,
    EvidenceParts,
    GpuEvidence,
    gpu_nonce_for,
)
from privproc.attest.sev_snp import SigningKey, SnpReport

__all__ = [
    "ARK_GUID",
    "ASK_GUID",
    "DEFAULT_ROOT",
    "VCEK_GUID",
    "VLEK_GUID",
    "ConfigfsIO",
    "ConfigfsTsmProvider",
    "TsmError",
    "TsmRaceError",
    "encode_cert_table",
    "kds_vcek_url",
    "parse_cert_table",
]

DEFAULT_ROOT: Final = Path("/sys/kernel/config/tsm/report")
PROVIDER_SEV: Final = "sev_guest"
VCEK_GUID: Final = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK_GUID: Final = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
ASK_GUID: Final = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
ARK_GUID: Final = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
_KNOWN: Final = frozenset({VCEK_GUID, VLEK_GUID, ASK_GUID, ARK_GUID})
_ENTRY: Final = struct.Struct("<16sII")
_MAX_TABLE_ENTRIES: Final = 64
KDS_BASE: Final = "https://kdsintf.amd.com"


class TsmError(PlatformError):
    """configfs-tsm is missing, refused the request, or returned something unusable."""


class TsmRaceError(TsmError):
    """Another writer changed the report entry between our write and our read, every try."""


# ---------------------------------------------------------------------------------------
# Certificate table
# ---------------------------------------------------------------------------------------


def _guid(raw: bytes) -> uuid.UUID:
    g = uuid.UUID(bytes=raw)
    if g in _KNOWN:
        return g
    le = uuid.UUID(bytes_le=raw)
    return le if le in _KNOWN else g


def parse_cert_table(blob: bytes) -> dict[uuid.UUID, bytes]:
    """GUID -> certificate bytes. An empty blob is an empty table; anything malformed
    (no terminator, an entry out of bounds, a duplicate GUID) raises :class:`TsmError`."""
    blob = bytes(blob)
    if not blob or not any(blob[:_ENTRY.size]):
        return {}
    out: dict[uuid.UUID, bytes] = {}
    for i in range(_MAX_TABLE_ENTRIES + 1):
        off = i * _ENTRY.size
        if off + _ENTRY.size > len(blob):
            raise TsmError(f"certificate table has no all-zero terminator entry "
                           f"(entry {i} at offset {off} runs past the {len(blob)}-byte blob)")
        raw_guid, cert_off, length = _ENTRY.unpack_from(blob, off)
        if raw_guid == bytes(16):
            if cert_off or length:
                raise TsmError(f"terminator entry {i} has offset {cert_off}, length {length}")
            return out
        guid = _guid(raw_guid)
        if guid in out:
            raise TsmError(f"certificate table lists GUID {guid} twice")
        if length == 0 or cert_off + length > len(blob):
            raise TsmError(f"certificate {guid}: offset {cert_off} length {length} does not "
                           f"fit the {len(blob)}-byte blob")
        out[guid] = blob[cert_off:cert_off + length]
    raise TsmError(f"certificate table has more than {_MAX_TABLE_ENTRIES} entries")


def encode_cert_table(entries: Mapping[uuid.UUID, bytes]) -> bytes:
    """The table for ``entries`` (RFC 4122 GUID byte order), e.g. for a host or a test."""
    header = _ENTRY.size * (len(entries) + 1)
    table, body = bytearray(), bytearray()
    for guid, cert in entries.items():
        table += _ENTRY.pack(guid.bytes, header + len(body), len(cert))
        body += cert
    return bytes(table + bytes(_ENTRY.size) + body)


def kds_vcek_url(report: SnpReport) -> str:
    """Where AMD's Key Distribution Service serves the VCEK for this report's chip/TCB."""
    product = report.product or "Milan"
    tcb = report.reported_tcb
    if tcb.is_turin_layout:
        hwid = report.chip_id[:8].hex()
        params = (f"fmcSPL={tcb.fmc}&blSPL={tcb.bootloader}&teeSPL={tcb.tee}"
                  f"&snpSPL={tcb.snp}&ucodeSPL={tcb.microcode}")
    else:
        hwid = report.chip_id.hex()
        params = (f"blSPL={tcb.bootloader}&teeSPL={tcb.tee}&snpSPL={tcb.snp}"
                  f"&ucodeSPL={tcb.microcode}")
    return f"{KDS_BASE}/vcek/v1/{product}/{hwid}?{params}"


# ---------------------------------------------------------------------------------------
# configfs access
# ---------------------------------------------------------------------------------------


class ConfigfsIO:
    """The four filesystem operations the provider needs (replaceable for tests)."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path, 0o700)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def write(self, path: Path, data: bytes) -> None:
        # one write(2): configfs binary attributes take the whole value at once
        fd = os.open(path, os.O_WRONLY)
        try:
            n = os.write(fd, data)
        finally:
            os.close(fd)
        if n != len(data):
            raise TsmError(f"short write to {path}: {n} of {len(data)} bytes")


def _der(cert: bytes, what: str) -> bytes:
    try:
        blobs = sev_snp.der_blobs(cert)
    except AttestationError as exc:
        raise TsmError(f"{what} from the host is not a certificate: {exc}") from None
    if len(blobs) != 1:
        raise TsmError(f"{what} from the host holds {len(blobs)} certificates, expected 1")
    return blobs[0]


class ConfigfsTsmProvider:
    """A :class:`~privproc.attest.evidence.PlatformProvider` for SEV-SNP guests.

    ``leaf_cert``: the VCEK/VLEK (DER or PEM) to use when the host's table has none.
    ``privlevel``: written to the entry's ``privlevel`` (the VMPL to request) if given.
    ``gpu``: called with the 32-byte GPU nonce to collect the GPU's evidence, if any.
    """

    platform: str = PLATFORM_SEV_SNP

    def __init__(self, root: Path = DEFAULT_ROOT, *, io: ConfigfsIO | None = None,
                 leaf_cert: bytes | None = None, privlevel: int | None = None,
                 gpu: Callable[[bytes], GpuEvidence] | None = None, attempts: int = 3) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.root = root
        self.io = io if io is not None else ConfigfsIO()
        self.leaf_cert = leaf_cert
        self.privlevel = privlevel
        self.gpu = gpu
        self.attempts = attempts

    def _read_text(self, path: Path) -> str:
        return self.io.read(path).decode("ascii", "replace").strip()

    def _generation(self, entry: Path) -> int:
        text = self._read_text(entry / "generation")
        try:
            return int(text)
        except ValueError:
            raise TsmError(f"{entry / 'generation'} is not a number: {text!r}") from None

    def _once(self, report_data: bytes) -> tuple[bytes, bytes] | None:
        entry = self.root / f"privproc-{os.getpid()}-{secrets.token_hex(6)}"
        try:
            self.io.mkdir(entry)
        except FileNotFoundError:
            raise TsmError(f"{self.root} does not exist: configfs-tsm needs Linux 6.7+ with "
                           "configfs mounted at /sys/kernel/config in an SEV-SNP guest") from None
        except OSError as exc:
            raise TsmError(f"cannot create a report entry under {self.root}: {exc}") from None
        try:
            provider = self._read_text(entry / "provider")
            if provider != PROVIDER_SEV:
                raise TsmError(
                    f"TSM provider is {provider!r}, expected {PROVIDER_SEV!r} (SEV-SNP)")
            if self.privlevel is not None:
                self.io.write(entry / "privlevel", str(self.privlevel).encode("ascii"))
            before = self._generation(entry)
            self.io.write(entry / "inblob", report_data)
            outblob = self.io.read(entry / "outblob")
            try:
                auxblob = self.io.read(entry / "auxblob")
            except FileNotFoundError:
                auxblob = b""
            after = self._generation(entry)
        except TsmError:
            raise
        except OSError as exc:
            raise TsmError(f"configfs-tsm report failed in {entry}: {exc}") from None
        finally:
            # The report is read (or failed); a stale entry only wastes a directory.
            with contextlib.suppress(OSError):
                self.io.rmdir(entry)
        if after != before + 1:
            return None
        return outblob, auxblob

    def get_report(self, report_data: bytes) -> tuple[bytes, bytes]:
        """(outblob, auxblob) for ``report_data``, retried on a generation race."""
        if len(report_data) != 64:
            raise ValueError(f"report_data must be 64 bytes, got {len(report_data)}")
        for _ in range(self.attempts):
            got = self._once(report_data)
            if got is not None:
                return got
        raise TsmRaceError(f"the report entry's generation changed under us in each of "
                           f"{self.attempts} attempts (another writer?)")

    def get_evidence(self, report_data: bytes) -> EvidenceParts:
        outblob, auxblob = self.get_report(report_data)
        try:
            report = sev_snp.parse_report(outblob)
        except AttestationError as exc:
            raise TsmError(f"outblob is not an SEV-SNP report: {exc}") from None
        if report.report_data != report_data:
            raise TsmError("outblob's REPORT_DATA is not the value written to inblob")
        table = parse_cert_table(auxblob)
        vlek = report.signing_key is SigningKey.VLEK
        leaf_guid = VLEK_GUID if vlek else VCEK_GUID
        if leaf_guid in table:
            leaf = _der(table[leaf_guid], "VLEK" if vlek else "VCEK")
        elif self.leaf_cert is not None:
            leaf = _der(self.leaf_cert, "configured leaf certificate")
        else:
            hint = "" if vlek else f" (AMD KDS: {kds_vcek_url(report)})"
            raise TsmError(f"the host supplied no {'VLEK' if vlek else 'VCEK'} in the "
                           f"certificate table; pass one as leaf_cert{hint}")
        try:
            product = report.product or sev_snp.leaf_product(leaf)
        except AttestationError as exc:
            raise TsmError(f"leaf certificate from the host is unusable: {exc}") from None
        if ASK_GUID in table:
            ask = _der(table[ASK_GUID], "ASK")
        elif product is not None:
            ask = sev_snp.amd_intermediates(
                product, SigningKey.VLEK if vlek else SigningKey.VCEK).public_bytes(Encoding.DER)
        else:
            raise TsmError("the host supplied no ASK and the product is unknown")
        if ARK_GUID in table:
            ark = _der(table[ARK_GUID], "ARK")
        elif product is not None:
            ark = sev_snp.amd_ark(product).public_bytes(Encoding.DER)
        else:
            raise TsmError("the host supplied no ARK and the product is unknown")
        gpu = self.gpu(gpu_nonce_for(report_data)) if self.gpu is not None else None
        return EvidenceParts(cpu_report=outblob, leaf_cert=leaf, ask_cert=ask, ark_cert=ark,
                             gpu=gpu)
