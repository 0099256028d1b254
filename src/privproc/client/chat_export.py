"""Parse WhatsApp chat exports (the text files the app's "Export chat" writes).

Two styles are recognised, line by line:

- iOS: ``[dd/mm/yy, hh:mm:ss] Name: text`` (the year may have 4 digits, seconds optional)
- Android: ``dd/mm/yyyy, hh:mm - Name: text`` (2- or 4-digit year)

A line that does not start a message continues the previous one (multi-line messages).
Every item is typed (:attr:`ExportedMessage.kind`): ``message``, or an event that only
looks like one — ``system`` (group created, people added or removed, subject changed,
calls, the encryption notice: Android writes them without ``Name:``, iOS with the group's
name as the sender and a U+200E mark before the text, which is read before the invisible
marks are removed), ``media`` ("image omitted", "<Media omitted>") and ``deleted``
("This message was deleted"). Only messages are summarized (:func:`messages_only`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from privproc.errors import PrivprocError
from privproc.inference.chat import SYSTEM_MARK, LineKind, classify, clean_text

_IOS = re.compile(
    r"^\[(\d{1,2})/(\d{1,2})/(\d{2,4}),\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([AaPp][Mm]))?\]\s+"
    r"(.*)$"
)
_ANDROID = re.compile(
    r"^(\d{1,2})/(\d{1,2})/(\d{2,4}),\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([AaPp][Mm]))?"
    r"\s+-\s+(.*)$"
)
_MARKS = dict.fromkeys(map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\ufeff"))



class ChatExportError(PrivprocError, ValueError):
    """The file has no message in a known WhatsApp export format."""


@dataclass(frozen=True)
class ExportedMessage:
    sender: str
    time: datetime
    text: str
    kind: str = "message"  # or "system", "media", "deleted"


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
    """All items of an export, typed, in order; raises :class:`ChatExportError` if none."""
    messages: list[ExportedMessage] = []
    current: tuple[str, datetime, list[str], str] | None = None  # sender, time, lines, kind

    def flush() -> None:
        if current is not None:
            body = clean_text("\n".join(current[2]))
            kind = current[3] if current[3] != "message" else classify(body).value
            messages.append(ExportedMessage(current[0], current[1], body, kind))

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
        # The raw text after the timestamp, marks kept: iOS flags system lines with one.
        raw_rest = (_IOS.match(raw.lstrip("\ufeff")) or _ANDROID.match(raw.lstrip("\ufeff")))
        rest = match.group(8)
        sender, sep, body = rest.partition(": ")
        if not sep or not sender.strip():
            current = ("", when, [rest], "system")
            continue
        raw_body = raw_rest.group(8).partition(": ")[2] if raw_rest else body
        kind = "system" if raw_body.startswith(SYSTEM_MARK) and classify(
            raw_body) is LineKind.SYSTEM else "message"
        if body.startswith("Messages and calls are end-to-end encrypted"):
            kind = "system"
        current = (sender.strip(), when, [body], kind)
    flush()
    if not messages:
        raise ChatExportError("no messages found: expected a WhatsApp chat export "
                              "('[dd/mm/yy, hh:mm:ss] Name: text' or "
                              "'dd/mm/yyyy, hh:mm - Name: text' lines)")
    return messages


def messages_only(items: list[ExportedMessage]) -> list[ExportedMessage]:
    """The people's messages, without events and placeholders."""
    return [m for m in items if m.kind == "message" and m.text]


def last_messages(messages: list[ExportedMessage], unread: int) -> list[ExportedMessage]:
    if unread <= 0:
        raise ValueError(f"--unread must be positive, got {unread}")
    return messages[-unread:]
