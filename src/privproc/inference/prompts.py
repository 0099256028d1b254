"""Every prompt text the node sends to a model, in one versioned file.

This file is part of the measured release: changing any text here changes model
behaviour, so bump :data:`PROMPTS_VERSION` and rerun ``bench/quality.py``.

The prompts target small models (Qwen2.5-0.5B by default, SmolLM2-135M in tests):
instructions are short, explicit and few-shot-free, and the chat transcript is compact
(one ``Sender: text`` line per message, no timestamps) so a 20-message chat stays around
300 prompt tokens. Whatever a model writes is checked (:mod:`.summary`, :mod:`.rewrite`)
before it reaches the user.
"""

from __future__ import annotations

from typing import Final

PROMPTS_VERSION: Final = "2"

# ---- summarize --------------------------------------------------------------------
# {max_bullets}: bullet cap; {requests}: "requests" or "requests to <reader>".
SUMMARY_SYSTEM: Final = (
    "Provide a concise, objective summary of the chat in up to {max_bullets} short bullet "
    "points. Include key actions, dates, and {requests}."
)
SUMMARY_REQUESTS: Final = "requests"
SUMMARY_REQUESTS_TO_READER: Final = "requests to {reader}"
# One line per chat message; newlines inside a message are folded to spaces.
SUMMARY_LINE: Final = "{sender}: {text}"
# The user turn is the transcript itself.
SUMMARY_USER: Final = "{transcript}"

# ---- one bullet (the summary pipeline's optional model step) ------------------------
# The pipeline picks the message and fixes the speaker; the model may only say it more
# briefly, and its bullet is checked against the message (see summary.py).
BULLET_SYSTEM: Final = (
    "Rewrite the chat message as one short note for {reader}. Begin with \"{speaker}\". "
    "Keep every name, number, time, date and amount exactly as written. Write about "
    "{reader} as \"you\". Reply with the note only."
)
BULLET_STRICT: Final = "Use only words and facts from the message."
BULLET_USER: Final = "{speaker}: {text}"
BULLET_TOKENS: Final = 48
# Whether summaries let a model rephrase bullets by default: off, by measurement
# (bench/quality.py: the checked written bullets score higher on must-mention recall and
# attribution than model phrasings, which mostly fail the fact check).
MODEL_PHRASING: Final = False

# ---- write ------------------------------------------------------------------------
WRITE_INSTRUCTIONS: Final[dict[str, str]] = {
    "rephrase": "Rewrite the following text in other words, keeping its meaning",
    "professional": "Rewrite the following text to be more professional and formal",
    "funny": "Rewrite the following text to be funny and playful",
    "supportive": "Rewrite the following text to be warm, kind and supportive",
    "proofread": "Fix the spelling and grammar of the following text",
}
WRITE_USER: Final = '{instruction}. Reply with the new text only.\n\nText: "{draft}"'
# The retry after a rewrite lost or invented a fact, or changed who does what.
WRITE_STRICT: Final = (
    ". Keep every name, number, time, date, amount and link exactly, and keep I and you "
    "as they are")

# ---- decoding (part of the release too) ------------------------------------------
# Greedy decoding; a mild repeat penalty keeps the small model out of loops.
TEMPERATURE: Final = 0.0
REPEAT_PENALTY: Final = 1.1
SUMMARY_TOKENS_PER_BULLET: Final = 28
SUMMARY_TOKENS_BASE: Final = 20
WRITE_TOKENS_BASE: Final = 40  # plus one token per two draft characters
WRITE_TOKENS_MAX: Final = 320

__all__ = [
    "BULLET_STRICT",
    "BULLET_SYSTEM",
    "BULLET_TOKENS",
    "BULLET_USER",
    "MODEL_PHRASING",
    "PROMPTS_VERSION",
    "REPEAT_PENALTY",
    "SUMMARY_TOKENS_BASE",
    "SUMMARY_TOKENS_PER_BULLET",
    "TEMPERATURE",
    "WRITE_TOKENS_BASE",
    "WRITE_TOKENS_MAX",
    "SUMMARY_LINE",
    "SUMMARY_REQUESTS",
    "SUMMARY_REQUESTS_TO_READER",
    "SUMMARY_SYSTEM",
    "SUMMARY_USER",
    "WRITE_INSTRUCTIONS",
    "WRITE_STRICT",
    "WRITE_USER",
]
