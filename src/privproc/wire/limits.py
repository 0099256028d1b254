"""The request limits of the inner protocol: what a node accepts, in one place.

Both ends use them. The node refuses a request beyond them
(:mod:`privproc.inference.tasks` takes its :class:`RequestLimits` from here), and the
client SDK checks its input with :func:`check_summary_request` and
:func:`check_write_request` before it opens a connection or spends a token, so a request
the node would refuse costs nothing.

What the checks accept (with :data:`DEFAULT_LIMITS`):

- summarize: ``messages`` is a non-empty list of at most 100 objects, each with exactly
  the string fields ``sender`` (at most 64 characters), ``time`` (at most 64) and
  ``text`` (at most 2000); texts and senders together at most 12000 characters; at least
  one text that is not blank. ``max_bullets`` is an integer from 1 to 10. ``reader`` is
  None or a string of at most 64 characters (the same limit as a sender's name: it is
  one).
- write: ``draft`` is a string that is not blank, at most 2000 characters; ``tone`` is
  one of :data:`TONES`.

Characters are Unicode code points (Python's ``len``), as the node counts them. The
checks are pure: they raise :class:`RequestInputError` naming the field, what was
expected and what came (counts and types; of the user's input only a tone name is
quoted, shortened), and return nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .errors import WireError

__all__ = [
    "DEFAULT_LIMITS",
    "MESSAGE_FIELDS",
    "TONES",
    "RequestInputError",
    "RequestLimits",
    "check_summary_request",
    "check_write_request",
]

TONES: Final = ("rephrase", "professional", "funny", "supportive", "proofread")
MESSAGE_FIELDS: Final = ("sender", "time", "text")


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """The limits of one node's inner requests (characters are code points)."""

    max_messages: int = 100
    max_message_chars: int = 2000  # one message's text
    max_total_chars: int = 12000  # every message's text and sender, together
    max_sender_chars: int = 64
    max_time_chars: int = 64
    max_reader_chars: int = 64
    max_bullets: int = 10
    max_draft_chars: int = 2000


DEFAULT_LIMITS: Final = RequestLimits()


class RequestInputError(WireError, ValueError):
    """A summarize or write request that the node would refuse; ``field`` names the part
    (``messages``, ``messages[3].text``, ``max_bullets``, ``reader``, ``draft``,
    ``tone``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _kind(value: object) -> str:
    return type(value).__name__


def _short(text: str, limit: int = 40) -> str:
    """``text`` quoted, and cut to ``limit`` characters (repr escapes control characters)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _too_long(field: str, what: str, length: int, limit: int) -> RequestInputError:
    return RequestInputError(field, f"{what} is {length} characters; the limit is {limit}")


def _check_message(i: int, item: object, limits: RequestLimits) -> tuple[str, str, str]:
    if not isinstance(item, Mapping):
        raise RequestInputError(
            f"messages[{i}]", f"message {i} must be an object with string sender, time "
                              f"and text, got {_kind(item)}")
    unknown = sorted(repr(k) for k in item if k not in MESSAGE_FIELDS)
    if unknown:
        raise RequestInputError(
            f"messages[{i}]", f"message {i} has unknown field(s) {', '.join(unknown)}: "
                              f"expected exactly {', '.join(MESSAGE_FIELDS)}")
    values: list[str] = []
    for name, limit in (("sender", limits.max_sender_chars), ("time", limits.max_time_chars),
                        ("text", limits.max_message_chars)):
        field = f"messages[{i}].{name}"
        if name not in item:
            raise RequestInputError(field, f"message {i} has no {name!r}: expected string "
                                           f"{', '.join(MESSAGE_FIELDS)}")
        value = item[name]
        if not isinstance(value, str):
            raise RequestInputError(field, f"message {i} {name} must be a string, got "
                                           f"{_kind(value)}")
        if len(value) > limit:
            raise _too_long(field, f"message {i} {name}", len(value), limit)
        values.append(value)
    sender, time, text = values
    return sender, time, text


def check_summary_request(messages: object, max_bullets: object, reader: object = None,
                          limits: RequestLimits = DEFAULT_LIMITS) -> None:
    """Raise :class:`RequestInputError` unless the node accepts this summarize request."""
    if not isinstance(messages, list | tuple):
        raise RequestInputError(
            "messages", f"messages must be a list of {{sender, time, text}} objects, got "
                        f"{_kind(messages)}")
    if not messages:
        raise RequestInputError("messages", "messages is empty: at least one message is "
                                            "required")
    if len(messages) > limits.max_messages:
        raise RequestInputError("messages", f"there are {len(messages)} messages; the limit "
                                            f"is {limits.max_messages}")
    total = 0
    blank = True
    for i, item in enumerate(messages):
        sender, _, text = _check_message(i, item, limits)
        total += len(text) + len(sender)
        blank = blank and not text.strip()
    if total > limits.max_total_chars:
        raise RequestInputError(
            "messages", f"the messages are {total} characters in all (texts and senders); "
                        f"the limit is {limits.max_total_chars}")
    if blank:
        raise RequestInputError("messages", f"all {len(messages)} messages are empty: there "
                                            "is nothing to summarize")
    if isinstance(max_bullets, bool) or not isinstance(max_bullets, int):
        raise RequestInputError("max_bullets", f"max_bullets must be an integer "
                                               f"1..{limits.max_bullets}, got "
                                               f"{_kind(max_bullets)}")
    if not 1 <= max_bullets <= limits.max_bullets:
        raise RequestInputError("max_bullets", f"max_bullets must be 1..{limits.max_bullets}, "
                                               f"got {max_bullets}")
    if reader is not None:
        if not isinstance(reader, str):
            raise RequestInputError("reader", f"reader must be a string or None, got "
                                              f"{_kind(reader)}")
        if len(reader) > limits.max_reader_chars:
            raise _too_long("reader", "reader", len(reader), limits.max_reader_chars)


def check_write_request(draft: object, tone: object,
                        limits: RequestLimits = DEFAULT_LIMITS) -> None:
    """Raise :class:`RequestInputError` unless the node accepts this write request."""
    if not isinstance(draft, str):
        raise RequestInputError("draft", f"draft must be a string, got {_kind(draft)}")
    if not draft:
        raise RequestInputError("draft", "draft is empty")
    if not draft.strip():
        raise RequestInputError("draft", f"draft is blank: its {len(draft)} characters are "
                                         "all whitespace")
    if len(draft) > limits.max_draft_chars:
        raise _too_long("draft", "draft", len(draft), limits.max_draft_chars)
    if not isinstance(tone, str):
        raise RequestInputError("tone", f"tone must be a string, one of {', '.join(TONES)}; "
                                        f"got {_kind(tone)}")
    if tone not in TONES:
        raise RequestInputError("tone", f"unknown tone {_short(tone)}: expected one of "
                                        f"{', '.join(TONES)}")
