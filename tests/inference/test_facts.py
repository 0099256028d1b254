"""facts: what a summary or a rewrite must never invent or lose (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from privproc.inference.facts import Fact, facts_of, missing, unsupported

# ---- times -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "times"),
    [
        ("9am", {"09:00"}),
        ("9 am", {"09:00"}),
        ("9:00am", {"09:00"}),
        ("9 a.m.", {"09:00"}),
        ("9pm", {"21:00"}),
        ("21:00", {"21:00"}),
        ("3.30pm", {"15:30"}),
        ("12am", {"00:00"}),
        ("12pm", {"12:00"}),
        ("noon", {"12:00"}),
        ("midnight", {"00:00"}),
        # A clock without am/pm keeps both readings.
        ("9:00", {"09:00", "21:00"}),
        ("09:00", {"09:00", "21:00"}),
        ("12:40", {"12:40", "00:40"}),
    ],
)
def test_times_are_normalised(text: str, times: set[str]) -> None:
    found = facts_of(f"see you {text}")
    assert found.of("time") == times
    assert found.time_readings == (frozenset(times),)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("9am", "9:00"),
        ("9am", "09:00"),
        ("9 am", "9:00am"),
        ("9:00", "09:00"),
        ("9pm", "21:00"),
        ("9pm", "9:00"),
        ("noon", "12pm"),
        ("midnight", "12am"),
        ("3.30pm", "15:30"),
    ],
)
def test_the_same_time_written_two_ways_is_one_fact(one: str, other: str) -> None:
    assert unsupported(f"Meet at {one}", [f"meet at {other}"]) == []
    assert unsupported(f"Meet at {other}", [f"meet at {one}"]) == []
    assert missing(f"Meet at {one}", f"meet at {other}") == []


@pytest.mark.parametrize(
    ("text", "source", "reported"),
    [
        ("Meet at 9pm", "meet at 9am", "time 21:00"),
        ("Meet at 10am", "meet at 9am", "time 10:00"),
        ("Meet at 9:30", "meet at 9:00", "time 09:30/21:30"),
        ("Meet at 8", "dinner is at 7pm", "time 08:00/20:00"),
        ("Meet at noon", "meet at midnight", "time 12:00"),
    ],
)
def test_a_different_time_is_reported(text: str, source: str, reported: str) -> None:
    assert reported in unsupported(text, [source])


@pytest.mark.parametrize("text", ["meet at 3", "see you Sat at 5", "call me at 4", "dinner by 7"])
def test_a_bare_hour_after_a_preposition_is_a_time_with_context(text: str) -> None:
    found = facts_of(text)
    assert len(found.time_readings) == 1
    assert len(found.of("time")) == 2  # morning or afternoon


@pytest.mark.parametrize("text", ["we're at 3", "the score is at 3", "at 3 people"])
def test_a_bare_hour_without_context_is_only_a_number(text: str) -> None:
    found = facts_of(text)
    assert found.of("time") == set()
    assert found.time_readings == ()
    assert found.of("number") == {"3"}


def test_a_bare_hour_with_a_day_after_it_is_a_time() -> None:
    assert facts_of("see you at 3 tomorrow").of("time") == {"03:00", "15:00"}


def test_a_number_is_backed_by_the_time_that_carries_it() -> None:
    assert unsupported("from 9", ["opens 09:00"]) == []


# ---- amounts, numbers, dates ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("£45", "GBP:45"),
        ("£45.00", "GBP:45"),
        ("£ 45", "GBP:45"),
        ("45 quid", "GBP:45"),
        ("45 pounds", "GBP:45"),
        ("$1,200", "USD:1200"),
        ("$1200", "USD:1200"),
        ("£2k", "GBP:2000"),
        ("€9.50", "EUR:9.5"),
        ("50p", "GBP-p:50"),
    ],
)
def test_amounts_are_normalised(text: str, amount: str) -> None:
    assert facts_of(f"it was {text} in all").of("amount") == {amount}


@pytest.mark.parametrize(("one", "other"), [("£45", "£45.00"), ("45 quid", "£45"),
                                            ("$1,200", "$1200"), ("£45", "45 pounds")])
def test_the_same_amount_written_two_ways_is_one_fact(one: str, other: str) -> None:
    assert unsupported(f"Paid {one}", [f"paid {other}"]) == []
    assert missing(f"Paid {one}", f"paid {other}") == []


@pytest.mark.parametrize(("text", "source"), [("Paid £50", "paid £45"), ("Paid €45", "paid £45"),
                                              ("Paid $45", "paid £45"), ("Paid £4.50", "paid £45")])
def test_a_changed_amount_is_reported(text: str, source: str) -> None:
    assert unsupported(text, [source]) != []
    assert missing(text, source) != []


def test_thousands_written_with_k_are_one_amount() -> None:
    assert facts_of("£2k").of("amount") == facts_of("£2,000").of("amount")
    assert unsupported("Paid £2k", ["paid £2,000"]) == []


def test_a_bare_number_is_backed_by_an_amount_that_carries_it() -> None:
    assert unsupported("It cost 45 in the end", ["it cost £45"]) == []


@pytest.mark.parametrize(("one", "other"), [("eight", "8"), ("a dozen", "12"), ("Two", "2")])
def test_number_words_are_numbers(one: str, other: str) -> None:
    assert facts_of(one).of("number") == facts_of(other).of("number") != set()
    assert unsupported(f"{one} people", [f"{other} people"]) == []


def test_an_invented_number_is_reported_as_written() -> None:
    assert unsupported("We need 12 chairs", ["we need 10 chairs"]) == ["12"]
    assert unsupported("We need nine chairs", ["we need 10 chairs"]) == ["nine"]


def test_a_decimal_number_written_two_ways_is_one_fact() -> None:
    assert unsupported("It weighs 3.5 kg", ["it weighs 3.50 kg"]) == []


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("Sat", "saturday"),
        ("Saturday", "saturday"),
        ("Monday's", "monday"),
        ("tmrw", "tomorrow"),
        ("tomorrow", "tomorrow"),
        ("3rd May", "05-03"),
        ("May 3", "05-03"),
        ("3 of May", "05-03"),
        ("Sept 3", "09-03"),
        ("12/05", "05-12"),
        ("the 5th", "*-05"),
    ],
)
def test_dates_are_normalised(text: str, date: str) -> None:
    assert date in facts_of(f"on {text} then").of("date")


@pytest.mark.parametrize(("one", "other"), [("Sat", "Saturday"), ("3rd May", "May 3"),
                                            ("tmrw", "tomorrow")])
def test_the_same_date_written_two_ways_is_one_fact(one: str, other: str) -> None:
    assert unsupported(f"It is {one}", [f"it is {other}"]) == []


@pytest.mark.parametrize(("text", "source"), [("It is Wed", "it is Saturday"),
                                              ("It is 4th May", "it is May 3"),
                                              ("It is today", "it is tomorrow")])
def test_a_changed_date_is_reported(text: str, source: str) -> None:
    assert unsupported(text, [source]) == [text.removeprefix("It is ")]


# ---- URLs, e-mail, identifiers ----------------------------------------------------


def test_urls_are_found_without_trailing_punctuation() -> None:
    found = facts_of("Menu: https://example.com/menu?x=1. See www.foo.org, ok")
    assert found.of("url") == {"https://example.com/menu?x=1", "www.foo.org"}
    assert unsupported("Menu at https://example.com/menu?x=1", ["see https://example.com/menu?x=1."]
                       ) == []


def test_a_changed_url_is_reported() -> None:
    assert unsupported("See https://a.com/x", ["see https://a.com/y"]) == ["https://a.com/x"]
    assert missing("See the site", "see https://a.com/y") == ["https://a.com/y"]


def test_emails_are_case_insensitive_and_a_changed_one_is_reported() -> None:
    assert facts_of("mail Ana@Example.com").of("email") == {"ana@example.com"}
    assert unsupported("Mail ana@example.com", ["mail Ana@Example.com"]) == []
    assert unsupported("Mail bob@x.com", ["mail bob@y.com"]) == ["bob@x.com"]
    assert missing("Mail Bob", "mail bob@y.com") == ["bob@y.com"]


@pytest.mark.parametrize(("text", "ident"), [("INV-2291", "INV-2291"), ("#4521", "4521"),
                                             ("AB12", "AB12"), ("ref 12AB", "12AB")])
def test_identifiers_are_found(text: str, ident: str) -> None:
    assert ident in facts_of(f"see {text} now").of("ident")


def test_a_changed_identifier_is_reported() -> None:
    assert unsupported("Invoice INV-2292", ["invoice INV-2291"]) == ["INV-2292"]
    assert missing("The invoice", "invoice INV-2291 and ticket #4521") == ["#4521", "INV-2291"]


# ---- names ------------------------------------------------------------------------


def test_an_invented_name_is_reported() -> None:
    assert unsupported("Ben will bring the chairs", ["I'll bring the chairs"]) == ["Ben"]
    assert unsupported("Tom will bring Ben", ["I'll bring the chairs"],
                       allowed_names=["Tom"]) == ["Ben"]


def test_a_name_is_backed_by_the_sources_or_the_allowed_names() -> None:
    assert unsupported("Tom will bring the chairs", ["I'll bring the chairs"],
                       allowed_names=["Tom"]) == []
    assert unsupported("Sorry, Ana can't come", ["ana can't come"]) == []  # any case
    assert unsupported("Tom's car is at Ana's", ["tom and ana"]) == []  # possessives


def test_names_in_the_middle_and_at_the_start_of_a_sentence_are_told_apart() -> None:
    assert {f.kind for f in facts_of("We love Paris").facts} == {"name"}
    assert {f.kind for f in facts_of("Paris is lovely").facts} == {"initial-name"}
    assert {f.kind for f in facts_of("Ok. Paris is lovely").facts} == {"initial-name"}


@pytest.mark.parametrize("word", ["Unfortunately", "Apologies", "Hopefully", "Reminder",
                                  "Also", "Please", "Just"])
def test_a_capitalised_common_word_at_the_start_is_no_invented_name(word: str) -> None:
    assert unsupported(f"{word}, the match starts at 3pm", ["match starts at 3pm"]) == []


@pytest.mark.parametrize("word", ["Paris", "Kwame", "Luigi"])
def test_an_unknown_capitalised_word_at_the_start_is_reported(word: str) -> None:
    assert unsupported(f"{word} is where the match starts", ["the match starts at 3pm"]
                       ) == [word]


def test_common_words_are_never_names() -> None:
    assert facts_of("Thanks. Can You Please Come Here").of("name") == set()
    assert facts_of("Thanks. Can You Please Come Here").of("initial-name") == set()


@pytest.mark.parametrize("name", ["Martin", "Maria", "Julia", "Octavia"])
def test_an_invented_name_that_starts_like_a_month_is_reported(name: str) -> None:
    assert unsupported(f"Tom will bring {name}", ["I'll bring the chairs"],
                       allowed_names=["Tom"]) == [name]


def test_missing_ignores_names_and_emoji_unless_asked() -> None:
    assert missing("see you", "Ana sends 😀") == []
    assert missing("see you", "send it to Ana", kinds=["name"]) == ["Ana"]
    assert missing("see you", "meet at 9am, £45", kinds=["amount"]) == ["£45"]


# ---- emoji and broken text --------------------------------------------------------


def test_emoji_are_facts() -> None:
    assert facts_of("great 👍🏽 ❤").of("emoji") == {"👍", "🏽", "❤"}
    assert unsupported("Great 👍", ["great 👍"]) == []
    assert unsupported("Great 😀", ["great"]) == ["😀"]


@pytest.mark.parametrize("emoji", ["⭐", "⏰"])
def test_an_invented_emoji_outside_the_main_blocks_is_reported(emoji: str) -> None:
    assert unsupported(f"Great {emoji}", ["great"]) == [emoji]


def test_a_replacement_character_is_never_supported() -> None:
    assert facts_of("bad \ufffd text").of("broken") == {"\ufffd"}
    assert unsupported("bad \ufffd text", ["bad \ufffd text"]) == ["\ufffd"]


# ---- the Fact type ----------------------------------------------------------------


def test_facts_compare_by_kind_and_value_not_surface() -> None:
    assert Fact("time", "09:00", "9am") == Fact("time", "09:00", "09:00")
    assert hash(Fact("time", "09:00", "9am")) == hash(Fact("time", "09:00"))
    assert Fact("time", "09:00") != Fact("number", "09:00")
    assert Fact("time", "09:00") != "09:00"


def test_unsupported_lists_each_problem_once() -> None:
    bad = unsupported("£50, £50 and 13 then 13", ["£45"])
    assert len(bad) == len(set(bad))
    assert "£50" in bad and "13" in bad


# ---- properties ---------------------------------------------------------------------

_PIECES = [
    "meet", "at", "9am", "3pm", "noon", "12:40", "on", "Sat", "Saturday", "tomorrow",
    "the", "5th", "May 3", "12/05", "£45", "$1,200", "50p", "eight", "8", "and", "not",
    "https://example.com/x", "ana@example.com", "INV-2291", "#4521", "Ana", "Tom's",
    "Victoria Park", "Sorry,", "we're", "dinner", "😀", "❤", ".", ",", "?", "I'll", "bring",
    "chairs", "Unfortunately", "Kwame",
]
_TEXTS = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=14).map(" ".join)
_SETTINGS = settings(max_examples=50, deadline=None, derandomize=True)


@_SETTINGS
@given(_TEXTS)
def test_a_text_supports_itself(text: str) -> None:
    assert unsupported(text, [text]) == []
    assert missing(text, text) == []
    assert missing(text, text, kinds=["name", "emoji"]) == []


@_SETTINGS
@given(_TEXTS, st.integers(min_value=1000, max_value=9999))
def test_a_number_no_source_has_is_always_reported(text: str, number: int) -> None:
    assume(str(number) not in text.replace(",", ""))
    assert str(number) in unsupported(f"{text} and {number} more", [text])
    assert str(number) in missing(text, f"{text} and {number} more")


@_SETTINGS
@given(_TEXTS, st.integers(min_value=1, max_value=11), st.integers(min_value=1, max_value=59))
def test_a_time_no_source_has_is_always_reported(text: str, hour: int, minute: int) -> None:
    assume(minute != 40)
    bad = unsupported(f"{text} then {hour}:{minute:02d}pm", [text])
    assert f"time {hour + 12:02d}:{minute:02d}" in bad


@_SETTINGS
@given(_TEXTS, _TEXTS)
def test_more_sources_never_make_a_text_less_supported(text: str, extra: str) -> None:
    alone = set(unsupported(text, [extra]))
    assert set(unsupported(text, [extra, text])) == set()
    assert set(unsupported(text, [extra, "nothing here"])) <= alone


_WHOLE_PREFIX = __import__("re").compile(r"(?:^|[.!?:;\n]\s*|[-\u2022*]\s+|[\"\u201c(]\s*)$")


@given(st.text(alphabet=" \n\t.!?:;-*(\"\u201c\u2022aB\u00a0", max_size=40), st.data())
def test_a_sentence_start_is_judged_as_by_the_whole_prefix(text: str, data: st.DataObject
                                                           ) -> None:
    from privproc.inference.facts import _starts_sentence

    pos = data.draw(st.integers(0, len(text)))
    assert _starts_sentence(text, pos) == bool(_WHOLE_PREFIX.search(text[:pos]))


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", ["1" * 12_000, "1" * 11_990 + " quid", " ".join(["Word"] * 2400)])
def test_facts_of_a_long_text_cost_linear_time(text: str) -> None:
    facts_of(text)  # (seconds to hours before: patterns rescanned from every position)


@pytest.mark.parametrize(("text", "amount"), [("hmm...20 quid?", "GBP:20"),
                                              ("ok.5 euros", "EUR:5"),
                                              ("Done.20 bucks left", "USD:20")])
def test_an_amount_right_after_a_full_stop_is_an_amount(text: str, amount: str) -> None:
    assert amount in facts_of(text).of("amount")
