"""A backend for any OpenAI-compatible server (llama.cpp server, vLLM, Ollama, ...).

``POST {base}/v1/chat/completions``, plain JSON or Server-Sent Events streaming, with
the standard library only (synchronous; the node calls it from a worker process).

Every failure becomes an :class:`~.backend.InferenceError` whose message gives the HTTP
status, sizes and the server's address, never the request or response body (a server
error page may echo the prompt). Underlying exceptions are not chained for the same
reason.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from http.client import HTTPResponse
from typing import Any, Final

from privproc import jsondoc

from .backend import (
    BackendBusyError,
    BackendTimeoutError,
    BackendUnavailableError,
    ChatMessage,
    GenerationError,
    GenerationParams,
    InferenceError,
    InputTooLargeError,
    InvalidRequestError,
    apply_stop,
    check_messages,
)

MAX_RESPONSE_BYTES: Final = 4 << 20
MAX_LINE_BYTES: Final = 1 << 20


def _status_error(status: int, where: str) -> InferenceError:
    if status in (401, 403):
        return BackendUnavailableError(f"{where} refused the credentials (HTTP {status})")
    if status == 404:
        return BackendUnavailableError(f"{where} has no such endpoint or model (HTTP 404)")
    if status in (408, 504):
        return BackendTimeoutError(f"{where} timed out (HTTP {status})")
    if status == 413:
        return InputTooLargeError(f"{where} rejected the request as too large (HTTP 413)")
    if status == 429:
        return BackendBusyError(f"{where} is rate limiting (HTTP 429)")
    if status in (400, 422):
        return InvalidRequestError(f"{where} rejected the request as invalid (HTTP {status})")
    if status >= 500:
        return BackendUnavailableError(f"{where} failed (HTTP {status})")
    return GenerationError(f"{where} answered an unexpected HTTP {status}")


class OpenAICompatBackend:
    """Chat completions over HTTP from an OpenAI-compatible server."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        deadline: float = 300.0,
        use_env_proxy: bool = False,
    ) -> None:
        """``timeout`` bounds connecting and each read; ``deadline`` a whole generation.

        ``*_proxy`` environment variables are ignored unless ``use_env_proxy``: requests
        carry user text and go straight to the configured server.
        """
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InvalidRequestError("base_url must be an http:// or https:// URL with a host")
        if not model:
            raise InvalidRequestError("model name is empty")
        if timeout <= 0 or deadline <= 0:
            raise InvalidRequestError("timeout and deadline must be positive")
        path = parsed.path.rstrip("/")
        if not path.endswith("/v1"):
            path += "/v1"
        self.url = urllib.parse.urlunsplit(
            (parsed.scheme, parsed.netloc, path + "/chat/completions", "", "")
        )
        self.model = model
        self.timeout = timeout
        self.deadline = deadline
        self._api_key = api_key
        self._where = f"server {parsed.hostname}:{parsed.port or ''}".rstrip(":")
        self._closed = False
        handlers = [] if use_env_proxy else [urllib.request.ProxyHandler({})]
        self._opener = urllib.request.build_opener(*handlers)

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def __repr__(self) -> str:  # keeps the API key out of logs
        return f"OpenAICompatBackend(url={self.url!r}, model={self.model!r})"

    def _open(
        self, messages: Sequence[ChatMessage], params: GenerationParams, stream: bool
    ) -> HTTPResponse:
        check_messages(messages)
        if self._closed:
            raise BackendUnavailableError("backend is closed")
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "seed": params.seed,
            "stream": stream,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        data = json.dumps(body, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
            raise _status_error(status, self._where) from None
        except TimeoutError:
            raise BackendTimeoutError(
                f"{self._where} did not answer within {self.timeout} s"
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise BackendTimeoutError(
                    f"{self._where} did not answer within {self.timeout} s"
                ) from None
            raise BackendUnavailableError(
                f"cannot reach {self._where} ({type(reason).__name__})"
            ) from None
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot reach {self._where} ({type(exc).__name__})"
            ) from None
        if not isinstance(response, HTTPResponse):  # pragma: no cover - non-HTTP handler
            response.close()
            raise BackendUnavailableError(f"{self._where} did not answer over HTTP")
        return response

    def _read_error(self, exc: BaseException) -> InferenceError:
        if isinstance(exc, TimeoutError):
            return BackendTimeoutError(f"{self._where} stalled for more than {self.timeout} s")
        return BackendUnavailableError(
            f"connection to {self._where} failed mid-response ({type(exc).__name__})"
        )

    def _parse_completion(self, raw: bytes) -> str:
        try:
            payload = jsondoc.parse(raw)
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise GenerationError(
                f"{self._where} answered {len(raw)} bytes that are not a chat completion"
            ) from None
        if content is None:
            return ""
        if not isinstance(content, str):
            raise GenerationError(f"{self._where} answered non-text message content")
        return content

    def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str:
        response = self._open(messages, params, stream=False)
        with response:
            try:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
            except OSError as exc:
                raise self._read_error(exc) from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise GenerationError(f"{self._where} answered more than {MAX_RESPONSE_BYTES} bytes")
        text = self._parse_completion(raw)
        return "".join(apply_stop(iter([text]), params.stop))

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[str]:
        response = self._open(messages, params, stream=True)
        with response:
            if "text/event-stream" not in response.headers.get("Content-Type", ""):
                # A server that ignores "stream": true answers one JSON completion.
                try:
                    raw = response.read(MAX_RESPONSE_BYTES + 1)
                except OSError as exc:
                    raise self._read_error(exc) from None
                text = self._parse_completion(raw[:MAX_RESPONSE_BYTES])
                yield from apply_stop(iter([text]), params.stop)
                return
            yield from apply_stop(self._events(response), params.stop)

    def _events(self, response: HTTPResponse) -> Iterator[str]:
        """Text deltas of an SSE chat-completion stream, until ``[DONE]`` or EOF."""
        started = time.monotonic()
        data: list[str] = []
        while True:
            if time.monotonic() - started > self.deadline:
                raise BackendTimeoutError(
                    f"{self._where} exceeded the {self.deadline} s generation deadline"
                )
            try:
                raw = response.readline(MAX_LINE_BYTES + 1)
            except OSError as exc:
                raise self._read_error(exc) from None
            if len(raw) > MAX_LINE_BYTES:
                raise GenerationError(
                    f"{self._where} sent an event line over {MAX_LINE_BYTES} bytes"
                )
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if raw and line:
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                continue  # comments (":"), "event:", "id:", "retry:" are ignored
            # Blank line (or EOF): dispatch the event.
            if data:
                event, data = "\n".join(data), []
                if event.strip() == "[DONE]":
                    return
                delta = self._delta(event)
                if delta:
                    yield delta
            if not raw:
                return

    def _delta(self, event: str) -> str:
        try:
            payload = jsondoc.parse(event)
        except ValueError:
            raise GenerationError(
                f"{self._where} sent a {len(event)}-byte stream event that is not JSON"
            ) from None
        if not isinstance(payload, dict):
            raise GenerationError(f"{self._where} sent a stream event that is not an object")
        if "error" in payload:
            raise GenerationError(f"{self._where} reported an error mid-stream")
        try:
            choices = payload["choices"]
            if not choices:
                return ""  # e.g. a final usage-only chunk
            content = (choices[0].get("delta") or {}).get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise GenerationError(
                f"{self._where} sent a stream event that is not a chat-completion chunk"
            ) from None
        if content is None:
            return ""
        if not isinstance(content, str):
            raise GenerationError(f"{self._where} streamed non-text content")
        return content

    def close(self) -> None:
        self._closed = True


__all__ = ["OpenAICompatBackend"]
