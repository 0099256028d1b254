"""summary: faithful-by-construction bullets (select, write, check), scripted phrasers."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproc.inference import ChatLine
from privproc.inference.chat import LineKind, addresses_reader, classify, clean_text, mentions
from privproc.inference.facts import unsupported
from privproc.inference.summary import (
    MAX_BULLET_CHARS,
    Bullet,
    Candidate,
    addressee_reply,
    problems,
    rank,
    select,
    summarize_chat,
    superseded,
    write_bullet,
)

LRM = "\u200e"


def _chat(*pairs: tuple[str, str]) -> list[ChatLine]:
    return [ChatLine(sender, f"09:{i:02d}", text) for i, (sender, text) in enumerate(pairs)]


PICNIC = _chat(
    ("Ana", f'{LRM}Ana created group "Picnic"'),
    ("Ana", "Picnic is on Saturday at 12:40 in Victoria Park"),
    ("Tom", "I'll bring the chairs and the big blanket"),
    ("Priya", "image omitted"),
    ("Ben", "This message was deleted"),
    ("Priya", "I can make sandwiches for 12 people, receipt will be INV-2291"),
    ("Ana", "Actually we moved it to 13:30, not 12:40"),
    ("Ana", "Sam, can you book the minibus for 8 people?"),
    ("Tom", f"{LRM}Ben joined using this group's invite link"),
    ("Ben", "Messages and calls are end-to-end encrypted."),
)

CHATS: list[tuple[list[ChatLine], str | None]] = [
    (PICNIC, "Sam"),
    (PICNIC, None),
    (PICNIC, "Tom"),
    (
        _chat(
            ("Sam", "I can drive on Friday"),
            ("Ana", "Great, could you pick up the cake from Bakery Lane on the way?"),
            ("Tom", "Dinner at 7pm tomorrow at Luigi's"),
            ("Ben", "not 7pm, 8pm - they had no table"),
            ("Priya Shah", "Email me at priya@example.com if you need the address"),
            ("Tom", "\U0001F44D"),
            ("Ana", "I paid \u00a345 for the deposit, see https://example.com/booking"),
        ),
        "Sam",
    ),
    (
        _chat(
            ("Ana", "Tom, can you bring the speaker?"),
            ("Ben", "lol"),
            ("Tom", "Yes I'll bring it"),
            ("Ana", "Book club is on Monday at 7pm at the library"),
            ("Ana", "Book club moved to Tuesday"),
            ("Priya", "Could someone water the plants while I'm away until the 5th?"),
        ),
        "Priya",
    ),
]


def _invariants(lines: Sequence[ChatLine], reader: str | None, bullets: list[Bullet],
                max_bullets: int) -> None:
    assert len(bullets) <= max_bullets
    for b in bullets:
        assert b.sources, b
        assert all(0 <= i < len(lines) for i in b.sources), b
        assert list(b.sources) == sorted(set(b.sources)), b
        assert all(classify(lines[i].text) is LineKind.MESSAGE for i in b.sources), b
        assert b.origin in ("model", "written")
        assert b.kind in ("request", "question", "statement")
        assert b.text.strip() and "\n" not in b.text
        assert len(b.text) <= MAX_BULLET_CHARS + 20
        # The speaker is the sender of the cited source, or the bullet names them.
        senders = {lines[i].sender for i in b.sources}
        assert b.speaker in senders, b
        assert b.speaker == lines[b.sources[0]].sender or mentions(b.text, b.speaker), b
        # Everyone whose words a bullet cites is named in it (or is "you").
        for i in b.sources:
            assert lines[i].sender == reader or mentions(b.text, lines[i].sender), b
        # Every number, time, amount, date, name, URL in a bullet is in its sources.
        names = [lines[i].sender for i in b.sources] + ([reader] if reader else [])
        texts = [clean_text(lines[i].text) for i in b.sources]
        assert unsupported(b.text, texts, allowed_names=names) == [], b
        assert problems(b.text, lines, b.sources, b.speaker, reader) == [], b
        if b.kind in ("request", "question"):
            assert reader is not None
            assert any(addresses_reader(lines, i, reader) for i in b.sources)
            if b.origin == "written":
                assert b.text.startswith(f"{b.speaker} asked you"), b
    # Requests to the reader come before what was not said to the reader.
    kinds = [
        "request" if b.kind in ("request", "question") else
        "to-reader" if any(addresses_reader(lines, i, reader) for i in b.sources) else "other"
        for b in bullets]
    if "request" in kinds and "other" in kinds:
        assert max(i for i, k in enumerate(kinds) if k == "request") < kinds.index("other")


@pytest.mark.parametrize(("lines", "reader"), CHATS)
@pytest.mark.parametrize("max_bullets", [1, 2, 3, 5, 10])
def test_every_bullet_keeps_the_promises(lines: list[ChatLine], reader: str | None,
                                         max_bullets: int) -> None:
    bullets = summarize_chat(lines, max_bullets, reader=reader)
    assert bullets
    _invariants(lines, reader, bullets, max_bullets)
    assert all(b.origin == "written" for b in bullets)  # no phraser, no model


def test_the_picnic_summary() -> None:
    bullets = summarize_chat(PICNIC, 5, reader="Sam")
    assert bullets[0] == Bullet("Ana asked you to book the minibus for 8 people", (7,), "Ana",
                                "request", "written")
    texts = " | ".join(b.text for b in bullets)
    assert "Tom will bring the chairs" in texts
    assert "13:30" in texts
    assert "12:40" not in texts  # the corrected time is not shown as a fact
    assert 1 not in {i for b in bullets for i in b.sources}  # the superseded message


# ---- requests to the reader ------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (_chat(("Ana", "Sam, can you book a table for 8 on Friday?")),
         "Ana asked you to book a table for 8 on Friday"),
        (_chat(("Ana", "@sam could you send the slides before 5pm")),
         "Ana asked you to send the slides before 5pm"),
        (_chat(("Ana", "Sam please check the boiler")), "Ana asked you to check the boiler"),
        (_chat(("Sam", "I can drive on Friday"),
               ("Ana", "Great, could you pick up the cake from Bakery Lane on the way?")),
         "Ana asked you to pick up the cake from Bakery Lane on the way"),
        (_chat(("Ana", "Don't forget to feed the cat, Sam")), "Ana asked you to feed the cat"),
    ],
)
def test_a_request_to_the_reader_is_written_in_the_second_person(lines: list[ChatLine],
                                                                 expected: str) -> None:
    bullets = summarize_chat(lines, 3, reader="Sam")
    assert bullets[0].text == expected
    assert bullets[0].kind == "request"
    assert bullets[0].speaker == "Ana"


def test_requests_to_the_reader_come_first() -> None:
    lines = _chat(
        ("Tom", "The match starts at 3pm on Saturday at the park"),
        ("Priya", "I'll bring 12 oranges and the first aid kit"),
        ("Ben", "Kick-off moved? No, still 3pm, I checked with the coach"),
        ("Ana", "Sam, can you collect the kit from the club house on Friday?"),
    )
    bullets = summarize_chat(lines, 3, reader="Sam")
    assert bullets[0].kind == "request" and bullets[0].sources == (3,)
    assert bullets[0].text.startswith("Ana asked you to collect the kit")
    assert all(b.kind == "statement" for b in bullets[1:])
    assert [b.sources for b in summarize_chat(lines, 1, reader="Sam")] == [(3,)]


def test_a_question_to_the_reader_is_asked_of_them() -> None:
    bullets = summarize_chat(_chat(("Ana", "Sam, are we still on for dinner at 8 on Friday?")),
                             3, reader="Sam")
    assert [(b.text, b.kind) for b in bullets] == [
        ("Ana asked you: are we still on for dinner at 8 on Friday?", "question")]


def test_without_a_reader_nothing_is_a_request_to_you() -> None:
    bullets = summarize_chat(PICNIC, 5)
    assert bullets and all(b.kind == "statement" for b in bullets)
    assert not any(re.search(r"\basked you\b", b.text) for b in bullets)


def test_a_request_comes_before_a_remark_to_the_reader() -> None:
    lines = _chat(("Sam", "I'm stuck at the station"), ("Ben", "see you soon, you star"),
                  ("Tom", "Sam, can you book the minibus for 8 people?"))
    bullets = summarize_chat(lines, 5, reader="Sam")
    assert bullets[0].kind == "request"


# ---- first person to third person -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'll bring the chairs", "Tom will bring the chairs"),
        ("I will bring the chairs", "Tom will bring the chairs"),
        ("I can drive on Friday", "Tom can drive on Friday"),
        ("I'm stuck at the station", "Tom is stuck at the station"),
        ("I have the keys for Flat 4B", "Tom has the keys for Flat 4B"),
        ("I really love the new place on Baker Street",
         "Tom really loves the new place on Baker Street"),
        ("I can't make it on Saturday", "Tom can't make it on Saturday"),
        ("I finished the slides for Monday", "Tom finished the slides for Monday"),
    ],
)
def test_a_first_person_statement_is_told_in_the_third_person(text: str, expected: str) -> None:
    bullets = summarize_chat(_chat(("Tom", text)), 3)
    assert [(b.text, b.speaker, b.sources) for b in bullets] == [(expected, "Tom", (0,))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I paid £45 for the food", "Priya paid £45 for the food"),
        ("I sent the invoice yesterday", "Priya sent the invoice yesterday"),
        ("I made a booking for 6 at Luigi's", "Priya made a booking for 6 at Luigi's"),
    ],
)
def test_a_past_tense_statement_keeps_its_verb(text: str, expected: str) -> None:
    assert summarize_chat(_chat(("Priya", text)), 3)[0].text == expected


def test_a_sentence_that_says_i_twice_is_not_half_rewritten() -> None:
    bullets = summarize_chat(_chat(("Tom", "I'm running late, I'll be there at 7:15")), 3)
    assert len(bullets) == 1 and "7:15" in bullets[0].text
    # Either quoted ("Tom: I'm running late, I'll ...") or wholly in the third person.
    text = bullets[0].text
    assert text.startswith("Tom: I'm") or not re.search(r"\bI\b|\bI'", text), text


# ---- corrections ------------------------------------------------------------------


@pytest.mark.parametrize(
    "pairs",
    [
        (("Ana", "Book club is on Monday at 7pm at the library"),
         ("Ana", "Book club moved to Tuesday")),
        (("Ana", "Lunch is at 12:40 on Friday at the canteen"),
         ("Tom", "It's at 13:30, not 12:40")),
        (("Ana", "The team lunch is at 12:40 on Friday"),
         ("Tom", "Actually the team lunch is at 13:30")),
        (("Ana", "Tickets are £45 each"), ("Ana", "Update: tickets are £50 now")),
    ],
)
def test_a_corrected_message_gives_way_to_its_correction(pairs: tuple[tuple[str, str], ...]
                                                         ) -> None:
    lines = _chat(*pairs)
    assert superseded(lines, [0, 1]) == {0}
    candidates = rank(lines, None)
    assert [c.superseded for c in candidates] == [True, False]
    assert [c.index for c in select(lines, candidates, 5)] == [1]
    bullets = summarize_chat(lines, 5)
    assert [b.sources for b in bullets] == [(1,)]


@pytest.mark.parametrize(
    "pairs",
    [
        # Another time from someone else, no correction word, another topic.
        (("Ana", "Lunch is at 12:40 on Friday at the canteen"),
         ("Tom", "My train gets in at 13:30")),
        # A correction word, but another person and another topic.
        (("Ana", "Dinner at 7pm at Luigi's"), ("Tom", "Lunch moved to 1pm")),
        # The same value again is no correction.
        (("Ana", "Dinner at 7pm at Luigi's"), ("Ana", "Actually yes, dinner at 7pm")),
    ],
)
def test_a_later_value_alone_is_no_correction(pairs: tuple[tuple[str, str], ...]) -> None:
    assert superseded(_chat(*pairs), [0, 1]) == set()


def test_the_corrected_value_is_not_repeated_as_a_fact() -> None:
    lines = _chat(("Ana", "Lunch is at 12:40 on Friday at the canteen"),
                  ("Ana", "Actually we moved it to 13:30, not 12:40"))
    bullets = summarize_chat(lines, 5)
    assert [b.sources for b in bullets] == [(1,)]
    assert "13:30" in bullets[0].text and "12:40" not in bullets[0].text


# ---- events never become bullets --------------------------------------------------


EVENTS = _chat(
    ("Ana", f'{LRM}Ana created group "Picnic"'),
    ("Ana", "Tom created this group"),
    ("Ana", "Ana added Tom"),
    ("Tom", "image omitted"),
    ("Tom", "<Media omitted>"),
    ("Ben", "This message was deleted"),
    ("Ben", f"{LRM}You deleted this message"),
    ("Ben", "Missed voice call"),
    ("Ben", "Messages and calls are end-to-end encrypted."),
    ("Ben", "   "),
)


@pytest.mark.parametrize("reader", [None, "Sam", "Tom"])
def test_a_chat_of_events_gives_no_bullets(reader: str | None) -> None:
    assert rank(EVENTS, reader) == []
    assert summarize_chat(EVENTS, 5, reader=reader) == []
    assert summarize_chat([], 5, reader=reader) == []


def test_events_between_messages_are_never_cited() -> None:
    lines = [*EVENTS, ChatLine("Tom", "t", "I'll bring the chairs on Saturday"), *EVENTS]
    bullets = summarize_chat(lines, 5, reader="Sam")
    assert [(b.text, b.sources) for b in bullets] == [
        ("Tom will bring the chairs on Saturday", (len(EVENTS),))]
    assert [c.index for c in rank(lines, "Sam")] == [len(EVENTS)]


def test_edit_marks_and_ios_marks_are_not_in_bullets() -> None:
    lines = _chat(("Tom", "I'll bring the chairs on Saturday <This message was edited>"))
    assert summarize_chat(lines, 3)[0].text == "Tom will bring the chairs on Saturday"


@pytest.mark.parametrize("text", ["lol", "\U0001F44D", "haha \U0001F602"])
def test_a_message_without_content_gives_no_empty_bullet(text: str) -> None:
    lines = _chat(("Tom", text), ("Ana", "The picnic is on Saturday at noon in Hyde Park"))
    bullets = summarize_chat(lines, 3)
    assert all(re.search(r":\s*\S", b.text) or ":" not in b.text for b in bullets)
    assert all(b.text.strip() not in ("Tom:", "Tom") for b in bullets)


# ---- max_bullets, select, rank -----------------------------------------------------


@pytest.mark.parametrize("max_bullets", [1, 2, 3, 4])
def test_max_bullets_is_respected(max_bullets: int) -> None:
    lines = [ChatLine(f"P{i}", "t", f"I'll bring {i + 2} bags of ice for the party on Friday "
                                    f"from shop {chr(65 + i)}") for i in range(12)]
    assert 1 <= len(summarize_chat(lines, max_bullets)) <= max_bullets


def test_rank_flags_what_the_reader_must_act_on() -> None:
    lines = _chat(("Sam", "I can drive on Friday"), ("Ana", "could you pick up the cake?"),
                  ("Tom", "image omitted"), ("Ben", "Can someone bring 2 chairs?"),
                  ("Ana", "Sam, are we still on for dinner at 8 on Friday?"))
    by_index = {c.index: c for c in rank(lines, "Sam")}
    assert sorted(by_index) == [0, 1, 3, 4]
    assert (by_index[1].to_reader, by_index[1].request) == (True, True)
    assert (by_index[3].to_reader, by_index[3].request) == (False, False)
    assert (by_index[4].to_reader, by_index[4].question) == (True, True)
    assert not by_index[0].to_reader  # the reader's own message
    assert by_index[1].score > by_index[3].score


def test_select_puts_requests_to_the_reader_first_and_skips_superseded() -> None:
    candidates = [
        Candidate(0, 3.0, False, False, False, False),
        Candidate(1, 0.1, True, True, False, False),
        Candidate(2, 9.0, False, False, False, True),
        Candidate(3, 2.0, False, False, False, False),
    ]
    lines = _chat(("Ana", "alpha bravo charlie"), ("Tom", "delta echo foxtrot"),
                  ("Ben", "golf hotel india"), ("Priya", "juliet kilo lima"))
    assert [c.index for c in select(lines, candidates, 3)] == [1, 0, 3]
    assert [c.index for c in select(lines, candidates, 1)] == [1]
    assert select(lines, candidates, 0) == []


def test_select_skips_a_repeat_of_the_same_words() -> None:
    lines = _chat(("Ana", "The picnic basket is in the kitchen cupboard"),
                  ("Tom", "The picnic basket is in the kitchen cupboard"),
                  ("Ben", "Completely different words entirely here"))
    candidates = [Candidate(i, 1.0 - i / 10, False, False, False, False) for i in range(3)]
    assert [c.index for c in select(lines, candidates, 3)] == [0, 2]


def test_write_bullet_without_a_model() -> None:
    lines = _chat(("Ana", "Sam, can you book a table for 8 on Friday?"),
                  ("Priya", "The boiler engineer comes Tuesday between 8 and 12"))
    request = Candidate(0, 1.0, True, True, True, False)
    statement = Candidate(1, 1.0, False, False, False, False)
    assert write_bullet(lines, request, "Sam") == "Ana asked you to book a table for 8 on Friday"
    assert write_bullet(lines, statement, "Sam").lower() == (
        "priya: the boiler engineer comes tuesday between 8 and 12")


def test_a_long_message_is_trimmed_to_one_short_line() -> None:
    text = "I'll bring " + ", ".join(f"item {i} for the party" for i in range(40))
    bullets = summarize_chat(_chat(("Tom", text)), 3)
    assert bullets and len(bullets[0].text) <= MAX_BULLET_CHARS
    assert bullets[0].text.startswith("Tom will bring item 0")


# ---- replies -----------------------------------------------------------------------


def test_a_reply_of_the_member_named_is_found() -> None:
    lines = _chat(("Ana", "Tom, can you bring the speaker?"), ("Ben", "lol"),
                  ("Tom", "image omitted"), ("Tom", "Yes I'll bring it"))
    assert addressee_reply(lines, 0, "Sam") == 3
    assert addressee_reply(lines, 0, "Tom") is None  # the reader: a request to them instead
    assert addressee_reply(lines, 1, "Sam") is None  # names no one


def test_a_late_reply_is_not_a_reply() -> None:
    lines = _chat(("Ana", "Tom, can you bring the speaker?"), ("Ben", "a"), ("Ben", "b"),
                  ("Ben", "c"), ("Ben", "d"), ("Tom", "Yes I'll bring it"))
    assert addressee_reply(lines, 0, None) is None


def test_a_bullet_with_a_reply_cites_and_names_both() -> None:
    lines = _chat(("Ana", "Tom, can you bring the speaker on Friday?"),
                  ("Tom", "Yes I'll bring it"))
    bullets = summarize_chat(lines, 1)
    assert bullets[0].sources == (0, 1)
    assert "Ana" in bullets[0].text and "Tom" in bullets[0].text
    _invariants(lines, None, bullets, 1)


def test_an_exchange_is_told_once() -> None:
    lines = _chat(("Ana", "Tom, can you bring the speaker?"), ("Tom", "image omitted"),
                  ("Tom", "Yes, I'll bring it on Friday"))
    sources = [b.sources for b in summarize_chat(lines, 5)]
    assert len(sources) == len(set(sources))


# ---- problems -----------------------------------------------------------------------

_REQ = _chat(("Ana", "Sam, can you book a table for 8 on Friday?"), ("Tom", "I'll bring 2"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Ana asked you to book a table for 9 on Friday", "not in the sources: 9"),
        ("Ana asked you to book a table for 8 on Saturday", "not in the sources: Saturday"),
        ("Ana asked you to book a table at 8pm", "not in the sources: time 20:00"),
        ("Ana asked Ben to book a table", "not in the sources: Ben"),
        ("Ana asked you to book it \U0001F600", "not in the sources: \U0001F600"),
        ("A table for 8 on Friday", "does not name who said it"),
        ("Ana: a table\nfor 8", "not one short line"),
        ("", "not one short line"),
        ("Ana " + "booked a table " * 20, "not one short line"),
    ],
)
def test_problems(text: str, problem: str) -> None:
    assert problem in problems(text, _REQ, [0], "Ana", "Sam")


@pytest.mark.parametrize(
    "text",
    [
        "Ana asked you to book a table for 8 on Friday",
        "Ana: table for 8, Friday",
        "Sam, Ana needs a table for eight on Fri",  # the reader's name is allowed
        "You should book a table for 8 on Friday",
    ],
)
def test_no_problems(text: str) -> None:
    assert problems(text, _REQ, [0], "Ana", "Sam") == []


def test_problems_are_judged_against_the_cited_sources_only() -> None:
    assert "not in the sources: 2" in problems("Ana will bring 2", _REQ, [0], "Ana", "Sam")
    assert problems("Tom will bring 2", _REQ, [1], "Tom", "Sam") == []


# ---- a model as phraser (scripted) ----------------------------------------------------


class Phraser:
    """A scripted model: one answer per attempt, and a record of every call."""

    def __init__(self, *answers: str | None, template: bool = False) -> None:
        self.answers = answers
        self.template = template
        self.calls: list[tuple[str, str, str | None, int]] = []

    def __call__(self, speaker: str, source: str, reader: str | None, attempt: int
                 ) -> str | None:
        self.calls.append((speaker, source, reader, attempt))
        answer = self.answers[min(attempt, len(self.answers) - 1)]
        return answer.format(speaker=speaker, source=source) if answer is not None else None


TWO = _chat(("Ana", "Sam, can you book a table for 8 on Friday?"),
            ("Tom", "I'll bring the chairs"))


def test_a_phraser_bullet_with_an_invented_number_never_reaches_the_output() -> None:
    phraser = Phraser("{speaker} said 99 things")
    bullets = summarize_chat(TWO, 5, reader="Sam", phraser=phraser)
    assert [(b.text, b.origin) for b in bullets] == [
        ("Ana asked you to book a table for 8 on Friday", "written"),
        ("Tom will bring the chairs", "written")]
    # Each bullet: one try, one regeneration (attempt 1), then the written bullet.
    assert [(c[0], c[3]) for c in phraser.calls] == [("Ana", 0), ("Ana", 1), ("Tom", 0),
                                                      ("Tom", 1)]
    assert phraser.calls[0][1:3] == ("Sam, can you book a table for 8 on Friday?", "Sam")
    assert not any("99" in b.text for b in bullets)


def test_a_regenerated_phraser_bullet_that_passes_is_used() -> None:
    phraser = Phraser("Zed did it at 9pm", "{speaker} wrote: {source}")
    bullets = summarize_chat(TWO, 5, reader="Sam", phraser=phraser)
    assert [(b.text, b.origin) for b in bullets] == [
        ("Ana wrote: Sam, can you book a table for 8 on Friday?", "model"),
        ("Tom wrote: I'll bring the chairs", "model")]
    assert [c[3] for c in phraser.calls] == [0, 1, 0, 1]


def test_a_phraser_bullet_that_passes_is_used_at_once() -> None:
    phraser = Phraser("{speaker}: {source}")
    bullets = summarize_chat(TWO, 5, reader="Sam", phraser=phraser)
    assert [(b.text, b.origin, b.sources, b.kind) for b in bullets] == [
        ("Ana: Sam, can you book a table for 8 on Friday?", "model", (0,), "request"),
        ("Tom: I'll bring the chairs", "model", (1,), "statement")]
    assert [c[3] for c in phraser.calls] == [0, 0]
    _invariants(TWO, "Sam", bullets, 5)


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "",
        "Someone will bring the chairs",  # no speaker
        "Ben will bring the chairs",  # another name
        "{speaker} will bring the chairs at 5pm",  # a time no one said
        "{speaker} will bring the chairs on Saturday",  # a day no one said
        "{speaker} will bring the chairs \U0001F600",  # an emoji no one sent
        "{speaker} will bring the chairs\n{speaker} will also cook",  # two lines
    ],
)
def test_a_failing_phraser_is_replaced_by_the_written_bullet(answer: str | None) -> None:
    lines = _chat(("Tom", "I'll bring the chairs"))
    phraser = Phraser(answer)
    bullets = summarize_chat(lines, 3, phraser=phraser)
    assert [(b.text, b.origin) for b in bullets] == [("Tom will bring the chairs", "written")]
    assert [c[3] for c in phraser.calls] == [0, 1]


@pytest.mark.parametrize(("lines", "reader"), CHATS)
def test_a_lying_phraser_never_changes_the_facts(lines: list[ChatLine], reader: str | None
                                                 ) -> None:
    phraser = Phraser("{speaker} paid £99 to Zed at 11pm on Sunday", "{speaker}: 12345")
    bullets = summarize_chat(lines, 5, reader=reader, phraser=phraser)
    assert bullets and all(b.origin == "written" for b in bullets)
    _invariants(lines, reader, bullets, 5)
    assert summarize_chat(lines, 5, reader=reader) == bullets


# ---- any chat ---------------------------------------------------------------------------

_POOL = [
    "Sam, can you book the minibus for 8 people?", "I'll bring the chairs", "image omitted",
    "This message was deleted", f"{LRM}Ana added Tom", "Tom created this group",
    "Picnic is on Saturday at 12:40 in Victoria Park", "Actually we moved it to 13:30, not 12:40",
    "I paid £45 for the food, receipt is INV-2291", "lol ok", "can you send me the link?",
    "Here it is https://example.com/menu", "Dinner at 7pm tomorrow at Luigi's",
    "not 7pm, 8pm - they had no table", "I'm running late", "Could you pick up the cake?",
    "Please check the boiler before Friday", "We need 12 sausages and 3 bags of ice",
    "Maria says hi", "\U0001F44D", "Great!", "Is Tom coming?", "Sam please water the plants",
    "Email me at ana@example.com", "Meeting moved to Tuesday", "you ok?",
    "The meeting is on Monday at 10am", "I will pay you back £20 tomorrow",
    "Messages and calls are end-to-end encrypted.", "Yes, I'll bring it on Friday",
]
_LINES = st.lists(
    st.builds(lambda s, t: ChatLine(s, "t", t),
              st.sampled_from(["Ana", "Tom", "Sam", "Priya Shah", "Ben"]),
              st.sampled_from(_POOL)),
    max_size=12)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(_LINES, st.sampled_from([None, "Sam", "Priya Shah"]), st.integers(1, 6),
       st.booleans())
def test_any_chat_keeps_the_promises(lines: list[ChatLine], reader: str | None,
                                     max_bullets: int, lying: bool) -> None:
    phraser = Phraser("{speaker} paid £99 to Zed at 11pm") if lying else None
    bullets = summarize_chat(lines, max_bullets, reader=reader, phraser=phraser)
    _invariants(lines, reader, bullets, max_bullets)
    if not any(classify(line.text) is LineKind.MESSAGE for line in lines):
        assert bullets == []
