"""Text made safe to print on a terminal.

Model output and chat text are untrusted: an escape sequence in a message could recolour
the terminal, move the cursor and overwrite what was printed, set the window title, or
(on some terminals) write to the clipboard or a file; a bidirectional override could make
a line read differently from what it holds. :func:`printable` removes all of it:

- ANSI escape sequences, whole: CSI (``ESC [`` or U+009B ... final byte), the string
  sequences OSC, DCS, SOS, PM and APC (``ESC ]``, ``ESC P``, ``ESC X``, ``ESC ^``,
  ``ESC _`` or their C1 forms, up to BEL or ST), and the other ``ESC`` sequences;
- then every remaining control character: C0 (U+0000-U+001F) except tab and newline,
  DEL (U+007F), C1 (U+0080-U+009F);
- the bidirectional embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069.

A carriage return (alone, or in CRLF) becomes a newline: a lone CR would let a message
print over the line before it. Lone surrogates (from ``errors="surrogateescape"``) become
U+FFFD, so printing never fails on them.

Kept on purpose: the marks U+200E (LEFT-TO-RIGHT MARK), U+200F (RIGHT-TO-LEFT MARK) and
U+061C (ARABIC LETTER MARK). WhatsApp exports put U+200E around placeholders such as
"<Media omitted>" and before names, and right-to-left chats need the marks to show
punctuation and numbers in the right place. A mark is an invisible strong character: it
only settles the direction of the neutral characters next to it, it opens no embedding
that runs on across the text the way an override or isolate does, and terminals do not
interpret it.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# CSI: introducer, parameter bytes 0x30-0x3F, intermediate bytes 0x20-0x2F, final byte.
_CSI = r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
# OSC, DCS, SOS, PM, APC: a string up to BEL (OSC's usual end) or ST (ESC \ or U+009C).
# An unterminated string is left to the character pass: its introducer goes, its text is
# kept as plain text.
_STRING = r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
# Any other escape sequence: ESC, intermediate bytes, a final byte (ESC 7, ESC ( B, ESC c).
_ESCAPE = r"\x1b[\x20-\x2f]*[\x30-\x7e]"
_SEQUENCES = re.compile(f"{_STRING}|{_CSI}|{_ESCAPE}")
_NEWLINES = re.compile(r"\r\n?")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` without terminal control characters, escape sequences and bidi
    overrides (see the module docstring); tabs, newlines and everything else are kept."""
    text = _SEQUENCES.sub("", text)
    text = _NEWLINES.sub("\n", text)
    text = _SURROGATES.sub("\ufffd", text)
    return _UNSAFE.sub("", text)
