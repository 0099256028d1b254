"""Inference benchmark: the summarize task on a 20-message chat with the embedded model.

Prints seconds per summary, prompt and generation speed (tokens/s, of the last model call
of a summary) and summaries per minute for the default model rephrasing the bullets
(``phrasing=True``; the node's summaries use no model by default,
``prompts.MODEL_PHRASING``) (``privproc.inference.models.DEFAULT_MODEL``, llama.cpp,
one thread per core), next to the model-free extractive summarizer. Run with ``make bench`` or
``.venv/bin/python bench/inference.py``; ``--quick`` runs fewer summaries; ``--model``
takes any GGUF file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from privproc.inference import (
    PROMPTS_VERSION,
    BackendUnavailableError,
    ChatLine,
    ExtractiveBackend,
    LlamaBackend,
    summarize,
)
from privproc.inference.tasks import summarize_cited

CHAT = [
    ChatLine("Alice", "09:02", "Morning all! Reminder that the quarterly report is due Friday."),
    ChatLine("Bob", "09:05", "Thanks. I still need the sales numbers from marketing."),
    ChatLine("Carol", "09:07", "I'll send the sales numbers by Wednesday noon."),
    ChatLine("Alice", "09:10", "Great. Sam, can you review the draft slides before Thursday?"),
    ChatLine("Bob", "09:12", "Also the client meeting moved to 3pm tomorrow."),
    ChatLine("Carol", "09:15", "Is it still in room 4B?"),
    ChatLine("Bob", "09:16", "No, it's online now, link in the calendar invite."),
    ChatLine("Dave", "09:20", "I can't join tomorrow, dentist appointment."),
    ChatLine("Alice", "09:21", "No problem Dave, we'll record it."),
    ChatLine("Carol", "09:30", "Lunch today? Thinking about the new ramen place."),
    ChatLine("Bob", "09:31", "I'm in!"),
    ChatLine("Dave", "09:32", "Me too."),
    ChatLine("Alice", "09:40", "Sam, also please book the team offsite venue for June 12."),
    ChatLine("Carol", "09:41", "The budget for the offsite is 2000 euros max."),
    ChatLine("Bob", "10:02", "Printer on floor 2 is broken again."),
    ChatLine("Dave", "10:05", "I reported it to IT, ticket 4471."),
    ChatLine("Alice", "10:30", "Reminder: expense reports must be submitted by the 30th."),
    ChatLine("Carol", "10:45", "Does anyone have the client's new address?"),
    ChatLine("Bob", "10:47", "I'll dig it up and share it after lunch."),
    ChatLine("Alice", "11:00", "Thanks everyone, see you at 3 tomorrow."),
]
assert len(CHAT) == 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 timed summaries instead of 5")
    parser.add_argument("--runs", type=int, default=None, help="timed summaries per backend")
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default model)")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    parser.add_argument("--bullets", type=int, default=5, help="max bullets per summary")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 5)

    started = time.perf_counter()
    try:
        llama = LlamaBackend(args.model, n_threads=args.threads)
    except BackendUnavailableError as exc:
        print(f"cannot load the embedded model: {exc}", file=sys.stderr)
        return 1
    load_s = time.perf_counter() - started
    # Summaries use the model only to rephrase bullets, and only where
    # prompts.MODEL_PHRASING says so (off by default: the node's summaries are the
    # model-free pipeline, the extractive row below). phrasing=True measures the model.
    def with_model() -> list[str]:
        return [b.text for b in summarize_cited(llama, CHAT, args.bullets, reader="Sam",
                                                phrasing=True)]

    with_model()  # warm-up, not timed

    seconds: list[float] = []
    prompt_tps: list[float] = []
    gen_tps: list[float] = []
    prompt_tokens: list[int] = []
    gen_tokens: list[int] = []
    bullets: list[str] = []
    for _ in range(runs):
        llama.last_stats = None
        t0 = time.perf_counter()
        bullets = with_model()
        seconds.append(time.perf_counter() - t0)
        stats = llama.last_stats  # the last model call of the summary
        if stats is None:
            continue
        prompt_tokens.append(stats.prompt_tokens)
        gen_tokens.append(stats.completion_tokens)
        prompt_tps.append(stats.prompt_tokens / stats.prompt_seconds)
        gen_tps.append(stats.tokens_per_second)
    llama.close()

    def avg(values: list[float] | list[int], fmt: str) -> str:
        return format(statistics.mean(values), fmt) if values else "-"

    extractive = ExtractiveBackend()
    ext_seconds = []
    for _ in range(max(runs, 20)):
        t0 = time.perf_counter()
        summarize(extractive, CHAT, args.bullets, reader="Sam")
        ext_seconds.append(time.perf_counter() - t0)

    mean = statistics.mean(seconds)
    ext_mean = statistics.mean(ext_seconds)
    print(
        f"summarize, 20-message chat, prompts v{PROMPTS_VERSION}, {runs} runs, "
        f"{llama.n_threads} threads, model {llama.model_path.name} (loaded in {load_s:.2f} s)"
    )
    rows = [
        (
            "backend",
            "s/summary",
            "min s",
            "summaries/min",
            "prompt tok",
            "prompt tok/s",
            "gen tok",
            "gen tok/s",
        ),
        (
            f"{llama.name} (model phrasing)",
            f"{mean:.2f}",
            f"{min(seconds):.2f}",
            f"{60 / mean:.1f}",
            avg(prompt_tokens, ".0f"),
            avg(prompt_tps, ".0f"),
            avg(gen_tokens, ".0f"),
            avg(gen_tps, ".1f"),
        ),
        (
            f"{extractive.name} (the node's default pipeline)",
            f"{ext_mean:.4f}",
            f"{min(ext_seconds):.4f}",
            f"{60 / ext_mean:.0f}",
            "-",
            "-",
            "-",
            "-",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print("\nlast summary:")
    for bullet in bullets:
        print(f"- {bullet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
