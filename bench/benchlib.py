"""What the benchmark scripts share: a rate that a busy machine disturbs least, pinning
to one core, and a process's CPU time from /proc."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def rate(fn: Callable[[], object], seconds: float, windows: int = 5, min_count: int = 3
         ) -> float:
    """Operations per second of ``fn``: the best of ``windows`` windows sharing
    ``seconds`` (each runs at least ``min_count`` calls). Other processes on a shared
    machine only ever slow a window down, so the best is the closest to this code's own
    speed (one average over a loaded machine once measured 1,307/s for a path that does
    2,900/s alone)."""
    fn()  # warm up (and fail loudly before timing)
    best = 0.0
    for _ in range(windows):
        count, batch, start = 0, 1, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / windows or count < min_count:
            for _ in range(batch):
                fn()
            count += batch
            batch = min(batch * 2, 64)
        best = max(best, count / elapsed)
    return best


def pin_one_core() -> str:
    """Pin this process (and the children it starts) to one CPU; says which."""
    if hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned"


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time of a process, all its threads (live and exited), or of its
    thread ``tid`` alone."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path, encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
