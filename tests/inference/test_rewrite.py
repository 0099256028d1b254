"""rewrite and spelling: rewrites that keep the facts, and the corrected-draft fallback."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privproc.inference.facts import facts_of, missing
from privproc.inference.rewrite import (
    Rewrite,
    checked_rewrite,
    corrections,
    light_correction,
    person_swapped,
    protected_items,
    rewrite_problems,
    strip_additions,
)
from privproc.inference.spelling import MISSPELLED, correct_spelling

# ---- protected items ------------------------------------------------------------------


def test_protected_items_are_the_drafts_facts_as_written() -> None:
    draft = ("Hi Ana, meet at 9am on Sat at Luigi's, bring £45 and INV-2291 \U0001F600 "
             "see https://x.com or mail bob@example.com")
    items = protected_items(draft)
    for item in ("Ana", "9am", "Sat", "£45", "INV-2291", "https://x.com", "bob@example.com",
                 "Luigi's"):
        assert item in items
    assert "\U0001F600" not in items  # emoji may go
    assert "Hi" not in items  # a capitalised first word is no name
    assert len(items) == len(set(items))


def test_a_draft_without_facts_protects_nothing() -> None:
    assert protected_items("sounds good, see you there") == []


# ---- light correction -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("draft", "corrected"),
    [
        ("hey can u send it tmrw pls", "Hey can you send it tomorrow please."),
        ("ok thx", "Ok thanks."),
        ("dont worry im fine", "Don't worry I'm fine."),
        ("u r late", "You are late."),
        ("btw i cant come", "By the way I can't come."),
        ("  hello   world  ", "Hello world."),
        ("see you soon , ok ?", "See you soon, ok?"),
        ("i'm here. i'll go", "I'm here. I'll go."),
        ("Already done!", "Already done!"),
        ("i recieved it becuase we asked", "I received it because we asked."),
        ("see you tommorow", "See you tomorrow."),
        ("we can't start with out you", "We can't start without you."),
        ("I could of done it", "I could have done it."),
        ("can u send the file's that i need", "Can you send the files that I need."),
        ("the ticket's, which are open", "The tickets, which are open."),
        ("Recieved", "Received."),
        ("alot of people", "A lot of people."),
        ("wensday is fine", "Wednesday is fine."),
        ("your welcome", "You're welcome."),
        ("lets go", "Let's go."),
    ],
)
def test_light_correction(draft: str, corrected: str) -> None:
    assert light_correction(draft) == corrected


@pytest.mark.parametrize(
    "draft",
    [
        "Tom's car is outside.",  # a possessive stays
        "It's the file's name that matters.",
        "Their car is there.",  # needs the meaning: left alone
        "Your car is outside.",
        "Everything is fine.",
    ],
)
def test_light_correction_leaves_correct_text_alone(draft: str) -> None:
    assert light_correction(draft) == draft


def test_every_listed_misspelling_is_fixed_and_keeps_its_capital() -> None:
    for wrong, right in MISSPELLED.items():
        assert correct_spelling(f"so {wrong} then") == f"so {right} then"
        assert correct_spelling(wrong.capitalize()) == right[0].upper() + right[1:]
        assert wrong != right


def test_correct_spelling_only_fixes_whole_words() -> None:
    assert correct_spelling("untillable recieveing") == "untillable recieveing"


@pytest.mark.parametrize("draft", ["Ask Ty about it", "George R Martin wrote it"])
def test_light_correction_never_changes_a_name(draft: str) -> None:
    assert light_correction(draft) == draft + "."


@pytest.mark.parametrize("draft", ["see www.ur-shop.com", "mail im@example.com"])
def test_light_correction_never_changes_a_url_or_an_email(draft: str) -> None:
    assert missing(light_correction(draft), draft) == []


_NAMES = ["Ana", "Tom", "Priya", "Kwame", "Luigi's", "Victoria Park"]
_FACTS = ["9am", "9:30", "3pm", "noon", "£45", "$1,200", "50p", "8", "12", "INV-2291", "#4521",
          "https://example.com/a", "bob@example.com", "Sat", "May 3", "12/05", "the 5th"]
_WORDS = ["u", "ur", "pls", "tmrw", "thx", "i", "im", "dont", "cant", "becuase", "recieved",
          "tommorow", "with out", "could of", "file's that", "the", "and", "see", "send", "on",
          "at", "to", "meet", ",", ".", "?", "!", "  ", "lets go", "its been", "alot"]


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(_NAMES + _FACTS + _WORDS), min_size=1, max_size=16))
def test_light_correction_never_changes_names_numbers_or_times(pieces: list[str]) -> None:
    draft = " ".join(pieces)
    corrected = light_correction(draft)
    before, after = facts_of(draft), facts_of(corrected)
    for kind in ("time", "amount", "number", "url", "email", "ident"):
        assert before.of(kind) == after.of(kind), kind
    assert before.time_readings == after.time_readings
    assert before.of("date") <= after.of("date")  # "tmrw" -> "tomorrow" is the same date
    assert missing(corrected, draft, kinds=["time", "date", "amount", "number", "url", "email",
                                            "ident", "name"]) == []
    for name in _NAMES:
        assert corrected.count(name) == draft.count(name)
    assert light_correction(corrected) == corrected  # idempotent


# ---- strip_additions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "draft", "stripped"),
    [
        ("Hi Ana,\nSee you at 5.\nBest regards,\n[Your Name]", "see you at 5", "See you at 5."),
        ("Dear Ana,\n\nSee you at 5.\n\nThanks", "see you at 5", "See you at 5."),
        ("Hello!\nSee you at 5.\nCheers,\nTom", "see you at 5", "See you at 5."),
        ("See you at 5. [Your name]", "see you at 5", "See you at 5."),
        ("See you at 5.\nKind regards", "see you at 5", "See you at 5."),
        # What the draft had stays.
        ("Hi Ana,\nSee you at 5.\nBest regards,\nTom", "Hi Ana,\nsee you at 5\nBest regards,\nTom",
         "Hi Ana,\nSee you at 5.\nBest regards,\nTom"),
        ("Hi Ana,\nSee you at 5.", "hi ana,\nsee you at 5", "Hi Ana,\nSee you at 5."),
        ("See you at 5.\nThanks", "see you at 5\nthanks", "See you at 5.\nThanks"),
        # Words inside the text are not a greeting or a sign-off.
        ("See you at 5. Thanks", "see you at 5", "See you at 5. Thanks"),
        ("  See you at 5.  ", "see you at 5", "See you at 5."),
    ],
)
def test_strip_additions(candidate: str, draft: str, stripped: str) -> None:
    assert strip_additions(candidate, draft) == stripped


# ---- person_swapped -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "draft"),
    [
        ("I'll have to start without you.", "start without me"),
        ("You will bring the chairs.", "I'll bring the chairs"),
        ("The chairs will be brought.", "I'll bring the chairs"),
    ],
)
def test_a_changed_speaker_is_a_swap(candidate: str, draft: str) -> None:
    assert person_swapped(candidate, draft)


@pytest.mark.parametrize(
    ("candidate", "draft"),
    [
        ("Please start without me.", "start without me"),
        ("I will bring the chairs.", "I'll bring the chairs"),
        ("Thank you, I will be there.", "thanks, I'll be there"),  # "thank you" is no "you"
        ("See you at 5.", "at 5 then"),
        ("Could you send it, please?", "can you send it"),
        ("The chairs are coming.", "the chairs are coming"),
    ],
)
def test_the_same_speaker_is_no_swap(candidate: str, draft: str) -> None:
    assert not person_swapped(candidate, draft)


@pytest.mark.parametrize(("candidate", "draft"),
                         [("Could you send it by 5pm?", "can u send it by 5pm"),
                          ("Is your car outside?", "is ur car outside")])
def test_a_chat_spelling_of_you_is_you(candidate: str, draft: str) -> None:
    assert not person_swapped(candidate, draft)


# ---- rewrite_problems -----------------------------------------------------------------

DRAFT = "hey ana can you send INV-2291 to bob@example.com by 5pm fri, its £45"
GOOD = "Hi Ana, could you please send INV-2291 to bob@example.com by 5pm on Friday? It's £45."


def test_a_faithful_rewrite_has_no_problems() -> None:
    assert rewrite_problems(GOOD, DRAFT) == []
    assert rewrite_problems("Meet at 9:00.", "meet at 9am") == []
    assert rewrite_problems("Let's meet tomorrow at 9am.", "meet tommorow at 9am") == []


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        ("Here is the rewritten text: " + GOOD, "comments on the text instead of rewriting it"),
        (GOOD + " This message sounds polite.", "comments on the text instead of rewriting it"),
        (GOOD.replace("5pm", "6pm"), "invented: time 18:00"),
        (GOOD.replace("5pm", "6pm"), "lost: time 17:00"),
        (GOOD.replace("£45", "£54"), "invented: £54"),
        (GOOD.replace("£45", "£54"), "lost: £45"),
        (GOOD.replace(" INV-2291", ""), "lost: INV-2291"),
        (GOOD.replace("bob@example.com", "him"), "lost: bob@example.com"),
        (GOOD.replace("Friday", "Monday"), "invented: Monday"),
        (GOOD.replace("Ana", "Anna"), "invented: Anna"),
        (GOOD + " Tom will help.", "invented: Tom"),
        (GOOD + " (12 items)", "invented: 12"),
        (GOOD + " It is urgent. " * 20, "much longer than the draft"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_rewrite_problems(candidate: str, problem: str) -> None:
    assert problem in rewrite_problems(candidate, DRAFT)


def test_a_rewrite_that_swaps_who_does_what_is_refused() -> None:
    assert rewrite_problems("I'll have to start without you.", "start without me") == [
        "changes who does what (first or second person)"]


def test_a_draft_that_comments_may_be_rewritten_with_the_comment() -> None:
    draft = "here is the menu for friday, pls check it"
    assert "comments on the text instead of rewriting it" not in rewrite_problems(
        "Here is the menu for Friday; please check it.", draft)


# ---- checked_rewrite ------------------------------------------------------------------


class Generator:
    """A scripted model: one candidate per attempt, and a record of the attempts."""

    def __init__(self, *candidates: str | None) -> None:
        self.candidates = candidates
        self.attempts: list[int] = []

    def __call__(self, attempt: int) -> str | None:
        self.attempts.append(attempt)
        return self.candidates[attempt]


def test_a_good_first_rewrite_is_accepted() -> None:
    generate = Generator(GOOD, "never asked")
    assert checked_rewrite(DRAFT, generate) == Rewrite(GOOD)
    assert generate.attempts == [0]


def test_a_bad_rewrite_is_regenerated_once() -> None:
    generate = Generator(GOOD.replace("5pm", "6pm"), GOOD)
    assert checked_rewrite(DRAFT, generate) == Rewrite(GOOD, ())
    assert generate.attempts == [0, 1]


@pytest.mark.parametrize(
    "candidates",
    [
        (GOOD.replace("5pm", "6pm"), "Here is the rewritten text: " + GOOD),
        (GOOD.replace(" INV-2291", ""), GOOD.replace("Ana", "Anna")),
        (None, None),
        ("", "   "),
        (None, GOOD.replace("£45", "£54")),
    ],
)
def test_two_bad_rewrites_give_the_corrected_draft(candidates: tuple[str | None, str | None]
                                                   ) -> None:
    generate = Generator(*candidates)
    result = checked_rewrite(DRAFT, generate)
    assert result == Rewrite(light_correction(DRAFT), ("fallback",))
    assert result.text == "Hey ana can you send INV-2291 to bob@example.com by 5pm fri, its £45."
    assert generate.attempts == [0, 1]


def test_no_first_candidate_then_a_good_one() -> None:
    generate = Generator(None, GOOD)
    assert checked_rewrite(DRAFT, generate) == Rewrite(GOOD)
    assert generate.attempts == [0, 1]


def test_an_added_greeting_and_signature_are_stripped_not_refused() -> None:
    candidate = "Hello,\nLet us meet at 9am.\nBest regards,\n[Your Name]"
    assert checked_rewrite("meet at 9am", Generator(candidate, None)) == Rewrite(
        "Let us meet at 9am.")


def test_the_fallback_keeps_every_protected_item() -> None:
    result = checked_rewrite(DRAFT, Generator(None, None))
    assert "fallback" in result.flags
    for item in protected_items(DRAFT):
        assert item in result.text or item.lower() in result.text.lower()
    assert missing(result.text, DRAFT) == []


def test_a_rewrite_of_a_chat_spelling_draft_is_accepted() -> None:
    assert checked_rewrite("can u send it by 5pm", Generator(
        "Could you send it by 5pm?", "Can you send it by 5pm?")).flags == ()


def test_a_rewrite_that_drops_the_drafts_negation_is_refused() -> None:
    draft = "We should start without them."
    assert "drops the draft's negation" in rewrite_problems("We should start with them.",
                                                            draft)
    assert rewrite_problems("We can start without them.", draft) == []


@pytest.mark.parametrize(("candidate", "ok"), [
    ("They're going to be late because their train was cancelled, so we should start "
     "without them.", True),
    ("Their going to be late because there train was cancelled, so we should start "
     "without them.", False),  # "They're" missing
    ("They're going to be late becuase their train was cancelled, so we should start "
     "without them.", False),  # the misspelling kept
])
def test_a_proofread_must_contain_the_known_corrections(candidate: str, ok: bool) -> None:
    draft = ("Their going to be late becuase there train was cancelled, so we should start "
             "with out them.")
    assert corrections(draft) == ["they're", "because", "without"]
    assert (rewrite_problems(candidate, draft, "proofread") == []) is ok
    # another tone may reword freely (the facts and the negation stay checked)
    assert rewrite_problems("The train was cancelled, so they'll be late: we start without "
                            "them.", draft, "rephrase") == []


def test_a_proofread_that_misses_a_correction_falls_back_to_the_corrected_draft() -> None:
    draft = "Could you send me the file's that we discused yesterday?"
    kept = checked_rewrite(draft, lambda attempt: draft, "proofread")
    assert kept == Rewrite("Could you send me the files that we discussed yesterday?",
                           ("fallback",))


@pytest.mark.parametrize(("draft", "candidate", "problem"), [
    ("I'm running 10 minutes late, sorry.", "I'm running 10 minutes early, sorry.",
     "turns 'late' into 'early'"),
    ("Reminder that it's your turn to do the dishes.",
     "I'm sorry, but I can't assist with that.", "refuses instead of rewriting"),
    ("Heard your dad's in hospital, hope he's ok.",
     "Thank you for your support. I'm glad he's okay.",
     "answers the message instead of rewriting it"),
    ("The wifi is down again, I've restarted the router twice.",
     "I've had a lovely relaxing afternoon in the garden twice.",
     "keeps too little of the draft's words (under a third)"),
])
def test_a_rewrite_that_changes_the_meaning_is_refused(draft: str, candidate: str,
                                                       problem: str) -> None:
    assert problem in rewrite_problems(candidate, draft)


def test_a_thank_you_draft_may_be_rewritten_as_a_thank_you() -> None:
    assert rewrite_problems("Thank you for the interview yesterday, I really enjoyed it.",
                            "thx for the interview yesterday, really enjoyed it") == []
