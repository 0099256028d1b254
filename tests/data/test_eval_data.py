"""Schema checks of the evaluation set in ``tests/data`` (used by ``bench/quality.py``)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from privproc.client.chat_export import parse_chat_export
from privproc.inference.tasks import (
    DEFAULT_LIMITS,
    MAX_BULLET_CHARS,
    TONES,
    chat_lines_from_json,
    check_chat,
)

DATA = Path(__file__).resolve().parent
READER = "Sam"


def _load(name: str) -> list[dict[str, Any]]:
    value = json.loads((DATA / name).read_text(encoding="utf-8"))
    assert isinstance(value, list)
    assert all(isinstance(item, dict) for item in value)
    return value


CHATS = _load("eval_chats.json")
DRAFTS = _load("eval_drafts.json")


def _words(text: str) -> int:
    return len(text.split())


# ---- chats ------------------------------------------------------------------------


def test_at_least_30_chats_with_unique_ids() -> None:
    assert len(CHATS) >= 30
    ids = [chat["id"] for chat in CHATS]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, str) and i for i in ids)


def test_topics_are_distinct() -> None:
    topics = [chat["topic"] for chat in CHATS]
    assert all(isinstance(t, str) and t.strip() for t in topics)
    assert len(set(topics)) == len(topics)


@pytest.mark.parametrize("chat", CHATS, ids=lambda c: c["id"])
def test_chat_schema(chat: dict[str, Any]) -> None:
    assert set(chat) == {"id", "topic", "reader", "messages", "reference_summary"}
    assert chat["reader"] == READER
    messages = chat["messages"]
    assert 3 <= len(messages) <= 40
    for message in messages:
        assert set(message) == {"sender", "time", "text"}
        assert all(isinstance(message[k], str) for k in message)
        assert message["sender"].strip() == message["sender"] != ""
        assert message["text"].strip()
    senders = {m["sender"] for m in messages}
    assert 2 <= len(senders) <= 8
    # the reader has unread messages to catch up on, so sends few or none of them
    assert sum(m["sender"] == READER for m in messages) <= 1


@pytest.mark.parametrize("chat", CHATS, ids=lambda c: c["id"])
def test_chat_times_are_iso_and_increasing(chat: dict[str, Any]) -> None:
    times = [datetime.fromisoformat(m["time"]) for m in chat["messages"]]
    assert all(t.tzinfo is None for t in times)
    assert all(a < b for a, b in pairwise(times))


@pytest.mark.parametrize("chat", CHATS, ids=lambda c: c["id"])
def test_reference_summary(chat: dict[str, Any]) -> None:
    bullets = chat["reference_summary"]
    assert isinstance(bullets, list)
    assert 2 <= len(bullets) <= 5
    for bullet in bullets:
        assert isinstance(bullet, str)
        assert bullet.strip() == bullet != ""
        assert _words(bullet) <= 25, bullet
        assert len(bullet) <= MAX_BULLET_CHARS
    assert len(set(bullets)) == len(bullets)


@pytest.mark.parametrize("chat", CHATS, ids=lambda c: c["id"])
def test_chat_fits_the_summarize_limits(chat: dict[str, Any]) -> None:
    lines = chat_lines_from_json(chat["messages"])
    check_chat(lines, 5, DEFAULT_LIMITS)


def test_chat_sizes_are_spread() -> None:
    sizes = [len(chat["messages"]) for chat in CHATS]
    assert sum(size <= 6 for size in sizes) >= 5
    assert sum(size >= 25 for size in sizes) >= 5
    assert sum(10 <= size <= 25 for size in sizes) >= 10


def test_most_chats_ask_something_of_the_reader() -> None:
    asked = [
        chat["id"]
        for chat in CHATS
        if any(READER in m["text"] for m in chat["messages"])
        and any(READER in b for b in chat["reference_summary"])
    ]
    assert len(asked) >= len(CHATS) * 3 // 4


def test_some_chats_span_several_days_and_have_multiline_messages() -> None:
    spans = [len({m["time"][:10] for m in chat["messages"]}) for chat in CHATS]
    assert sum(days > 1 for days in spans) >= 10
    assert any("\n" in m["text"] for chat in CHATS for m in chat["messages"])


# ---- drafts -----------------------------------------------------------------------


def test_at_least_30_drafts_with_unique_ids() -> None:
    assert len(DRAFTS) >= 30
    ids = [draft["id"] for draft in DRAFTS]
    assert len(set(ids)) == len(ids)


def test_every_tone_has_at_least_6_drafts() -> None:
    counts = Counter(draft["tone"] for draft in DRAFTS)
    assert set(counts) == set(TONES)
    assert all(counts[tone] >= 6 for tone in TONES)


def test_first_ten_drafts_cover_every_tone() -> None:
    # bench/quality.py --quick evaluates only the first ten
    assert {draft["tone"] for draft in DRAFTS[:10]} == set(TONES)


@pytest.mark.parametrize("draft", DRAFTS, ids=lambda d: d["id"])
def test_draft_schema(draft: dict[str, Any]) -> None:
    assert set(draft) == {"id", "tone", "draft", "reference"}
    assert draft["tone"] in TONES
    for key in ("draft", "reference"):
        text = draft[key]
        assert isinstance(text, str)
        assert text.strip() == text != ""
        assert len(text) <= DEFAULT_LIMITS.max_draft_chars
    assert draft["reference"] != draft["draft"]


# ---- WhatsApp export samples ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "minimum"), [("sample_chat.txt", 25), ("sample_chat_android.txt", 10)]
)
def test_sample_exports_parse(name: str, minimum: int) -> None:
    text = (DATA / name).read_text(encoding="utf-8")
    messages = parse_chat_export(text)
    assert len(messages) >= minimum
    assert len({m.sender for m in messages}) >= 2
    assert any("\n" in m.text for m in messages)  # a multi-line message
    assert all(a.time <= b.time for a, b in pairwise(messages))
    # system lines (group created, members added, encryption notice) are not messages
    assert not any("created group" in m.text or "end-to-end" in m.text for m in messages)
    assert any("omitted" in m.text for m in messages)
