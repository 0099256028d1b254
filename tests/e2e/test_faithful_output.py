"""What the user sees, end to end through real processes (issue 12): the reader travels
from the SDK and the CLI to the node, bullets come back with their source messages, and
a rewrite that could not be checked says so."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from privproc.client.chat_export import messages_only, parse_chat_export
from privproc.client.sdk import PrivateProcessingClient
from privproc.inference.facts import unsupported
from privproc.up.system import System

from .conftest import up_system

pytestmark = pytest.mark.slow

SAMPLE = resources.files("privproc.demo").joinpath("sample_chat.txt").read_text()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    yield from up_system(tmp_path_factory, nodes=1, backend="extractive")


def messages() -> list[dict[str, str]]:
    return [{"sender": m.sender, "time": m.time.isoformat(), "text": m.text}
            for m in messages_only(parse_chat_export(SAMPLE))]


def test_the_reader_reaches_the_node_and_requests_to_them_come_first(system: System) -> None:
    client = PrivateProcessingClient.from_trust_file(system.client_config)
    chat = messages()
    result = client.summarize(chat, 4, reader="Sam")
    assert result.output[0].startswith("Priya asked you to cover 11 to 12")
    assert result.sources is not None and len(result.sources) == len(result.output)
    for bullet, sources in zip(result.output, result.sources, strict=True):
        assert sources and all(0 <= i < len(chat) for i in sources)
        assert unsupported(bullet, [chat[i]["text"] for i in sources],
                           allowed_names=[chat[i]["sender"] for i in sources] + ["Sam"]) == []
    # the same chat for another member: the request to Sam is about Sam, not "you"
    other = client.summarize(chat, 4, reader="Lena")
    assert not any(line.startswith("Priya asked you") for line in other.output)


def test_events_and_placeholders_never_become_bullets(system: System) -> None:
    client = PrivateProcessingClient.from_trust_file(system.client_config)
    chat = [{"sender": "Tom", "time": "t", "text": "\u200eimage omitted"},
            {"sender": "Ana", "time": "t", "text": "This message was deleted"},
            {"sender": "Ana", "time": "t", "text": "the boiler engineer comes Tuesday at 9"}]
    result = client.summarize(chat, 3)
    assert result.output == ["Ana: the boiler engineer comes Tuesday at 9"]
    assert result.sources == [[2]]


def test_the_cli_takes_the_reader_and_prints_the_cited_messages(system: System,
                                                                tmp_path: Path) -> None:
    chat = tmp_path / "chat.txt"
    chat.write_text(SAMPLE)
    done = subprocess.run(
        [sys.executable, "-m", "privproc.cli", "summarize", str(chat), "--me", "Sam", "--cite",
         "--bullets", "3", "--trust", str(system.client_config)],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("- Priya asked you to cover 11 to 12")
    assert lines[1].startswith("    [14 Mar 09:07 Priya: Sam, could you cover 11 to 12?")
    assert "events and placeholders left out" in done.stderr and "for Sam" in done.stderr
