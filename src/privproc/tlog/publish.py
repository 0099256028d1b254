"""Adding a signed record to the log: what release tools, gateways and issuers share.

A record is signed as a C2SP note with the publisher's key and POSTed to the log's
``/add``; the log answers once the record is durable. Adding the same record again
returns its index, so publishing is safe to repeat (services republish their current
keys at every start).
"""

from __future__ import annotations

import urllib.error
import urllib.request

import aiohttp

from privproc import jsondoc
from privproc.httpfields import EXCHANGE_FAILED, urlopen_here
from privproc.service import read_up_to
from privproc.wire import note

from .client import LogClientError

MAX_ANSWER = 65536  # the log answers an add with a small JSON object


class PublishError(LogClientError):
    """The log refused the record or could not be reached."""


def _index(body: bytes) -> int:
    try:
        index = jsondoc.parse(body)["index"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PublishError(f"the log's answer is malformed: {exc}") from None
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise PublishError(f"the log answered index {index!r}")
    return index


def publish(log_url: str, signer: note.Signer, record: bytes, timeout: float = 60.0) -> int:
    """Sign ``record`` and add it to the log; returns its index."""
    body = note.sign_note(record, [signer])
    request = urllib.request.Request(log_url.rstrip("/") + "/add", data=body, method="POST",
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urlopen_here(request, timeout) as resp:
            return _index(resp.read(MAX_ANSWER))  # a longer one is cut, so malformed
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode(errors="replace")
        raise PublishError(f"the log answered {exc.code}: {detail}") from None
    except EXCHANGE_FAILED as exc:
        raise PublishError(f"cannot reach the log at {log_url}: {exc}") from None


async def publish_async(session: aiohttp.ClientSession, log_url: str, signer: note.Signer,
                        record: bytes) -> int:
    """:func:`publish` on an aiohttp session."""
    body = note.sign_note(record, [signer])
    try:
        async with session.post(log_url.rstrip("/") + "/add", data=body,
                                headers={"Content-Type": "text/plain; charset=utf-8"}) as resp:
            answer = await read_up_to(resp.content, MAX_ANSWER)
            if resp.status != 200:
                detail = answer.decode(errors="replace")[:300]
                raise PublishError(f"the log answered {resp.status}: {detail}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PublishError(f"cannot reach the log at {log_url}: {exc!r}") from None
    return _index(answer)


class RecordPublisher:
    """Keeps a service's key records in the log: each new record is added once, and a
    record whose add failed (log down, say) is tried again on the next call."""

    def __init__(self, log_url: str, signer: note.Signer) -> None:
        self.log_url = log_url
        self.signer = signer
        self._logged: dict[bytes, int] = {}

    @property
    def logged(self) -> dict[bytes, int]:
        """Records added so far, with their log indices."""
        return dict(self._logged)

    async def publish_all(self, session: aiohttp.ClientSession, records: list[bytes]
                          ) -> list[PublishError]:
        """Add the records not added yet; returns the failures (their adds are retried)."""
        failures: list[PublishError] = []
        for record in records:
            if record in self._logged:
                continue
            try:
                self._logged[record] = await publish_async(session, self.log_url, self.signer,
                                                           record)
            except PublishError as exc:
                failures.append(exc)
        return failures
