"""Credentials and URLs with passwords, kept off command lines.

Every option that takes a secret (operator credentials, account tokens, ``--redis`` and
``--db`` URLs with passwords) accepts ``@PATH`` (the value is the file's content, without
the trailing newline) or ``env:NAME`` (the value of an environment variable), so nothing
secret shows in ``ps``. A secret given literally still works, with a warning.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from privproc.errors import PrivprocError


class SecretError(PrivprocError):
    """A secret's file or environment variable is missing, unreadable or empty."""


def resolve(value: str, what: str) -> str:
    """The secret ``value`` stands for (``@PATH``, ``env:NAME`` or the value itself)."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(f"{what}: cannot read {path}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        secret = text.rstrip("\r\n")
    elif value.startswith("env:"):
        secret = os.environ.get(value[4:], "")
        if not secret:
            raise SecretError(f"{what}: environment variable {value[4:]} is not set")
    else:
        secret = value
    if not secret:
        raise SecretError(f"{what}: empty")
    return secret


def resolve_lines(value: str, what: str) -> list[str]:
    """Like :func:`resolve`, for a value that may hold several lines (one item each)."""
    return [line.strip() for line in resolve(value, what).splitlines() if line.strip()]


def warn_if_literal(value: str, what: str, *, url: bool = False,
                    stream: TextIO | None = None) -> None:
    """Warn when a secret sits on the command line (visible to every local user)."""
    if value.startswith(("@", "env:")):
        return
    if url:
        try:
            if not urlsplit(value).password:
                return
        except ValueError:
            return
    print(f"warning: {what} on the command line is visible to other users (ps); give "
          f"@FILE or env:NAME instead", file=stream or sys.stderr)
