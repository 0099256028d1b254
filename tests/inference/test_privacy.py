"""No request text in errors: a marker fed into every failing path never appears in the
exception message, its repr, or the whole formatted traceback (chained causes included)."""

from __future__ import annotations

import traceback
from collections.abc import Callable

import pytest

from privproc.inference import (
    ChatLine,
    ChatMessage,
    ExtractiveBackend,
    GenerationParams,
    InferenceError,
    LlamaBackend,
    OpenAICompatBackend,
    summarize,
    write,
)
from privproc.inference.tasks import chat_lines_from_json, summarize_cited

from .conftest import SHORT_CHAT, require_model, small_model
from .fake_openai import FakeOpenAIServer
from .scripted import ScriptedBackend

MARKER = "ZQX-private-7781"


def assert_clean(action: Callable[[], object]) -> InferenceError:
    with pytest.raises(InferenceError) as info:
        action()
    exc = info.value
    rendered = "".join(traceback.format_exception(exc))
    assert MARKER not in str(exc)
    assert MARKER not in repr(exc)
    assert MARKER not in rendered
    return exc


def marked_chat(n: int = 3, size: int = 20) -> list[ChatLine]:
    return [ChatLine(f"{MARKER}-sender", MARKER, (MARKER + " ") * size) for _ in range(n)]


def test_value_reprs_hide_content() -> None:
    assert MARKER not in repr(ChatMessage("user", MARKER))
    assert MARKER not in repr(ChatLine(MARKER, MARKER, MARKER))


@pytest.mark.parametrize(
    "action",
    [
        lambda: summarize(ScriptedBackend(), marked_chat(200)),
        lambda: summarize(ScriptedBackend(), marked_chat(1, 500)),
        lambda: summarize(ScriptedBackend(), marked_chat(), max_bullets=99),
        lambda: summarize(ScriptedBackend(), marked_chat(), reader=MARKER * 5),
        lambda: summarize(ScriptedBackend(), [ChatLine(MARKER, MARKER, "image omitted")]),
        lambda: summarize_cited(ScriptedBackend(error=ValueError(MARKER)), marked_chat(),
                                phrasing=True),
        lambda: summarize_cited(ScriptedBackend(error=RuntimeError(MARKER)), marked_chat(),
                                phrasing=True),
        lambda: write(ScriptedBackend(), MARKER, MARKER),
        lambda: write(ScriptedBackend(), MARKER * 200, "funny"),
        lambda: write(ScriptedBackend(error=KeyError(MARKER)), MARKER, "funny"),
        lambda: chat_lines_from_json([{"sender": MARKER, "text": [MARKER]}]),
        lambda: ChatMessage(MARKER, MARKER),  # type: ignore[arg-type]
        lambda: GenerationParams(stop=(MARKER, "")),
    ],
    ids=[
        "too-many-messages",
        "message-too-long",
        "bad-max-bullets",
        "reader-too-long",
        "unusable-output",
        "backend-valueerror",
        "backend-runtimeerror",
        "bad-tone",
        "draft-too-long",
        "write-backend-error",
        "bad-json-lines",
        "bad-role",
        "bad-stop",
    ],
)
def test_task_errors_carry_no_input(action: Callable[[], object]) -> None:
    assert_clean(action)


@pytest.mark.parametrize(
    "model", ["status-400", "status-500", "garbage", "stream-error", "stream-bad"]
)
def test_http_errors_carry_no_request_or_response_text(
    fake_server: FakeOpenAIServer, model: str
) -> None:
    backend = OpenAICompatBackend(fake_server.url, model, api_key=MARKER)
    messages = [ChatMessage("user", MARKER)]
    if not model.startswith("stream-"):  # (summaries ask for whole completions)
        assert_clean(lambda: backend.complete(messages, GenerationParams()))
        assert_clean(lambda: summarize_cited(backend, marked_chat(), phrasing=True))
    assert_clean(lambda: "".join(backend.stream(messages, GenerationParams())))


@pytest.mark.model
def test_llama_errors_carry_no_input() -> None:
    require_model()
    with LlamaBackend(small_model(), n_ctx=128) as backend:
        long_ask = [ChatMessage("user", MARKER * 100)]
        exc = assert_clean(lambda: backend.complete(long_ask, GenerationParams(max_tokens=8)))
        assert "context window" in str(exc)
        assert_clean(lambda: summarize_cited(backend, marked_chat(5, 20), phrasing=True))


def test_summaries_of_safe_input_still_work() -> None:
    assert summarize(ExtractiveBackend(), SHORT_CHAT, 2)
