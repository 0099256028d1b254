"""Load under attack: 64 clients for 60 s through relay, gateway and two echo nodes while a
rogue party registers junk nodes and asks for oversized upstream answers.

Reports the clients' success rate, throughput and latency, the rogue's answers, and the
gateway's peak resident memory (sampled from /proc every 0.2 s). Loopback only, bounded
in count and time. ``--quick``: 16 clients for 15 s. Tokens are fetched before the timed
window (the issuer is started with a quota that allows it).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from privproc.client.errors import ClientError
from privproc.client.sdk import PrivateProcessingClient
from privproc.client.tokens import TokenWallet
from privproc.client.trust import load_trust
from privproc.up.system import start

CHAT = [{"sender": "Ana", "time": "2026-01-01T10:00", "text": "lunch at noon?"}] * 10


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--node-concurrency", type=int, default=8,
                        help="worker processes per echo node (default 8)")
    args = parser.parse_args()
    clients = args.clients or (16 if args.quick else 64)
    seconds = args.seconds or (15.0 if args.quick else 60.0)
    # Tokens: more than a client can spend in the run (the path serves ~450 req/s here;
    # a quota too tight for it shows up as QuotaExceededError, which is not the attack).
    per_client = max(40, int(seconds * 800 / clients) + 20)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        # Echo nodes with room for the load: queueing beyond a node's concurrency is not
        # what this measures.
        system = start(state, nodes=2, backend="echo",
                       issuer_quota=3 * clients * per_client + 2000,
                       node_extra=("--concurrency", str(args.node_concurrency)))
        try:
            run(system, state, clients, seconds, per_client)
        finally:
            system.sup.stop_all()


def run(system: object, state: Path, clients: int, seconds: float, per_client: int) -> None:
    from privproc.up.system import System

    assert isinstance(system, System)
    trust = load_trust(system.client_config)
    assert trust.tokens is not None
    print(f"preparing {clients} clients ({per_client} tokens each) ...", flush=True)
    pool: list[PrivateProcessingClient] = []
    for _ in range(clients):
        wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token, None,
                             batch=per_client)
        client = PrivateProcessingClient(trust, tokens=wallet)
        client.refresh()  # fetches the client's tokens ahead of the timed window
        client.verified_nodes()
        pool.append(client)
    gateway_pid = system.sup.services["gateway"].process.pid
    baseline_rss = rss_kib(gateway_pid)
    stop = threading.Event()
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    rogue: Counter[str] = Counter()
    lock = threading.Lock()
    peak = [baseline_rss]

    def worker(client: PrivateProcessingClient) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                client.summarize(CHAT)
                outcome = "ok"
            except ClientError as exc:
                outcome = f"{type(exc).__name__}: {str(exc)[:70]}"
            with lock:
                outcomes[outcome] += 1
                if outcome == "ok":
                    latencies.append(time.perf_counter() - started)

    def attacker() -> None:
        token = (state / "node-token").read_text().strip()
        wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token, None,
                             batch=50)
        oversized = PrivateProcessingClient(trust, tokens=wallet)
        junk = [b"{}", b"[" * 100_000, b'{"version":1,"url":"http://10.0.0.1:1"}']
        i = 0
        while not stop.is_set():
            i += 1
            request = urllib.request.Request(
                system.urls["gateway"] + "/nodes/register", data=junk[i % len(junk)],
                headers={"Authorization": f"Bearer {token if i % 2 else 'guess'}"},
                method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    rogue[f"register {resp.status}"] += 1
            except urllib.error.HTTPError as exc:
                rogue[f"register {exc.code}"] += 1
            if i % 10 == 0:  # 400 MB asked of the origin, through OHTTP
                try:
                    answer = oversized.ohttp.request("GET", "/?size=400000000")
                    rogue[f"oversized answer {answer.status}"] += 1
                except ClientError as exc:
                    rogue[f"oversized {type(exc).__name__}"] += 1

    def sampler() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(gateway_pid))
            time.sleep(0.2)

    threads = [threading.Thread(target=worker, args=(c,)) for c in pool]
    threads += [threading.Thread(target=attacker), threading.Thread(target=sampler)]
    print(f"running {clients} clients and a rogue party for {seconds:.0f} s ...", flush=True)
    began = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    total = sum(outcomes.values())
    ok = outcomes["ok"]
    lat = sorted(latencies)
    print()
    print("| clients | seconds | requests | success | req/s | p50 ms | p99 ms | "
          "gateway RSS start MB | gateway RSS peak MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {clients} | {elapsed:.0f} | {total} | {100 * ok / max(total, 1):.2f} % | "
          f"{ok / elapsed:.1f} | {statistics.median(lat) * 1000 if lat else 0:.1f} | "
          f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0:.1f} | "
          f"{baseline_rss / 1024:.0f} | {peak[0] / 1024:.0f} |")
    print()
    print("client failures:", dict(outcomes - Counter(ok=ok)) or "none")
    print("rogue party's answers:", dict(rogue))


if __name__ == "__main__":
    main()
