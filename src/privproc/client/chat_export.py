"""Parse WhatsApp chat exports (the text files the app's "Export chat" writes).

Two styles are recognised, line by line:

- iOS: ``[dd/mm/yy, hh:mm:ss] Name: text`` (the year may have 4 digits, seconds optional)
- Android: ``dd/mm/yyyy, hh:mm - Name: text`` (2- or 4-digit year)

A line that does not start a message continues the previous one (multi-line messages).
System lines (no ``Name:`` part, e.g. "Ana created group", or the end-to-end encryption
notice) are dropped, and so are the invisible direction marks the app inserts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

_IOS = re.compile(
    r"^\[(\d{1,2})/(\d{1,2})/(\d{2,4}),\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([AaPp][Mm]))?\]\s+"
    r"(.*)$"
)
_ANDROID = re.compile(
    r"^(\d{1,2})/(\d{1,2})/(\d{2,4}),\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([AaPp][Mm]))?"
    r"\s+-\s+(.*)$"
)
_MARKS = dict.fromkeys(map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\ufeff"))


class ChatExportError(ValueError):
    """The file has no message in a known WhatsApp export format."""


@dataclass(frozen=True)
class ExportedMessage:
    sender: str
    time: datetime
    text: str


def _when(groups: tuple[str | None, ...]) -> datetime | None:
    day, month, year, hour, minute, second, ampm = groups
    assert day and month and year and hour and minute
    y = int(year)
    if y < 100:
        y += 2000
    h = int(hour)
    if ampm:
        h = h % 12 + (12 if ampm.lower() == "pm" else 0)
    try:
        return datetime(y, int(month), int(day), h, int(minute), int(second or 0))
    except ValueError:
        return None


def parse_chat_export(text: str) -> list[ExportedMessage]:
    """All messages of an export, in order; raises :class:`ChatExportError` if none."""
    messages: list[ExportedMessage] = []
    current: tuple[str, datetime, list[str]] | None = None  # sender, time, lines

    def flush() -> None:
        if current is not None:
            messages.append(ExportedMessage(current[0], current[1],
                                            "\n".join(current[2]).strip()))

    for raw in text.splitlines():
        line = raw.translate(_MARKS)
        match = _IOS.match(line) or _ANDROID.match(line)
        when = _when(match.groups()[:7]) if match else None
        if match is None or when is None:
            if current is not None:
                current[2].append(line)
            continue
        flush()
        current = None
        rest = match.group(8)
        sender, sep, body = rest.partition(": ")
        if not sep or not sender.strip():
            continue  # a system line: "Ana created group ...", the encryption notice
        if body.startswith("Messages and calls are end-to-end encrypted"):
            continue
        current = (sender.strip(), when, [body])
    flush()
    if not messages:
        raise ChatExportError("no messages found: expected a WhatsApp chat export "
                              "('[dd/mm/yy, hh:mm:ss] Name: text' or "
                              "'dd/mm/yyyy, hh:mm - Name: text' lines)")
    return messages


def last_messages(messages: list[ExportedMessage], unread: int) -> list[ExportedMessage]:
    if unread <= 0:
        raise ValueError(f"--unread must be positive, got {unread}")
    return messages[-unread:]
