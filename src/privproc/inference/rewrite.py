"""Rewrites that keep the facts: names, numbers, times, amounts, URLs and who does what.

A model rewrites the draft in the asked tone; the result is accepted only if

- it is the rewrite alone: no preamble ("Here is the rewritten text:"), no comment on
  the text, no quote of the draft, no greeting or signature the draft did not have
  (those are stripped when they can be, refused otherwise);
- every protected item of the draft (:func:`protected_items`: times, dates, amounts,
  numbers, URLs, e-mail addresses, identifiers, names) is still in it;
- it invents none (:func:`.facts.unsupported` against the draft);
- it keeps who does what: a draft about the writer ("start without me") may not become
  one about the reader ("I'll have to start without you"), and the reverse;
- it keeps the meaning's polarity: a negation of the draft stays ("without them" may not
  become "with them"), no word turns into its opposite ("late" -> "early");
- it is a rewrite, not an answer: no refusal ("I can't assist with that"), no reply
  ("Thank you for your support"), and at least a third of the draft's content words;
- a proofread contains every correction :mod:`.spelling` knows ("becuase" -> "because").

A rejected rewrite is regenerated once (with a stricter instruction); if that fails too,
the lightly corrected draft (:func:`light_correction`: spacing, capitals, common chat
abbreviations) is returned with a flag, so the app can say "kept your words".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from .facts import facts_of, missing, unsupported
from .spelling import correct_spelling

_GREETING = re.compile(r"^(?:dear|hi|hello|hey|good (?:morning|afternoon|evening))\b[^\n]{0,40}"
                       r"[,!]?\s*\n+", re.IGNORECASE)
_SIGN_OFF = re.compile(
    r"\n+\s*(?:best(?: regards| wishes)?|kind regards|regards|warm regards|sincerely|"
    r"yours(?: sincerely| truly)?|cheers|thanks(?: again)?|thank you|many thanks|"
    r"warmly|take care|love|xx?)\b[^\n]{0,30}(?:\n+[^\n]{0,40})?\s*$", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\[(?:your|recipient'?s?|my|name|sender)[^\]]*\]", re.IGNORECASE)
_COMMENTARY = re.compile(
    r"\b(?:the (?:original |given |above |following )?(?:text|message|draft|sentence)|"
    r"this (?:text|message|draft|sentence) (?:is|can|could|says|sounds|reads)|"
    r"rewritten|rephrased|here is|here's|i have|i've (?:rewritten|rephrased|changed))\b",
    re.IGNORECASE)
_FIRST: Final = re.compile(r"\b(?:i|me|my|mine|myself|i'm|i'll|i've|i'd|we|us|our)\b",
                           re.IGNORECASE)
_SECOND: Final = re.compile(r"\b(?:you|your|yours|yourself|you're|you'll|you've|you'd)\b",
                            re.IGNORECASE)
_THANK_YOU: Final = re.compile(r"\bthank you\b|\bsee you\b|\bbless you\b|\bhope you\b",
                               re.IGNORECASE)

_ABBREVIATIONS: Final = {
    "tmrw": "tomorrow", "tmr": "tomorrow", "tmw": "tomorrow", "pls": "please",
    "plz": "please", "thx": "thanks", "ty": "thank you", "u": "you", "ur": "your",
    "r": "are", "cant": "can't", "dont": "don't", "wont": "won't", "didnt": "didn't",
    "doesnt": "doesn't", "isnt": "isn't", "im": "I'm", "ive": "I've", "idk": "I don't know",
    "btw": "by the way", "asap": "as soon as possible", "w/": "with", "b4": "before",
    "gonna": "going to", "wanna": "want to", "shouldnt": "shouldn't", "wouldnt": "wouldn't",
    "couldnt": "couldn't", "thats": "that's", "whats": "what's",
}


# What a rewrite must keep: every fact but emoji and a capitalised first word.
_KEPT: Final = ("time", "date", "amount", "number", "url", "email", "ident", "name")


@dataclass(frozen=True)
class Rewrite:
    text: str
    flags: tuple[str, ...] = field(default=())  # "fallback": the corrected draft itself


def protected_items(draft: str) -> list[str]:
    """What every rewrite of ``draft`` must keep (as written in the draft)."""
    return list(dict.fromkeys(f.surface for f in sorted(facts_of(draft).facts)
                              if f.kind in _KEPT and f.surface))


_ADDRESS = re.compile(r"\b(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
_NOT_A_SENTENCE_END = re.compile(r"(?:\b(?:i\.e|e\.g|etc|vs|approx|incl|no|st|dr|mr|mrs|ms)\.|"
                                 r"\b[A-Za-z]\.)\s+$", re.IGNORECASE)


def _words_outside_addresses(text: str, fix: Callable[[str], str]) -> str:
    """``fix`` applied to the text between URLs and e-mail addresses, which stay as
    written."""
    out, at = [], 0
    for m in _ADDRESS.finditer(text):
        out += [fix(text[at:m.start()]), m.group(0)]
        at = m.end()
    return "".join([*out, fix(text[at:])])


def _abbreviation(m: re.Match[str]) -> str:
    word = m.group(0)
    # chat abbreviations are typed in lower case ("Ty" and "R" may be names or initials)
    if not (word.islower() or (word.isupper() and len(word) >= 3)):
        return word
    return _ABBREVIATIONS.get(word.lower(), word)


def _tidy_words(text: str) -> str:
    text = re.sub(r"(?<![\w/'])[A-Za-z][\w/]*(?!')", _abbreviation, text)
    text = correct_spelling(text)
    return re.sub(r"\bi\b(?!\.\w)", "I", text)


def light_correction(draft: str) -> str:
    """The draft with its spacing, capitals, chat abbreviations and unambiguous
    misspellings (:func:`.spelling.correct_spelling`) tidied, nothing else; URLs and
    e-mail addresses stay exactly as written."""
    text = _words_outside_addresses(draft.strip(), _tidy_words)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\s+([,.!?])(?=\s|$)", r"\1", text)
    inside = [m.span() for m in _ADDRESS.finditer(text)]

    def capital(m: re.Match[str]) -> str:
        at = m.start(2)
        if any(a <= at < b for a, b in inside) or _NOT_A_SENTENCE_END.search(text[:at]):
            return m.group(0)
        return m.group(1) + m.group(2).upper()

    text = re.sub(r"(^|[.!?]\s+)([a-z])", capital, text)
    if text and text[-1].isalnum():
        text += "."
    return text


def strip_additions(candidate: str, draft: str) -> str:
    """The candidate without a greeting, sign-off or placeholder the draft did not have."""
    text = candidate.strip()
    if not _GREETING.match(draft.strip() + "\n"):
        text = _GREETING.sub("", text, count=1)
    if not _SIGN_OFF.search("\n" + draft.strip()):
        text = _SIGN_OFF.sub("", text)
    return _PLACEHOLDER.sub("", text).strip()


def person_swapped(candidate: str, draft: str) -> bool:
    """Whether the rewrite changed who is speaking about whom (first vs second person).
    The draft is read as corrected ("can u" is "can you")."""
    draft = light_correction(draft)
    draft_first, cand_first = bool(_FIRST.search(draft)), bool(_FIRST.search(candidate))
    draft_second = bool(_SECOND.search(_THANK_YOU.sub("", draft)))
    cand_second = bool(_SECOND.search(_THANK_YOU.sub("", candidate)))
    return (draft_first and not cand_first) or (cand_second and not draft_second)


_NEGATION: Final = re.compile(
    r"\b(?:not|no|never|without|cannot|can't|won't|don't|doesn't|didn't|isn't|aren't|"
    r"wasn't|weren't|shouldn't|wouldn't|couldn't|haven't|hasn't|unable|nobody|nothing|"
    r"none|neither|nor)\b|n't\b", re.IGNORECASE)


_REFUSAL: Final = re.compile(
    r"\b(?:can(?:'t|not) (?:assist|help) with|as an ai\b|i'?m (?:just )?an ai|"
    r"i (?:can(?:'t|not)|am unable to) (?:rewrite|rephrase|do that|comply))", re.IGNORECASE)
_REPLY: Final = re.compile(r"^\W*(?:thank you|thanks) (?:so much )?for (?:your|the|sharing)\b",
                           re.IGNORECASE)
# A rewrite may not turn a word of the draft into its opposite ("10 minutes late" ->
# "10 minutes early").
_OPPOSITES: Final = (("late", "early"), ("later", "earlier"), ("before", "after"),
                     ("open", "closed"), ("more", "less"), ("always", "never"),
                     ("can", "can't"), ("will", "won't"), ("yes", "no"),
                     ("accept", "decline"), ("arrive", "leave"), ("start", "finish"))
_STOPWORDS_TEXT: Final = """
    the and but for with from about into than then that this these those there here its
    are was were been being have has had having will would can could should shall may
    might must not yes just really very too also only still even ever again more most
    some any all each every what which who whom whose when where why how because while
    until after before over under off okay you your yours they them their his her him
    our we're you're they're i'm i'll i've i'd don't can't won't didn't isn't let's
    that's what's get got make made take going gonna want need thing things way
    something someone anything one hey sorry please thanks
"""
_STOPWORDS: Final = frozenset(_STOPWORDS_TEXT.split())


def _content_stems(text: str) -> set[str]:
    return {w[:5] for w in re.findall(r"[a-z']+", text.lower())
            if len(w) >= 3 and w not in _STOPWORDS}


def _has(word: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


def _flipped(candidate: str, draft: str) -> list[tuple[str, str]]:
    """The draft's words the candidate replaced by their opposite."""
    return [(word, opposite) for a, b in _OPPOSITES for word, opposite in ((a, b), (b, a))
            if _has(word, draft) and not _has(opposite, draft)
            and not _has(word, candidate) and _has(opposite, candidate)]


def corrections(draft: str) -> list[str]:
    """The words :func:`light_correction` fixed in ``draft`` ("becuase" -> "because"),
    as corrected: a proofread must contain them."""
    before = re.findall(r"[\w']+", draft.lower())
    after = re.findall(r"[\w']+", correct_spelling(draft).lower())
    return [w for w in after if w not in before]


def rewrite_problems(candidate: str, draft: str, tone: str | None = None) -> list[str]:
    """Why ``candidate`` is not an acceptable rewrite of ``draft`` (empty: it is)."""
    found = []
    if not candidate.strip():
        return ["empty"]
    if _COMMENTARY.search(candidate) and not _COMMENTARY.search(draft):
        found.append("comments on the text instead of rewriting it")
    if len(candidate) > 3 * len(draft) + 80:
        found.append("much longer than the draft")
    # Judged against the draft as corrected: "tomorrow" for "tommorow" is no invention,
    # and the corrected draft has every fact of the draft (spelled right).
    corrected = light_correction(draft)
    found += [f"lost: {item}" for item in missing(candidate, corrected, kinds=_KEPT)]
    found += [f"invented: {item}" for item in unsupported(candidate, [draft, corrected])]
    if person_swapped(candidate, draft):
        found.append("changes who does what (first or second person)")
    if _REFUSAL.search(candidate) and not _REFUSAL.search(draft):
        found.append("refuses instead of rewriting")
    if _REPLY.match(candidate) and not re.search(r"\bthank", corrected, re.IGNORECASE):
        found.append("answers the message instead of rewriting it")
    theirs = _content_stems(corrected)
    if theirs and len(theirs & _content_stems(candidate)) * 3 < len(theirs):
        found.append("keeps too little of the draft's words (under a third)")
    found += [f"turns {a!r} into {b!r}" for a, b in _flipped(candidate, corrected)]
    if _NEGATION.search(corrected) and not _NEGATION.search(candidate):
        found.append("drops the draft's negation")
    if tone == "proofread":
        words = set(re.findall(r"[\w']+", candidate.lower()))
        found += [f"misses the correction: {w}" for w in corrections(draft) if w not in words]
    return found


# A generator returns one candidate rewrite, or None; ``attempt`` is 0 then 1 (stricter).
Generator = Callable[[int], str | None]


def checked_rewrite(draft: str, generate: Generator, tone: str | None = None) -> Rewrite:
    """The first acceptable candidate of two attempts, else the corrected draft."""
    for attempt in range(2):
        candidate = generate(attempt)
        if candidate is None:
            continue
        candidate = strip_additions(candidate, draft)
        if not rewrite_problems(candidate, draft, tone):
            return Rewrite(candidate)
    return Rewrite(light_correction(draft), ("fallback",))
