"""summarize / write: input limits, prompts and output parsing (scripted backend)."""

from __future__ import annotations

import pytest

from privproc.inference import (
    PROMPTS_VERSION,
    TONES,
    ChatLine,
    GenerationError,
    InputTooLargeError,
    InvalidRequestError,
    Limits,
    summarize,
    write,
)
from privproc.inference.tasks import (
    MAX_BULLET_CHARS,
    chat_lines_from_json,
    clean_bullet,
    parse_bullets,
    parse_rewrite,
    summary_messages,
    write_messages,
)

from .conftest import SHORT_CHAT
from .scripted import ScriptedBackend


def test_prompts_are_versioned() -> None:
    assert PROMPTS_VERSION == "1"


def test_summary_prompt_is_a_compact_transcript() -> None:
    lines = [*SHORT_CHAT, ChatLine("Dave", "10:00", "two\nlines"), ChatLine("Eve", "10:01", " ")]
    system, user = summary_messages(lines, 4, reader="Sam")
    assert system.role == "system" and user.role == "user"
    assert "4 short bullet points" in system.content
    assert "requests to Sam" in system.content
    assert user.content.splitlines()[0] == "Alice: Reminder: the quarterly report is due Friday."
    assert user.content.splitlines()[-1] == "Dave: two lines"  # folded; empty one skipped
    assert "09:02" not in user.content
    assert "requests to" not in summary_messages(lines, 4)[0].content


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("1. **Alice** asked for the report by Friday.", "Alice asked for the report by Friday."),
        ("2) Bob will send the numbers.", "Bob will send the numbers."),
        ("  * - Carol moved the meeting to 3pm.", "Carol moved the meeting to 3pm."),
        ("• Dave: reported the printer, ticket 4471", "Dave: reported the printer, ticket 4471"),
        ("### Sam must book the venue", "Sam must book the venue"),
        ('- "Quoted bullet with words"', "Quoted bullet with words"),
        ("10:30 standup is moved to Friday", "10:30 standup is moved to Friday"),
        ("Here is a summary of the chat:", None),
        ("Key points:", None),
        ("Bob: I'm in!", None),
        ("- Thanks, Sam.", None),
        ("   ", None),
    ],
)
def test_clean_bullet(line: str, expected: str | None) -> None:
    assert clean_bullet(line) == expected


def test_long_bullets_are_trimmed() -> None:
    bullet = clean_bullet("- " + "word " * 200)
    assert bullet is not None
    assert len(bullet) <= MAX_BULLET_CHARS
    assert bullet.endswith("…")


def test_parse_bullets_dedupes_and_caps() -> None:
    text = "Summary:\n- a b c d\n- A, b c d!\n- e f g h\n- i j k l\n"
    assert parse_bullets(text, 5) == ["a b c d"]  # the repeat means the model is looping
    assert parse_bullets("- a b c\n- d e f\n- g h i", 2) == ["a b c", "d e f"]


def test_summarize_parses_and_stops_streaming_early() -> None:
    output = "Sure! Here are the key points:\n\n1. **Alice**: report due Friday.\n" + "".join(
        f"{i}. Point number {i} here\n" for i in range(2, 30)
    )
    backend = ScriptedBackend(output)
    bullets = summarize(backend, SHORT_CHAT, max_bullets=3)
    assert bullets == ["Alice: report due Friday.", "Point number 2 here", "Point number 3 here"]
    assert backend.stream_closed_early
    _, params = backend.calls[0]
    assert params.temperature == 0.0


def test_summarize_stops_when_the_model_loops() -> None:
    repeat = "- Bob will send it today\n"
    output = repeat + "- Carol will call them\n" + repeat * 50
    backend = ScriptedBackend(output)
    assert summarize(backend, SHORT_CHAT) == ["Bob will send it today", "Carol will call them"]
    assert backend.stream_closed_early


@pytest.mark.parametrize("output", ["", "   \n\n", "Summary:\n- ok\n- Thanks!"])
def test_summarize_without_usable_output_fails_cleanly(output: str) -> None:
    with pytest.raises(GenerationError, match="no usable bullet points"):
        summarize(ScriptedBackend(output), SHORT_CHAT)


def test_summarize_wraps_foreign_backend_errors() -> None:
    with pytest.raises(GenerationError, match=r"scripted failed .*\(KeyError\)"):
        summarize(ScriptedBackend(error=KeyError("x")), SHORT_CHAT)


@pytest.mark.parametrize(
    ("lines", "kwargs", "error", "match"),
    [
        ([], {}, InvalidRequestError, "at least one"),
        ([ChatLine("a", "", " ")] * 2, {}, InvalidRequestError, "all 2 chat messages are empty"),
        (SHORT_CHAT, {"max_bullets": 0}, InvalidRequestError, r"max_bullets must be in 1\.\.10"),
        (SHORT_CHAT, {"max_bullets": 11}, InvalidRequestError, "max_bullets"),
        (SHORT_CHAT * 30, {}, InputTooLargeError, "chat has 150 messages, limit 100"),
        ([ChatLine("a", "", "x" * 2001)], {}, InputTooLargeError, "message 0 has 2001 char"),
        ([ChatLine("a" * 65, "", "x")], {}, InputTooLargeError, "sender has 65"),
        ([ChatLine("a", "t" * 65, "x")], {}, InputTooLargeError, "time has 65"),
        (
            [ChatLine("a", "", "x" * 1999)] * 7,
            {},
            InputTooLargeError,
            "chat has 14000 characters, limit 12000",
        ),
        (SHORT_CHAT, {"reader": "r" * 65}, InputTooLargeError, "reader name has 65"),
        (["not a line"], {}, InvalidRequestError, "message 0 must be a ChatLine"),
    ],
)
def test_summarize_input_limits(
    lines: list[ChatLine], kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    backend = ScriptedBackend("- never used")
    with pytest.raises(error, match=match):
        summarize(backend, lines, **kwargs)  # type: ignore[arg-type]
    assert not backend.calls


def test_limits_are_configurable() -> None:
    with pytest.raises(InputTooLargeError, match="limit 2"):
        summarize(ScriptedBackend(), SHORT_CHAT, limits=Limits(max_messages=2))


def test_chat_lines_from_json() -> None:
    lines = chat_lines_from_json(
        [{"sender": "A", "time": "1", "text": "hi"}, {"sender": "B", "text": "x"}]
    )
    assert lines == [ChatLine("A", "1", "hi"), ChatLine("B", "", "x")]
    with pytest.raises(InvalidRequestError, match="must be a list"):
        chat_lines_from_json({"sender": "A"})
    with pytest.raises(InvalidRequestError, match="message 1 field 'text' must be a string"):
        chat_lines_from_json([{"sender": "A", "text": "a"}, {"sender": "B", "text": 5}])
    with pytest.raises(InvalidRequestError, match="message 0 must be an object"):
        chat_lines_from_json(["x"])


# ---- write --------------------------------------------------------------------------


def test_write_prompt_per_tone() -> None:
    prompts = {tone: write_messages("my draft", tone)[0].content for tone in TONES}
    assert len(set(prompts.values())) == len(TONES)
    assert all('Text: "my draft"' in p for p in prompts.values())
    assert "spelling and grammar" in prompts["proofread"]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Hello there.", "Hello there."),
        ('"Quoted reply."', "Quoted reply."),
        ("“Curly quoted.”", "Curly quoted."),
        ('Here is the corrected version of the text:\n\n"Fixed text."', "Fixed text."),
        ("Sure, here's a rewrite:\nNew text here.", "New text here."),
        ("Text: the rewrite", "the rewrite"),
        ("The rewrite.\n\nIn this revised version, I changed words.", "The rewrite."),
        ("Dear Bob,\n\nThe body.\n\nAn invented second paragraph.", "Dear Bob,\n\nThe body."),
        ("", None),
        ("Here is the rewrite:", None),
    ],
)
def test_parse_rewrite(output: str, expected: str | None) -> None:
    assert parse_rewrite(output, single_paragraph=True) == expected


def test_parse_rewrite_keeps_paragraphs_of_multi_paragraph_drafts() -> None:
    assert parse_rewrite("One.\n\nTwo.", single_paragraph=False) == "One.\n\nTwo."


def test_write_returns_distinct_suggestions_greedy_first() -> None:
    backend = ScriptedBackend('"Same text."', "Same text.", "Other text.")
    assert write(backend, "draft", "rephrase", suggestions=3) == ["Same text.", "Other text."]
    temperatures = [params.temperature for _, params in backend.calls]
    seeds = [params.seed for _, params in backend.calls]
    assert temperatures[0] == 0.0 and all(t > 0 for t in temperatures[1:])
    assert len(set(seeds)) == 3


@pytest.mark.parametrize(
    ("draft", "tone", "kwargs", "error", "match"),
    [
        ("hi", "angry", {}, InvalidRequestError, "tone must be one of rephrase, professional"),
        ("   ", "funny", {}, InvalidRequestError, "draft is empty"),
        ("x" * 2001, "funny", {}, InputTooLargeError, "draft has 2001 characters, limit 2000"),
        ("hi", "funny", {"suggestions": 4}, InvalidRequestError, r"suggestions must be in 1\.\.3"),
        (b"hi", "funny", {}, InvalidRequestError, "draft must be a string"),
    ],
)
def test_write_input_errors(
    draft: str, tone: str, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    backend = ScriptedBackend("never")
    with pytest.raises(error, match=match):
        write(backend, draft, tone, **kwargs)  # type: ignore[arg-type]
    assert not backend.calls


def test_write_without_usable_output_fails_cleanly() -> None:
    with pytest.raises(GenerationError, match=r"no usable rewrite \(0 characters of output\)"):
        write(ScriptedBackend(""), "draft", "funny")
