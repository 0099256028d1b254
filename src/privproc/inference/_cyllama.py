"""Narrow typed wrapper over cyllama's low-level llama.cpp binding (which has no stubs).

Everything untyped stays in this module; :mod:`privproc.inference.llama` sees only the
small :class:`NativeModel` / :class:`NativeContext` surface below. The low-level API is
used (rather than ``cyllama.LLM``) because it lets us set the thread count, tokenize
message content apart from the template's special tokens, and stream clean UTF-8.

Exceptions raised by cyllama may quote their input (e.g. a message dict in a
``ValueError``), so callers translate them with ``from None`` and report only the
exception type.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from typing import Any, cast


@functools.cache
def _llama() -> Any:
    """Import cyllama's native module once, with llama.cpp's own logging switched off."""
    # Imported by name: cyllama ships no stubs, so its objects are Any in here.
    llama_cpp = importlib.import_module("cyllama.llama.llama_cpp")
    llama_cpp.disable_logging()
    llama_cpp.ggml_backend_load_all()
    return llama_cpp


def available() -> bool:
    """Whether cyllama's native module imports."""
    try:
        _llama()
    except ImportError:
        return False
    return True


class NativeContext:
    """One llama.cpp context (KV cache) bound to a :class:`NativeModel`."""

    def __init__(self, model: NativeModel, n_ctx: int, n_batch: int, n_threads: int) -> None:
        lib = _llama()
        params = lib.LlamaContextParams()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = min(n_batch, 512)
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.no_perf = True
        self._lib = lib
        self._ctx: Any = lib.LlamaContext(model.raw, params)
        self.n_ctx = n_ctx
        self.n_batch = n_batch

    def clear(self) -> None:
        self._ctx.kv_cache_clear()

    def decode(self, tokens: Sequence[int], pos: int) -> None:
        """Evaluate ``tokens`` at positions ``pos, pos+1, ...`` (chunked by n_batch)."""
        for start in range(0, len(tokens), self.n_batch):
            chunk = list(tokens[start : start + self.n_batch])
            self._ctx.decode(self._lib.llama_batch_get_one(chunk, pos + start))

    def close(self) -> None:
        self._ctx.close()


class NativeSampler:
    """A sampler chain: greedy at temperature 0, else min-p / top-k / top-p / temperature."""

    def __init__(self, temperature: float, seed: int, repeat_penalty: float) -> None:
        lib = _llama()
        params = lib.LlamaSamplerChainParams()
        params.no_perf = True
        sampler = lib.LlamaSampler(params)
        if repeat_penalty != 1.0:
            sampler.add_penalties(64, repeat_penalty, 0.0, 0.0)
        if temperature == 0.0:
            sampler.add_greedy()
        else:
            sampler.add_min_p(0.05, 1)
            sampler.add_top_k(40)
            sampler.add_top_p(0.95, 1)
            sampler.add_temp(temperature)
            sampler.add_dist(seed)
        self._sampler: Any = sampler

    def sample(self, ctx: NativeContext) -> int:
        """Pick (and accept) the next token from the context's last logits."""
        return int(self._sampler.sample(ctx._ctx, -1))

    def close(self) -> None:
        self._sampler.close()


class NativeModel:
    """A loaded GGUF model: weights, vocabulary and chat template."""

    def __init__(self, path: str) -> None:
        lib = _llama()
        params = lib.LlamaModelParams()
        params.n_gpu_layers = 0
        self.raw: Any = lib.LlamaModel(path, params)
        self._vocab: Any = self.raw.get_vocab()
        self.n_ctx_train = int(self.raw.n_ctx_train)
        self.add_bos = bool(self._vocab.get_add_bos())

    def chat_template(self) -> str:
        return str(self.raw.get_default_chat_template() or "")

    def apply_template(self, template: str, turns: Sequence[tuple[str, str]]) -> str:
        """Render ``(role, content)`` turns with llama.cpp's built-in template engine."""
        lib = _llama()
        messages = [lib.LlamaChatMessage(role=role, content=content) for role, content in turns]
        return cast(str, self.raw.chat_apply_template(template, messages, True))

    def tokenize(self, text: str, *, special: bool, add_bos: bool = False) -> list[int]:
        """Tokenize; ``special`` lets control-token text (``<|im_start|>``) become tokens."""
        tokens = self._vocab.tokenize(text, add_special=add_bos, parse_special=special)
        return [int(t) for t in tokens]

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text of ``tokens`` without special tokens; incomplete UTF-8 ends in U+FFFD."""
        if not tokens:
            return ""
        return cast(
            str, self._vocab.detokenize(list(tokens), remove_special=False, unparse_special=False)
        )

    def is_end(self, token: int) -> bool:
        return bool(self._vocab.is_eog(token))

    def bos(self) -> int:
        return int(self._vocab.token_bos())

    def close(self) -> None:
        self.raw.close()
