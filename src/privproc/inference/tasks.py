"""The node's two AI tasks: summarize a chat, and rewrite a draft in a tone.

Both validate their input against :class:`Limits` first (errors give counts, never
text). Summaries come from the faithful pipeline of :mod:`.summary` (select, write each
bullet from its cited message with the speaker fixed, check every fact); a model, when
the backend is one, may only rephrase a bullet, and its bullet is kept only if it passes
the same check. Rewrites come from the model and are kept only if they keep the draft's
facts and intent (:mod:`.rewrite`); else the lightly corrected draft is returned, flagged.
Prompts live in :mod:`privproc.inference.prompts`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Final

from privproc.wire.limits import DEFAULT_LIMITS, TONES, RequestLimits

from . import prompts
from .backend import (
    ChatBackend,
    ChatLine,
    ChatMessage,
    ChatSummarizer,
    GenerationError,
    GenerationParams,
    InferenceError,
    InputTooLargeError,
    InvalidRequestError,
    UnsupportedTaskError,
)
from .rewrite import Rewrite, checked_rewrite
from .summary import Bullet, summarize_chat

MAX_BULLET_CHARS: Final = 240
MAX_SUGGESTIONS: Final = 3

# Input limits and tones: one set, shared with the client SDK (privproc.wire.limits), so
# the client refuses what the node would refuse before it spends anything. Requests beyond
# a limit fail here with InputTooLargeError, other bad input with InvalidRequestError.
Limits = RequestLimits


# ---- input ------------------------------------------------------------------------


def chat_lines_from_json(value: object) -> list[ChatLine]:
    """Convert decoded JSON ``[{"sender", "time", "text"}, ...]`` to chat lines."""
    if not isinstance(value, list):
        raise InvalidRequestError(f"messages must be a list, got {type(value).__name__}")
    lines = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise InvalidRequestError(f"message {i} must be an object")
        fields = {}
        for key in ("sender", "time", "text"):
            field = item.get(key, "" if key == "time" else None)
            if not isinstance(field, str):
                raise InvalidRequestError(f"message {i} field {key!r} must be a string")
            fields[key] = field
        lines.append(ChatLine(**fields))
    return lines


def check_chat(lines: Sequence[ChatLine], max_bullets: int, limits: Limits) -> None:
    """Validate the summarize input; errors name the limit and the count only."""
    if not 1 <= max_bullets <= limits.max_bullets:
        raise InvalidRequestError(f"max_bullets must be in 1..{limits.max_bullets}")
    if not lines:
        raise InvalidRequestError("at least one chat message is required")
    if len(lines) > limits.max_messages:
        raise InputTooLargeError(f"chat has {len(lines)} messages, limit {limits.max_messages}")
    total = 0
    for i, line in enumerate(lines):
        if not isinstance(line, ChatLine):
            raise InvalidRequestError(f"message {i} must be a ChatLine, got {type(line).__name__}")
        if len(line.text) > limits.max_message_chars:
            raise InputTooLargeError(
                f"message {i} has {len(line.text)} characters, limit {limits.max_message_chars}"
            )
        if len(line.sender) > limits.max_sender_chars:
            raise InputTooLargeError(
                f"message {i} sender has {len(line.sender)} characters, "
                f"limit {limits.max_sender_chars}"
            )
        if len(line.time) > limits.max_time_chars:
            raise InputTooLargeError(
                f"message {i} time has {len(line.time)} characters, limit {limits.max_time_chars}"
            )
        total += len(line.text) + len(line.sender)
    if total > limits.max_total_chars:
        raise InputTooLargeError(f"chat has {total} characters, limit {limits.max_total_chars}")
    if not any(line.text.strip() for line in lines):
        raise InvalidRequestError(f"all {len(lines)} chat messages are empty")


# ---- output cleaning --------------------------------------------------------------

_SPACES = re.compile(r"\s+")
_MARKER = re.compile(r"^(?:[-*•·‣▪\u2013\u2014+>]|\(?\d{1,2}[.)]|\(?[a-zA-Z][.)](?=\s)|#{1,6})\s*")
_EMPHASIS = re.compile(r"(\*\*|__|`)")
_PREAMBLE = re.compile(
    r"^(?:sure|certainly|okay|ok|here(?:'s| is| are)|summary|key points|bullet points|"
    r"in summary|main points|notes|chat( messages)?|the chat|group chat|conversation)\b",
    re.IGNORECASE,
)
_SPEAKER = re.compile(r"^[^\s:]{1,40}(?: [^\s:]{1,40})?:\s+")
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?")
MIN_BULLET_WORDS: Final = 3


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _trim(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-") + "…"


def clean_bullet(line: str) -> str | None:
    """One output line as a clean bullet, or None for headings, preambles and filler."""
    text = _SPACES.sub(" ", line).strip()
    for _ in range(3):  # "1. - **x**" has nested markers
        stripped = _MARKER.sub("", text).strip()
        if stripped == text:
            break
        text = stripped
    text = _EMPHASIS.sub("", text).strip().strip('"“”').strip()
    if not text:
        return None
    if text.endswith(":") and (len(text.split()) <= 8 or _PREAMBLE.match(text)):
        return None  # a heading or "Here is the summary:"
    body = _SPEAKER.sub("", text, count=1)
    if len(_WORD.findall(body)) < MIN_BULLET_WORDS:
        return None
    return _trim(text, MAX_BULLET_CHARS)


class _Bullets:
    """Accumulates clean, distinct bullets; reports when to stop generating."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: list[str] = []
        self._seen: set[str] = set()
        self.looping = False

    def add(self, line: str) -> bool:
        """Add one output line; return True when no more bullets are wanted."""
        bullet = clean_bullet(line)
        if bullet is not None:
            key = _norm(bullet)
            if key in self._seen:
                # A small model that repeats itself has run out of new content.
                self.looping = True
                return True
            self._seen.add(key)
            self.items.append(bullet)
        return len(self.items) >= self.limit


def parse_bullets(text: str, max_bullets: int) -> list[str]:
    """Clean bullets from a model's whole output (numbering and markdown removed)."""
    bullets = _Bullets(max_bullets)
    for line in text.splitlines():
        if bullets.add(line):
            break
    return bullets.items


def _lines(pieces: Iterable[str]) -> Iterator[str]:
    buffer = ""
    for piece in pieces:
        buffer += piece
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            yield line
    if buffer:
        yield buffer


_TRAILER = re.compile(
    r"^(?:in this (?:revised|rewritten|version)|this (?:revised|rewritten|version)|"
    r"i(?:'ve| have) (?:made|changed|rephrased|corrected|rewritten|replaced|added|removed)|"
    r"note:|explanation:|changes( made)?:)",
    re.IGNORECASE,
)
_LABEL = re.compile(r"^(?:text|rewritten text|new text|revised text|message)\s*:\s*", re.I)
_SALUTATION = re.compile(r"^(?:dear|hi|hello|hey)\b[^\n]{0,40},$", re.IGNORECASE)
_QUOTES = (('"', '"'), ("“", "”"), ("'", "'"))


def parse_rewrite(text: str, single_paragraph: bool = False) -> str | None:
    """The rewritten text from a model's output, without preamble, notes or quotes.

    ``single_paragraph``: the draft was one paragraph, so keep only the first one.
    """
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    while paragraphs:
        first = paragraphs[0]
        head, _, rest = first.partition("\n")
        if head.rstrip().endswith(":") and (_PREAMBLE.match(head) or len(head.split()) <= 12):
            paragraphs[0] = rest.strip()
            if not paragraphs[0]:
                paragraphs.pop(0)
            continue
        break
    while len(paragraphs) > 1 and _TRAILER.match(paragraphs[-1]):
        paragraphs.pop()
    if single_paragraph and len(paragraphs) > 1:
        # A one-paragraph draft gets a one-paragraph rewrite (after any salutation):
        # small models ramble on with invented content.
        keep = 2 if _SALUTATION.match(paragraphs[0]) else 1
        paragraphs = paragraphs[:keep]
    result = "\n\n".join(paragraphs).strip()
    result = _LABEL.sub("", result)
    for left, right in _QUOTES:
        if len(result) >= 2 and result.startswith(left) and result.endswith(right):
            inner = result[1:-1].strip()
            if left not in inner:
                result = inner
    return result or None


# ---- tasks ------------------------------------------------------------------------


def summary_messages(
    lines: Sequence[ChatLine], max_bullets: int, reader: str | None = None
) -> list[ChatMessage]:
    """The prompt for summarizing ``lines``."""
    requests = (
        prompts.SUMMARY_REQUESTS_TO_READER.format(reader=_SPACES.sub(" ", reader).strip())
        if reader and reader.strip()
        else prompts.SUMMARY_REQUESTS
    )
    transcript = "\n".join(
        prompts.SUMMARY_LINE.format(
            sender=_SPACES.sub(" ", line.sender).strip() or "Someone",
            text=_SPACES.sub(" ", line.text).strip(),
        )
        for line in lines
        if line.text.strip()
    )
    return [
        ChatMessage(
            "system",
            prompts.SUMMARY_SYSTEM.format(max_bullets=max_bullets, requests=requests),
        ),
        ChatMessage("user", prompts.SUMMARY_USER.format(transcript=transcript)),
    ]


def summary_params(max_bullets: int) -> GenerationParams:
    return GenerationParams(
        max_tokens=prompts.SUMMARY_TOKENS_BASE + prompts.SUMMARY_TOKENS_PER_BULLET * max_bullets,
        temperature=prompts.TEMPERATURE,
        repeat_penalty=prompts.REPEAT_PENALTY,
    )


def _backend_name(backend: object) -> str:
    name = getattr(backend, "name", None)
    return name if isinstance(name, str) else type(backend).__name__


def bullet_messages(speaker: str, text: str, reader: str | None, attempt: int
                    ) -> list[ChatMessage]:
    """The prompt for rephrasing one chat message as a bullet (``attempt`` 1: stricter)."""
    reader_name = _SPACES.sub(" ", reader).strip() if reader and reader.strip() else "the reader"
    system = prompts.BULLET_SYSTEM.format(speaker=speaker, reader=reader_name)
    if attempt:
        system += " " + prompts.BULLET_STRICT
    return [ChatMessage("system", system),
            ChatMessage("user", prompts.BULLET_USER.format(
                speaker=speaker, text=_SPACES.sub(" ", text).strip()))]


def _phraser(backend: ChatBackend) -> Callable[[str, str, str | None, int], str | None]:
    def phrase(speaker: str, text: str, reader: str | None, attempt: int) -> str | None:
        output = backend.complete(bullet_messages(speaker, text, reader, attempt),
                                  GenerationParams(max_tokens=prompts.BULLET_TOKENS,
                                                   temperature=prompts.TEMPERATURE,
                                                   seed=attempt,
                                                   repeat_penalty=prompts.REPEAT_PENALTY))
        lines = [clean_bullet(line) for line in output.splitlines()]
        return next((line for line in lines if line), None)

    return phrase


def summarize_cited(
    backend: ChatBackend | ChatSummarizer,
    messages: Sequence[ChatLine],
    max_bullets: int = 5,
    *,
    reader: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    phrasing: bool | None = None,
) -> list[Bullet]:
    """The summary's bullets with their source message indices (:mod:`.summary`).

    ``phrasing``: let the backend's model rephrase bullets (checked); default: only for
    backends listed in ``prompts.MODEL_PHRASING`` (see the measurements there).
    """
    check_chat(messages, max_bullets, limits)
    if reader is not None and len(reader) > limits.max_reader_chars:
        raise InputTooLargeError(
            f"reader name has {len(reader)} characters, limit {limits.max_reader_chars}"
        )
    model = not isinstance(backend, ChatSummarizer)
    use_model = prompts.MODEL_PHRASING if phrasing is None else phrasing
    phraser = _phraser(backend) if model and use_model else None  # type: ignore[arg-type]
    try:
        bullets = summarize_chat(messages, max_bullets, reader, phraser)
    except InferenceError:
        raise
    except Exception as exc:  # noqa: BLE001 - never let a foreign error carry user text
        raise GenerationError(
            f"backend {_backend_name(backend)} failed to summarize {len(messages)} messages "
            f"({type(exc).__name__})"
        ) from None
    if not bullets:
        raise GenerationError(
            f"no bullet could be written from the {len(messages)} messages (only events, "
            "placeholders or empty messages?)")
    return bullets


def summarize(
    backend: ChatBackend | ChatSummarizer,
    messages: Sequence[ChatLine],
    max_bullets: int = 5,
    *,
    reader: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> list[str]:
    """A short bullet list of what happened in the chat and what is asked of the reader.

    ``reader`` (optional) is the name of the person the summary is for. Returns 1 to
    ``max_bullets`` bullets, without leading dashes or numbering (see
    :func:`summarize_cited` for their sources).
    """
    return [b.text for b in summarize_cited(backend, messages, max_bullets, reader=reader,
                                            limits=limits)]


def check_draft(draft: str, tone: str, limits: Limits) -> None:
    if not isinstance(tone, str) or tone not in TONES:
        raise InvalidRequestError(f"tone must be one of {', '.join(TONES)}")
    if not isinstance(draft, str):
        raise InvalidRequestError(f"draft must be a string, got {type(draft).__name__}")
    if not draft.strip():
        raise InvalidRequestError("draft is empty")
    if len(draft) > limits.max_draft_chars:
        raise InputTooLargeError(
            f"draft has {len(draft)} characters, limit {limits.max_draft_chars}"
        )


def write_messages(draft: str, tone: str, attempt: int = 0) -> list[ChatMessage]:
    """The prompt for rewriting ``draft`` in ``tone`` (``attempt`` 1: stricter)."""
    instruction = prompts.WRITE_INSTRUCTIONS[tone]
    if attempt:
        instruction += prompts.WRITE_STRICT
    return [
        ChatMessage("user", prompts.WRITE_USER.format(instruction=instruction, draft=draft.strip()))
    ]


def write_params(draft: str, index: int = 0) -> GenerationParams:
    """Greedy for the first attempt; sampled (seeded) for the retry."""
    tokens = min(prompts.WRITE_TOKENS_MAX, prompts.WRITE_TOKENS_BASE + len(draft) // 2)
    if index == 0:
        return GenerationParams(
            max_tokens=tokens,
            temperature=prompts.TEMPERATURE,
            repeat_penalty=prompts.REPEAT_PENALTY,
        )
    return GenerationParams(
        max_tokens=tokens, temperature=0.3, seed=index, repeat_penalty=prompts.REPEAT_PENALTY
    )


def write_checked(
    backend: ChatBackend,
    draft: str,
    tone: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Rewrite:
    """Rewrite ``draft`` in ``tone`` keeping its facts and intent (:mod:`.rewrite`): the
    model's rewrite if it passes the checks (one retry), else the corrected draft,
    flagged ``"fallback"``."""
    check_draft(draft, tone, limits)
    single = not re.search(r"\n\s*\n", draft.strip())

    def generate(attempt: int) -> str | None:
        try:
            output = backend.complete(write_messages(draft, tone, attempt),
                                      write_params(draft, attempt))
        except UnsupportedTaskError:
            return None  # a backend without a model: the corrected draft, flagged
        except InferenceError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise GenerationError(
                f"backend {_backend_name(backend)} failed to rewrite a {len(draft)}-character "
                f"draft ({type(exc).__name__})"
            ) from None
        return parse_rewrite(output, single_paragraph=single)

    return checked_rewrite(draft, generate, tone)


def write(
    backend: ChatBackend,
    draft: str,
    tone: str,
    *,
    suggestions: int = 1,
    limits: Limits = DEFAULT_LIMITS,
) -> list[str]:
    """Rewrite ``draft`` in ``tone`` (one of :data:`TONES`): one checked suggestion
    (:func:`write_checked`; ``suggestions`` is kept for compatibility, at most 3)."""
    if not 1 <= suggestions <= MAX_SUGGESTIONS:
        raise InvalidRequestError(f"suggestions must be in 1..{MAX_SUGGESTIONS}")
    return [write_checked(backend, draft, tone, limits=limits).text]


__all__ = [
    "DEFAULT_LIMITS",
    "MAX_SUGGESTIONS",
    "TONES",
    "ChatLine",
    "Limits",
    "chat_lines_from_json",
    "check_chat",
    "check_draft",
    "clean_bullet",
    "parse_bullets",
    "parse_rewrite",
    "summarize",
    "summarize_cited",
    "summary_messages",
    "summary_params",
    "write",
    "write_checked",
    "write_messages",
    "write_params",
]
