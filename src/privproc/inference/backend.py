"""The one interface every text-generation backend implements, and its errors.

A backend turns a list of :class:`ChatMessage` into text, all at once (``complete``) or
as it is produced (``stream``). Calls are synchronous; the node service runs them in a
worker process it can kill at the deadline (:mod:`privproc.node.worker`).

Privacy rule for everything in this package: exception messages, ``repr`` output and
log lines carry sizes, counts, statuses and the name of what failed, never request or
response text. A node's tracebacks and logs must not leak what a user asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, runtime_checkable

from privproc.errors import PrivprocError

Role = Literal["system", "user", "assistant"]
ROLES: Final[frozenset[str]] = frozenset({"system", "user", "assistant"})


class InferenceError(PrivprocError):
    """Base class for every error raised by ``privproc.inference``.

    Messages never contain request or response text, only sizes and what failed.
    """


class BackendUnavailableError(InferenceError):
    """The backend cannot serve: model file or package missing, server unreachable."""


class BackendTimeoutError(BackendUnavailableError):
    """The backend did not answer within the configured time."""


class BackendBusyError(BackendUnavailableError):
    """The backend is saturated (lock wait expired, HTTP 429)."""


class GenerationError(InferenceError):
    """Generation started but failed, or produced nothing usable."""


class InvalidRequestError(InferenceError, ValueError):
    """The request is malformed: bad parameter, role, tone or empty input."""


class InputTooLargeError(InvalidRequestError):
    """The request exceeds a limit (message count, characters, context window)."""


class UnsupportedTaskError(InferenceError):
    """The backend cannot perform the requested task (e.g. extractive ``write``)."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a conversation with the model. ``repr`` hides the content."""

    role: Role
    content: str = field(repr=False)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidRequestError(f"message role must be one of {sorted(ROLES)}")
        if not isinstance(self.content, str):
            raise InvalidRequestError(
                f"message content must be str, got {type(self.content).__name__}"
            )

    def __repr__(self) -> str:
        return f"ChatMessage(role={self.role!r}, content=<{len(self.content)} chars>)"


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Decoding parameters. ``temperature == 0`` means greedy, hence deterministic.

    ``repeat_penalty`` (1.0 = off) discourages loops, which tiny models fall into; it is
    deterministic too. Backends that lack it (OpenAI-compatible servers) ignore it.
    """

    max_tokens: int = 256
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    repeat_penalty: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_tokens <= 32768:
            raise InvalidRequestError(f"max_tokens must be in 1..32768, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidRequestError(f"temperature must be in 0.0..2.0, got {self.temperature}")
        if not 0 <= self.seed < 2**32 - 1:
            raise InvalidRequestError("seed must be in 0..2**32-2")
        if not 0.5 <= self.repeat_penalty <= 2.0:
            raise InvalidRequestError(
                f"repeat_penalty must be in 0.5..2.0, got {self.repeat_penalty}"
            )
        if len(self.stop) > 8:
            raise InvalidRequestError(f"at most 8 stop sequences, got {len(self.stop)}")
        for i, s in enumerate(self.stop):
            if not isinstance(s, str) or not s:
                raise InvalidRequestError(f"stop sequence {i} must be a non-empty string")


@dataclass(frozen=True, slots=True)
class ChatLine:
    """One message of the user's chat, the input of the summarize task."""

    sender: str
    time: str
    text: str

    def __post_init__(self) -> None:
        for name in ("sender", "time", "text"):
            if not isinstance(getattr(self, name), str):
                raise InvalidRequestError(f"chat line {name} must be str")

    def __repr__(self) -> str:
        return (
            f"ChatLine(sender=<{len(self.sender)} chars>, time=<{len(self.time)} chars>, "
            f"text=<{len(self.text)} chars>)"
        )


@runtime_checkable
class ChatBackend(Protocol):
    """A text generator. Implementations: llama.cpp, OpenAI-compatible HTTP, extractive."""

    @property
    def name(self) -> str:
        """Short identifier for tables and logs, e.g. ``llama.cpp:model.gguf``."""
        ...

    def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str:
        """Return the assistant's whole reply to ``messages``."""
        ...

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[str]:
        """Yield the assistant's reply in pieces; their concatenation equals ``complete``."""
        ...

    def close(self) -> None:
        """Release the model or connection; idempotent."""
        ...


@runtime_checkable
class ChatSummarizer(Protocol):
    """A backend that summarizes a chat directly instead of following a prompt.

    :func:`privproc.inference.tasks.summarize` calls this when the backend has it (the
    extractive backend does), and prompts a :class:`ChatBackend` otherwise.
    """

    def summarize_chat(
        self, lines: Sequence[ChatLine], max_bullets: int, reader: str | None
    ) -> list[str]:
        """Return at most ``max_bullets`` bullet strings (without the leading dash)."""
        ...


def check_messages(messages: Sequence[ChatMessage]) -> None:
    """Validate a message list shared by every backend (shape only, content unread)."""
    if not messages:
        raise InvalidRequestError("at least one message is required")
    for i, message in enumerate(messages):
        if not isinstance(message, ChatMessage):
            raise InvalidRequestError(
                f"message {i} must be a ChatMessage, got {type(message).__name__}"
            )
    if messages[-1].role == "assistant":
        raise InvalidRequestError("the last message must not be from the assistant")


def first_stop(text: str, stop: Sequence[str]) -> int:
    """Index of the earliest stop sequence in ``text``, or -1."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else -1


def apply_stop(pieces: Iterator[str], stop: Sequence[str]) -> Iterator[str]:
    """Cut a stream of text pieces at the first stop sequence (which is not yielded).

    Holds back ``len(longest stop) - 1`` characters so a stop sequence split across
    pieces is still caught.
    """
    if not stop:
        yield from pieces
        return
    keep = max(len(s) for s in stop) - 1
    buffer = ""
    for piece in pieces:
        buffer += piece
        cut = first_stop(buffer, stop)
        if cut >= 0:
            if cut:
                yield buffer[:cut]
            return
        if len(buffer) > keep:
            emit = len(buffer) - keep
            yield buffer[:emit]
            buffer = buffer[emit:]
    if buffer:
        yield buffer


__all__ = [
    "ROLES",
    "BackendBusyError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "ChatBackend",
    "ChatLine",
    "ChatMessage",
    "ChatSummarizer",
    "GenerationError",
    "GenerationParams",
    "InferenceError",
    "InputTooLargeError",
    "InvalidRequestError",
    "Role",
    "UnsupportedTaskError",
    "apply_stop",
    "check_messages",
    "first_stop",
]
