"""How the evaluation set's annotations are matched against a summary or a rewrite.

The rules of README.md, "Matching": a surface form matches when it occurs as whole tokens
after both texts are normalised (case, quotes and dashes, "Saturday" = "Sat", "three" =
"3", "9am" = "9:00", "£45.00" = "£45", "21st" = "21"). Used by the schema tests here and
by ``bench/quality.py``.
"""

from __future__ import annotations

import re
from typing import Any

_CHARS = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u00b2": "2",
        "\u00a0": " ",
    }
)
_NUMBERS = "one two three four five six seven eight nine ten eleven twelve"
_DAYS = "monday tuesday wednesday thursday friday saturday sunday"
_MONTHS = "january february march april june july august september october november december"
_WORDS = {
    **{word: str(n) for n, word in enumerate(_NUMBERS.split(), start=1)},
    **{word: word[:3] for word in (*_DAYS.split(), *_MONTHS.split())},
    **{"tues": "tue", "weds": "wed", "thur": "thu", "thurs": "thu", "sept": "sep"},
    **{"street": "st", "road": "rd"},
}
_WORD_RE = re.compile(r"\b(" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")\b")


def _clock(hour: str, minute: str) -> str:
    h = int(hour)
    return f"{h - 12 if h > 12 else h}:{minute}"


def _at_hour(match: re.Match[str]) -> str:
    hour = int(match[1])
    return f"at {hour}:00" if 1 <= hour <= 12 else match[0]


def normalise(text: str) -> str:
    """Canonical form for matching surface forms; see README.md, "Matching"."""
    t = text.casefold().translate(_CHARS).replace("&", " and ")
    t = re.sub(r"\s+", " ", t).strip()
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)  # 2,400 -> 2400
    t = re.sub(r"([£$€]\d+)\.00\b", r"\1", t)  # £45.00 -> £45
    t = _WORD_RE.sub(lambda m: _WORDS[m[1]], t)  # Saturday -> sat, three -> 3
    t = re.sub(r"\b(\d{1,2})[:.](\d{2}) ?[ap]m\b", lambda m: _clock(m[1], m[2]), t)
    t = re.sub(r"\b(\d{1,2}) ?[ap]m\b", lambda m: _clock(m[1], "00"), t)  # 9am -> 9:00
    t = re.sub(r"\b(\d{1,2}):(\d{2})\b", lambda m: _clock(m[1], m[2]), t)  # 19:00 -> 7:00
    t = re.sub(r"\bat (\d{1,2})(?![\d:%]|\.\d)", _at_hour, t)  # at 3 -> at 3:00
    t = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", r"\1", t)  # 21st -> 21
    return re.sub(r"(?<=\d)(?=[a-z])", " ", t)  # 16k -> 16 k, 30mph -> 30 mph


def mentions(form: str, text: str) -> bool:
    """Whether the surface form occurs in the text, both normalised, as whole tokens."""
    f, t = normalise(form), normalise(text)
    if not f:
        return False
    before = r"(?<!\w)" if f[0].isalnum() else ""
    after = r"(?!\w)" if f[-1].isalnum() else ""
    return re.search(before + re.escape(f) + after, t) is not None


def sentences(summary: str) -> list[str]:
    return [s for s in re.split(r"\n+|(?<=[.!?])\s+", summary) if s.strip()]


_QUOTED = re.compile(
    r"\"[^\"\n]*\"|\u201c[^\u201d\n]*\u201d|\u2018[^\u2019\n]*\u2019|(?<!\w)'[^'\n]*'(?!\w)"
)


def states_superseded(item: dict[str, Any], summary: str) -> bool:
    """A sentence states the stale value (outside quotes) without its correction."""
    for sentence in sentences(summary):
        claim = normalise(_QUOTED.sub(" ", sentence))
        if any(mentions(f, claim) for f in item["any_of"]) and not any(
            mentions(c, claim) for c in item.get("current", [])
        ):
            return True
    return False


