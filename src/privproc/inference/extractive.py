"""An extractive summarizer: picks the chat's most informative messages, no model.

Deterministic and fast (pure Python). Each message is scored by its TF-IDF centrality
(mean cosine similarity to the other messages: how much it shares the chat's topic),
boosted when it asks a question, makes a request, names a date or time, or mentions the
reader, and damped when it is very short or pure small talk. The top messages, with
near-duplicates skipped, are returned in chat order as ``Sender: text`` bullets.

It only summarizes: ``complete``/``stream`` (hence the ``write`` task) raise
:class:`UnsupportedTaskError`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Final

from .backend import (
    ChatLine,
    ChatMessage,
    GenerationParams,
    InvalidRequestError,
    UnsupportedTaskError,
)

MAX_BULLET_TEXT: Final = 140
REDUNDANCY: Final = 0.6  # cosine similarity above which a candidate repeats a pick

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_STOPWORD_TEXT: Final = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just let me more most my myself no nor not now of off on once only
    or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves i'm i'll it's that's we'll you're don't can't ok okay yes yeah
    oh also
"""
_STOPWORDS: Final = frozenset(_STOPWORD_TEXT.split())
_REQUEST = re.compile(
    r"\b(please|pls|can you|could you|would you|will you|can someone|could someone|"
    r"need(?:s|ed)? (?:to|you|someone)|must|should|don't forget|remember to|reminder|"
    r"make sure|let me know|asap|deadline|due)\b",
    re.IGNORECASE,
)
_DATE = re.compile(
    r"\b(mon|tues|wednes|thurs|fri|satur|sun)day\b|\b(today|tomorrow|tonight|tmrw|"
    r"weekend|next week|this week|noon|midnight)\b|"
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? \d{1,2}\b|"
    r"\b\d{1,2}(st|nd|rd|th)\b|\b\d{1,2}(:\d{2})? ?(am|pm)\b|\b\d{1,2}:\d{2}\b|"
    r"\b\d{1,4}[/.-]\d{1,2}([/.-]\d{1,4})?\b",
    re.IGNORECASE,
)
_SMALL_TALK = re.compile(
    r"^\W*(hi|hey|hello|morning|good (morning|night|evening)|thanks|thank you|thx|ty|ok|"
    r"okay|cool|great|nice|lol|haha|yes|yeah|yep|no|nope|sure|me too|same|i'm in|agreed|"
    r"sounds good|see you|bye)\b",
    re.IGNORECASE,
)


def _tokens(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOPWORDS]


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    dot = sum(weight * b.get(term, 0.0) for term, weight in a.items())
    na = math.sqrt(sum(w * w for w in a.values()))
    nb = math.sqrt(sum(w * w for w in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def _trim(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-") + "…"


def _mentions(text: str, reader: str | None) -> bool:
    if not reader or not reader.strip():
        return False
    names = {reader.strip().lower(), reader.strip().split()[0].lower()}
    lowered = text.lower()
    return any(re.search(rf"(?<!\w)@?{re.escape(name)}(?!\w)", lowered) for name in names)


def score_lines(lines: Sequence[ChatLine], reader: str | None = None) -> list[float]:
    """One relevance score per chat line (higher is more summary-worthy)."""
    docs = [_tokens(line.text) for line in lines]
    df: Counter[str] = Counter()
    for doc in docs:
        df.update(set(doc))
    n = len(docs)
    vectors = []
    for doc in docs:
        tf = Counter(doc)
        vectors.append(
            {t: (1 + math.log(c)) * math.log((1 + n) / (1 + df[t]) + 1) for t, c in tf.items()}
        )
    scores = []
    for i, line in enumerate(lines):
        others = [_cosine(vectors[i], vectors[j]) for j in range(n) if j != i]
        centrality = sum(others) / len(others) if others else 0.0
        words = len(_WORD.findall(line.text))
        score = centrality + 0.05 * min(len(vectors[i]), 12) / 12
        if "?" in line.text:
            score += 0.15
        if _REQUEST.search(line.text):
            score += 0.25
        # Dates and times: each mention (weekday, clock time, "tomorrow") adds up to a cap.
        score += min(0.3, 0.15 * sum(1 for _ in _DATE.finditer(line.text)))
        if _mentions(line.text, reader):
            score += 0.35
        if words < 4:
            score *= 0.3
        elif _SMALL_TALK.match(line.text) and words < 8:
            score *= 0.5
        if not line.text.strip():
            score = -1.0
        scores.append(score)
    return scores


def extract(lines: Sequence[ChatLine], max_bullets: int, reader: str | None = None) -> list[str]:
    """The top ``max_bullets`` messages, in chat order, as ``Sender: text`` bullets."""
    if max_bullets < 1:
        raise InvalidRequestError("max_bullets must be at least 1")
    scores = score_lines(lines, reader)
    vectors = [Counter(_tokens(line.text)) for line in lines]
    dense = [{t: float(c) for t, c in v.items()} for v in vectors]
    ranked = sorted(range(len(lines)), key=lambda i: (-scores[i], i))
    chosen: list[int] = []
    for i in ranked:
        if len(chosen) == max_bullets or scores[i] < 0:
            break
        if any(_cosine(dense[i], dense[j]) > REDUNDANCY for j in chosen):
            continue
        chosen.append(i)
    bullets = []
    for i in sorted(chosen):
        sender = " ".join(lines[i].sender.split()) or "Someone"
        bullets.append(f"{sender}: {_trim(lines[i].text, MAX_BULLET_TEXT)}")
    return bullets


def format_bullets(bullets: Sequence[str]) -> str:
    """Bullets as text, one ``- `` line each."""
    return "\n".join(f"- {b}" for b in bullets)


class ExtractiveBackend:
    """Summaries without a model; implements :class:`~.backend.ChatSummarizer`."""

    name = "extractive"

    def summarize_chat(
        self, lines: Sequence[ChatLine], max_bullets: int, reader: str | None
    ) -> list[str]:
        return extract(lines, max_bullets, reader)

    def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str:
        raise UnsupportedTaskError(
            "the extractive backend only summarizes chats; free-form generation "
            "(the write task) needs a language-model backend"
        )

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[str]:
        raise UnsupportedTaskError(
            "the extractive backend only summarizes chats; free-form generation "
            "(the write task) needs a language-model backend"
        )

    def close(self) -> None:
        pass


__all__ = ["ExtractiveBackend", "extract", "format_bullets", "score_lines"]
