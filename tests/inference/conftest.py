"""Fixtures: the three backends, a fake OpenAI-compatible server, small chats."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from privproc.inference import (
    BackendUnavailableError,
    ChatLine,
    ExtractiveBackend,
    LlamaBackend,
    OpenAICompatBackend,
)
from privproc.inference.llama import default_model_path
from privproc.inference.models import SMALL_MODEL, model_path

from .fake_openai import FakeOpenAIServer, running_server

SHORT_CHAT = [
    ChatLine("Alice", "09:02", "Reminder: the quarterly report is due Friday."),
    ChatLine("Bob", "09:05", "I still need the sales numbers from marketing."),
    ChatLine("Carol", "09:07", "I will send the sales numbers by Wednesday noon."),
    ChatLine("Alice", "09:10", "Sam, can you review the draft slides before Thursday?"),
    ChatLine("Bob", "09:12", "The client meeting moved to 3pm tomorrow, online."),
]


def require_model() -> None:
    """Skip (or, under CI, fail) when the default or the small model is not installed."""
    try:
        default_model_path()
        model_path(SMALL_MODEL)
    except BackendUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the embedded-model tests are required in CI: {exc}")
        pytest.skip(f"embedded llama tests need the installed models (make install): {exc}")


def small_model() -> Path:
    """The small, fast model (SmolLM2-135M) the backend's mechanics are tested on: what
    is tested is llama.cpp's plumbing, not the wording."""
    require_model()
    return model_path(SMALL_MODEL)


@pytest.fixture(scope="session")
def llama() -> Iterator[LlamaBackend]:
    backend = LlamaBackend(small_model())
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeOpenAIServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def openai(fake_server: FakeOpenAIServer) -> Iterator[OpenAICompatBackend]:
    backend = OpenAICompatBackend(fake_server.url, "echo", api_key="sk-test", timeout=5)
    yield backend
    backend.close()


@pytest.fixture(params=[pytest.param("llama", marks=pytest.mark.model), "openai"])
def chat_backend(request: pytest.FixtureRequest) -> LlamaBackend | OpenAICompatBackend:
    """Every backend that does free-form generation."""
    backend: LlamaBackend | OpenAICompatBackend = request.getfixturevalue(request.param)
    return backend


@pytest.fixture(params=[pytest.param("llama", marks=pytest.mark.model), "openai",
                        "extractive"])
def summary_backend(
    request: pytest.FixtureRequest,
) -> LlamaBackend | OpenAICompatBackend | ExtractiveBackend:
    """Every backend that can summarize."""
    if request.param == "extractive":
        return ExtractiveBackend()
    backend: LlamaBackend | OpenAICompatBackend = request.getfixturevalue(request.param)
    return backend
