"""Runs the node's tasks on an inference backend, checking inputs without echoing them.

The node runs these in worker processes (:mod:`.worker`): :func:`worker_spec` names
:func:`make_runner` and its arguments, and each worker calls it once, at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from privproc.inference.backend import ChatBackend
from privproc.wire import limits
from privproc.wire.inner import Task

from .core import TaskInputError, TaskOutput, TaskRunner
from .worker import WorkerSpec


def _summary_input(payload: dict[str, Any]) -> tuple[list[dict[str, str]], int, str | None]:
    """The messages, bullet count and reader of a summarize payload, within the request
    limits the client checks too (:mod:`privproc.wire.limits`)."""
    messages, max_bullets = payload.get("messages"), payload.get("max_bullets", 5)
    reader = payload.get("reader")
    try:
        limits.check_summary_request(messages, max_bullets, reader)
    except limits.RequestInputError as exc:
        raise TaskInputError(str(exc)) from None
    assert isinstance(messages, list) and isinstance(max_bullets, int)
    return messages, max_bullets, reader if isinstance(reader, str) else None


def _write_input(payload: dict[str, Any]) -> tuple[str, str]:
    draft, tone = payload.get("draft"), payload.get("tone")
    try:
        limits.check_write_request(draft, tone)
    except limits.RequestInputError as exc:
        raise TaskInputError(str(exc)) from None
    assert isinstance(draft, str) and isinstance(tone, str)
    return draft, tone


class EchoRunner:
    """A no-op task (benchmarks and tests): answers with sizes, never with content."""

    def run(self, task: Task, payload: dict[str, Any]) -> list[str]:
        if task is Task.SUMMARIZE:
            return [f"{len(_summary_input(payload)[0])} messages"]
        return [f"{len(_write_input(payload)[0])} characters"]


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
                messages, max_bullets, reader = _summary_input(payload)
                lines = [ChatLine(m["sender"], m["time"], m["text"]) for m in messages]
                bullets = tasks.summarize_cited(self.backend, lines, max_bullets,
                                                reader=reader or None)
                return TaskOutput([b.text for b in bullets],
                                  {"sources": [list(b.sources) for b in bullets]})
            draft, tone = _write_input(payload)
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
