"""The request path under overload: echo nodes at their default concurrency, many clients.

For 1 and 2 echo nodes (``privproc.up.system.start(..., backend="echo")``, each node at
its defaults: ``--concurrency 2``, the default queue) and c = 1, 8, 32 concurrent
clients, each client with its own SDK object and its own token wallet (batch 100, empty
at the start, the issuer's quota large) calls ``summarize`` in a loop for ``--seconds``
(default 20). Printed per row: successful requests/s, error % (failed calls over all),
p50/p99 latency of every call, the share of successful calls per node, token fetches
(HTTP exchanges with the issuer that asked for tokens) and tokens fetched, and "stall":
the longest time in which no call of any client succeeded. ``--stop``
adds a row with 2 nodes and 8 clients in which one node is stopped (SIGSTOP) for 10 s
in the middle of the run.

Run: ``.venv/bin/python bench/overload.py`` (``--quick``: 5 s per row). To measure
another tree with the same script, put its ``src`` first: ``PYTHONPATH=/tmp/base/src
.venv/bin/python bench/overload.py``. Options the SDK of that tree lacks
(``per_node_timeout``) are left out.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import os
import signal
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from privproc.client.errors import ClientError
from privproc.client.sdk import PrivateProcessingClient
from privproc.client.tokens import TokenWallet
from privproc.client.trust import load_trust
from privproc.up.system import System, start

CHAT = [{"sender": "Ana", "time": "2026-01-01T10:00", "text": "lunch at noon?"},
        {"sender": "Sam", "time": "2026-01-01T10:01", "text": "yes, the usual place"}]
BATCH = 100
PER_NODE_TIMEOUT = 2.0  # echo nodes answer in milliseconds: 2 s without one is a hang


class Counting:
    """Counts a wallet's token fetches: exchanges that asked for tokens, tokens added."""

    def __init__(self, wallet: TokenWallet) -> None:
        self.exchanges = 0
        self.tokens = 0
        self.lock = threading.Lock()
        http, fetch = wallet._http, wallet._fetch

        def counted_http(url: str, data: bytes | None = None,
                         headers: dict[str, str] | None = None) -> bytes:
            if data is not None:
                with self.lock:
                    self.exchanges += 1
            return http(url, data, headers)

        def counted_fetch(challenge: Any, count: Any) -> int:
            added = fetch(challenge, count)
            with self.lock:
                self.tokens += added
            return added

        wallet._http = counted_http  # type: ignore[method-assign]
        wallet._fetch = counted_fetch  # type: ignore[method-assign]


def make_client(system: System) -> tuple[PrivateProcessingClient, Counting]:
    trust = load_trust(system.client_config)
    assert trust.tokens is not None
    wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token, None,
                         batch=BATCH)
    counting = Counting(wallet)
    kwargs: dict[str, Any] = {"tokens": wallet}
    if "per_node_timeout" in inspect.signature(PrivateProcessingClient.__init__).parameters:
        kwargs["per_node_timeout"] = PER_NODE_TIMEOUT
    client = PrivateProcessingClient(trust, **kwargs)
    client.start()  # log, keys (and here: the background schedule), not the issuer
    client.verified_nodes()
    return client, counting


def row(system: System, clients: int, seconds: float, stop_node: str | None = None
        ) -> dict[str, Any]:
    pool = [make_client(system) for _ in range(clients)]
    stop = threading.Event()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    share: Counter[str] = Counter()
    ok = [0]
    done_at: list[float] = []  # when each successful call ended

    def worker(client: PrivateProcessingClient) -> None:
        while not stop.is_set():
            began = time.perf_counter()
            try:
                result = client.summarize(CHAT)
            except ClientError as exc:
                with lock:
                    latencies.append(time.perf_counter() - began)
                    errors[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
                continue
            with lock:
                done_at.append(time.perf_counter())
                latencies.append(done_at[-1] - began)
                ok[0] += 1
                share[result.receipt.node_id] += 1

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c, _ in pool]
    began = time.perf_counter()
    for t in threads:
        t.start()
    if stop_node is not None:
        pid = system.sup.services[stop_node].process.pid
        time.sleep(seconds / 2 - 5)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(10)
        os.kill(pid, signal.SIGCONT)
        time.sleep(max(0.0, seconds - (time.perf_counter() - began)))
    else:
        time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.perf_counter() - began
    for client, _ in pool:
        client.close()
    total = ok[0] + sum(errors.values())
    ordered = sorted(latencies)
    # the longest time in which no call succeeded (every client stalled)
    ends = sorted([began, *done_at, began + elapsed])
    stall = max(b - a for a, b in itertools.pairwise(ends))

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

    return {
        "rps": ok[0] / elapsed, "errors": 100 * sum(errors.values()) / max(1, total),
        "p50": statistics.median(ordered) * 1000 if ordered else 0.0, "p99": pct(0.99),
        "stall": stall,
        "share": sorted((v * 100 / max(1, ok[0]) for v in share.values()), reverse=True),
        "fetches": sum(c.exchanges for _, c in pool), "tokens": sum(c.tokens for _, c in pool),
        "why": errors.most_common(2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="5 s per row")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated (default 1,8,32)")
    parser.add_argument("--nodes", default="1,2", help="comma-separated (default 1,2)")
    parser.add_argument("--stop", action="store_true",
                        help="add a row: 2 nodes, 8 clients, one node stopped for 10 s")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else args.seconds
    header = (f"{'nodes':>5} {'clients':>7} {'req/s':>7} {'err %':>6} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'stall s':>7}  {'share per node %':<18} {'fetches':>7} "
              f"{'tokens':>7}")
    print(header)
    print("-" * len(header), flush=True)
    node_counts = [int(n) for n in args.nodes.split(",")]
    for nodes in node_counts:
        with tempfile.TemporaryDirectory() as tmp:
            system = start(Path(tmp), nodes=nodes, backend="echo", issuer_quota=10_000_000)
            try:
                plan: list[tuple[int, str | None]] = [
                    (int(c), None) for c in args.clients.split(",")]
                if args.stop and nodes == 2:
                    plan.append((8, "node-1"))
                for clients, stopped in plan:
                    r = row(system, clients, max(seconds, 20.0) if stopped else seconds,
                            stopped)
                    shares = "/".join(f"{s:.0f}" for s in r["share"]) or "-"
                    label = f"{clients}" + (" +STOP" if stopped else "")
                    print(f"{nodes:>5} {label:>7} {r['rps']:>7.1f} {r['errors']:>6.1f} "
                          f"{r['p50']:>7.0f} {r['p99']:>7.0f} {r['stall']:>7.1f}  {shares:<18} "
                          f"{r['fetches']:>7} {r['tokens']:>7}", flush=True)
                    for why, n in r["why"]:
                        print(f"{'':>14}{n} x {why}", flush=True)
            finally:
                system.stop()


if __name__ == "__main__":
    main()
