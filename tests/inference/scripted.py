"""A fake ChatBackend that plays back scripted outputs and records what it was asked."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from privproc.inference import ChatMessage, GenerationParams


class ScriptedBackend:
    name = "scripted"

    def __init__(self, *outputs: str, error: Exception | None = None) -> None:
        self.outputs = list(outputs)
        self.error = error
        self.calls: list[tuple[list[ChatMessage], GenerationParams]] = []
        self.pieces_consumed = 0
        self.stream_closed_early = False

    def _next(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str:
        self.calls.append((list(messages), params))
        if self.error is not None:
            raise self.error
        return self.outputs.pop(0) if self.outputs else ""

    def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str:
        return self._next(messages, params)

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[str]:
        text = self._next(messages, params)
        pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
        finished = False
        try:
            for piece in pieces:
                self.pieces_consumed += 1
                yield piece
            finished = True
        finally:
            self.stream_closed_early = not finished

    def close(self) -> None:
        pass
