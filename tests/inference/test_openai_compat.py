"""OpenAI-compatible backend against the fake loopback server: wire format and errors."""

from __future__ import annotations

import socket

import pytest

from privproc.inference import (
    BackendBusyError,
    BackendTimeoutError,
    BackendUnavailableError,
    ChatMessage,
    GenerationError,
    GenerationParams,
    InferenceError,
    InputTooLargeError,
    InvalidRequestError,
    OpenAICompatBackend,
)

from .fake_openai import FakeOpenAIServer

ASK = [ChatMessage("system", "Be brief."), ChatMessage("user", "hello world")]


def test_request_wire_format(fake_server: FakeOpenAIServer, openai: OpenAICompatBackend) -> None:
    params = GenerationParams(max_tokens=7, temperature=0.5, stop=("END",), seed=42)
    assert openai.complete(ASK, params) == "You said: hello world"
    headers, body = fake_server.requests[-1]
    assert headers["Authorization"] == "Bearer sk-test"
    assert headers["Content-Type"] == "application/json"
    assert body == {
        "model": "echo",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello world"},
        ],
        "max_tokens": 7,
        "temperature": 0.5,
        "seed": 42,
        "stream": False,
        "stop": ["END"],
    }
    "".join(openai.stream(ASK, params))
    headers, body = fake_server.requests[-1]
    assert body["stream"] is True
    assert headers["Accept"] == "text/event-stream"


def test_no_api_key_no_authorization(fake_server: FakeOpenAIServer) -> None:
    OpenAICompatBackend(fake_server.url, "echo").complete(ASK, GenerationParams())
    headers, _ = fake_server.requests[-1]
    assert "Authorization" not in headers


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_base_url_with_or_without_v1(fake_server: FakeOpenAIServer, suffix: str) -> None:
    backend = OpenAICompatBackend(fake_server.url + suffix, "echo")
    assert backend.url == fake_server.url + "/v1/chat/completions"
    assert backend.complete(ASK, GenerationParams())


def test_repr_hides_the_api_key(fake_server: FakeOpenAIServer) -> None:
    backend = OpenAICompatBackend(fake_server.url, "echo", api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(backend)


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        (400, InvalidRequestError, "invalid"),
        (401, BackendUnavailableError, "credentials"),
        (403, BackendUnavailableError, "credentials"),
        (404, BackendUnavailableError, "no such endpoint"),
        (408, BackendTimeoutError, "timed out"),
        (413, InputTooLargeError, "too large"),
        (422, InvalidRequestError, "invalid"),
        (429, BackendBusyError, "rate limiting"),
        (500, BackendUnavailableError, "failed"),
        (503, BackendUnavailableError, "failed"),
        (418, GenerationError, "unexpected HTTP 418"),
    ],
)
@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
def test_http_status_mapping(
    fake_server: FakeOpenAIServer,
    status: int,
    error: type[InferenceError],
    match: str,
    streaming: bool,
) -> None:
    backend = OpenAICompatBackend(fake_server.url, f"status-{status}")
    with pytest.raises(error, match=match) as info:
        if streaming:
            "".join(backend.stream(ASK, GenerationParams()))
        else:
            backend.complete(ASK, GenerationParams())
    assert f"HTTP {status}" in str(info.value)


def test_wrong_path_is_404(fake_server: FakeOpenAIServer) -> None:
    backend = OpenAICompatBackend(fake_server.url + "/other", "echo")
    with pytest.raises(BackendUnavailableError, match="HTTP 404"):
        backend.complete(ASK, GenerationParams())


def test_unreachable_server() -> None:
    with socket.socket() as sock:  # bound and held, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        backend = OpenAICompatBackend(f"http://127.0.0.1:{port}", "echo", timeout=2)
        with pytest.raises(BackendUnavailableError,
                           match=rf"cannot reach server 127.0.0.1:{port}"):
            backend.complete(ASK, GenerationParams())


def test_read_timeout(fake_server: FakeOpenAIServer) -> None:
    backend = OpenAICompatBackend(fake_server.url, "slow", timeout=0.3)
    with pytest.raises(BackendTimeoutError, match=r"0\.3 s"):
        backend.complete(ASK, GenerationParams())


def test_non_json_answer(fake_server: FakeOpenAIServer) -> None:
    backend = OpenAICompatBackend(fake_server.url, "garbage")
    with pytest.raises(GenerationError, match=r"answered \d+ bytes that are not a chat completion"):
        backend.complete(ASK, GenerationParams())


def test_stream_falls_back_to_plain_json(fake_server: FakeOpenAIServer) -> None:
    backend = OpenAICompatBackend(fake_server.url, "no-stream")
    assert list(backend.stream(ASK, GenerationParams())) == ["You said: hello world"]


def test_stream_ending_without_done(fake_server: FakeOpenAIServer) -> None:
    backend = OpenAICompatBackend(fake_server.url, "no-done")
    assert "".join(backend.stream(ASK, GenerationParams())) == "You said: hello world"


def test_stream_error_event(fake_server: FakeOpenAIServer) -> None:
    backend = OpenAICompatBackend(fake_server.url, "stream-error")
    pieces: list[str] = []
    with pytest.raises(GenerationError, match="reported an error mid-stream"):
        pieces.extend(backend.stream(ASK, GenerationParams()))
    assert "".join(pieces) == "You s"


def test_stream_bad_event(fake_server: FakeOpenAIServer) -> None:
    backend = OpenAICompatBackend(fake_server.url, "stream-bad")
    with pytest.raises(GenerationError, match="stream event that is not JSON"):
        "".join(backend.stream(ASK, GenerationParams()))


def test_local_stop_applies_to_streams(openai: OpenAICompatBackend) -> None:
    # The fake honours stop itself; a stop split across SSE chunks must still hold.
    assert "".join(openai.stream(ASK, GenerationParams(stop=("world",)))) == "You said: hello "


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "ftp://x", "model": "m"}, "http:// or https://"),
        ({"base_url": "http://", "model": "m"}, "with a host"),
        ({"base_url": "http://x", "model": ""}, "model name is empty"),
        ({"base_url": "http://x", "model": "m", "timeout": 0}, "positive"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        OpenAICompatBackend(**kwargs)  # type: ignore[arg-type]


def test_env_proxy_is_ignored(
    fake_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "")
    assert OpenAICompatBackend(fake_server.url, "echo").complete(ASK, GenerationParams())
