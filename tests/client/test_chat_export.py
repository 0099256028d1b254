from __future__ import annotations

from datetime import datetime

import pytest

from privproc.client.chat_export import ChatExportError, last_messages, parse_chat_export

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
    msgs = parse_chat_export(IOS)
    assert [m.sender for m in msgs] == ["Priya", "Tom", "Sam"]
    assert msgs[0].text == "Rent is due Friday!\nPlease send your share by Thursday."
    assert msgs[0].time == datetime(2026, 3, 12, 9, 2, 40)
    assert msgs[1].text == "image omitted"
    assert msgs[2].time == datetime(2026, 3, 12, 21, 15)


def test_android_style() -> None:
    msgs = parse_chat_export(ANDROID)
    assert [(m.sender, m.text.splitlines()[0]) for m in msgs] == [
        ("Priya", "Rent is due Friday!"), ("Tom", "sure")]
    assert msgs[1].time == datetime(2026, 3, 13, 19, 5)


def test_unread_and_errors() -> None:
    assert [m.sender for m in last_messages(parse_chat_export(IOS), 2)] == ["Tom", "Sam"]
    with pytest.raises(ValueError, match="positive"):
        last_messages(parse_chat_export(IOS), 0)
    with pytest.raises(ChatExportError, match="no messages"):
        parse_chat_export("just some text\nwithout timestamps\n")
