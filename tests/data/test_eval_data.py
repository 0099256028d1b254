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

from .matching import mentions, normalise, states_superseded

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


def test_normalise() -> None:
    assert normalise("9am") == normalise("9:00") == normalise("09:00") == "9:00"
    assert normalise("7.30pm") == normalise("19:30") == "7:30"
    assert normalise("£45.00") == "£45"
    assert normalise("£2,400") == "£2400"
    assert normalise("Saturday 21st November") == normalise("Sat 21 Nov") == "sat 21 nov"
    assert normalise("Sunday at 3") == "sun at 3:00"
    assert normalise("three weeks") == "3 weeks"
    assert normalise("Fox & Hound") == "fox and hound"
    assert normalise("Oak Street") == normalise("Oak St") == "oak st"
    assert normalise("below 30mph") == "below 30 mph"
    assert mentions("3pm", "Sunday at 3 everyone")
    assert mentions("£45", "a £45.00 deposit") and mentions("45", "a £45 deposit")
    assert not mentions("£2", "£20 each") and not mentions("3:00", "at 13:00")
    assert not mentions("Sat", "a satellite")
    assert states_superseded({"any_of": ["12:40"]}, "Train at 12:40.")
    item = {"any_of": ["Thursday"], "current": ["Tuesday"]}
    assert not states_superseded(item, "Moved from Thursday to Tuesday.")
    assert not states_superseded(item, 'Drop the "this Thursday" wording.')
    assert not states_superseded(item, "Drop the 'this Thursday' wording from Sam's notes.")
    assert states_superseded(item, "Sam's notes say it's Thursday's release.")
    assert states_superseded(item, "Release is Thursday. Standup is on Tuesday.")


@pytest.mark.parametrize("text", [m["text"] for c in CHATS for m in c["messages"]])
def test_normalise_is_idempotent(text: str) -> None:
    assert normalise(normalise(text)) == normalise(text)


def _line(message: dict[str, str]) -> str:
    """A message as the chat line a reader sees: ``Sender: text``."""
    return f"{message['sender']}: {message['text']}"


def _forms(value: Any) -> list[str]:
    assert isinstance(value, list) and value
    assert all(isinstance(f, str) and f.strip() == f != "" for f in value)
    assert len(set(value)) == len(value)
    return value


def _indices(value: Any, size: int) -> list[int]:
    assert isinstance(value, list) and value
    assert all(type(i) is int and 0 <= i < size for i in value), value
    assert value == sorted(set(value)), value
    return value


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
    assert set(chat) == {
        "id",
        "topic",
        "reader",
        "messages",
        "reference_summary",
        "must_mention",
        "must_not",
        "bullets",
    }
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


@pytest.mark.parametrize("chat", CHATS, ids=lambda c: c["id"])
def test_must_mention(chat: dict[str, Any]) -> None:
    messages = chat["messages"]
    facts = chat["must_mention"]
    assert isinstance(facts, list)
    assert 3 <= len(facts) <= 7
    for fact in facts:
        assert set(fact) == {"fact", "any_of", "source"}
        assert isinstance(fact["fact"], str) and fact["fact"].strip()
        source = _indices(fact["source"], len(messages))
        for form in _forms(fact["any_of"]):
            # a surface form that the chat itself uses, in one of the cited messages
            assert any(mentions(form, _line(messages[i])) for i in source), (fact, form)
    assert len({f["fact"] for f in facts}) == len(facts)
    # what is asked of the reader is always among the facts
    asks = {i for i, m in enumerate(messages) if READER in m["text"]}
    if asks:
        assert any(asks & set(f["source"]) for f in facts)


@pytest.mark.parametrize("chat", CHATS, ids=lambda c: c["id"])
def test_must_not(chat: dict[str, Any]) -> None:
    messages = chat["messages"]
    senders = {m["sender"] for m in messages}
    items = chat["must_not"]
    assert isinstance(items, list)
    assert 1 <= len(items) <= 4
    stated = {normalise(f) for fact in chat["must_mention"] for f in fact["any_of"]}
    for item in items:
        assert isinstance(item["text"], str) and item["text"].strip()
        source = _indices(item["source"], len(messages))
        cited = "\n".join(_line(messages[i]) for i in source)
        if item["kind"] == "superseded":
            assert set(item) == {"text", "kind", "any_of", "current", "source"}
            for form in _forms(item["any_of"]):
                assert mentions(form, cited), (item, form)  # the stale value is in the chat
                assert normalise(form) not in stated  # and is not a fact to mention
            for form in _forms(item["current"]):
                assert mentions(form, cited), (item, form)
        else:
            assert item["kind"] == "misattribution"
            assert set(item) == {"text", "kind", "speaker", "claim", "actual_speaker", "source"}
            assert isinstance(item["claim"], str) and item["claim"].strip()
            assert item["speaker"] in senders
            assert item["actual_speaker"] in senders
            assert item["speaker"] != item["actual_speaker"]
            # the right person wrote, or is named in, a cited message
            assert any(
                messages[i]["sender"] == item["actual_speaker"]
                or item["actual_speaker"] in messages[i]["text"]
                for i in source
            ), item


@pytest.mark.parametrize("chat", CHATS, ids=lambda c: c["id"])
def test_bullets(chat: dict[str, Any]) -> None:
    messages = chat["messages"]
    bullets = chat["bullets"]
    assert isinstance(bullets, list)
    assert len(bullets) == len(chat["reference_summary"])
    for bullet, text in zip(bullets, chat["reference_summary"], strict=True):
        assert set(bullet) == {"speakers", "source", "addressed_to_reader"}
        source = _indices(bullet["source"], len(messages))
        speakers = bullet["speakers"]
        assert isinstance(speakers, list) and len(set(speakers)) == len(speakers)
        # the people whose cited messages the bullet states, in order of first message
        assert speakers == list(dict.fromkeys(messages[i]["sender"] for i in source))
        assert isinstance(bullet["addressed_to_reader"], bool)
        # a bullet addressed to the reader names them, and only those do
        assert bullet["addressed_to_reader"] == (READER in text), text
    if any(READER in m["text"] for m in messages):
        assert any(b["addressed_to_reader"] for b in bullets)


@pytest.mark.parametrize("chat", CHATS, ids=lambda c: c["id"])
def test_reference_summary_is_faithful(chat: dict[str, Any]) -> None:
    # the annotations agree with the human reference: it states every fact, no stale value
    summary = "\n".join(chat["reference_summary"])
    for fact in chat["must_mention"]:
        assert any(mentions(f, summary) for f in fact["any_of"]), fact
    for item in chat["must_not"]:
        if item["kind"] == "superseded":
            assert not states_superseded(item, summary), item


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
    assert set(draft) == {"id", "tone", "draft", "reference", "protected"}
    assert draft["tone"] in TONES
    for key in ("draft", "reference"):
        text = draft[key]
        assert isinstance(text, str)
        assert text.strip() == text != ""
        assert len(text) <= DEFAULT_LIMITS.max_draft_chars
    assert draft["reference"] != draft["draft"]


@pytest.mark.parametrize("draft", DRAFTS, ids=lambda d: d["id"])
def test_draft_protected(draft: dict[str, Any]) -> None:
    protected = draft["protected"]
    assert set(protected) == {"items", "intent"}
    intent = protected["intent"]
    assert isinstance(intent, str) and intent.strip() == intent != ""
    assert _words(intent) <= 25
    items = protected["items"]
    assert isinstance(items, list) and items
    for item in items:
        assert set(item) == {"text", "any_of"}
        assert isinstance(item["text"], str) and item["text"].strip()
        # the item is in the draft as written (misspelt, for some proofread drafts)
        assert mentions(item["text"], draft["draft"]), item
        forms = _forms(item["any_of"])
        if draft["tone"] != "proofread":
            assert any(mentions(f, draft["draft"]) for f in forms), item
        # and the reference rewrite keeps it
        assert any(mentions(f, draft["reference"]) for f in forms), item
    assert len({i["text"] for i in items}) == len(items)


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
    # system lines (group created, members added, encryption notice) are not messages:
    # the parser drops them, or keeps them typed as another kind than "message"
    assert not any(
        ("created group" in m.text or "end-to-end" in m.text)
        and getattr(m, "kind", "message") == "message"
        for m in messages
    )
    assert any("omitted" in m.text for m in messages)
