"""Summaries that are faithful by construction.

The summary is not free text from a model. It is built in four steps, each of which a
test can hold to its promise:

1. **Parse** (:mod:`.chat`): system lines, placeholders ("image omitted", "This message
   was deleted") and calls are events, not messages; they never become bullets.
2. **Select**: every message is scored for the reader: requests and questions addressed
   to them (by name, ``@name``, or "you" in reply to their own message) first, then
   decisions, messages carrying times, dates, amounts and places, and what the whole chat
   talks about; a message whose time, date or amount a later message corrects ("not
   12:40", "moved to Tuesday") gives way to the correction.
3. **Write** each bullet from its cited source message, with the speaker fixed by the
   pipeline, never guessed: "Ana asked you to book a table for 8 on Friday" for a
   request to the reader, "Tom will bring the chairs" for a first-person promise,
   "Priya: the boiler engineer comes Tuesday between 8 and 12" otherwise. Requests to the
   reader come first. A model, when one is given (``phraser``), may rephrase a bullet
   more briefly; it is optional.
4. **Check** each bullet: every number, time, date, amount, URL, identifier, emoji and
   name in it must appear in its cited sources (:func:`.facts.unsupported`), and a
   bullet about someone must name them. A model bullet that fails is regenerated once,
   then replaced by the written bullet, which passes by construction (it is checked too,
   and dropped if it ever did not).

Bullets carry the indices of their source messages, so an app can link each bullet to
the messages it came from.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from .backend import ChatLine
from .chat import LineKind, addresses_reader, classify, clean_text, mentions, name_forms
from .extractive import score_lines
from .facts import COMMON_STARTERS, TextFacts, facts_of, unsupported

MAX_BULLET_CHARS: Final = 220

_REQUEST = re.compile(
    r"\b(?:can you|could you|would you|will you|can u|could u|pls|please|need you to|"
    r"i need you|remember to|don'?t forget(?: to)?|make sure(?: you)?|let (?:me|us) know|"
    r"reminder|you need to|you have to|you should)\b", re.IGNORECASE)
_ACTION = re.compile(
    r"^(?:.*?\b)?(?:can you|could you|would you|will you|can u|could u|need you to|"
    r"i need you to|remember to|don'?t forget to|make sure you|make sure to|you need to|"
    r"you have to|you should|please|pls)\b[\s,]*(?P<action>.+)$", re.IGNORECASE | re.DOTALL)
_DECISION = re.compile(
    r"\b(?:let'?s|we'?ll|we will|we'?re going|decided|agreed|confirmed|booked|sorted|"
    r"settled|final(?:ly)?|going with|it'?s on|is on|done|paid|sent|bought|ordered|moved|"
    r"changed|cancel(?:l?ed)?|postponed|rescheduled)\b", re.IGNORECASE)
_CORRECTION = re.compile(
    r"\b(?:actually|instead|changed?|moved?|update[ds]?|correction|scratch that|no wait|"
    r"make (?:that|it)|new (?:time|date|plan)|resched\w*|postpon\w*|pushed|brought forward)"
    r"\b", re.IGNORECASE)
_NEGATED = re.compile(r"\b(?:not|instead of|rather than|no longer)\s+(?P<old>[^,;.!?]{1,30})",
                      re.IGNORECASE)
_SUPERSEDED_CLAUSE = re.compile(
    r"(?:[,;(]\s*|\s+-\s+)(?:not|instead of|rather than)\b[^,;.!?)]*[)]?", re.IGNORECASE)
_FILLER = re.compile(
    r"\b(?:lol|lmao|haha+|hehe+|omg|btw|tbh|ngl|ok so|so yeah|anyway)\b[\s,.!]*",
    re.IGNORECASE)
_SMALL_SENTENCE = re.compile(
    r"^\W*(?:hi|hey|hello|morning|good (?:morning|night|evening)|thanks?|thank you|thx|ty|"
    r"ok|okay|cool|great|nice|lol|haha|yes|yeah|yep|no|nope|sure|right|me too|same|agreed|"
    r"sounds good|perfect|amazing|brilliant|noted|will do|on it|see you|bye|long week)"
    r"(?:\s+(?:all|everyone|guys|team|folks|people|y'?all))?\b[\W]*$", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_EMOJI_RUN = re.compile(r"[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200D]+")
_FIRST_PERSON: Final = (
    (re.compile(r"^i'?ll\b", re.I), "will"), (re.compile(r"^i will\b", re.I), "will"),
    (re.compile(r"^i'?m\b", re.I), "is"), (re.compile(r"^i am\b", re.I), "is"),
    (re.compile(r"^i'?ve\b", re.I), "has"), (re.compile(r"^i have\b", re.I), "has"),
    (re.compile(r"^i'?d\b", re.I), "would"), (re.compile(r"^i can'?t\b", re.I), "can't"),
    (re.compile(r"^i cannot\b", re.I), "cannot"), (re.compile(r"^i can\b", re.I), "can"),
    (re.compile(r"^i won'?t\b", re.I), "won't"), (re.compile(r"^i was\b", re.I), "was"),
    (re.compile(r"^i don'?t\b", re.I), "doesn't"), (re.compile(r"^i didn'?t\b", re.I), "didn't"),
    (re.compile(r"^i could\b", re.I), "could"), (re.compile(r"^i should\b", re.I), "should"),
    (re.compile(r"^i might\b", re.I), "might"),
)
_THIRD_PERSON_VERB = re.compile(
    r"^i (?P<adverb>(?:(?:really|just|also|still|actually|probably|definitely|already|"
    r"never|always|only|totally|honestly|literally|genuinely) )*)(?P<verb>[a-z]+)\b",
    re.IGNORECASE)
_IRREGULAR: Final = {"have": "has", "do": "does", "go": "goes", "am": "is", "say": "says"}
# Past forms that take no "s" ("I paid" -> "Priya paid"), and present forms that read the
# same in the past ("I put", "I set").
_PAST_TEXT: Final = """
    paid sent made got went took gave said told left found bought brought thought came saw
    put set let cut read ran won lost had did was were knew felt kept met sold spent built
    heard held wrote drove ate drank forgot began broke chose fell flew grew hid hit hurt
    lent meant rang rode sang sat slept spoke stood stuck swam taught threw understood
    woke wore caught fed led lit shut upset quit booked
"""
_PAST: Final = frozenset(_PAST_TEXT.split())
_ME = (re.compile(r"\bme\b", re.I), "{0}"), (re.compile(r"\bmy\b", re.I), "{0}'s"), (
    re.compile(r"\bmyself\b", re.I), "{0}")


@dataclass(frozen=True)
class Bullet:
    text: str
    sources: tuple[int, ...]  # indices of the cited input messages
    speaker: str  # fixed by the pipeline
    kind: str  # "request" (to the reader), "question" (to the reader), "statement"
    origin: str  # "model" or "written"


@dataclass(frozen=True)
class Candidate:
    index: int
    score: float
    to_reader: bool
    request: bool
    question: bool
    superseded: bool


# A phraser rewrites one bullet from its sources (a model); None means it gave nothing.
Phraser = Callable[[str, str, str | None, int], str | None]


def _content(lines: Sequence[ChatLine]) -> list[int]:
    """The messages with something to say (not "lol", "👍" or "haha 😂")."""
    return [i for i, line in enumerate(lines)
            if classify(line.text) is LineKind.MESSAGE
            and re.search(r"[^\W_]", _tidy(clean_text(line.text)))]


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{4,}", text.lower())}


def superseded(lines: Sequence[ChatLine], indices: Sequence[int]) -> set[int]:
    """Messages whose time, date or amount a later message corrects: the later message
    negates the value ("not 12:40"), or, with a correction word ("moved", "actually",
    "instead"), gives another value of the same kind and comes from the same person or
    shares the topic."""
    texts = {i: clean_text(lines[i].text) for i in indices}
    facts = {i: facts_of(texts[i]) for i in indices}
    # what each message negates ("not 12:40"), read once, not once per earlier message
    negations = {i: [facts_of(m.group("old"), names=False) for m in _NEGATED.finditer(texts[i])]
                 for i in indices}
    out: set[int] = set()
    for pos, i in enumerate(indices):
        mine = {k: facts[i].of(k) for k in ("time", "date", "amount")}
        if not any(mine.values()):
            continue
        for j in indices[pos + 1:]:
            later = texts[j]
            negated = {v for found in negations[j] for k in mine for v in found.of(k)}
            for kind, values in mine.items():
                theirs = facts[j].of(kind)
                if not values or not theirs - values:
                    continue
                corrected = bool(_CORRECTION.search(later)) and (
                    lines[i].sender == lines[j].sender
                    or len(_words(texts[i]) & _words(later)) >= 2)
                if values & negated or corrected:
                    out.add(i)
            if i not in out and _DECIDED.search(later) and _replaces_name(facts[i], facts[j]):
                out.add(i)
    return out


_DECIDED = re.compile(
    r"\b(?:decided|decision|it is|going with|go with|final(?:ly)?|confirmed|we'?re doing|"
    r"settled)\b", re.IGNORECASE)


def _replaces_name(earlier: TextFacts, decision: TextFacts) -> bool:
    """Whether a decision speaks of the same day or time as an earlier message but names
    something else there ("still Scafell Pike on Saturday?" then "decided: Saturday
    low-level Wastwater loop")."""
    same_when = any(earlier.of(k) & decision.of(k) for k in ("date", "time"))
    names_then = earlier.of("name") | earlier.of("initial-name")
    names_now = decision.of("name") | decision.of("initial-name")
    return same_when and bool(names_then - names_now) and bool(names_now - names_then)


def rank(lines: Sequence[ChatLine], reader: str | None) -> list[Candidate]:
    """Every content message, scored for the reader (see the module docstring)."""
    indices = _content(lines)
    if not indices:
        return []
    content = [ChatLine(lines[i].sender, lines[i].time, clean_text(lines[i].text))
               for i in indices]
    senders = {form for line in lines for form in name_forms(line.sender)}
    base = score_lines(content, None)  # the reader counts below, addressed or not
    stale = superseded(lines, indices)
    candidates = []
    for pos, i in enumerate(indices):
        text = content[pos].text
        to_reader = addresses_reader(lines, i, reader)
        request = bool(_REQUEST.search(text))
        # A question worth a bullet says something besides the reader's name.
        question = "?" in text and _content_words(_strip_vocative(text, reader)) >= 3
        score = base[pos] + min(1.0, 0.25 * _weight(text, senders))
        if to_reader:
            score += 1.5 if request else 1.0 if question else 0.3
        elif request:
            score += 0.2
        elif "?" in text:
            score -= 0.2  # a question to the group: its answer says more
        if _DECISION.search(text):
            score += 0.3
        if _content_words(text) < 4:
            score *= 0.3
        if i in stale:
            score -= 1.5
        if reader and lines[i].sender == reader:
            score *= 0.5  # the reader knows what they said
        candidates.append(Candidate(i, score, to_reader, request, question, i in stale))
    return candidates


def _weight(text: str, senders: set[str]) -> int:
    """How many facts a reader would act on a text carries: times, dates, amounts,
    identifiers, and names that are not the chat's own members."""
    facts = facts_of(text)
    count = sum(len(facts.of(k)) for k in ("time", "date", "amount", "ident", "url", "email"))
    return count + len(facts.of("name") - senders)


def _content_words(text: str) -> int:
    return len(re.findall(r"[^\W\d_]{3,}", text))


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    dot = sum(v * b[k] for k, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def select(lines: Sequence[ChatLine], candidates: Sequence[Candidate], max_bullets: int
           ) -> list[Candidate]:
    """The bullets' sources: requests to the reader first, then by score, no repeats."""
    vectors = {c.index: Counter(_words(lines[c.index].text)) for c in candidates}
    ranked = sorted(candidates, key=lambda c: (
        not (c.to_reader and (c.request or c.question)), -c.score, c.index))
    chosen: list[Candidate] = []
    for c in ranked:
        if len(chosen) == max_bullets:
            break
        if c.superseded and not c.to_reader:
            continue
        if any(_cosine(vectors[c.index], vectors[o.index]) > (
                0.2 if lines[o.index].sender == lines[c.index].sender else 0.6)
               for o in chosen):
            continue
        chosen.append(c)
    first = [c for c in chosen if c.to_reader]
    return sorted(first, key=lambda c: c.index) + sorted(
        (c for c in chosen if not c.to_reader), key=lambda c: c.index)


# ---- writing ----------------------------------------------------------------------


def speaker_name(sender: str) -> str:
    return " ".join(sender.split()) or "Someone"


def _strip_vocative(text: str, reader: str | None) -> str:
    if not reader:
        return text
    for form in sorted(name_forms(reader), key=len, reverse=True):
        pattern = re.compile(
            rf"^\W*(?:hey |hi |ok |so )?@?{re.escape(form)}\b(?!['\u2019])[\s,:!?-]*",
            re.IGNORECASE)
        text = pattern.sub("", text)
        text = re.sub(rf"[\s,]+@?{re.escape(form)}\s*([?!.]*)$", r"\1", text,
                      flags=re.IGNORECASE)
    return text


_NEGATION_ONLY = re.compile(r"^\W*(?:not|no longer|instead of)\b[^.!?]{0,30}[.!?]?$", re.I)


def _sentences(text: str) -> list[str]:
    """The sentences worth keeping: no small talk, no bare "Not 4." (a corrected value
    alone would read as a fact)."""
    parts = [p.strip() for p in _SENTENCE.split(text) if p and p.strip()]
    kept = [p for p in parts if not _SMALL_SENTENCE.match(p) and not _NEGATION_ONLY.match(p)]
    return kept or parts


def _tidy(text: str) -> str:
    text = _EMOJI_RUN.sub(" ", text)
    text = _FILLER.sub("", text)
    text = _SUPERSEDED_CLAUSE.sub("", text)
    text = re.sub(r"\s+([,.!?])", r"\1", " ".join(text.split()))
    return text.strip(" ,;:-")


def _trim(text: str, limit: int = MAX_BULLET_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    for mark in (". ", "; ", ", ", " - ", " "):
        at = cut.rfind(mark, limit // 2)
        if at > 0:
            return cut[:at].rstrip(" ,;:-")
    return cut.rstrip()


_MORE_FIRST_PERSON = re.compile(r"\b(?:I|I'm|I'll|I've|I'd|me|my|mine|myself)\b")


def _third_person(text: str, speaker: str) -> str | None:
    """A first-person sentence about the speaker, in the third person, or None (also
    when the sentence says "I" or "my" again: "then I have a lecture" is quoted, not
    rewritten into a guess)."""
    if len(_MORE_FIRST_PERSON.findall(text)) > 1:
        return None
    for pattern, verb in _FIRST_PERSON:
        if pattern.match(text):
            return f"{speaker} {verb}{pattern.sub('', text, count=1)}"
    m = _THIRD_PERSON_VERB.match(text)
    if m:
        adverb = m.group("adverb") or ""
        verb = m.group("verb").lower()
        if verb.endswith(("ed", "ing")) or len(verb) < 2 or verb in _PAST:
            return f"{speaker} {adverb}{verb}{text[m.end():]}"
        third = _IRREGULAR.get(verb) or (
            verb[:-1] + "ies" if verb.endswith("y") and verb[-2] not in "aeiou" else
            verb + "es" if verb.endswith(("s", "sh", "ch", "x", "o")) else verb + "s")
        return f"{speaker} {adverb}{third}{text[m.end():]}"
    return None


def _about_speaker(text: str, speaker: str) -> str:
    """A request's words about its speaker, with their name: "let me know" -> "let Ruth
    know", "my car" -> "Ruth's car"."""
    for pattern, word in _ME:
        replacement = word.format(speaker)
        text = pattern.sub(lambda _m: replacement, text)  # noqa: B023 - used at once
    return text


def _with_rest(main: str, sentences: Sequence[str], used: str | set[str]) -> str:
    """``main`` and the message's other sentences, those with facts first, within the
    limit (a sentence that does not fit is left out whole)."""
    used_set = {used} if isinstance(used, str) else used
    rest = [x for x in sentences if x not in used_set]
    ordered = sorted(rest, key=lambda x: not facts_of(x).facts)
    keep = set()
    length = len(main)
    for sentence in ordered:
        if length + len(sentence) + 2 <= MAX_BULLET_CHARS:
            keep.add(sentence)
            length += len(sentence) + 2
    text = main.rstrip(" .")
    for sentence in rest:
        if sentence in keep:
            head = sentence.split()[0]
            joined = (sentence[0].lower() + sentence[1:]) if (
                head[:1].isupper() and not head.isupper()
                and head.lower() in _LOWERABLE) else sentence
            text = f"{text}; {joined.rstrip(' .')}"
    return text


_LOWERABLE_TEXT: Final = """
    the a an and but also so then it this that there we our they their he she his her you
    your tomorrow today tonight lovely right ok okay yes no not
"""
_LOWERABLE: Final = frozenset(_LOWERABLE_TEXT.split())
_IMPERATIVE_TEXT: Final = """
    send bring book buy check confirm reply let pay review call come get take make pick drop
    sign add update email text share fill grab learn record return tell ask cover do print
    order collect write read look put keep join vote answer water feed open close lock
"""
_IMPERATIVES: Final = frozenset(_IMPERATIVE_TEXT.split())
_PRONOUN = re.compile(r"\b(?:it|them|this|that|those|these|one)\b", re.IGNORECASE)
_VERB_CUES = re.compile(
    r"\b(?:can you|could you|would you|will you|can u|could u|need you to|i need you to|"
    r"remember to|don'?t forget to|make sure you|make sure to|you need to|you have to|"
    r"you should)\b", re.IGNORECASE)


def _request(speaker: str, sentences: Sequence[str]) -> tuple[str, set[str]] | None:
    """``(bullet start, the sentences it used)`` for a request to the reader."""
    request = next((x for x in sentences if _REQUEST.search(x)), None)
    if request is None:
        return None
    cue = _VERB_CUES.search(request)
    if cue is None:  # "please"/"pls"
        polite = re.search(r"\b(?:please|pls)\s+(?P<verb>[a-z]+)\b(?P<rest>.*)$", request,
                           re.IGNORECASE | re.DOTALL)
        if polite and polite.group("verb").lower() in _IMPERATIVES:
            action = _about_speaker(polite.group("verb") + polite.group("rest"),
                                    speaker).rstrip(" ?!.")
            return f"{speaker} asked you to {action}", {request}
        plain = re.sub(r"\s*\b(?:please|pls)\b[\s,]*", " ", request).strip(" ,")
        return f"{speaker} asked you: {plain}", {request}
    action = _about_speaker(request[cue.end():].strip(" ,").rstrip(" ?!."), speaker)
    action = re.sub(r"^(?:please|pls)\s+", "", action, flags=re.I).rstrip(" ,")
    if len(action.split()) < 2:
        return f"{speaker} asked you: {request}", {request}
    before = request[:cue.start()].strip(" ,;-")
    bullet = f"{speaker} asked you to {action}"
    used = {request}
    if _PRONOUN.search(action):
        previous = next((sentences[i - 1] for i, x in enumerate(sentences)
                         if x == request and i), "")
        context = before or previous
        if context:
            bullet += f" ({_about_speaker(context.rstrip(' .'), speaker)})"
            used.add(previous)
    return bullet, used


def write_bullet(lines: Sequence[ChatLine], candidate: Candidate, reader: str | None) -> str:
    """The bullet for one source message, written without a model."""
    line = lines[candidate.index]
    speaker = speaker_name(line.sender)
    text = clean_text(line.text)
    sentences = [x for x in (_tidy(_strip_vocative(y, reader)) for y in _sentences(text)) if x]
    sentences = sentences or [_tidy(text)]
    if candidate.to_reader and candidate.request:
        found = _request(speaker, sentences)
        if found is not None:
            return _trim(_with_rest(found[0], sentences, found[1]))
    if candidate.to_reader and candidate.question:
        question = next((x for x in sentences if "?" in x and _content_words(x) >= 3), None)
        if question is not None:
            return _trim(_with_rest(f"{speaker} asked you: {question}", sentences, question))
    if candidate.to_reader:
        return _trim(_with_rest(f"{speaker} to you: {sentences[0]}", sentences,
                                sentences[0]))
    first = sentences[0]
    if reader and line.sender == reader:
        return _trim(_with_rest(f"You said: {first}", sentences, first))
    third = _third_person(first, speaker)
    main = third if third is not None else f"{speaker}: {first}"
    return _trim(_with_rest(main, sentences, first))


# ---- checking ---------------------------------------------------------------------


def problems(text: str, lines: Sequence[ChatLine], sources: Sequence[int], speaker: str,
             reader: str | None) -> list[str]:
    """Why ``text`` may not be shown as a bullet citing ``sources`` (empty: it may)."""
    found = []
    if not text.strip() or "\n" in text.strip() or len(text) > MAX_BULLET_CHARS + 20:
        found.append("not one short line")
    names = [lines[i].sender for i in sources] + ([reader] if reader else [])
    bad = unsupported(text, [clean_text(lines[i].text) for i in sources], allowed_names=names)
    found += [f"not in the sources: {b}" for b in bad]
    if not mentions(text, speaker) and not re.search(r"\byou\b", text, re.IGNORECASE):
        found.append("does not name who said it")
    return found


def addressee_reply(lines: Sequence[ChatLine], index: int, reader: str | None
                    ) -> int | None:
    """The reply of the member a message speaks to by name (not the reader), if they
    answer within the next four messages."""
    text = clean_text(lines[index].text)
    members = {lines[i].sender for i in range(len(lines))} - {lines[index].sender, reader}
    for sentence in _sentences(text):
        for member in members:
            if any(re.match(rf"^\W*@?{re.escape(form)}\b", sentence, re.IGNORECASE)
                   for form in name_forms(member)):
                for j in range(index + 1, min(len(lines), index + 5)):
                    if lines[j].sender == member and classify(
                            lines[j].text) is LineKind.MESSAGE:
                        return j
    return None


_ANSWER_START = re.compile(r"^\W*(?:yes|yeah|yep|yup|sure|ok(?:ay)?|no|nope|will do|on it)\b",
                           re.IGNORECASE)


def answered_question(lines: Sequence[ChatLine], index: int) -> tuple[int, str] | None:
    """``(index, question)`` of the question a message answers, when the message cannot be
    read alone ("Yes. I'll make one tonight" after "can we do a cleaning rota?"): the
    previous message is someone else's question and this one opens with an answer word or
    refers back with a pronoun."""
    text = clean_text(lines[index].text)
    first = next(iter(_sentences(text)), text)
    if "?" in text or _REQUEST.search(text) or not (
            _ANSWER_START.match(text) or _PRONOUN.search(first)):
        return None  # a question or a request of its own is no answer
    previous = next((j for j in range(index - 1, -1, -1)
                     if classify(lines[j].text) is LineKind.MESSAGE), None)
    if previous is None or lines[previous].sender == lines[index].sender:
        return None
    question = next((x for x in _sentences(clean_text(lines[previous].text)) if "?" in x),
                    None)
    if question is None or _names_other_than(question, lines[index].sender):
        return None
    return previous, re.sub(r"^(?:also|and|so|but|oh|ok)\b[\s,]*", "", _tidy(question),
                            flags=re.IGNORECASE)


def _names_other_than(text: str, person: str) -> bool:
    """Whether ``text`` opens by naming someone who is not ``person`` ("Sam can you...")."""
    m = re.match(r"^\W*@?(?P<name>[A-Z][\w'\u2019-]+)\b", text)
    if m is None:
        return False
    name = m.group("name").lower()
    return name not in COMMON_STARTERS and name not in name_forms(person)


@dataclass
class _Draft:
    text: str
    sources: tuple[int, ...]
    speaker: str
    kind: str
    score: float
    to_reader: bool


def _merge(drafts: list[_Draft]) -> list[_Draft]:
    """One bullet per speaker's run of statements, where they fit: "Kwame: A; B"."""
    out: list[_Draft] = []
    for d in sorted(drafts, key=lambda d: d.sources[0]):
        prev = next((o for o in reversed(out) if o.speaker == d.speaker and o.kind ==
                     "statement" and not o.to_reader), None)
        prefix = f"{d.speaker}: "
        if prev is not None and d.kind == "statement" and not d.to_reader:
            tail = d.text[len(prefix):] if d.text.startswith(prefix) else d.text
            joined = f"{prev.text.rstrip(' .')}; {tail}"
            if len(joined) <= MAX_BULLET_CHARS:
                prev.text = joined
                prev.sources = tuple(sorted({*prev.sources, *d.sources}))
                prev.score = max(prev.score, d.score)
                continue
        out.append(d)
    return out


def _order(draft: _Draft) -> int:
    """Requests to the reader, then their questions, then what else speaks to them, then
    the rest."""
    if draft.to_reader:
        return {"request": 0, "question": 1}.get(draft.kind, 2)
    return 3


def summarize_chat(lines: Sequence[ChatLine], max_bullets: int, reader: str | None = None,
                   phraser: Phraser | None = None) -> list[Bullet]:
    """The summary's bullets, each checked against its sources (see the docstring).

    Twice as many messages as bullets are picked; a speaker's statements are joined into
    one bullet where they fit, so a bullet can carry several related facts; the best
    ``max_bullets`` are kept (requests to the reader first, then in chat order).
    """
    candidates = rank(lines, reader)
    stale = {c.index for c in candidates if c.superseded}
    drafts: list[_Draft] = []
    cited: set[int] = set()
    for c in select(lines, candidates, 2 * max_bullets):
        if c.index in cited:
            continue  # already told, as the answer or the question of another bullet
        speaker = speaker_name(lines[c.index].sender)
        kind = "request" if c.to_reader and c.request else (
            "question" if c.to_reader and c.question else "statement")
        written = write_bullet(lines, c, reader)
        sources: tuple[int, ...] = (c.index,)
        reply = addressee_reply(lines, c.index, reader) if not c.to_reader else None
        asked = answered_question(lines, c.index) if kind == "statement" else None
        if asked is not None and asked[0] not in stale:
            asker = speaker_name(lines[asked[0]].sender)
            extended = f"{written.rstrip(' .')} (asked by {asker}: {asked[1]})"
            if len(extended) <= MAX_BULLET_CHARS:
                written, sources = extended, (asked[0], c.index)
        if reply is not None:
            answer = _tidy(clean_text(lines[reply].text))
            extended = f"{written.rstrip(' .')}; {speaker_name(lines[reply].sender)}: {answer}"
            if len(extended) <= MAX_BULLET_CHARS:
                written, sources = extended, tuple(sorted({*sources, reply}))
        cited.update(sources)
        drafts.append(_Draft(written, sources, speaker, kind, c.score, c.to_reader))
    kept = sorted(_merge(drafts), key=lambda d: (_order(d), -d.score))[:max_bullets]
    kept.sort(key=lambda d: (_order(d), d.sources[0]))
    bullets: list[Bullet] = []
    for d in kept:
        text, origin = d.text, "written"
        if phraser is not None and len(d.sources) == 1:
            source = clean_text(lines[d.sources[0]].text)
            for attempt in range(2):  # one regeneration, then the written bullet
                proposal = phraser(d.speaker, source, reader, attempt)
                if proposal and not problems(proposal, lines, d.sources, d.speaker, reader):
                    text, origin = proposal, "model"
                    break
        if origin == "written" and problems(text, lines, d.sources, d.speaker, reader):
            continue  # the written bullet failed its own check: better none than wrong
        bullets.append(Bullet(text, d.sources, d.speaker, d.kind, origin))
    return bullets
