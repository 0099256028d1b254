"""Runs the node's tasks on an inference backend, checking inputs without echoing them.

The node runs these in worker processes (:mod:`.worker`): :func:`worker_spec` names
:func:`make_runner` and its arguments, and each worker calls it once, at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from privproc.inference.backend import ChatBackend
from privproc.wire.inner import Task

from .core import TaskInputError, TaskOutput, TaskRunner
from .worker import WorkerSpec

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

    def warm(self) -> None:
        """Run the model once on a tiny prompt, so its weights are paged in and the first
        user's request is as fast as the next (the worker reports ready only after)."""
        from privproc.inference.backend import ChatMessage, GenerationParams

        self.backend.complete([ChatMessage("user", "Hello")], GenerationParams(max_tokens=2))

    def run(self, task: Task, payload: dict[str, Any]) -> TaskOutput:
        from privproc.inference import ChatLine, InvalidRequestError, tasks

        try:
            if task is Task.SUMMARIZE:
                lines = [ChatLine(m["sender"], m["time"], m["text"])
                         for m in _messages(payload)]
                max_bullets = payload.get("max_bullets", 5)
                if not isinstance(max_bullets, int) or not 1 <= max_bullets <= 20:
                    raise TaskInputError("max_bullets must be an integer 1..20")
                reader = payload.get("reader")
                if reader is not None and (not isinstance(reader, str) or len(reader) > 64):
                    raise TaskInputError("reader must be a name of at most 64 characters")
                bullets = tasks.summarize_cited(self.backend, lines, max_bullets,
                                                reader=reader or None)
                return TaskOutput([b.text for b in bullets],
                                  {"sources": [list(b.sources) for b in bullets]})
            draft, tone = payload.get("draft"), payload.get("tone")
            if not isinstance(draft, str) or not isinstance(tone, str):
                raise TaskInputError("write needs string 'draft' and 'tone'")
            rewrite = tasks.write_checked(self.backend, draft, tone)
            return TaskOutput([rewrite.text], {"flags": list(rewrite.flags)})
        except InvalidRequestError as exc:
            raise TaskInputError(str(exc)) from None


def default_model(backend: str) -> Path | None:
    if backend != "llama":
        return None
    from privproc.inference.llama import default_model_path

    path: Path = default_model_path()
    return path


def build_runner(backend: str, model: Path | None, openai_url: str | None,
                 openai_model: str, n_threads: int | None = None) -> TaskRunner:
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

    return InferenceRunner(LlamaBackend(model, n_threads=n_threads))


def make_runner(backend: str, model: str | None = None, openai_url: str | None = None,
                openai_model: str = "default", n_threads: int | None = None) -> TaskRunner:
    """The runner a worker process makes at start (JSON arguments; see worker_spec)."""
    runner = build_runner(backend, Path(model) if model else None, openai_url, openai_model,
                          n_threads)
    if backend == "llama" and isinstance(runner, InferenceRunner):
        runner.warm()
    return runner


def worker_spec(backend: str, model: Path | None, openai_url: str | None, openai_model: str,
                concurrency: int) -> WorkerSpec:
    """What each of ``concurrency`` workers loads. An embedded model gets an equal share
    of the cores per worker, so that busy workers do not oversubscribe them."""
    if backend == "openai" and not openai_url:
        raise SystemExit("privproc node serve: --backend openai needs --openai-url")
    n_threads = None
    if backend == "llama":
        from privproc.inference.llama import cpu_threads

        n_threads = max(1, cpu_threads() // max(1, concurrency))
    return WorkerSpec("privproc.node.runner:make_runner", {
        "backend": backend, "model": str(model.resolve()) if model else None,
        "openai_url": openai_url, "openai_model": openai_model, "n_threads": n_threads})
