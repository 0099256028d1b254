"""Faithfulness of the two AI tasks on the evaluation set (tests/data), per system.

Summaries (``tests/data/eval_chats.json``, 32 chats, reader "Sam"), per system:

- **recall**: the share of annotated must-mention facts the summary states (any of each
  fact's surface forms, matched as README "Matching" says);
- **invented**: facts in the summary (numbers, times, dates, amounts, names, emoji) that
  no message of the chat contains (``privproc.inference.facts.unsupported``), in total;
- **stale**: superseded values stated without their correction (``must_not``);
- **misattributed**: must-not claims credited to the wrong person;
- **attribution**: of the bullets that name a person, the share whose person sent the
  message the bullet is closest to;
- **s p50 / s (40 msgs)**: seconds per summary, the median over all chats and the
  median over the 40-message chats, on this machine.

Systems: ``today-extractive`` and ``today-model`` are what the node did before the
faithful pipeline (the extractive summarizer's "Sender: text" bullets; the model
prompted with the whole chat); ``pipeline`` is the faithful pipeline with written
bullets; ``pipeline+model`` lets the model rephrase each bullet, checked.

Rewrites (``tests/data/eval_drafts.json``, 30 drafts): **protected** (the share of
protected items kept), **invented** (facts not in the draft, as written or spelled
right), **fallback** (the share
answered with the corrected draft), **s p50**; ``today`` is the raw model rewrite.

``.venv/bin/python bench/quality.py [--quick] [--no-model] [--model NAME_OR_GGUF ...]``:
``--quick`` uses 8 chats and 10 drafts; ``--no-model`` skips the model systems;
``--model`` adds models (a GGUF path, or a name from ``privproc.inference.models`` once
installed) next to the default; ``--rewrites-only`` skips the model summary systems.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.data.matching import mentions, sentences, states_superseded  # noqa: E402

from privproc.inference import ChatLine, LlamaBackend  # noqa: E402
from privproc.inference.backend import ChatBackend  # noqa: E402
from privproc.inference.chat import name_forms  # noqa: E402
from privproc.inference.extractive import extract  # noqa: E402
from privproc.inference.facts import unsupported  # noqa: E402
from privproc.inference.rewrite import light_correction  # noqa: E402
from privproc.inference.tasks import (  # noqa: E402
    parse_bullets,
    parse_rewrite,
    summarize_cited,
    summary_messages,
    summary_params,
    write_checked,
    write_messages,
    write_params,
)

DATA = ROOT / "tests" / "data"
Summarizer = Callable[[list[ChatLine], str], list[str]]


@dataclass
class SummaryScores:
    facts: int = 0
    matched: int = 0
    invented: int = 0
    stale: int = 0
    misattributed: int = 0
    named: int = 0
    attributed_right: int = 0
    seconds: list[float] = field(default_factory=list)
    seconds_40: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)


def _content(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9£$€:]{3,}", text.lower())
            if w not in {"the", "and", "you", "for", "with", "that", "this", "are", "was"}}


def _first_sender(bullet: str, senders: Sequence[str]) -> str | None:
    best: tuple[int, str] | None = None
    lowered = bullet.lower()
    for sender in senders:
        for form in name_forms(sender):
            m = re.search(rf"(?<!\w){re.escape(form)}(?!\w)", lowered)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), sender)
    return best[1] if best else None


def attribution(bullet: str, chat: dict[str, Any]) -> bool | None:
    """Whether the person a bullet names first sent the message closest to it (None:
    the bullet names nobody)."""
    messages = chat["messages"]
    senders = sorted({m["sender"] for m in messages})
    named = _first_sender(bullet, senders)
    if named is None:
        return None
    words = _content(bullet) - {w for s in senders for w in name_forms(s)}
    scores = [len(words & _content(m["text"])) for m in messages]
    top = max(scores) if scores else 0
    if top == 0:
        return None
    return any(messages[i]["sender"] == named for i, s in enumerate(scores) if s == top)


def clauses(summary: str) -> list[str]:
    """Sentences, and the clauses a bullet joins with ";" (each may have its speaker)."""
    return [c for s in sentences(summary) for c in re.split(r";\s+", s) if c.strip()]


def misattributed(item: dict[str, Any], summary: str) -> bool:
    claim = _content(item["claim"])
    for sentence in clauses(summary):
        if _first_sender(sentence, [item["speaker"]]) and claim and (
                len(claim & _content(sentence)) / len(claim) >= 0.6):
            return True
    return False


def score_summary(chat: dict[str, Any], bullets: list[str], scores: SummaryScores) -> None:
    summary = "\n".join(bullets)
    for fact in chat["must_mention"]:
        scores.facts += 1
        scores.matched += any(mentions(form, summary) for form in fact["any_of"])
    texts = [m["text"] for m in chat["messages"]]
    names = [m["sender"] for m in chat["messages"]] + [chat["reader"]]
    scores.invented += len(unsupported(summary, texts, allowed_names=names))
    for item in chat["must_not"]:
        if item["kind"] == "superseded":
            scores.stale += states_superseded(item, summary)
        else:
            scores.misattributed += misattributed(item, summary)
    for bullet in bullets:
        right = attribution(bullet, chat)
        if right is not None:
            scores.named += 1
            scores.attributed_right += right


def lines_of(chat: dict[str, Any]) -> list[ChatLine]:
    return [ChatLine(m["sender"], m["time"], m["text"]) for m in chat["messages"]]


def run_summaries(name: str, summarize: Summarizer, chats: list[dict[str, Any]]
                  ) -> SummaryScores:
    scores = SummaryScores()
    for chat in chats:
        started = time.perf_counter()
        try:
            bullets = summarize(lines_of(chat), chat["reader"])
        except Exception as exc:  # noqa: BLE001 - a failed summary scores as empty
            print(f"  {name} {chat['id']}: {type(exc).__name__}", file=sys.stderr)
            bullets = []
        elapsed = time.perf_counter() - started
        scores.seconds.append(elapsed)
        if len(chat["messages"]) >= 40:
            scores.seconds_40.append(elapsed)
        score_summary(chat, bullets, scores)
        if len(scores.examples) < 2:
            scores.examples.append(f"{chat['id']}: " + " | ".join(bullets))
    return scores


def today_model(backend: ChatBackend) -> Summarizer:
    def summarize(lines: list[ChatLine], reader: str) -> list[str]:
        output = backend.complete(summary_messages(lines, 5, reader), summary_params(5))
        return parse_bullets(output, 5)

    return summarize


def pipeline(backend: Any, phrasing: bool) -> Summarizer:
    def summarize(lines: list[ChatLine], reader: str) -> list[str]:
        return [b.text for b in summarize_cited(backend, lines, 5, reader=reader,
                                                phrasing=phrasing)]

    return summarize


@dataclass
class RewriteScores:
    items: int = 0
    kept: int = 0
    invented: int = 0
    fallbacks: int = 0
    drafts: int = 0
    seconds: list[float] = field(default_factory=list)


def run_rewrites(write: Callable[[str, str], tuple[str, bool]], drafts: list[dict[str, Any]]
                 ) -> RewriteScores:
    scores = RewriteScores()
    for draft in drafts:
        started = time.perf_counter()
        try:
            text, fallback = write(draft["draft"], draft["tone"])
        except Exception as exc:  # noqa: BLE001
            print(f"  rewrite {draft['id']}: {type(exc).__name__}", file=sys.stderr)
            text, fallback = "", False
        scores.seconds.append(time.perf_counter() - started)
        scores.drafts += 1
        scores.fallbacks += fallback
        for item in draft["protected"]["items"]:
            scores.items += 1
            scores.kept += any(mentions(form, text) for form in item["any_of"])
        # the draft as written or spelled right ("tomorrow" for "tommorow" is not new)
        sources = [draft["draft"], light_correction(draft["draft"])]
        scores.invented += len(unsupported(text, sources)) if text else 0
    return scores


def today_write(backend: ChatBackend) -> Callable[[str, str], tuple[str, bool]]:
    def write(draft: str, tone: str) -> tuple[str, bool]:
        output = backend.complete(write_messages(draft, tone), write_params(draft))
        return parse_rewrite(output) or "", False

    return write


def checked_write(backend: ChatBackend) -> Callable[[str, str], tuple[str, bool]]:
    def write(draft: str, tone: str) -> tuple[str, bool]:
        rewrite = write_checked(backend, draft, tone)
        return rewrite.text, "fallback" in rewrite.flags

    return write


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def load_backend(spec: str | None) -> tuple[str, ChatBackend]:
    if spec is None:
        from privproc.inference.models import DEFAULT_MODEL

        return DEFAULT_MODEL, LlamaBackend()
    path = Path(spec)
    if not path.exists():
        from privproc.inference.models import model_path

        path = model_path(spec)
    return spec, LlamaBackend(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-model", action="store_true",
                        help="measure only the systems without a model (seconds)")
    parser.add_argument("--rewrites-only", action="store_true",
                        help="with a model, measure only rewrites (summaries do not use it)")
    parser.add_argument("--model", action="append", default=[],
                        help="another model to measure (GGUF path or registered name)")
    args = parser.parse_args()
    chats = json.loads((DATA / "eval_chats.json").read_text())
    drafts = json.loads((DATA / "eval_drafts.json").read_text())
    if args.quick:
        chats, drafts = chats[:8], drafts[:10]
    rows: list[tuple[str, SummaryScores]] = []
    rewrite_rows: list[tuple[str, RewriteScores]] = []
    from privproc.inference import ExtractiveBackend

    rows.append(("today-extractive", run_summaries(
        "today-extractive", lambda lines, reader: extract(lines, 5, reader), chats)))
    rows.append(("pipeline (no model)", run_summaries(
        "pipeline", pipeline(ExtractiveBackend(), False), chats)))
    for spec in [] if args.no_model else [None, *args.model]:
        label, backend = load_backend(spec)
        try:
            print(f"measuring {label} ...", file=sys.stderr, flush=True)
            if not args.rewrites_only:
                rows.append((f"today-model ({label})", run_summaries(
                    label, today_model(backend), chats)))
                rows.append((f"pipeline+model ({label})", run_summaries(
                    label, pipeline(backend, True), chats)))
            rewrite_rows.append((f"today ({label})", run_rewrites(today_write(backend), drafts)))
            rewrite_rows.append((f"checked ({label})", run_rewrites(checked_write(backend),
                                                                    drafts)))
        finally:
            backend.close()
    rewrite_rows.append(("no model (corrected draft)", run_rewrites(
        checked_write(ExtractiveBackend()), drafts)))  # type: ignore[arg-type]

    print(f"\nSummaries: {len(chats)} chats, {sum(len(c['must_mention']) for c in chats)} "
          "must-mention facts")
    print("| system | recall | invented | stale | misattributed | attribution | s p50 | "
          "s (40 msgs) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in rows:
        attribution_rate = s.attributed_right / s.named if s.named else 0.0
        print(f"| {name} | {s.matched / s.facts:.2f} | {s.invented} | {s.stale} | "
              f"{s.misattributed} | {100 * attribution_rate:.0f} % ({s.named}) | "
              f"{_median(s.seconds)} | {_median(s.seconds_40)} |")
    print(f"\nRewrites: {len(drafts)} drafts, "
          f"{sum(len(d['protected']['items']) for d in drafts)} protected items")
    print("| system | protected | invented | fallback | s p50 |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rewrite_rows:
        print(f"| {name} | {100 * r.kept / r.items:.0f} % | {r.invented} | "
              f"{100 * r.fallbacks / r.drafts:.0f} % | {_median(r.seconds)} |")
    print("\nExamples:")
    for name, s in rows:
        for example in s.examples[:1]:
            print(f"  {name}: {example[:300]}")


if __name__ == "__main__":
    main()
