"""Durable, atomic file writes for state and key files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _synced_temp(path: Path, data: bytes, mode: int) -> Path:
    """A temporary file beside ``path`` holding all of ``data``, with ``mode``, on disk."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
            f.flush()
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        Path(tmp_name).unlink(missing_ok=True)
        raise
    os.close(fd)
    return Path(tmp_name)


def write_new_file(path: Path, data: bytes, mode: int) -> bool:
    """Create ``path`` with ``data`` atomically unless it exists; return whether it did.

    The file is written and synced under a temporary name, then hard-linked into place,
    which fails if another process created ``path`` first: readers never see a partial
    file and an existing key is never replaced.
    """
    tmp = _synced_temp(path, data, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` atomically (temporary file, fsync, rename)."""
    tmp = _synced_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
