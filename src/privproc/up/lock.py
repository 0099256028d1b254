"""One ``privproc up`` per state directory: an exclusive lock that names its holder."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from privproc.clikit import CommandError, UsageError

LOCK_FILE = "up.lock"


class StateInUseError(CommandError):
    """Another process holds the state directory."""


class StateLock:
    """An exclusive, advisory lock on a state directory, held until :meth:`release` (or
    the process ends: the kernel drops it, so a killed holder leaves no stale lock)."""

    def __init__(self, state: Path) -> None:
        if state.exists() and not state.is_dir():
            raise UsageError(f"--state {state} is a file; expected a directory")
        try:
            state.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._file: IO[str] | None = (state / LOCK_FILE).open("a+")
        except OSError as exc:
            raise UsageError(f"--state {state}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            self._file = None
            raise StateInUseError(
                f"{state} is in use by PID {holder} (another 'privproc up'); stop it "
                "(Ctrl-C there), or pass --state DIR for a second system") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None
