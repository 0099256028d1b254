"""The inner protocol's request limits: one set for both ends, precise refusals, and the
client's checks accept exactly what the node accepts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproc.inference import prompts, tasks
from privproc.inference.backend import ChatLine, GenerationError, InvalidRequestError
from privproc.wire.errors import WireError
from privproc.wire.limits import (
    DEFAULT_LIMITS,
    TONES,
    RequestInputError,
    RequestLimits,
    check_summary_request,
    check_write_request,
)


def msg(text: str = "hi", sender: str = "Ana", time: str = "10:00") -> dict[str, str]:
    return {"sender": sender, "time": time, "text": text}


def test_the_node_takes_its_limits_and_tones_from_here() -> None:
    assert tasks.Limits is RequestLimits
    assert tasks.DEFAULT_LIMITS is DEFAULT_LIMITS
    assert tasks.TONES is TONES
    assert set(prompts.WRITE_INSTRUCTIONS) == set(TONES)
    documented = RequestLimits(
        max_messages=100, max_message_chars=2000, max_total_chars=12000,
        max_sender_chars=64, max_time_chars=64, max_reader_chars=64, max_bullets=10,
        max_draft_chars=2000)
    assert documented == DEFAULT_LIMITS
    assert TONES == ("rephrase", "professional", "funny", "supportive", "proofread")


def test_requests_at_the_limits_pass() -> None:
    check_summary_request([msg("x" * 2000, "s" * 64, "t" * 64)], 10, "r" * 64)
    check_summary_request([msg("x" * 54, "s" * 64)] * 100, 1)  # 100 x 118 = 11800
    check_summary_request([msg("x" * 1940, "s" * 60)] * 6, 5)  # exactly 12000
    check_summary_request((msg(""), msg(" "), msg("a")), 3, "")  # a tuple; one text
    check_summary_request([msg()], 5, None)
    check_write_request("d" * 2000, "funny")
    for tone in TONES:
        check_write_request(" x ", tone)


@pytest.mark.parametrize(("messages", "max_bullets", "reader", "field", "message"), [
    ("hello", 5, None, "messages",
     "messages must be a list of {sender, time, text} objects, got str"),
    ({"sender": "a"}, 5, None, "messages",
     "messages must be a list of {sender, time, text} objects, got dict"),
    (None, 5, None, "messages", "messages must be a list of {sender, time, text} objects, "
                                "got NoneType"),
    ([], 5, None, "messages", "messages is empty: at least one message is required"),
    ([msg()] * 101, 5, None, "messages", "there are 101 messages; the limit is 100"),
    ([msg(), "hi"], 5, None, "messages[1]",
     "message 1 must be an object with string sender, time and text, got str"),
    ([{"sender": "a", "text": "b"}], 5, None, "messages[0].time",
     "message 0 has no 'time': expected string sender, time, text"),
    ([{"sender": "a", "time": "t", "text": 3}], 5, None, "messages[0].text",
     "message 0 text must be a string, got int"),
    ([{**msg(), "phone": "+1", "id": 4}], 5, None, "messages[0]",
     "message 0 has unknown field(s) 'id', 'phone': expected exactly sender, time, text"),
    ([msg(), msg("x" * 2001)], 5, None, "messages[1].text",
     "message 1 text is 2001 characters; the limit is 2000"),
    ([msg(sender="s" * 65)], 5, None, "messages[0].sender",
     "message 0 sender is 65 characters; the limit is 64"),
    ([msg(time="t" * 65)], 5, None, "messages[0].time",
     "message 0 time is 65 characters; the limit is 64"),
    ([msg("x" * 1941, "s" * 60)] * 6, 5, None, "messages",
     "the messages are 12006 characters in all (texts and senders); the limit is 12000"),
    ([msg(""), msg(" \n ")], 5, None, "messages",
     "all 2 messages are empty: there is nothing to summarize"),
    ([msg()], 0, None, "max_bullets", "max_bullets must be 1..10, got 0"),
    ([msg()], 11, None, "max_bullets", "max_bullets must be 1..10, got 11"),
    ([msg()], 500, None, "max_bullets", "max_bullets must be 1..10, got 500"),
    ([msg()], -1, None, "max_bullets", "max_bullets must be 1..10, got -1"),
    ([msg()], True, None, "max_bullets", "max_bullets must be an integer 1..10, got bool"),
    ([msg()], "5", None, "max_bullets", "max_bullets must be an integer 1..10, got str"),
    ([msg()], 5.0, None, "max_bullets", "max_bullets must be an integer 1..10, got float"),
    ([msg()], 5, "r" * 65, "reader", "reader is 65 characters; the limit is 64"),
    ([msg()], 5, 7, "reader", "reader must be a string or None, got int"),
])
def test_summary_refusals_say_what_was_expected_and_what_came(
        messages: Any, max_bullets: Any, reader: Any, field: str, message: str) -> None:
    with pytest.raises(RequestInputError) as err:
        check_summary_request(messages, max_bullets, reader)
    assert str(err.value) == message
    assert err.value.field == field
    assert isinstance(err.value, WireError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize(("draft", "tone", "field", "message"), [
    ("", "funny", "draft", "draft is empty"),
    (" \n\t", "funny", "draft", "draft is blank: its 3 characters are all whitespace"),
    ("x" * 100_000, "funny", "draft", "draft is 100000 characters; the limit is 2000"),
    (b"hi", "funny", "draft", "draft must be a string, got bytes"),
    (None, "funny", "draft", "draft must be a string, got NoneType"),
    ("hi", "x", "tone", "unknown tone 'x': expected one of rephrase, professional, funny, "
                        "supportive, proofread"),
    ("hi", "Funny", "tone", "unknown tone 'Funny': expected one of rephrase, professional, "
                            "funny, supportive, proofread"),
    ("hi", None, "tone", "tone must be a string, one of rephrase, professional, funny, "
                         "supportive, proofread; got NoneType"),
])
def test_write_refusals_say_what_was_expected_and_what_came(
        draft: Any, tone: Any, field: str, message: str) -> None:
    with pytest.raises(RequestInputError) as err:
        check_write_request(draft, tone)
    assert str(err.value) == message
    assert err.value.field == field


def test_a_long_or_strange_tone_is_quoted_short_and_escaped() -> None:
    with pytest.raises(RequestInputError) as err:
        check_write_request("hi", "\x1b[31m" + "x" * 10_000)
    text = str(err.value)
    assert len(text) < 200 and "\x1b" not in text and "\\x1b[31m" in text


def test_refusals_quote_no_message_content() -> None:
    secret = "my PIN is 4321"
    for messages in ([msg(secret * 200)], [msg(secret, sender=secret * 10)],
                     [msg(secret)] * 101, [msg(time=secret * 10)]):
        with pytest.raises(RequestInputError) as err:
            check_summary_request(messages, 5)
        assert "4321" not in str(err.value)
    with pytest.raises(RequestInputError) as err:
        check_write_request(secret * 200, "funny")
    assert "4321" not in str(err.value)


# -- the client's checks accept exactly what the node accepts ---------------------------

SMALL = RequestLimits(max_messages=3, max_message_chars=4, max_total_chars=10,
                      max_sender_chars=3, max_time_chars=2, max_reader_chars=3,
                      max_bullets=3, max_draft_chars=5)
_chars = st.sampled_from("ab \n")


def _chat(over: int) -> st.SearchStrategy[list[dict[str, str]]]:
    """Chats whose counts reach ``over`` past each limit (0: within the per-field ones)."""
    return st.lists(st.fixed_dictionaries({
        "sender": st.text(_chars, max_size=SMALL.max_sender_chars + over),
        "time": st.text(_chars, max_size=SMALL.max_time_chars + over),
        "text": st.text(_chars, max_size=SMALL.max_message_chars + over),
    }), min_size=1 - over, max_size=SMALL.max_messages + over)


_messages = _chat(0) | _chat(1)


def _node_accepts_summary(messages: list[dict[str, str]], max_bullets: int,
                          reader: str | None, monkeypatch: pytest.MonkeyPatch) -> bool:
    """The node's own checks (everything before the summary pipeline, which is stubbed)."""

    def pipeline(*_: object) -> list[object]:
        raise RuntimeError("checks passed")

    monkeypatch.setattr(tasks, "summarize_chat", pipeline)
    lines = [ChatLine(m["sender"], m["time"], m["text"]) for m in messages]
    try:
        tasks.summarize_cited(_Summarizer(), lines, max_bullets, reader=reader,
                              limits=SMALL)
    except InvalidRequestError:
        return False
    except GenerationError:
        return True
    raise AssertionError("unreachable")


class _Summarizer:
    """A backend without a model (the summary pipeline runs without it)."""

    def summarize_chat(self, *_: object) -> list[str]:
        raise AssertionError("not called")


@settings(max_examples=300, deadline=None)
@given(messages=_messages,
       max_bullets=st.integers(1, SMALL.max_bullets) | st.integers(-1, SMALL.max_bullets + 1),
       reader=st.none() | st.text(_chars, max_size=SMALL.max_reader_chars + 1))
def test_the_summary_check_agrees_with_the_node(messages: list[dict[str, str]],
                                                max_bullets: int, reader: str | None) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        node = _node_accepts_summary(messages, max_bullets, reader, monkeypatch)
    try:
        check_summary_request(messages, max_bullets, reader, SMALL)
    except RequestInputError:
        client = False
    else:
        client = True
    assert client == node


@settings(max_examples=300, deadline=None)
@given(draft=st.text(_chars, max_size=SMALL.max_draft_chars + 1),
       tone=st.sampled_from([*TONES, "", "Funny", "angry"]))
def test_the_write_check_agrees_with_the_node(draft: str, tone: str) -> None:
    try:
        tasks.check_draft(draft, tone, SMALL)
    except InvalidRequestError:
        node = False
    else:
        node = True
    try:
        check_write_request(draft, tone, SMALL)
    except RequestInputError:
        client = False
    else:
        client = True
    assert client == node


def test_the_default_limits_agree_with_the_node_at_their_edges() -> None:
    cases: list[tuple[list[dict[str, str]], int]] = [
        ([msg("x" * 1940, "s" * 60)] * 6, 10),
        ([msg("x" * 1941, "s" * 60)] * 6, 10),
        ([msg("x" * 20)] * 100, 1),
        ([msg("x" * 20)] * 101, 1),
        ([msg("x" * 2001)], 5),
        ([msg()], 11),
    ]
    for messages, max_bullets in cases:
        lines = [ChatLine(m["sender"], m["time"], m["text"]) for m in messages]
        try:
            tasks.check_chat(lines, max_bullets, DEFAULT_LIMITS)
        except InvalidRequestError:
            node = False
        else:
            node = True
        try:
            check_summary_request(messages, max_bullets)
        except RequestInputError:
            client = False
        else:
            client = True
        assert client == node, (len(messages), max_bullets)
