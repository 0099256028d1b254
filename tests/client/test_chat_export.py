from __future__ import annotations

from datetime import datetime

import pytest

from privproc.client.chat_export import (
    ChatExportError,
    last_messages,
    messages_only,
    parse_chat_export,
)

IOS = """[12/03/26, 09:01:12] Priya: \u200eMessages and calls are end-to-end encrypted.
[12/03/26, 09:01:12] \u200ePriya created group "Flat 4B"
[12/03/26, 09:02:40] Priya: Rent is due Friday!
Please send your share by Thursday.
[12/03/26, 09:05:01] Tom: \u200eimage omitted
[12/03/2026, 21:15] Sam: ok 👍
"""

ANDROID = """12/03/2026, 09:01 - Priya created group "Flat 4B"
12/03/2026, 09:02 - Priya: Rent is due Friday!
Please send your share by Thursday.
13/03/26, 7:05 pm - Tom: sure
"""


def test_ios_style_with_multiline_and_system_lines() -> None:
    items = parse_chat_export(IOS)
    assert [m.kind for m in items] == ["system", "system", "message", "media", "message"]
    msgs = messages_only(items)
    assert [m.sender for m in msgs] == ["Priya", "Sam"]
    assert msgs[0].text == "Rent is due Friday!\nPlease send your share by Thursday."
    assert msgs[0].time == datetime(2026, 3, 12, 9, 2, 40)
    assert msgs[1].time == datetime(2026, 3, 12, 21, 15)


def test_ios_system_lines_under_the_group_name_are_events() -> None:
    export = ("[12/03/26, 09:01:12] Flat 4B: \u200eAna created this group\n"
              "[12/03/26, 09:01:13] Flat 4B: \u200eAna added you\n"
              "[12/03/26, 09:02:00] Ana: \u200eThis message was deleted\n"
              "[12/03/26, 09:03:00] Tom: <Media omitted>\n"
              "[12/03/26, 09:04:00] Ana: see you at 8 <This message was edited>\n")
    items = parse_chat_export(export)
    assert [(m.sender, m.kind) for m in items] == [
        ("Flat 4B", "system"), ("Flat 4B", "system"), ("Ana", "deleted"), ("Tom", "media"),
        ("Ana", "message")]
    assert [m.text for m in messages_only(items)] == ["see you at 8"]


def test_a_message_that_talks_about_groups_is_still_a_message() -> None:
    export = "[12/03/26, 09:01:12] Ana: I left the keys with Tom, he added the new lock\n"
    assert [m.kind for m in parse_chat_export(export)] == ["message"]


def test_android_style() -> None:
    msgs = messages_only(parse_chat_export(ANDROID))
    assert [(m.sender, m.text.splitlines()[0]) for m in msgs] == [
        ("Priya", "Rent is due Friday!"), ("Tom", "sure")]
    assert msgs[1].time == datetime(2026, 3, 13, 19, 5)


def test_unread_and_errors() -> None:
    assert [m.sender for m in last_messages(messages_only(parse_chat_export(IOS)), 2)] == [
        "Priya", "Sam"]
    with pytest.raises(ValueError, match="positive"):
        last_messages(parse_chat_export(IOS), 0)
    with pytest.raises(ChatExportError, match="no messages"):
        parse_chat_export("just some text\nwithout timestamps\n")
