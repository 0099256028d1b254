"""What a chat line is: a message, or an event that only looks like one.

Chat exports mix people's messages with lines that are not content: system events
("Ana created this group", "Tom added you", "changed the subject"), placeholders
("image omitted", "<Media omitted>", "This message was deleted"), and calls. They must
never become bullets nor be quoted as if someone had said them. :func:`classify` tells
them apart (the client's export parser types them first; the node checks again, since
an app may send them as plain messages).

:func:`addresses_reader` tells whether a message speaks to the reader: by name (also the
first name, or ``@name``), or with "you" in reply to the reader's own message.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import Final

from .backend import ChatLine
from .facts import COMMON_STARTERS


class LineKind(enum.Enum):
    MESSAGE = "message"
    MEDIA = "media"  # a placeholder for an attachment
    DELETED = "deleted"
    SYSTEM = "system"  # group events, calls, security notices


_MEDIA = re.compile(
    r"^\W*(?:<\s*media omitted\s*>|(?:image|video|audio|sticker|gif|document|contact card|"
    r"photo|voice message)\s+omitted|<attached:[^>]*>|\S+\.(?:jpg|jpeg|png|webp|opus|mp4|pdf)"
    r"\s*\((?:file attached)\))\W*$",
    re.IGNORECASE)
_DELETED = re.compile(
    r"^\W*(?:this message was deleted|you deleted this message|message deleted|"
    r"null|waiting for this message[^\n]*)\W*$", re.IGNORECASE)
# A person as the app names them in an event: "You", a contact name (capitalised words) or
# a phone number; never "I", "we", "who" or the like ("I added salt" is a message).
_WHO = (r"(?!(?:I|We|He|She|They|It|Who|What|Mum|Mom|Dad|Someone|Everyone)\b)"
        r"(?:[A-Z+\d~][\w.'\u2019+-]*(?: [A-Z\d(][\w.'\u2019()-]*){0,3})")
_ANYONE = rf"(?:you|You|{_WHO})"
# A whole line in the form the app writes its events (a message that merely talks about
# adding or leaving is a message).
_SYSTEM = re.compile(
    rf"^\W*(?:(?:{_ANYONE} )?(?i:created group) [\"\u201c].{{1,80}}[\"\u201d]"
    rf"|(?:{_ANYONE} )?(?i:created this group)"
    rf"|{_ANYONE} (?:added|removed) {_ANYONE}(?:, {_ANYONE})*(?: and {_ANYONE})?"
    rf"|{_ANYONE} (?:left|joined using this group's invite link|is now an admin"
    rf"|pinned a message|deleted this group's icon"
    rf"|changed (?:this group's|the group) (?:icon|description|settings)"
    rf"|changed the (?:subject|group name)(?: from .{{0,80}})? to .{{0,80}}"
    rf"|changed their phone number.{{0,80}}|turned (?:on|off) disappearing messages.{{0,40}})"
    rf"|(?i:your security code with) {_WHO} (?i:changed).{{0,40}}|(?i:you're now an admin)"
    rf"|(?i:messages and calls are end-to-end encrypted).{{0,200}}"
    rf"|(?i:missed (?:voice|video) call|(?:voice|video) call)(?: \d+:\d+)?)\W*$")
EDITED: Final = re.compile(r"\s*<this message was edited>\s*$", re.IGNORECASE)
# iOS exports start a system line's text with a LEFT-TO-RIGHT MARK.
SYSTEM_MARK: Final = "\u200e"


MAX_EVENT_LENGTH: Final = 500
"""The longest line that can be an event or a placeholder (the longest template, the
encryption notice, is about 300 characters). A longer one is a message: the patterns are
not run on it, so a hostile line costs no backtracking."""


def classify(text: str) -> LineKind:
    body = text.strip()
    if len(body) > MAX_EVENT_LENGTH:
        return LineKind.SYSTEM if body.startswith(SYSTEM_MARK) else LineKind.MESSAGE
    if body.startswith(SYSTEM_MARK) and not _MEDIA.match(body.lstrip(SYSTEM_MARK)):
        stripped = body.lstrip(SYSTEM_MARK)
        if _DELETED.match(stripped):
            return LineKind.DELETED
        return LineKind.SYSTEM
    body = body.lstrip(SYSTEM_MARK)
    if _MEDIA.match(body):
        return LineKind.MEDIA
    if _DELETED.match(body):
        return LineKind.DELETED
    if _SYSTEM.match(body):
        return LineKind.SYSTEM
    return LineKind.MESSAGE


def clean_text(text: str) -> str:
    """A message's text without export artefacts (marks, the "edited" suffix)."""
    return EDITED.sub("", text.replace(SYSTEM_MARK, "")).strip()


def name_forms(name: str) -> set[str]:
    """The ways a chat may name a person: the full name and the first name, lowercased."""
    full = " ".join(name.split()).lower()
    return {form for form in (full, full.split(" ")[0] if full else "") if form}


def mentions(text: str, name: str) -> bool:
    lowered = text.lower()
    # not inside an address: "ana@example.com" does not name Ana
    return any(re.search(rf"(?<![\w@.])@?{re.escape(form)}(?![\w@]|\.\w)", lowered)
               for form in name_forms(name))


_YOU = re.compile(r"\b(?:you|your|u|ur|yours)\b", re.IGNORECASE)
# "Sam, could you ...", "@Sam can you ...": the message names whom "you" means.
_VOCATIVE = re.compile(r"^\W*(?:(?:hey|hi|ok|so|and)\s+)?@?(?P<name>[A-Z][\w'\u2019-]+)\s*[,:]"
                       r"|(?<![\w@])@(?P<handle>\w+)")


def addresses_reader(lines: Sequence[ChatLine], index: int, reader: str | None) -> bool:
    """Whether message ``index`` speaks to the reader (see the module docstring)."""
    if not reader or not reader.strip():
        return False
    line = lines[index]
    if mentions(line.text, reader) or line.sender == reader:
        return mentions(line.text, reader) and line.sender != reader
    previous = next((lines[j] for j in range(index - 1, -1, -1)
                     if classify(lines[j].text) is LineKind.MESSAGE), None)
    if previous is None or previous.sender != reader or not _YOU.search(line.text):
        return False
    return not _names_someone_else(line.text)


def _names_someone_else(text: str) -> bool:
    """Whether the message opens by naming whom it speaks to (the reader's own name is
    handled before this is asked)."""
    for m in _VOCATIVE.finditer(text):
        name = m.group("name") or m.group("handle") or ""
        if name.lower() not in COMMON_STARTERS:
            return True
    return False
