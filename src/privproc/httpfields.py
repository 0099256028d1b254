"""HTTP field values read from parties that are not trusted to send sane ones, and an
HTTP client that follows no redirect.

``str.isdigit`` is not a check for ``int``: read as latin-1, ``"\\xb2"`` (superscript
two) is a digit to it and a ``ValueError`` to ``int``, and ``int`` refuses more than 4,300
digits. Every delay a service or the client reads (Retry-After from a node or the issuer,
max-age from the gateway) goes through :func:`delay_seconds`.
"""

from __future__ import annotations

import urllib.request
from typing import Any

DELAY_MAX = 2**31
"""What a delay too large to represent counts as (RFC 9111 section 1.2.2)."""

_DELAY_DIGITS = len(str(DELAY_MAX))


def delay_seconds(value: str | bytes | None) -> int | None:
    """A delay-seconds value (``1*DIGIT``: Retry-After in RFC 9110 section 10.2.3, max-age
    in RFC 9111 section 5.2.2.1), at most :data:`DELAY_MAX`; None when the field is absent
    or not of that form (an HTTP date, a sign, a space, a non-ASCII digit)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if not (text.isascii() and text.isdigit()):
        return None
    return DELAY_MAX if len(text) > _DELAY_DIGITS else min(int(text), DELAY_MAX)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is then raised as an HTTPError, like any refusal


_OPENER = urllib.request.build_opener(_NoRedirects)


def urlopen_here(request: str | urllib.request.Request, timeout: float) -> Any:
    """``urllib.request.urlopen`` that follows no redirect: a party answering 3xx (a relay
    for the log, an issuer) cannot send this client, its address and its credentials
    (urllib keeps the Authorization field) to a host its trust file does not name; the
    3xx is raised as :class:`urllib.error.HTTPError`."""
    return _OPENER.open(request, timeout=timeout)
