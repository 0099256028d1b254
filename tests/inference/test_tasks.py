"""summarize / write: input limits, prompts and output parsing (scripted backend)."""

from __future__ import annotations

import contextlib

import pytest

from privproc.inference import (
    PROMPTS_VERSION,
    TONES,
    ChatLine,
    ExtractiveBackend,
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
    summarize_cited,
    summary_messages,
    write_checked,
    write_messages,
)

from .conftest import SHORT_CHAT
from .scripted import ScriptedBackend


def test_prompts_are_versioned() -> None:
    assert PROMPTS_VERSION == "2"


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


def test_summaries_do_not_ask_the_model_by_default() -> None:
    backend = ScriptedBackend("- Carol said the deploy is at 9:01")
    bullets = summarize_cited(backend, SHORT_CHAT, max_bullets=3, reader="Sam")
    assert not backend.calls  # model phrasing is off by default (prompts.MODEL_PHRASING)
    assert bullets and all(b.origin == "written" for b in bullets)


def test_a_model_bullet_with_a_fact_not_in_its_source_never_reaches_the_user() -> None:
    # The scripted model invents a time twice; the written bullet takes its place.
    backend = ScriptedBackend(*["Bob: the report is due Friday at 9:01"] * 20)
    bullets = summarize_cited(backend, SHORT_CHAT, max_bullets=3, phrasing=True)
    assert bullets and all("9:01" not in b.text for b in bullets)
    assert all(b.origin == "written" for b in bullets)
    # each single-source bullet: one try, one regeneration (joined bullets stay written)
    phrased = [b for b in bullets if len(b.sources) == 1]
    assert phrased and len(backend.calls) == 2 * len(phrased)


def test_a_model_bullet_that_passes_the_check_is_used() -> None:
    lines = [ChatLine("Ana", "t", "The report is due Friday at 5pm, please send it to me")]
    backend = ScriptedBackend("Ana: report due Friday at 5pm")
    bullets = summarize_cited(backend, lines, max_bullets=1, phrasing=True)
    assert [(b.text, b.origin, b.sources) for b in bullets] == [
        ("Ana: report due Friday at 5pm", "model", (0,))]


def test_a_model_bullet_that_drops_the_speaker_is_regenerated_then_replaced() -> None:
    lines = [ChatLine("Ana", "t", "The report is due Friday at 5pm, please send it to me")]
    backend = ScriptedBackend("Report due Friday at 5pm", "Someone said Friday at 5pm")
    bullets = summarize_cited(backend, lines, max_bullets=1, phrasing=True)
    assert bullets[0].origin == "written" and "Ana" in bullets[0].text


def test_summarize_wraps_foreign_backend_errors() -> None:
    with pytest.raises(GenerationError, match=r"scripted failed .*\(KeyError\)"):
        summarize_cited(ScriptedBackend(error=KeyError("x")), SHORT_CHAT, phrasing=True)


def test_a_chat_of_events_and_placeholders_gives_no_summary() -> None:
    lines = [ChatLine("Tom", "t", "image omitted"), ChatLine("Ana", "t", "This message was "
                                                           "deleted"),
             ChatLine("Flat 4B", "t", "\u200eAna created this group")]
    with pytest.raises(GenerationError, match="no bullet"):
        summarize(ExtractiveBackend(), lines)


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


def test_write_keeps_a_rewrite_that_keeps_the_facts() -> None:
    backend = ScriptedBackend('"Could we move the meeting to Friday at 3pm?"')
    rewrite = write_checked(backend, "can we move the meeting to friday at 3pm", "professional")
    assert (rewrite.text, rewrite.flags) == ("Could we move the meeting to Friday at 3pm?", ())
    assert backend.calls[0][1].temperature == 0.0


def test_write_retries_once_then_keeps_the_draft_flagged() -> None:
    backend = ScriptedBackend("Could we move the meeting to Monday at 3pm?",
                              "I'll have to start without you on Friday at 4pm")
    rewrite = write_checked(backend, "can we move the meeting to friday at 3pm", "professional")
    assert rewrite.flags == ("fallback",)
    assert rewrite.text == "Can we move the meeting to friday at 3pm."
    assert len(backend.calls) == 2 and backend.calls[1][1].temperature > 0


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


def test_write_without_usable_output_keeps_the_draft() -> None:
    assert write(ScriptedBackend("", ""), "draft", "funny") == ["Draft."]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("lines", [
    # many times, then many long negations of them: every pair was re-parsed
    [ChatLine(f"p{i % 5}", "t", "meet at 1pm") for i in range(90)]
    + [ChatLine("q", "t", ("not 1pm, " * 200)[:1000]) for _ in range(10)],
    # digits without end: the amount pattern rescanned the run from every position
    [ChatLine("p", "t", "1" * 1990 + " quid") for _ in range(5)],
    # capitalised words: the text before each was rescanned for a sentence start
    [ChatLine("p", "t", " ".join(["Word"] * 399)) for _ in range(5)],
])
def test_inputs_within_the_limits_cost_linear_time(lines: list[ChatLine]) -> None:
    """Attack: a client's request within every input limit that made a node worker spend
    seconds per request (quadratic patterns and pairwise re-parsing)."""
    with contextlib.suppress(GenerationError):
        summarize(ExtractiveBackend(), lines)
