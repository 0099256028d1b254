"""Runs the node's tasks on an inference backend, checking inputs without echoing them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from privproc.inference.backend import ChatBackend
from privproc.wire.inner import Task

from .app import TaskInputError, TaskRunner

MAX_MESSAGES = 200
MAX_TEXT = 4000


def _messages(payload: dict[str, Any]) -> list[dict[str, str]]:
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TaskInputError("summarize needs a non-empty 'messages' list")
    if len(messages) > MAX_MESSAGES:
        raise TaskInputError(f"too many messages: {len(messages)}, limit {MAX_MESSAGES}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not all(
                isinstance(m.get(k), str) for k in ("sender", "time", "text")):
            raise TaskInputError(f"message {i} must have string sender, time and text")
        if len(m["text"]) > MAX_TEXT:
            raise TaskInputError(f"message {i} is longer than {MAX_TEXT} characters")
        out.append({"sender": m["sender"], "time": m["time"], "text": m["text"]})
    return out


class EchoRunner:
    """A no-op task (benchmarks and tests): answers with sizes, never with content."""

    def run(self, task: Task, payload: dict[str, Any]) -> list[str]:
        if task is Task.SUMMARIZE:
            return [f"{len(_messages(payload))} messages"]
        draft = payload.get("draft")
        if not isinstance(draft, str):
            raise TaskInputError("write needs a string 'draft'")
        return [f"{len(draft)} characters"]


class InferenceRunner:
    """The two AI tasks on a :mod:`privproc.inference` backend."""

    def __init__(self, backend: ChatBackend) -> None:
        self.backend = backend

    def run(self, task: Task, payload: dict[str, Any]) -> list[str]:
        from privproc.inference import ChatLine, InvalidRequestError, tasks

        try:
            if task is Task.SUMMARIZE:
                lines = [ChatLine(m["sender"], m["time"], m["text"])
                         for m in _messages(payload)]
                max_bullets = payload.get("max_bullets", 5)
                if not isinstance(max_bullets, int) or not 1 <= max_bullets <= 20:
                    raise TaskInputError("max_bullets must be an integer 1..20")
                return list(tasks.summarize(self.backend, lines, max_bullets))
            draft, tone = payload.get("draft"), payload.get("tone")
            if not isinstance(draft, str) or not isinstance(tone, str):
                raise TaskInputError("write needs string 'draft' and 'tone'")
            return list(tasks.write(self.backend, draft, tone))
        except InvalidRequestError as exc:
            raise TaskInputError(str(exc)) from None


def default_model(backend: str) -> Path | None:
    if backend != "llama":
        return None
    from privproc.inference.llama import default_model_path

    path: Path = default_model_path()
    return path


def build_runner(backend: str, model: Path | None, openai_url: str | None,
                 openai_model: str) -> TaskRunner:
    if backend == "echo":
        return EchoRunner()
    if backend == "extractive":
        from privproc.inference.extractive import ExtractiveBackend

        return InferenceRunner(ExtractiveBackend())
    if backend == "openai":
        if not openai_url:
            raise SystemExit("privproc node serve: --backend openai needs --openai-url")
        from privproc.inference.openai_compat import OpenAICompatBackend

        return InferenceRunner(OpenAICompatBackend(openai_url, openai_model))
    from privproc.inference.llama import LlamaBackend

    return InferenceRunner(LlamaBackend(model))
