"""The model-free extractive summarizer."""

from __future__ import annotations

import pytest

from privproc.inference import (
    ChatLine,
    ChatMessage,
    ExtractiveBackend,
    GenerationParams,
    UnsupportedTaskError,
    summarize,
)
from privproc.inference.extractive import MAX_BULLET_TEXT, extract, format_bullets, score_lines

CHAT = [
    ChatLine("Alice", "09:00", "Morning!"),
    ChatLine("Bob", "09:01", "The quarterly report draft is in the shared folder now."),
    ChatLine("Carol", "09:02", "lol"),
    ChatLine("Alice", "09:03", "Sam, can you review the quarterly report draft by Thursday?"),
    ChatLine("Dave", "09:04", "Nice weather today, the park looks lovely and green."),
    ChatLine("Bob", "09:05", "The quarterly report draft is in the shared folder now!"),
    ChatLine("Carol", "09:06", "Client meeting moved to Friday 3pm, same room as before."),
]


def test_picks_requests_dates_and_reader_mentions_in_chat_order() -> None:
    bullets = extract(CHAT, 3, reader="Sam")
    assert bullets == [
        "Bob: The quarterly report draft is in the shared folder now.",
        "Alice: Sam, can you review the quarterly report draft by Thursday?",
        "Carol: Client meeting moved to Friday 3pm, same room as before.",
    ]


def test_small_talk_scores_low() -> None:
    scores = score_lines(CHAT, reader="Sam")
    assert scores[0] < scores[3] and scores[2] < scores[3]
    assert max(range(len(CHAT)), key=scores.__getitem__) == 3


def test_skips_near_duplicates() -> None:
    bullets = extract(CHAT, 5)
    assert sum("shared folder" in b for b in bullets) == 1


def test_trims_long_messages() -> None:
    (bullet,) = extract([ChatLine("Eve", "", "please " + "very long words " * 40)], 1)
    assert bullet.startswith("Eve: please")
    assert len(bullet) <= len("Eve: ") + MAX_BULLET_TEXT
    assert bullet.endswith("…")


def test_deterministic_and_capped() -> None:
    assert extract(CHAT, 2) == extract(list(CHAT), 2)
    assert len(summarize(ExtractiveBackend(), CHAT, max_bullets=2)) == 2


def test_format_bullets() -> None:
    assert format_bullets(["A: x", "B: y"]) == "- A: x\n- B: y"


def test_free_generation_is_unsupported() -> None:
    backend = ExtractiveBackend()
    with pytest.raises(UnsupportedTaskError, match=r"write task\) needs a language-model"):
        backend.complete([ChatMessage("user", "hi")], GenerationParams())
    with pytest.raises(UnsupportedTaskError):
        backend.stream([ChatMessage("user", "hi")], GenerationParams())
