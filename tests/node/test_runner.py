"""The node's inference runner: the reader reaches the task, bullets come back with their
sources, rewrites with their flags, and bad input is refused before any model runs."""

from __future__ import annotations

from typing import Any

import pytest

from privproc.inference import ExtractiveBackend
from privproc.node.core import TaskInputError, TaskOutput
from privproc.node.runner import InferenceRunner
from privproc.wire.inner import Task

from ..inference.scripted import ScriptedBackend

CHAT = [{"sender": "Priya", "time": "09:00", "text": "Sam, could you cover 11 to 12 on Tuesday?"},
        {"sender": "Tom", "time": "09:01", "text": "I'm at work all Tuesday"}]


def run(runner: InferenceRunner, task: Task, payload: dict[str, Any]) -> TaskOutput:
    output = runner.run(task, payload)
    assert isinstance(output, TaskOutput)
    return output


def test_the_reader_shapes_the_summary_and_sources_come_back() -> None:
    runner = InferenceRunner(ExtractiveBackend())
    for_sam = run(runner, Task.SUMMARIZE, {"messages": CHAT, "reader": "Sam"})
    assert for_sam.result[0] == "Priya asked you to cover 11 to 12 on Tuesday"
    assert for_sam.details["sources"] == [[0], [1]]
    anyone = run(runner, Task.SUMMARIZE, {"messages": CHAT})
    assert not any(line.startswith("Priya asked you") for line in anyone.result)


@pytest.mark.parametrize("reader", [5, "x" * 65, ["Sam"]])
def test_a_bad_reader_is_refused(reader: object) -> None:
    with pytest.raises(TaskInputError, match="reader"):
        InferenceRunner(ExtractiveBackend()).run(Task.SUMMARIZE,
                                                 {"messages": CHAT, "reader": reader})


def test_a_rewrite_that_loses_a_fact_comes_back_as_the_flagged_draft() -> None:
    backend = ScriptedBackend("See you at 4.", "See you later.")
    output = run(InferenceRunner(backend), Task.WRITE,
                 {"draft": "see u at 3pm tmrw", "tone": "professional"})
    assert output.result == ["See you at 3pm tomorrow."]
    assert output.details["flags"] == ["fallback"]
    assert len(backend.calls) == 2  # one try, one regeneration


def test_warm_runs_the_model_once_on_a_tiny_prompt() -> None:
    backend = ScriptedBackend("Hi")
    InferenceRunner(backend).warm()
    [(messages, params)] = backend.calls
    assert params.max_tokens == 2 and len(messages) == 1


@pytest.mark.parametrize(("details", "ok"), [
    ({"sources": [[0], [1, 2]]}, True),
    ({"flags": ["fallback"]}, True),
    ({}, True),
    ({"sources": [[0]]}, False),  # one list per item
    ({"sources": [[0], [-1]]}, False),
    ({"sources": [[0], [True]]}, False),
    ({"flags": ["x" * 33]}, False),
    ({"text": "the chat"}, False),  # nothing else leaves the node
])
def test_only_sources_and_flags_leave_the_node(details: dict[str, Any], ok: bool) -> None:
    from privproc.node.core import valid_details

    assert valid_details(details, 2) is ok
