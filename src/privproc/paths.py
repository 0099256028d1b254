"""Where privproc keeps a user's local state, and the client's trust file in it.

The per-user state directory is, in order: ``$PRIVPROC_STATE`` if set (and not empty);
else ``$XDG_STATE_HOME/privproc`` if ``XDG_STATE_HOME`` is an absolute path (the XDG Base
Directory specification says to ignore a relative one); else
``~/.local/state/privproc``. The client's trust file in it is ``client.toml``, beside the
client's log view and token wallet.

Nothing here creates a directory or touches a file: these functions only read the
environment and the home directory's name.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["STATE_ENV", "TRUST_FILE_NAME", "default_state_dir", "default_trust_file"]

STATE_ENV = "PRIVPROC_STATE"
TRUST_FILE_NAME = "client.toml"


def default_state_dir() -> Path:
    """The per-user state directory (see the module docstring); it may not exist yet."""
    override = os.environ.get(STATE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "privproc"
    return Path.home() / ".local" / "state" / "privproc"


def default_trust_file() -> Path:
    """The client's trust file in the default state directory: ``<state>/client.toml``."""
    return default_state_dir() / TRUST_FILE_NAME
