"""chat: messages versus events, export artefacts, and whom a message speaks to."""

from __future__ import annotations

import pytest

from privproc.inference import ChatLine
from privproc.inference.chat import (
    SYSTEM_MARK,
    LineKind,
    addresses_reader,
    classify,
    clean_text,
    mentions,
    name_forms,
)

LRM = "\u200e"


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "Can you book a table for 8 on Friday?",
        "I left my keys at Ana's",
        "We left the keys at Ana's",
        "The image omitted from the report is fine",
        "Ana added Tom to the list of drivers for Saturday",
        "The video call yesterday was great, thanks all",
        "I deleted the old photos from the drive",
        "",
    ],
)
def test_messages_are_messages(text: str) -> None:
    assert classify(text) is LineKind.MESSAGE


@pytest.mark.parametrize(
    "text",
    [
        "image omitted",
        "Image omitted",
        "video omitted",
        "audio omitted",
        "sticker omitted",
        "GIF omitted",
        "document omitted",
        "Contact card omitted",
        "voice message omitted",
        "<Media omitted>",
        "< media omitted >",
        "<attached: 00000012-PHOTO-2024-05-01.jpg>",
        "IMG-20240501-WA0003.jpg (file attached)",
        f"{LRM}image omitted",
        f"{LRM}<attached: 00000012-PHOTO.jpg>",
        "  image omitted  ",
    ],
)
def test_media_placeholders(text: str) -> None:
    assert classify(text) is LineKind.MEDIA


@pytest.mark.parametrize(
    "text",
    [
        "This message was deleted",
        "this message was deleted.",
        "You deleted this message",
        "Message deleted",
        "null",
        "Waiting for this message. This may take a while.",
        f"{LRM}This message was deleted",
        f"{LRM}You deleted this message.",
    ],
)
def test_deleted_placeholders(text: str) -> None:
    assert classify(text) is LineKind.DELETED


@pytest.mark.parametrize(
    "text",
    [
        'Ana created group "Picnic"',
        "Ana created this group",
        "Flat 4B created this group",
        "Ana Lopez created group \u201cFlat 4B\u201d",
        "Ana added Tom",
        "Ana added you",
        "Ana added Tom, Ben and Sue",
        "Tom left",
        "Ana removed Tom",
        "Ana removed you",
        'Ana changed the subject from "a" to "b"',
        'Ana changed the group name to "Trip"',
        "Ana changed this group's icon",
        "Ana changed the group description",
        "Ana deleted this group's icon",
        "Tom joined using this group's invite link",
        "Ana changed their phone number to a new number. Tap to message or add the new number.",
        "Ana turned on disappearing messages.",
        "Ana pinned a message",
        "Ana is now an admin",
        "You're now an admin",
        "Your security code with Ana changed. Tap to learn more.",
        "Messages and calls are end-to-end encrypted. No one outside of this chat, not even "
        "WhatsApp, can read or listen to them.",
        "Missed voice call",
        "Missed video call",
        "Video call 2:30",
    ],
)
def test_system_templates(text: str) -> None:
    assert classify(text) is LineKind.SYSTEM


@pytest.mark.parametrize(
    "text",
    [
        f"{LRM}Ana added Tom",
        f"{LRM}Tom joined using this group's invite link",
        f"{LRM}Messages and calls are end-to-end encrypted.",
        f"{LRM}Your security code with Ana changed. Tap to learn more.",
        f"{LRM}Missed voice call",
        # iOS marks its own event lines: any wording, even one no template knows.
        f"{LRM}Ana set this chat to keep messages for 90 days",
        f"  {LRM}Ana created group \"Picnic\"",
    ],
)
def test_ios_marked_lines_are_system_events(text: str) -> None:
    assert SYSTEM_MARK == LRM
    assert classify(text) is LineKind.SYSTEM


@pytest.mark.parametrize("text", ["I added salt to the soup", "Mum added milk to the list",
                                  "We removed the old sofa",
                                  "Who created this group anyway? It's chaos"])
def test_a_short_message_about_adding_is_a_message(text: str) -> None:
    assert classify(text) is LineKind.MESSAGE


# ---- clean_text, names, mentions -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("  hi  ", "hi"),
        (f"{LRM}Hello there", "Hello there"),
        ("See you at 5 <This message was edited>", "See you at 5"),
        (f"{LRM}See you <this message was edited>  ", "See you"),
        ("keep <this message was edited> inside", "keep <this message was edited> inside"),
        ("plain", "plain"),
    ],
)
def test_clean_text_removes_export_artefacts_only(text: str, clean: str) -> None:
    assert clean_text(text) == clean


@pytest.mark.parametrize(
    ("name", "forms"),
    [
        ("Ana", {"ana"}),
        ("Ana Lopez", {"ana lopez", "ana"}),
        ("  Ana   Maria  Lopez ", {"ana maria lopez", "ana"}),
        ("", set()),
        ("   ", set()),
    ],
)
def test_name_forms(name: str, forms: set[str]) -> None:
    assert name_forms(name) == forms


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Ana, can you come?", "Ana"),
        ("can you come, ana?", "Ana"),
        ("hey @ana can you", "Ana Lopez"),
        ("Ana Lopez said so", "Ana Lopez"),
        ("thanks ANA!", "Ana"),
        ("Ask Priya Shah", "Priya Shah"),
    ],
)
def test_mentions(text: str, name: str) -> None:
    assert mentions(text, name)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Banana bread for everyone", "Ana"),
        ("Anastasia is coming", "Ana"),
        ("email@ana", "Ana"),
        ("nobody here", "Ana Lopez"),
        ("anything", ""),
    ],
)
def test_does_not_mention(text: str, name: str) -> None:
    assert not mentions(text, name)


# ---- addresses_reader ----------------------------------------------------------------


def _chat(*pairs: tuple[str, str]) -> list[ChatLine]:
    return [ChatLine(sender, f"09:{i:02d}", text) for i, (sender, text) in enumerate(pairs)]


def test_a_message_that_names_the_reader_speaks_to_them() -> None:
    lines = _chat(("Ana", "Sam, can you book the table?"), ("Ana", "@sam bring chairs"),
                  ("Tom", "Thanks sam!"), ("Tom", "Samantha will come"))
    assert [addresses_reader(lines, i, "Sam") for i in range(4)] == [True, True, True, False]


def test_the_readers_first_name_is_enough() -> None:
    lines = _chat(("Ana", "Sam, can you book the table?"), ("Ana", "Jones, can you?"))
    assert addresses_reader(lines, 0, "Sam Jones")
    assert not addresses_reader(lines, 1, "Sam Jones")  # only the full and the first name


def test_you_right_after_the_readers_own_message_speaks_to_them() -> None:
    lines = _chat(("Sam", "I can drive on Friday"), ("Ana", "Great, could you pick up the cake?"),
                  ("Tom", "you should bring the speaker too"))
    assert addresses_reader(lines, 1, "Sam")
    assert not addresses_reader(lines, 2, "Sam")  # after Ana's message, "you" is Ana


def test_events_between_do_not_break_a_reply_to_the_reader() -> None:
    lines = _chat(("Sam", "I can drive on Friday"), ("Tom", "image omitted"),
                  ("Ben", "This message was deleted"), ("Tom", f"{LRM}Ben left"),
                  ("Ana", "can u take the dog too?"))
    assert addresses_reader(lines, 4, "Sam")


def test_a_message_without_you_after_the_reader_is_not_to_them() -> None:
    lines = _chat(("Sam", "I can drive on Friday"), ("Ana", "Great, the cake is ready"))
    assert not addresses_reader(lines, 1, "Sam")


def test_a_reply_that_names_someone_else_is_not_to_the_reader() -> None:
    lines = _chat(("Sam", "I can drive on Friday"), ("Ana", "Tom, can you bring the cake?"))
    assert not addresses_reader(lines, 1, "Sam")


def test_the_readers_own_messages_never_speak_to_them() -> None:
    lines = _chat(("Ana", "hi"), ("Sam", "Sam here, can you all hear me?"),
                  ("Sam", "you there?"))
    assert not addresses_reader(lines, 1, "Sam")
    assert not addresses_reader(lines, 2, "Sam")


@pytest.mark.parametrize("reader", [None, "", "   "])
def test_no_reader_no_addressee(reader: str | None) -> None:
    lines = _chat(("Sam", "I can drive"), ("Ana", "Sam, can you take the dog?"),
                  ("Ana", "you ok?"))
    assert not any(addresses_reader(lines, i, reader) for i in range(3))


def test_the_first_message_can_only_be_to_the_reader_by_name() -> None:
    lines = _chat(("Ana", "can you bring the cake?"))
    assert not addresses_reader(lines, 0, "Sam")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("body", ["!." * 100_000, "~" * 200_000 + "x", "<" * 200_000])
def test_a_long_hostile_line_is_classified_in_linear_time(body: str) -> None:
    """Attack: a chat export someone sent the user holds one enormous line that the media
    pattern backtracks on (hours for a megabyte before); a line that long is no event or
    placeholder, so it is a message, decided at once."""
    assert classify(body) is LineKind.MESSAGE
    assert classify("\u200e" + body) is LineKind.SYSTEM  # iOS marks events: still an event
