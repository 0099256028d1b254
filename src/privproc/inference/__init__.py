"""Text generation for the processing node: backends and the two AI tasks.

- :mod:`.backend`: the :class:`ChatBackend` interface, parameters and errors.
- :mod:`.llama`: embedded llama.cpp (cyllama; llama-cpp-python as an alternative) on a
  GGUF model, by default :data:`.models.DEFAULT_MODEL` (pinned by SHA-256 in :mod:`.models`).
- :mod:`.openai_compat`: any OpenAI-compatible HTTP server.
- :mod:`.extractive`: a model-free extractive summarizer.
- :mod:`.prompts` / :mod:`.tasks`: ``summarize`` and ``write``.

Importing this package loads no model and no native library.
"""

from .backend import (
    BackendBusyError,
    BackendTimeoutError,
    BackendUnavailableError,
    ChatBackend,
    ChatLine,
    ChatMessage,
    ChatSummarizer,
    GenerationError,
    GenerationParams,
    InferenceError,
    InputTooLargeError,
    InvalidRequestError,
    UnsupportedTaskError,
)
from .extractive import ExtractiveBackend
from .llama import LlamaBackend, LlamaCppPythonBackend, default_model_path, open_llama_backend
from .openai_compat import OpenAICompatBackend
from .prompts import PROMPTS_VERSION
from .tasks import TONES, Limits, summarize, write

__all__ = [
    "PROMPTS_VERSION",
    "TONES",
    "BackendBusyError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "ChatBackend",
    "ChatLine",
    "ChatMessage",
    "ChatSummarizer",
    "ExtractiveBackend",
    "GenerationError",
    "GenerationParams",
    "InferenceError",
    "InputTooLargeError",
    "InvalidRequestError",
    "Limits",
    "LlamaBackend",
    "LlamaCppPythonBackend",
    "OpenAICompatBackend",
    "UnsupportedTaskError",
    "default_model_path",
    "open_llama_backend",
    "summarize",
    "write",
]
