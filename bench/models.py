"""Model benchmark: the known GGUF models side by side on this machine's CPU cores.

For each model of :data:`privproc.inference.models.MODELS` that is installed, a fresh
process loads it with :class:`LlamaBackend` (the node's backend, one thread per core,
greedy decoding) and measures:

- load time and memory (peak RSS of the process, weights are memory-mapped);
- prompt-processing and generation speed (tokens/s, from the summarize runs);
- a summarize-size request: the node's summarize prompt over a 40-message chat
  (~600 prompt tokens), at most 120 generated tokens;
- a rewrite-size request: the node's "professional" write prompt (~80 prompt tokens),
  at most 60 generated tokens;
- a bullet pipeline: 5 sequential calls, each rewriting 1-3 source messages into one
  bullet (~100-200 prompt tokens, at most 40 generated), as a faithful-summary pipeline
  does for a 40-message chat; its p50 is compared with the 10 s target.

Greedy decoding may stop before the token cap, so next to the measured seconds the table
gives the time at the nominal sizes (600+120 and 80+60 tokens) from the measured speeds.
Run ``.venv/bin/python bench/models.py`` (``--quick``: 1 timed run; ``--models`` picks
some; ``--samples`` prints the outputs). Install the Qwen models first with
``python -m privproc.inference.models install NAME`` or ``make model-quality``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from privproc.inference import BackendUnavailableError, ChatLine, ChatMessage, LlamaBackend, prompts
from privproc.inference.backend import GenerationParams
from privproc.inference.models import MODELS, model_path
from privproc.inference.tasks import summary_messages, write_messages

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
    ChatLine("Carol", "09:30", "Lunch today? Thinking about the new ramen place on Elm Street."),
    ChatLine("Bob", "09:31", "I'm in!"),
    ChatLine("Dave", "09:32", "Me too, but I need to be back by 1:30."),
    ChatLine("Alice", "09:40", "Sam, also please book the team offsite venue for June 12."),
    ChatLine("Carol", "09:41", "The budget for the offsite is 2000 euros max."),
    ChatLine("Bob", "10:02", "Printer on floor 2 is broken again."),
    ChatLine("Dave", "10:05", "I reported it to IT, ticket 4471."),
    ChatLine("Alice", "10:30", "Reminder: expense reports must be submitted by the 30th."),
    ChatLine("Carol", "10:45", "Does anyone have the client's new address?"),
    ChatLine("Bob", "10:47", "I'll dig it up and share it after lunch."),
    ChatLine("Erin", "11:05", "Hi team, I joined today as the new analyst. Happy to meet you!"),
    ChatLine("Alice", "11:06", "Welcome Erin! Sam will show you around this afternoon."),
    ChatLine("Dave", "11:20", "Erin, your laptop is ready at the IT desk, ask for Priya."),
    ChatLine("Carol", "11:45", "The ramen place is full, we moved lunch to the Thai café."),
    ChatLine("Bob", "12:50", "Back from lunch. Client address: 18 Harbour Road, Leeds."),
    ChatLine("Alice", "13:10", "Thanks Bob. Carol, please update the CRM with it."),
    ChatLine("Carol", "13:12", "Done."),
    ChatLine("Dave", "13:40", "Heads-up: the VPN will be down Saturday 8-10am for upgrades."),
    ChatLine("Erin", "14:02", "Where do I find the template for the quarterly report?"),
    ChatLine("Alice", "14:05", "Shared drive, folder Finance/Reports/Q3, file template.docx."),
    ChatLine("Bob", "14:30", "Marketing says the sales numbers might slip to Thursday."),
    ChatLine("Alice", "14:31", "That is too late. Bob, please escalate to Maria today."),
    ChatLine("Bob", "14:45", "Escalated. Maria promised the numbers by Wednesday 5pm."),
    ChatLine("Carol", "15:10", "Offsite options: Lakeview Lodge 1800 euros, Hilltop Inn 2300."),
    ChatLine("Alice", "15:12", "Lakeview fits the budget. Sam, go ahead and book it."),
    ChatLine("Dave", "15:30", "Reminder: fire drill tomorrow at 11am, meet in the car park."),
    ChatLine("Erin", "16:00", "Thanks for the warm welcome everyone!"),
    ChatLine("Bob", "16:20", "I'm off Friday afternoon, Carol covers client calls."),
    ChatLine("Carol", "16:21", "Yes, forward anything urgent to me."),
    ChatLine("Alice", "16:45", "Last thing: Sam, send the offsite agenda draft by Monday."),
    ChatLine("Alice", "17:00", "Thanks everyone, see you at 3 tomorrow."),
]
assert len(CHAT) == 40

# A draft whose "professional" rewrite prompt is about 80 tokens.
DRAFT = (
    "hey, cant make the 3pm call tmrw, dentist thing. can we move it to thursday "
    "morning? i'll send the slides tonight so u can look before. sorry!!"
)

BULLET_SYSTEM = (
    "You turn chat messages into one short summary bullet. Write one sentence in plain "
    "English that says who does what and when. Keep every name, date, time, number and "
    "place exactly as written. Add nothing that the messages do not say."
)
# 1-3 source messages per bullet, as a faithful-summary pipeline picks them.
BULLET_GROUPS = [(0, 1, 2), (3, 12, 33), (4, 6, 7), (26,), (13, 32, 33)]


def bullet_messages(group: tuple[int, ...]) -> list[ChatMessage]:
    lines = "\n".join(f"{CHAT[i].sender} ({CHAT[i].time}): {CHAT[i].text}" for i in group)
    return [
        ChatMessage("system", BULLET_SYSTEM),
        ChatMessage("user", f"Messages:\n{lines}\n\nWrite the bullet for Sam, the reader."),
    ]


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def _busy_elsewhere(interval: float = 0.5) -> float:
    """Fraction of the machine's CPU time used over ``interval`` (this process is idle)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until other work uses under 10% of the CPU; the share
    last seen. Other processes on a 2-core machine stall llama.cpp's threads badly."""
    deadline = time.monotonic() + max_wait
    busy = _busy_elsewhere()
    while busy > 0.10 and time.monotonic() < deadline:
        busy = _busy_elsewhere()
    return busy


def _run(backend: LlamaBackend, messages: list[ChatMessage], max_tokens: int) -> dict[str, Any]:
    params = GenerationParams(
        max_tokens=max_tokens,
        temperature=0.0,
        repeat_penalty=prompts.REPEAT_PENALTY,
    )
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    text = backend.complete(messages, params)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stats = backend.last_stats
    assert stats is not None
    return {
        "seconds": seconds,
        "cpu_share": cpu / (seconds * backend.n_threads),
        "prompt_tokens": stats.prompt_tokens,
        "gen_tokens": stats.completion_tokens,
        "prompt_seconds": stats.prompt_seconds,
        "gen_seconds": stats.generation_seconds,
        "text": text,
    }


def measure(name: str, runs: int, threads: int | None, quiet_wait: float) -> dict[str, Any]:
    """Everything for one model (run in a fresh process so memory is its own)."""
    path = model_path(name)
    wait_quiet(quiet_wait)
    started = time.perf_counter()
    backend = LlamaBackend(path, n_threads=threads)
    load_s = time.perf_counter() - started
    rss_loaded, _ = _rss_mb()

    # The summarize prompt over the first k chat lines, k chosen for ~600 prompt tokens.
    k = len(CHAT)
    while k > 5 and len(backend.prompt_tokens(summary_messages(CHAT[:k], 5, "Sam"))) > 620:
        k -= 1
    summary_prompt = summary_messages(CHAT[:k], 5, "Sam")
    rewrite_prompt = write_messages(DRAFT, "professional")
    busy: list[float] = []

    def timed(messages: list[ChatMessage], max_tokens: int) -> dict[str, Any]:
        busy.append(wait_quiet(quiet_wait))
        return _run(backend, messages, max_tokens)

    _run(backend, rewrite_prompt, 8)  # warm-up, not timed
    out: dict[str, Any] = {
        "name": name,
        "file": path.name,
        "size_mb": path.stat().st_size / 1e6,
        "threads": backend.n_threads,
        "load_s": load_s,
        "rss_loaded_mb": rss_loaded,
        "summary_lines": k,
        "summarize": [timed(summary_prompt, 120) for _ in range(runs)],
        "rewrite": [timed(rewrite_prompt, 60) for _ in range(runs)],
        "pipeline": [],
    }
    for _ in range(runs):
        busy.append(wait_quiet(quiet_wait))
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        calls = [_run(backend, bullet_messages(g), 40) for g in BULLET_GROUPS]
        seconds = time.perf_counter() - t0
        out["pipeline"].append({
            "seconds": seconds,
            "cpu_share": (time.process_time() - cpu0) / (seconds * backend.n_threads),
            "calls": calls,
        })  # fmt: skip
    out["rss_peak_mb"] = _rss_mb()[1]
    out["busy_before"] = max(busy)
    backend.close()
    return out


def _child(name: str, runs: int, threads: int | None, quiet_wait: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", name, "--runs", str(runs),
           "--quiet-wait", str(quiet_wait)]  # fmt: skip
    if threads:
        cmd += ["--threads", str(threads)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{name}: exit {result.returncode}: {result.stderr.strip()[-300:]}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def _rates(runs: list[dict[str, Any]]) -> tuple[float, float]:
    """(prompt tok/s, generation tok/s) over ``runs``."""
    pp = sum(r["prompt_tokens"] for r in runs) / sum(r["prompt_seconds"] for r in runs)
    gen_s = sum(r["gen_seconds"] for r in runs)
    tg = sum(r["gen_tokens"] for r in runs) / gen_s if gen_s else 0.0
    return pp, tg


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ))  # fmt: skip


CLEAN_SHARE = 0.9


def _clean(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs that got at least 90% of their threads' CPU time (all if none did)."""
    return [x for x in runs if x["cpu_share"] >= CLEAN_SHARE] or runs


def report(results: list[dict[str, Any]], target_s: float) -> None:
    rows: list[tuple[str, ...]] = [(
        "model", "MB", "load s", "RSS MB", "pp tok/s", "tg tok/s",
        "summ s (P+G)", "@600+120", "rewr s (P+G)", "@80+60",
        "5 bullets p50 s (P+G/call)", "@40 out", f"<= {target_s:g} s", "clean runs",
        "all-runs p50",
    )]  # fmt: skip
    for r in results:
        summarize, rewrite, pipeline = (_clean(r[k]) for k in ("summarize", "rewrite", "pipeline"))
        pp, tg = _rates(summarize)
        rpp, rtg = _rates(rewrite)
        calls = [c for run in pipeline for c in run["calls"]]
        cpp, ctg = _rates(calls)
        # The 5 calls at their measured prompt sizes, each generating the full 40 tokens.
        pipe40 = sum(c["prompt_tokens"] / cpp + 40 / ctg for c in pipeline[0]["calls"])
        summ = statistics.median(x["seconds"] for x in summarize)
        rewr = statistics.median(x["seconds"] for x in rewrite)
        pipe = statistics.median(x["seconds"] for x in pipeline)
        s0, w0 = summarize[0], rewrite[0]
        everything = [*r["summarize"], *r["rewrite"], *r["pipeline"]]
        clean = sum(x["cpu_share"] >= CLEAN_SHARE for x in everything)
        rows.append((
            r["name"],
            f"{r['size_mb']:.0f}",
            f"{r['load_s']:.2f}",
            f"{r['rss_peak_mb']:.0f}",
            f"{pp:.0f}",
            f"{tg:.1f}",
            f"{summ:.2f} ({s0['prompt_tokens']}+{s0['gen_tokens']})",
            f"{600 / pp + 120 / tg:.2f}" if tg else "-",
            f"{rewr:.2f} ({w0['prompt_tokens']}+{w0['gen_tokens']})",
            f"{80 / rpp + 60 / rtg:.2f}" if rtg else "-",
            f"{pipe:.2f} ({statistics.mean(c['prompt_tokens'] for c in calls):.0f}"
            f"+{statistics.mean(c['gen_tokens'] for c in calls):.0f})",
            f"{pipe40:.2f}" if ctg else "-",
            "yes" if max(pipe, pipe40) <= target_s else "no",
            f"{clean}/{len(everything)}",
            f"{statistics.median(x['seconds'] for x in r['pipeline']):.2f}",
        ))  # fmt: skip
    _table(rows)
    print(
        "\nMB: GGUF file; RSS: peak resident memory of the process; pp/tg: prompt and "
        "generation speed in the summarize runs; s: median seconds per request, with its "
        "(prompt+generated) tokens; @P+G: seconds at those nominal sizes from the measured "
        "speeds; 5 bullets: 5 sequential 1-3-message bullet rewrites (a 40-message summary), "
        "median, and @40 out with every call generating 40 tokens; the target column needs "
        "both within the target. Only clean runs count (those that got >= 90% of their "
        "threads' CPU time: on 2 cores any other busy process stalls llama.cpp's threads, "
        "several times over); all-runs p50 is the bullet pipeline's median over every run."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated names")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per scenario")
    parser.add_argument("--quick", action="store_true", help="1 timed run per scenario")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    parser.add_argument("--target", type=float, default=10.0, help="pipeline target, s")
    parser.add_argument("--samples", action="store_true", help="print each model's outputs")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="before each timed run, wait up to this many seconds for the "
                        "machine to be idle")  # fmt: skip
    parser.add_argument("--report", type=Path, default=None,
                        help="print the table of an earlier --json file, measure nothing")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    runs = 1 if args.quick else max(1, args.runs)

    if args.report:
        report(json.loads(args.report.read_text(encoding="utf-8")), args.target)
        return 0

    if args.child:
        print(json.dumps(measure(args.child, runs, args.threads, args.quiet_wait)))
        return 0

    load_before = os.getloadavg()[0]
    results = []
    for name in args.models.split(","):
        try:
            model_path(name)
        except BackendUnavailableError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        results.append(_child(name, runs, args.threads, args.quiet_wait))
    if not results:
        print("no model installed", file=sys.stderr)
        return 1
    threads = results[0]["threads"]
    print(f"models on {threads} llama.cpp threads ({os.cpu_count()} cores), greedy, {runs} "
          f"timed runs per scenario, summarize prompt over {results[0]['summary_lines']} chat "
          f"lines; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
          "(other work on the machine slows every number)")  # fmt: skip
    report(results, args.target)
    if args.samples:
        for r in results:
            print(f"\n== {r['name']}\nsummarize:\n{r['summarize'][0]['text'].strip()}")
            print(f"rewrite:\n{r['rewrite'][0]['text'].strip()}\nbullets:")
            for call in r["pipeline"][0]["calls"]:
                print(f"- {call['text'].strip()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
