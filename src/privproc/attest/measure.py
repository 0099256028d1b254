"""Launch measurements: what a release's node image must measure to.

* :func:`measure_simulated` — the simulated platform's 48-byte measurement: SHA-384 over a
  domain-separated, canonical listing of the code, the node configuration and the model::

      "privproc-simulated-measurement-v1\\0"
      "code\\0"   u32 n  then n x (u32 len || relative POSIX path (UTF-8) || SHA-256(file))
                   sorted by path bytes; every file under the privproc package directory
                   except __pycache__/ and *.pyc
      "config\\0" u32 len || node config bytes
      "model\\0"  u64 size || SHA-256(model file)

  Changing any source file, the configuration or the model changes the measurement.

* :func:`measure_snp` — the real SEV-SNP launch digest of an OVMF + kernel + initrd +
  command line guest, computed by the ``sev-snp-measure`` package (import name
  ``sevsnpmeasure``; ``pip install sev-snp-measure``) when it is installed.
"""

from __future__ import annotations

import hashlib
import importlib
import struct
from pathlib import Path
from typing import Any, Final

from privproc.errors import PrivprocError

__all__ = [
    "MeasurementToolError",
    "code_listing",
    "default_code_root",
    "measure_simulated",
    "measure_snp",
]

_LABEL: Final = b"privproc-simulated-measurement-v1\x00"
_CHUNK: Final = 1 << 20


class MeasurementToolError(PrivprocError, RuntimeError):
    """The measurement cannot be computed here (a tool is missing, or an input is unusable)."""


def default_code_root() -> Path:
    """The directory of the installed ``privproc`` package."""
    import privproc

    return Path(privproc.__file__).resolve().parent


def _sha256_file(path: Path) -> tuple[bytes, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.digest(), size


def _skipped(rel: Path) -> bool:
    return "__pycache__" in rel.parts or rel.suffix == ".pyc"


def code_listing(code_root: Path | None = None) -> list[tuple[str, bytes]]:
    """(relative POSIX path, SHA-256) of every measured file, sorted by path bytes.

    Symbolic links to directories are not followed; a symbolic link to a file is measured
    by its target's content.
    """
    root = (code_root if code_root is not None else default_code_root()).resolve()
    if not root.is_dir():
        raise MeasurementToolError(f"code root {root} is not a directory")
    out: list[tuple[str, bytes]] = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if _skipped(rel) or not path.is_file():
            continue
        out.append((rel.as_posix(), _sha256_file(path)[0]))
    out.sort(key=lambda item: item[0].encode("utf-8", "surrogateescape"))
    return out


def measure_simulated(node_config: bytes, model_path: Path,
                      code_root: Path | None = None) -> bytes:
    """The simulated platform's 48-byte launch measurement (see the module docstring)."""
    listing = code_listing(code_root)
    h = hashlib.sha384(_LABEL)
    h.update(b"code\x00" + struct.pack("!I", len(listing)))
    for rel, digest in listing:
        name = rel.encode("utf-8", "surrogateescape")
        h.update(struct.pack("!I", len(name)) + name + digest)
    h.update(b"config\x00" + struct.pack("!I", len(node_config)) + bytes(node_config))
    try:
        model_digest, model_size = _sha256_file(model_path)
    except OSError as exc:
        raise MeasurementToolError(f"cannot read the model file {model_path}: {exc}") from None
    h.update(b"model\x00" + struct.pack("!Q", model_size) + model_digest)
    return h.digest()


def _import_tool() -> tuple[Any, Any, Any]:
    try:
        guest = importlib.import_module("sevsnpmeasure.guest")
        vcpu_types = importlib.import_module("sevsnpmeasure.vcpu_types")
        sev_mode = importlib.import_module("sevsnpmeasure.sev_mode")
    except ImportError:
        raise MeasurementToolError(
            "computing an SEV-SNP launch measurement needs the sev-snp-measure package "
            "(import name sevsnpmeasure): pip install sev-snp-measure") from None
    return guest, vcpu_types, sev_mode


def measure_snp(ovmf: Path, kernel: Path | None, initrd: Path | None,  # noqa: PLR0917
                cmdline: str | None, vcpus: int, vcpu_type: str, *,
                guest_features: int = 0x1) -> bytes:
    """The 48-byte SEV-SNP launch digest of a QEMU guest (OVMF with kernel hashes).

    ``vcpu_type`` is a QEMU CPU model known to sev-snp-measure (e.g. ``EPYC-v4``,
    ``EPYC-Milan``, ``EPYC-Genoa``); ``guest_features`` is the SEV_FEATURES word (0x1:
    SNPActive; kernels 6.6+ commonly use 0x21, SNPActive + DebugSwap).
    """
    if vcpus < 1:
        raise ValueError(f"vcpus must be >= 1, got {vcpus}")
    if (initrd is not None or cmdline is not None) and kernel is None:
        raise ValueError("an initrd or a kernel command line needs a kernel")
    for what, path in (("OVMF", ovmf), ("kernel", kernel), ("initrd", initrd)):
        if path is not None and not path.is_file():
            raise MeasurementToolError(f"{what} file {path} does not exist")
    guest, vcpu_types, sev_mode = _import_tool()
    sigs = vcpu_types.CPU_SIGS
    if vcpu_type not in sigs:
        raise ValueError(f"unknown vCPU type {vcpu_type!r}; known: {', '.join(sorted(sigs))}")
    digest = guest.calc_launch_digest(
        sev_mode.SevMode.SEV_SNP, vcpus, sigs[vcpu_type], str(ovmf),
        str(kernel) if kernel is not None else None,
        str(initrd) if initrd is not None else None,
        cmdline, guest_features)
    if not isinstance(digest, bytes) or len(digest) != 48:
        raise MeasurementToolError(
            f"sev-snp-measure returned {type(digest).__name__} of length "
            f"{len(digest) if isinstance(digest, bytes) else '?'}, expected 48 bytes")
    return digest
