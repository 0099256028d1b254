"""One behavioural suite, run against every backend (embedded llama, OpenAI-compatible
HTTP against a fake server, and the extractive summarizer for summaries)."""

from __future__ import annotations

import re

import pytest

from privproc.inference import (
    BackendUnavailableError,
    ChatMessage,
    ExtractiveBackend,
    GenerationParams,
    InvalidRequestError,
    LlamaBackend,
    OpenAICompatBackend,
    UnsupportedTaskError,
    summarize,
    write,
)
from privproc.inference.backend import ChatBackend, ChatSummarizer

from .conftest import SHORT_CHAT, require_model, small_model
from .fake_openai import FakeOpenAIServer

HELLO = [
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage("user", "Name three colours."),
]
GREEDY = GenerationParams(max_tokens=16, temperature=0.0)


@pytest.mark.model
def test_backends_satisfy_the_protocols(llama: LlamaBackend, openai: OpenAICompatBackend) -> None:
    assert isinstance(llama, ChatBackend)
    assert isinstance(openai, ChatBackend)
    assert isinstance(ExtractiveBackend(), ChatSummarizer)
    assert not isinstance(llama, ChatSummarizer)


def test_complete_returns_text(chat_backend: ChatBackend) -> None:
    text = chat_backend.complete(HELLO, GREEDY)
    assert isinstance(text, str)
    assert text.strip()
    assert chat_backend.name


def test_temperature_zero_is_deterministic(chat_backend: ChatBackend) -> None:
    assert chat_backend.complete(HELLO, GREEDY) == chat_backend.complete(HELLO, GREEDY)


def test_stream_concatenates_to_complete(chat_backend: ChatBackend) -> None:
    pieces = list(chat_backend.stream(HELLO, GREEDY))
    assert len(pieces) > 1
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == chat_backend.complete(HELLO, GREEDY)


def test_max_tokens_truncates_the_same_output(chat_backend: ChatBackend) -> None:
    short = chat_backend.complete(HELLO, GenerationParams(max_tokens=4))
    long = chat_backend.complete(HELLO, GenerationParams(max_tokens=16))
    assert short
    assert len(short) < len(long)
    assert long.startswith(short)


def test_stop_sequence_cuts_output(chat_backend: ChatBackend) -> None:
    full = chat_backend.complete(HELLO, GREEDY)
    assert " " in full.strip()
    cut = chat_backend.complete(HELLO, GenerationParams(max_tokens=16, stop=(" ",)))
    assert " " not in cut
    assert full.startswith(cut)
    streamed = "".join(chat_backend.stream(HELLO, GenerationParams(max_tokens=16, stop=(" ",))))
    assert streamed == cut


def test_abandoned_stream_releases_the_backend(chat_backend: ChatBackend) -> None:
    stream = chat_backend.stream(HELLO, GREEDY)
    assert next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert chat_backend.complete(HELLO, GREEDY)


@pytest.mark.parametrize(
    "messages",
    [[], [ChatMessage("user", "hi"), ChatMessage("assistant", "hello")]],
    ids=["empty", "ends-with-assistant"],
)
def test_bad_message_lists_are_rejected(
    chat_backend: ChatBackend, messages: list[ChatMessage]
) -> None:
    with pytest.raises(InvalidRequestError):
        chat_backend.complete(messages, GREEDY)
    with pytest.raises(InvalidRequestError):
        "".join(chat_backend.stream(messages, GREEDY))


def test_closed_backend_is_unavailable(fake_server: FakeOpenAIServer) -> None:
    require_model()
    backends: list[ChatBackend] = [OpenAICompatBackend(fake_server.url, "echo")]
    backends.append(LlamaBackend(small_model(), n_ctx=256))
    for backend in backends:
        backend.close()
        backend.close()  # idempotent
        with pytest.raises(BackendUnavailableError, match="closed"):
            backend.complete(HELLO, GREEDY)


MARKER_BULLET = re.compile(r"^(\s|[-*•#>]|\d+[.)])")


def test_summary_is_a_short_clean_bullet_list(
    summary_backend: ChatBackend | ChatSummarizer,
) -> None:
    bullets = summarize(summary_backend, SHORT_CHAT, max_bullets=3, reader="Sam")
    assert 1 <= len(bullets) <= 3
    for bullet in bullets:
        assert bullet.strip() == bullet
        assert "\n" not in bullet
        assert not MARKER_BULLET.match(bullet)
        assert "**" not in bullet
    assert len(set(bullets)) == len(bullets)


def test_summary_is_deterministic(summary_backend: ChatBackend | ChatSummarizer) -> None:
    first = summarize(summary_backend, SHORT_CHAT, max_bullets=2)
    assert summarize(summary_backend, SHORT_CHAT, max_bullets=2) == first


def test_write_gives_suggestions(chat_backend: ChatBackend) -> None:
    suggestions = write(chat_backend, "i has finish the report, will send tmrw", "proofread")
    assert len(suggestions) == 1
    assert suggestions[0].strip()


def test_extractive_backend_cannot_write_so_the_draft_is_kept_flagged() -> None:
    from privproc.inference.tasks import write_checked

    with pytest.raises(UnsupportedTaskError, match="only summarizes"):
        ExtractiveBackend().complete([], None)  # type: ignore[arg-type]
    kept = write_checked(ExtractiveBackend(), "can u send it tmrw pls", "funny")
    assert kept.flags == ("fallback",)
    assert kept.text == "Can you send it tomorrow please."
