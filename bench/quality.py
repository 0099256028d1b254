"""Quality benchmark: ROUGE of the two AI tasks on the evaluation set.

Reads ``tests/data/eval_chats.json`` (list of ``{"id", "topic", "messages": [{"sender",
"time", "text"}], "reference_summary": [bullets]}``) and ``tests/data/eval_drafts.json``
(list of ``{"id", "tone", "draft", "reference"}``).

Summaries: ROUGE-1, ROUGE-2 and ROUGE-L F1 (rouge-score, Porter stemming; ROUGE-L is the
summary-level ``rougeLsum`` with one bullet per line) against the reference bullets, for
the embedded llama backend and the extractive backend next to a lead-3 baseline (the
first three messages), with seconds per summary. Drafts: ROUGE-L F1 of the llama
backend's first ``write`` suggestion against the reference, per tone, next to the
unchanged draft as a baseline.

``.venv/bin/python bench/quality.py [--quick]``; ``--quick`` uses the first 5 chats and
the first 10 drafts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rouge_score import rouge_scorer  # type: ignore[import-untyped]

from privproc.inference import (
    PROMPTS_VERSION,
    TONES,
    ChatLine,
    ExtractiveBackend,
    InferenceError,
    LlamaBackend,
    summarize,
    write,
)

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
CHATS = DATA / "eval_chats.json"
DRAFTS = DATA / "eval_drafts.json"
METRICS = ("rouge1", "rouge2", "rougeLsum")


class DataError(Exception):
    pass


@dataclass(frozen=True)
class Chat:
    id: str
    lines: list[ChatLine]
    reference: list[str]
    reader: str | None


@dataclass(frozen=True)
class Draft:
    id: str
    tone: str
    draft: str
    reference: str


def _load(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(
            f"evaluation data missing: {path} does not exist (the evaluation set lives in "
            "tests/data/eval_chats.json and tests/data/eval_drafts.json)"
        )
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise DataError(f"{path} must hold a JSON list of objects")
    return value


def load_chats(path: Path) -> list[Chat]:
    chats = []
    for i, item in enumerate(_load(path)):
        try:
            lines = [ChatLine(m["sender"], m.get("time", ""), m["text"]) for m in item["messages"]]
            reference = [str(b) for b in item["reference_summary"]]
        except (KeyError, TypeError, InferenceError) as exc:
            raise DataError(f"{path.name} item {i}: bad or missing field ({exc})") from None
        if not lines or not reference:
            raise DataError(f"{path.name} item {i}: empty messages or reference_summary")
        reader = item.get("reader")
        chats.append(
            Chat(
                str(item.get("id", i)),
                lines,
                reference,
                reader if isinstance(reader, str) else None,
            )
        )
    return chats


def load_drafts(path: Path) -> list[Draft]:
    drafts = []
    for i, item in enumerate(_load(path)):
        try:
            draft = Draft(str(item.get("id", i)), item["tone"], item["draft"], item["reference"])
        except KeyError as exc:
            raise DataError(f"{path.name} item {i}: missing field {exc}") from None
        if draft.tone not in TONES:
            raise DataError(f"{path.name} item {i}: tone {draft.tone!r} is not one of {TONES}")
        drafts.append(draft)
    return drafts


def lead3(chat: Chat) -> list[str]:
    return [f"{line.sender}: {line.text}" for line in chat.lines if line.text.strip()][:3]


def table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def eval_summaries(chats: list[Chat], llama: LlamaBackend | None, bullets: int) -> None:
    scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)
    extractive = ExtractiveBackend()
    systems: list[tuple[str, Callable[[Chat], list[str]]]] = [("lead-3", lead3)]
    systems.append(
        (extractive.name, lambda c: summarize(extractive, c.lines, bullets, reader=c.reader))
    )
    if llama is not None:
        systems.append((llama.name, lambda c: summarize(llama, c.lines, bullets, reader=c.reader)))
    rows = [("summaries", "ROUGE-1", "ROUGE-2", "ROUGE-L", "s/summary", "failed")]
    for name, system in systems:
        scores: dict[str, list[float]] = defaultdict(list)
        seconds: list[float] = []
        failed = 0
        for chat in chats:
            started = time.perf_counter()
            try:
                output = system(chat)
            except InferenceError:
                output, failed = [], failed + 1
            seconds.append(time.perf_counter() - started)
            result = scorer.score("\n".join(chat.reference), "\n".join(output))
            for metric in METRICS:
                scores[metric].append(result[metric].fmeasure)
        rows.append(
            (
                name,
                *(f"{statistics.mean(scores[m]):.3f}" for m in METRICS),
                f"{statistics.mean(seconds):.3f}",
                str(failed),
            )
        )
    print(f"summaries: {len(chats)} chats, max {bullets} bullets, prompts v{PROMPTS_VERSION}")
    table(rows)


def eval_drafts(drafts: list[Draft], llama: LlamaBackend) -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    by_tone: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    failed: dict[str, int] = defaultdict(int)
    for draft in drafts:
        started = time.perf_counter()
        try:
            output = write(llama, draft.draft, draft.tone)[0]
        except InferenceError:
            output = ""
            failed[draft.tone] += 1
        by_tone[draft.tone]["seconds"].append(time.perf_counter() - started)
        by_tone[draft.tone]["model"].append(
            scorer.score(draft.reference, output)["rougeL"].fmeasure
        )
        by_tone[draft.tone]["draft"].append(
            scorer.score(draft.reference, draft.draft)["rougeL"].fmeasure
        )
    rows = [("write (llama)", "n", "ROUGE-L", "unchanged draft", "s/rewrite", "failed")]
    for tone in [t for t in TONES if t in by_tone]:
        s = by_tone[tone]
        rows.append(
            (
                tone,
                str(len(s["model"])),
                f"{statistics.mean(s['model']):.3f}",
                f"{statistics.mean(s['draft']):.3f}",
                f"{statistics.mean(s['seconds']):.2f}",
                str(failed[tone]),
            )
        )
    everything = [by_tone[t] for t in by_tone]
    rows.append(
        (
            "all",
            str(len(drafts)),
            f"{statistics.mean(x for s in everything for x in s['model']):.3f}",
            f"{statistics.mean(x for s in everything for x in s['draft']):.3f}",
            f"{statistics.mean(x for s in everything for x in s['seconds']):.2f}",
            str(sum(failed.values())),
        )
    )
    print(f"\ndrafts: {len(drafts)} drafts, model {llama.model_path.name}")
    table(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first 5 chats and 10 drafts")
    parser.add_argument("--bullets", type=int, default=5, help="max bullets per summary")
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: SmolLM2)")
    parser.add_argument("--no-llama", action="store_true", help="skip the embedded model")
    args = parser.parse_args()
    try:
        chats = load_chats(CHATS)
        drafts = load_drafts(DRAFTS)
    except DataError as exc:
        print(f"bench/quality.py: {exc}", file=sys.stderr)
        return 1
    if args.quick:
        chats, drafts = chats[:5], drafts[:10]
    llama = None
    if not args.no_llama:
        try:
            llama = LlamaBackend(args.model)
        except InferenceError as exc:
            print(f"bench/quality.py: cannot load the embedded model: {exc}", file=sys.stderr)
            return 1
    try:
        eval_summaries(chats, llama, args.bullets)
        if llama is not None and drafts:
            eval_drafts(drafts, llama)
    finally:
        if llama is not None:
            llama.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
