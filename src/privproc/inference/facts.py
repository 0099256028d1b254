"""Checkable facts in text: what a summary or a rewrite must never invent or lose.

:func:`facts_of` finds, in any text, the tokens a reader relies on: times, dates,
amounts, other numbers, URLs, e-mail addresses, identifiers (``INV-2291``, ``#4521``),
emoji, and capitalised words (names and places). Each fact is normalised so that the
same fact written two ways compares equal: "9am", "9 am", "9:00am" and "09:00" are one
time; "£45" and "£45.00" one amount; "eight" and "8" one number; "Sat" and "Saturday"
one day. :func:`unsupported` lists the facts of a text that its sources do not contain
(an invented time, a swapped amount, a name no one wrote); :func:`missing` lists the
facts of a source that a text lost.

Everything here is pure and deterministic (the node runs it on every bullet).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

_NUMBER_WORDS: Final = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100, "dozen": 12,
}
_DAYS: Final = {
    "mon": "monday", "monday": "monday", "tue": "tuesday", "tues": "tuesday",
    "tuesday": "tuesday", "wed": "wednesday", "weds": "wednesday", "wednesday": "wednesday",
    "thu": "thursday", "thur": "thursday", "thurs": "thursday", "thursday": "thursday",
    "fri": "friday", "friday": "friday", "sat": "saturday", "saturday": "saturday",
    "sun": "sunday", "sunday": "sunday",
}
_RELATIVE: Final = {"today": "today", "tonight": "tonight", "tomorrow": "tomorrow",
                    "tmrw": "tomorrow", "tmr": "tomorrow", "yesterday": "yesterday"}
_MONTHS: Final = {m[:3]: i + 1 for i, m in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august",
     "september", "october", "november", "december"))}
_MONTH_WORDS: Final = frozenset(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december", "sept", *_MONTHS])
_CURRENCY: Final = {"£": "GBP", "$": "USD", "€": "EUR", "¥": "JPY", "₹": "INR"}

_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_IDENT = re.compile(r"(?<![\w#])(?:#\d{2,}|[A-Z]{2,}[-_]?\d{2,}[\w-]*|\d+[A-Z]{1,3}\d*)\b")
_AMOUNT = re.compile(
    r"(?P<cur>[£$€¥₹])\s?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?P<k>k\b)?"
    # (not from inside a number: each start in a run of digits rescanned the rest of it)
    r"|(?<!\d)(?<!\d\.)(?P<num2>\d+(?:\.\d+)?)\s?(?P<unit>p|pence|quid|pounds?|euros?|dollars?|bucks)"
    r"\b",
    re.IGNORECASE)
_TIME = re.compile(
    r"\b(?P<h>[01]?\d|2[0-3])(?:[:.](?P<m>[0-5]\d))?\s?(?P<ap>a\.?m\.?|p\.?m\.?)(?!\w)"
    r"|\b(?P<h2>[01]?\d|2[0-3]):(?P<m2>[0-5]\d)\b(?!\s?(?:%|[ap]\.?m))"
    r"|(?<=\bat )(?P<h4>[01]?\d|2[0-3])\.(?P<m4>[0-5]\d)\b(?!\s?(?:%|[ap]\.?m))"
    r"|\b(?P<word>noon|midday|midnight)\b"
    r"|\b(?P<prep>at|by|from|until|till|around|about|after|before|between)\s+"
    r"(?P<h3>[01]?\d|2[0-3])\b(?![:.,]?\d|\s?(?:%|st|nd|rd|th|people|of|min|hours?|days?|"
    r"weeks?|months?|years?|mins?|each|pp|quid|pounds?))",
    re.IGNORECASE)
_DATE = re.compile(
    r"\b(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<mon>jan|feb|mar|apr|may|jun|jul|aug|"
    r"sep|sept|oct|nov|dec)[a-z]*\b"
    r"|\b(?P<mon2>jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+"
    r"(?P<d2>\d{1,2})(?:st|nd|rd|th)?\b"
    r"|\b(?P<day>\d{1,2})(?:st|nd|rd|th)\b"
    r"|\b(?P<dd>\d{1,2})/(?P<mm>\d{1,2})(?:/(?P<yy>\d{2,4}))?\b",
    re.IGNORECASE)
_TIME_CONTEXT = re.compile(
    r"\b(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\b|\b(?:today|tomorrow|tmrw|tonight|morning|"
    r"afternoon|evening|night|noon|meet|meeting|start|starts|starting|kick ?off|leave|leaving|"
    r"arrive|arriving|dinner|lunch|breakfast|brunch|ready|open|opens|close|closes|call|"
    r"pick(?:ing)? (?:you|her|him|them|us) up|doors|train|bus|flight|drop|collect|home|back|"
    r"there|here|gym|class|session|practice|rehearsal|match|game|shift)\b",
    re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])\d+(?:\.\d+)?")
_WORD = re.compile(r"[^\W\d_][\w'\u2019-]*")
# Possessives and contractions: "Ana's" is the name Ana, "They're" the common word "they".
_POSSESSIVE = tuple(a + b for a in ("'", "\u2019") for b in ("s", "re", "ll", "ve", "d", "m"))

# Capitalised words that are ordinary words, not names, wherever they stand.
_COMMON_TEXT: Final = """
    i i'm i'll i've i'd you you're you'll we we're we'll they he she it it's this that these
    those the a an and or but so if then also just ok okay yes no not all any some every
    please thanks thank hi hey hello dear morning evening night afternoon
    can could would will shall should may might must do does did done is are was were be
    been being have has had get got go going come coming see let let's lets make made
    need needs want wants asked asks said says told tells sent sends
    who what when where why how which whose there here
    mr mrs ms dr
"""
COMMON_WORDS: Final = frozenset(_COMMON_TEXT.split())
# Words a rewrite or a bullet may start a sentence with (capitalised there, yet no name).
_STARTERS_TEXT: Final = """
    apologies sorry unfortunately regrettably sadly hopefully kindly please could would
    will shall can may might should just also however therefore so still meanwhile instead
    otherwise besides additionally furthermore moreover finally firstly secondly lastly
    thanks thank good great happy glad looking excited quick friendly gentle reminder
    update note fyi heads attention important urgent all everyone folks team guys
    let lets let's shall we our your their my his her its one two three four five
    ok okay yes no yeah yep nope sure absolutely definitely honestly actually basically
    as at by for from in into of on to with without about after before during until
    when while if unless because since although though whether where what which who why how
    this that these those there here it they we you he she i
    is are was were be been do does did have has had get got make made take took give gave
    send sent bring brought come came go went see saw know knew think thought feel felt
    hope wish want need needs love like enjoy appreciate wondering wonder confirm confirming
    checking check following follow regarding re subject dear hi hello hey greetings cheers
    best regards kind warm sincerely yours respectfully warmly
    no not never nothing none nobody something someone anyone everything each every both
    new old next last first early late soon today tomorrow tonight yesterday
    """
COMMON_STARTERS: Final = frozenset(_STARTERS_TEXT.split())
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n]\s*|[-\u2022*]\s+|[\"\u201c(]\s*)$")


def _starts_sentence(text: str, pos: int) -> bool:
    """Whether ``text[:pos]`` ends where a sentence starts (:data:`_SENTENCE_START`),
    looking only at its trailing spaces and the character before them: searching the
    whole prefix for every word cost time quadratic in the text."""
    start = pos
    while start > 0 and text[start - 1].isspace():
        start -= 1
    return pos == 0 or bool(_SENTENCE_START.search(text, max(0, start - 1), pos))


@dataclass(frozen=True, order=True)
class Fact:
    kind: str  # time, date, amount, number, url, email, ident, emoji, name
    value: str  # normalised
    surface: str = ""  # as written (for messages), not compared

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fact) and (self.kind, self.value) == (other.kind, other.value)

    def __hash__(self) -> int:
        return hash((self.kind, self.value))


def _decimal(text: str) -> str:
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return text
    if value == value.to_integral_value():
        return format(value.to_integral_value(), "f")  # (str(int()) refuses 4,300 digits)
    return format(value.normalize(), "f")


def _times(match: re.Match[str]) -> set[str]:
    if match.group("h3"):
        hour = int(match.group("h3"))
        return {f"{hour:02d}:00", f"{(hour + 12) % 24:02d}:00"}
    if match.group("word"):
        word = match.group("word").lower()
        return {"00:00"} if word == "midnight" else {"12:00"}
    if match.group("ap"):
        hour, minute = int(match.group("h")), int(match.group("m") or 0)
        if hour > 12:
            return {f"{hour:02d}:{minute:02d}"}
        pm = match.group("ap").lower().startswith("p")
        hour = hour % 12 + (12 if pm else 0)
        return {f"{hour:02d}:{minute:02d}"}
    hour = int(match.group("h2") or match.group("h4"))
    minute = int(match.group("m2") or match.group("m4"))
    if hour >= 13 or hour == 0:
        return {f"{hour:02d}:{minute:02d}"}
    # "9:30" may be morning or evening; "12:40" noon or midnight-ish: either reading
    return {f"{hour:02d}:{minute:02d}", f"{(hour + 12) % 24:02d}:{minute:02d}"}


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return (0x1F000 <= cp <= 0x1FAFF or 0x2300 <= cp <= 0x2BFF or cp in (0x3030, 0x303D,
            0x3297, 0x3299)) and unicodedata.category(ch) in ("So", "Sk")


@dataclass(frozen=True)
class TextFacts:
    """The facts of one text, by kind; times keep every reading of an ambiguous clock."""

    facts: frozenset[Fact]
    time_readings: tuple[frozenset[str], ...]  # one set per time written

    def of(self, kind: str) -> set[str]:
        return {f.value for f in self.facts if f.kind == kind}


def facts_of(text: str, *, names: bool = True) -> TextFacts:
    """Every checkable fact of ``text`` (see the module docstring)."""
    found: set[Fact] = set()
    readings: list[frozenset[str]] = []
    taken: list[tuple[int, int]] = []

    def free(span: tuple[int, int]) -> bool:
        return all(span[1] <= a or span[0] >= b for a, b in taken)

    for m in _URL.finditer(text):
        found.add(Fact("url", m.group(0).rstrip(".,;:!?").lower(), m.group(0)))
        taken.append(m.span())
    for m in _EMAIL.finditer(text):
        if free(m.span()):
            found.add(Fact("email", m.group(0).lower(), m.group(0)))
            taken.append(m.span())
    for m in _AMOUNT.finditer(text):
        if not free(m.span()):
            continue
        if m.group("cur"):
            value = _decimal(m.group("num"))
            if m.group("k"):
                value = _decimal(str(Decimal(m.group("num").replace(",", "")) * 1000))
            found.add(Fact("amount", f"{_CURRENCY[m.group('cur')]}:{value}", m.group(0)))
        else:
            unit = m.group("unit").lower()
            currency = {"p": "GBP-p", "pence": "GBP-p", "quid": "GBP", "pound": "GBP",
                        "pounds": "GBP", "euro": "EUR", "euros": "EUR", "dollar": "USD",
                        "dollars": "USD", "bucks": "USD"}[unit]
            found.add(Fact("amount", f"{currency}:{_decimal(m.group('num2'))}", m.group(0)))
        found.add(Fact("number", value, m.group(0)) if m.group("cur") else
                  Fact("number", _decimal(m.group("num2")), m.group(0)))
        taken.append(m.span())
    for m in _TIME.finditer(text):
        if not free(m.span()):
            continue
        if m.group("h3") and not (_TIME_CONTEXT.search(text[max(0, m.start() - 40):m.start()])
                                  or _TIME_CONTEXT.match(text[m.end():m.end() + 20].lstrip())):
            continue  # "at 8" is a time only near a day or a time word ("we're at 8" is not)
        values = _times(m)
        readings.append(frozenset(values))
        for value in values:
            found.add(Fact("time", value, m.group(0)))
        taken.append(m.span())
    for m in _DATE.finditer(text):
        if not free(m.span()):
            continue
        if m.group("mon") or m.group("mon2"):
            month = _MONTHS[(m.group("mon") or m.group("mon2")).lower()[:3]]
            day = int(m.group("d") or m.group("d2"))
            found.add(Fact("date", f"{month:02d}-{day:02d}", m.group(0)))
        elif m.group("day"):
            found.add(Fact("date", f"*-{int(m.group('day')):02d}", m.group(0)))
        else:
            found.add(Fact("date", f"{int(m.group('mm')):02d}-{int(m.group('dd')):02d}",
                           m.group(0)))
        taken.append(m.span())
    for m in _IDENT.finditer(text):
        if free(m.span()):
            found.add(Fact("ident", m.group(0).lstrip("#").upper(), m.group(0)))
            taken.append(m.span())
    for m in _NUMBER.finditer(text):
        if free(m.span()):
            found.add(Fact("number", _decimal(m.group(0)), m.group(0)))
    for m in _WORD.finditer(text):
        word = m.group(0)
        lower = word.lower()
        for suffix in _POSSESSIVE:
            lower = lower.removesuffix(suffix)
        if lower in _DAYS:
            found.add(Fact("date", _DAYS[lower], word))
        elif lower in _RELATIVE:
            found.add(Fact("date", _RELATIVE[lower], word))
        elif lower in _NUMBER_WORDS:
            found.add(Fact("number", str(_NUMBER_WORDS[lower]), word))
        elif names and word[0].isupper() and lower not in COMMON_WORDS and not any(
                c.isdigit() for c in word) and lower not in _MONTH_WORDS:
            initial = _starts_sentence(text, m.start())
            found.add(Fact("initial-name" if initial else "name", lower, word))
    for ch in text:
        if _is_emoji(ch):
            found.add(Fact("emoji", ch, ch))
        elif ch == "\ufffd":
            found.add(Fact("broken", "\ufffd", ch))
    return TextFacts(frozenset(found), tuple(readings))


def _supported(fact: Fact, pool: TextFacts, words: set[str]) -> bool:
    if fact.kind == "time":
        return True  # times are compared by reading, in unsupported() and missing()
    if fact.kind == "number":
        # A bare number is backed by any number, amount, time or date that carries it.
        if fact.value in pool.of("number"):
            return True
        carried = {v.split(":")[-1] for v in pool.of("amount")}
        carried |= {v.split(":")[0].lstrip("0") or "0" for v in pool.of("time")}
        carried |= {v.split("-")[-1].lstrip("0") for v in pool.of("date") if "-" in v}
        return fact.value in carried
    if fact.kind == "name":
        return fact.value in words
    if fact.kind == "initial-name":
        return fact.value in words or fact.value in COMMON_STARTERS
    if fact.kind == "broken":
        return False
    return fact in pool.facts


def _vocabulary(texts: Iterable[str]) -> set[str]:
    words: set[str] = set()
    for text in texts:
        for w in _WORD.findall(text):
            lower = w.lower()
            words.add(lower)
            for suffix in _POSSESSIVE:
                words.add(lower.removesuffix(suffix))
    return words


def unsupported(text: str, sources: Iterable[str], *, allowed_names: Iterable[str] = ()
                ) -> list[str]:
    """The facts of ``text`` that ``sources`` do not back, as written in ``text``.

    A time must match one reading of a time in the sources; a number may be backed by an
    amount, time or date carrying it; a name (a capitalised word that is not a common
    word) must occur in the sources or in ``allowed_names`` (the speaker, the reader).
    """
    source_list = list(sources)
    pool = facts_of("\n".join(source_list))
    words = _vocabulary([*source_list, *allowed_names])
    mine = facts_of(text)
    bad = [f"time {'/'.join(sorted(group))}" for group in mine.time_readings
           if not group & pool.of("time")]
    for fact in sorted(mine.facts):
        if not _supported(fact, pool, words):
            bad.append(fact.surface or fact.value)
    return list(dict.fromkeys(bad))


def missing(text: str, source: str, *, kinds: Iterable[str] | None = None) -> list[str]:
    """The facts of ``source`` (of ``kinds``, default all but names and emoji) that
    ``text`` lost, as written in ``source``."""
    wanted = set(kinds) if kinds is not None else {"time", "date", "amount", "number", "url",
                                                   "email", "ident"}
    pool = facts_of(text)
    words = _vocabulary([text])
    theirs = facts_of(source)
    gone = []
    if "time" in wanted:
        gone = [f"time {'/'.join(sorted(group))}" for group in theirs.time_readings
                if not group & pool.of("time")]
    for fact in sorted(theirs.facts):
        if fact.kind in wanted and not _supported(fact, pool, words):
            gone.append(fact.surface or fact.value)
    return list(dict.fromkeys(gone))
