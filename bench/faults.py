"""Load and fault benchmark: the whole system under steady load, then while its parts are
killed, on loopback, bounded in time.

``privproc up``'s system with 2 echo nodes (the restarts are ``up``'s: a
:class:`privproc.up.supervisor.Restarter` polls in the background, as ``privproc up``
does). Then:

1. load: c = 1, 8 and 32 concurrent clients, ``--seconds`` each (default 20; the issue
   asks 60 s, ``--seconds 60`` does that), sequential summaries through relay, gateway
   and node; errors, req/s, p50/p99 and each node's share;
2. faults, under c = 8: ``kill -9`` of the gateway, the issuer, node-0 and the log, then
   ``SIGSTOP`` of node-1 for 10 s, each followed by a recovery window. Per fault: failed
   requests (those in flight at the kill, and those started after it), time until the
   throughput is back to 90 % of the pre-fault rate (1 s sliding window), and, for the log,
   records published during the kill whose acknowledged index is not the record's index
   after the restart (lost acknowledged records; must be 0);
3. after recovery: each node's share of the traffic (target: within 20 % of an even share),
   tokens accepted twice (the last token of every successful request is sent again through
   the relay: each must be refused; must be 0), and the RSS of every service at start,
   after each load level, after each fault's window and at the end.

``--quick``: 5 s per load level and 10 s recovery windows. Each client is an SDK client
started as an app starts it (``client.start()``: background refresh of the node
directory, keys and tokens); the numbers depend on the client's retry, hedging and
refresh handling (privproc.client) as the tree has it (``--per-node-timeout`` sets the
SDK's hedging delay).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from privproc.client.errors import ClientError
from privproc.client.sdk import PER_NODE_TIMEOUT, PrivateProcessingClient
from privproc.client.tokens import TokenWallet
from privproc.client.trust import load_trust
from privproc.tlog.keys import load_or_create_signer
from privproc.tlog.publish import PublishError, publish
from privproc.tlog.record import ReleaseRecord
from privproc.up.supervisor import Restarter, RestartPolicy, ServiceFailed
from privproc.up.system import System, start
from privproc.wire import privacypass as pp

CHAT = [{"sender": "Ana", "time": "2026-01-01T10:00", "text": "lunch at noon?"}] * 10
LEVELS = (1, 8, 32)
FAULT_CLIENTS = 8
STOP_SECONDS = 10.0
RECOVERED = 0.9  # share of the pre-fault throughput that counts as recovered


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RecordingWallet(TokenWallet):
    """A wallet that remembers the tokens it hands out (to send them again at the end)."""

    taken: list[pp.Token]

    def take(self, challenge: pp.TokenChallenge) -> pp.Token:
        token = super().take(challenge)
        self.taken.append(token)
        return token


@dataclass
class Outcome:
    start: float
    end: float
    ok: bool
    node: str = ""
    error: str = ""


@dataclass
class Run:
    """Every request's outcome, and the last token of every successful one."""

    outcomes: list[Outcome] = field(default_factory=list)
    accepted: list[tuple[float, pp.Token]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def between(self, t0: float, t1: float) -> list[Outcome]:
        return [o for o in self.outcomes if t0 <= o.end < t1]


def drive(pool: list[tuple[PrivateProcessingClient, RecordingWallet]], run: Run,
          until: float) -> list[threading.Thread]:
    """One thread per client, sending summaries until ``until`` (perf_counter)."""

    def worker(client: PrivateProcessingClient, wallet: RecordingWallet) -> None:
        while time.perf_counter() < until:
            wallet.taken.clear()
            began = time.perf_counter()
            try:
                result = client.summarize(CHAT)
                outcome = Outcome(began, time.perf_counter(), True, result.receipt.node_id)
            except ClientError as exc:
                outcome = Outcome(began, time.perf_counter(), False,
                                  error=f"{type(exc).__name__}: {str(exc)[:60]}")
            with run.lock:
                run.outcomes.append(outcome)
                if outcome.ok and wallet.taken:
                    run.accepted.append((outcome.end, wallet.taken[-1]))

    threads = [threading.Thread(target=worker, args=pair, daemon=True) for pair in pool]
    for t in threads:
        t.start()
    return threads


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else 0.0


def node_names(system: System) -> dict[str, str]:
    """node id -> service name, for every id a node has printed (a restart prints anew)."""
    import json

    names = {}
    for name, service in system.sup.services.items():
        if name.startswith("node-"):
            for line in service.log_text().splitlines():
                if line.startswith('{"node_id"'):
                    names[json.loads(line)["node_id"]] = name
    return names


def shares(outcomes: list[Outcome], names: dict[str, str]) -> dict[str, float]:
    count = Counter(names.get(o.node, o.node[:8]) for o in outcomes if o.ok)
    total = sum(count.values()) or 1
    return {name: 100 * n / total for name, n in sorted(count.items())}


def rate_at(outcomes: list[Outcome], t: float, width: float = 1.0) -> float:
    return sum(1 for o in outcomes if o.ok and t <= o.end < t + width) / width


def recovery_time(run: Run, t0: float, t1: float, baseline: float) -> float | None:
    """Seconds from ``t0`` until a 1 s window at >= 90 % of ``baseline`` req/s ends."""
    ok = [o for o in run.between(t0, t1 + 1) if o.ok]
    t = t0
    while t + 1 <= t1:
        if rate_at(ok, t) >= RECOVERED * baseline:
            return t + 1 - t0
        t += 0.1
    return None


class LogPublisher:
    """Publishes release records one after another; remembers those acknowledged."""

    def __init__(self, system: System) -> None:
        self.url = system.urls["log"]
        self.signer = load_or_create_signer(system.state / "publisher.key",
                                            "releases.privproc.local")
        self.acked: list[tuple[int, bytes]] = []
        self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def record(self) -> bytes:
        return ReleaseRecord(measurement=os.urandom(48), model_sha256=os.urandom(32),
                             version="bench", source="faults", time=int(time.time())).encode()

    def _run(self) -> None:
        while not self.stop.is_set():
            record = self.record()
            try:
                self.acked.append((publish(self.url, self.signer, record, timeout=5), record))
            except PublishError:
                self.refused += 1
                self.stop.wait(0.05)

    def lost(self) -> int:
        """Acknowledged records that are not at their index now (publishing the same record
        again answers the index it has, or appends it anew if it was lost)."""
        return sum(1 for index, record in self.acked
                   if publish(self.url, self.signer, record, timeout=10) != index)


def double_spends(client: PrivateProcessingClient, accepted: list[tuple[float, pp.Token]],
                  around: list[float], limit: int) -> tuple[int, int]:
    """(sent, accepted again): spent tokens sent again through the relay: every one spent
    within 5 s of a time in ``around`` (the gateway's kill), and others at random, up to
    ``limit`` in all."""
    near = [token for end, token in accepted if any(abs(end - t) <= 5 for t in around)]
    rest = [token for end, token in accepted if all(abs(end - t) > 5 for t in around)]
    sample = near[:limit] + random.sample(rest, max(0, min(len(rest), limit - len(near))))
    wallet = client.ohttp.tokens
    again = 0
    client.ohttp.tokens = None  # the spent token goes as it is, no fresh one with it
    try:
        for token in sample:
            response = client.ohttp.request("GET", "/v1/nodes", headers=[
                (b"authorization", pp.format_authorization(token).encode())])
            again += response.status == 200
    finally:
        client.ohttp.tokens = wallet
    return len(sample), again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds per load level (default 20; the issue asks 60)")
    parser.add_argument("--recovery", type=float, default=None,
                        help="seconds of c=8 load after each fault (default 15)")
    parser.add_argument("--quick", action="store_true", help="5 s per level, 10 s windows")
    parser.add_argument("--node-concurrency", type=int, default=None,
                        help="--concurrency of each echo node (default: the node's own)")
    parser.add_argument("--per-node-timeout", type=float, default=PER_NODE_TIMEOUT,
                        help="the SDK's per_node_timeout: a call with no answer by then also "
                             "asks another node (default: the SDK's, %(default)s s)")
    args = parser.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    recovery = args.recovery or (10.0 if args.quick else 15.0)
    quota = max(100_000, int(5000 * seconds))
    extra = (("--concurrency", str(args.node_concurrency)) if args.node_concurrency else ())
    with tempfile.TemporaryDirectory() as tmp:
        system = start(Path(tmp), nodes=2, backend="echo", issuer_quota=quota,
                       node_extra=extra)
        try:
            bench(system, seconds, recovery, args.per_node_timeout)
        finally:
            system.stop()


def bench(system: System, seconds: float, recovery: float, per_node_timeout: float
          ) -> None:
    said: list[str] = []
    origin = time.perf_counter()

    def tell(message: str) -> None:
        said.append(message)
        print(f"  [up +{time.perf_counter() - origin:.1f} s] {message}", flush=True)

    keeper = Restarter(system.sup, RestartPolicy(), say=tell)
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            try:
                keeper.poll()
            except ServiceFailed as exc:
                tell(f"restarter: {exc}")
                return
            watching.wait(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rss: dict[str, dict[str, float]] = {}

    def sample_rss(when: str) -> None:
        for name, service in system.sup.services.items():
            rss.setdefault(name, {})[when] = rss_mib(service.process.pid)

    sample_rss("start")
    trust = load_trust(system.client_config)
    assert trust.tokens is not None
    batch = 500
    print(f"preparing {max(LEVELS)} clients ({batch} tokens each) ...", flush=True)
    pool: list[tuple[PrivateProcessingClient, RecordingWallet]] = []
    for _ in range(max(LEVELS)):
        wallet = RecordingWallet(trust.tokens.issuer_url, trust.tokens.account_token, None,
                                 batch=batch)
        wallet.taken = []
        client = PrivateProcessingClient(trust, tokens=wallet,
                                         per_node_timeout=per_node_timeout)
        client.refresh()
        client.verified_nodes()
        client.start()  # as an app does: background refresh of nodes, keys and tokens
        pool.append((client, wallet))
    run = Run()
    names = node_names(system)

    print(f"\n1. load: c = {', '.join(map(str, LEVELS))}, {seconds:.0f} s each", flush=True)
    print("| c | requests | errors | req/s | p50 ms | p99 ms | share per node |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for c in LEVELS:
        began = time.perf_counter()
        for t in drive(pool[:c], run, began + seconds):
            t.join()
        ended = time.perf_counter()
        got = run.between(began, ended + 60)
        ok = [o.end - o.start for o in got if o.ok]
        errors = Counter(o.error for o in got if not o.ok)
        print(f"| {c} | {len(got)} | {sum(errors.values())} | {len(ok) / (ended - began):.0f} "
              f"| {pct(ok, 0.5):.1f} | {pct(ok, 0.99):.1f} | "
              f"{', '.join(f'{n} {s:.0f} %' for n, s in shares(got, names).items())} |",
              flush=True)
        for error, n in errors.most_common(3):
            print(f"|  | {n} x {error} | | | | | |")
        sample_rss(f"c={c}")

    print(f"\n2. faults under c = {FAULT_CLIENTS} (recovery window {recovery:.0f} s each)",
          flush=True)
    warm = 5.0
    faults: list[tuple[str, str, float]] = [
        ("kill -9 gateway", "gateway", recovery), ("kill -9 issuer", "issuer", recovery),
        ("kill -9 node-0", "node-0", recovery), ("kill -9 log", "log", recovery),
        (f"SIGSTOP node-1 ({STOP_SECONDS:.0f} s)", "node-1", STOP_SECONDS + recovery),
    ]
    total = warm + sum(window for _, _, window in faults) + seconds
    began = time.perf_counter()
    threads = drive(pool[:FAULT_CLIENTS], run, began + total)
    publisher = LogPublisher(system)
    marks: list[tuple[str, float, float]] = []
    at = began + warm
    for label, name, window in faults:
        time.sleep(max(0.0, at - time.perf_counter() - (2.0 if name == "log" else 0.0)))
        if name == "log":
            publisher.thread.start()  # from 2 s before the kill to the end of its window
            time.sleep(max(0.0, at - time.perf_counter()))
        pid = system.sup.services[name].process.pid
        t0 = time.perf_counter()
        if label.startswith("SIGSTOP"):
            os.kill(pid, signal.SIGSTOP)
            time.sleep(STOP_SECONDS)
            os.kill(pid, signal.SIGCONT)
        else:
            os.kill(pid, signal.SIGKILL)
        marks.append((label, t0, at + window))
        at += window
        time.sleep(max(0.0, at - time.perf_counter()))
        sample_rss(f"after {name}{' stop' if label.startswith('SIGSTOP') else ''}")
        if name == "log":
            publisher.stop.set()
            publisher.thread.join()
    after_from = time.perf_counter()
    for t in threads:
        t.join()
    ended = time.perf_counter()
    names = node_names(system)
    baseline_outcomes = run.between(began + 1, began + warm)
    baseline = sum(1 for o in baseline_outcomes if o.ok) / (warm - 1)
    print(f"pre-fault throughput: {baseline:.0f} req/s; faults at " + ", ".join(
        f"+{t0 - origin:.1f} s" for _, t0, _ in marks))
    timeline = []
    for second in range(int(ended - began)):
        got = run.between(began + second, began + second + 1)
        timeline.append(f"{sum(1 for o in got if o.ok)}/{sum(1 for o in got if not o.ok)}")
    print(f"ok/failed per second from +{began - origin:.0f} s: {' '.join(timeline)}")
    print("| fault | failed (in flight at it) | failed (started after) | first success "
          "started after it, s | to 90 % throughput s | other |")
    print("|---|---:|---:|---:|---:|---|")
    for label, t0, t1 in marks:
        seen = run.between(t0, t1)
        failed = [o for o in seen if not o.ok]
        in_flight = sum(1 for o in failed if o.start <= t0)
        back = recovery_time(run, t0, t1, baseline)
        first = min((o.end - t0 for o in seen if o.ok and o.start > t0), default=None)
        other = ""
        if "log" in label:
            lost = publisher.lost()
            other = (f"log records acknowledged {len(publisher.acked)}, lost {lost}, refused "
                     f"while down {publisher.refused}")
        common = Counter(o.error for o in failed).most_common(2)
        detail = "; ".join(f"{n} x {e}" for e, n in common)
        print(f"| {label} | {in_flight} | {len(failed) - in_flight} | "
              f"{'none' if first is None else f'{first:.1f}'} | "
              f"{'not recovered' if back is None else f'{back:.1f}'} | "
              f"{'; '.join(x for x in (other, detail) if x)} |", flush=True)
    settled = run.between(after_from, ended + 60)
    spread = shares(settled, names)
    even = 100 / 2
    balanced = len(spread) == 2 and all(abs(s - even) <= 0.2 * even for s in spread.values())
    print(f"\n3. after recovery ({ended - after_from:.0f} s at c = {FAULT_CLIENTS}): "
          f"{sum(1 for o in settled if o.ok) / max(ended - after_from, 1e-9):.0f} req/s, "
          f"{sum(1 for o in settled if not o.ok)} errors; share per node: "
          f"{', '.join(f'{n} {s:.0f} %' for n, s in spread.items()) or 'none'} "
          f"({'balanced' if balanced else 'NOT balanced'} within 20 %)")
    kills = [t0 for label, t0, _ in marks if "gateway" in label]
    sent, twice = double_spends(pool[0][0], run.accepted, kills, 1000)
    print(f"tokens accepted twice: {twice} of {sent} spent tokens sent again "
          f"({len(run.accepted)} spent in all)")
    restarts = [m for m in said if "restarting" in m]
    print(f"restarts by up's restarter: {len(restarts)} ({'; '.join(restarts)})")
    watching.set()
    watcher.join()
    for client, _ in pool:
        client.close()
    sample_rss("end")
    # A process restarted by a fault starts again from its start-up size; each column is
    # the process alive at that moment.
    columns = list(next(iter(rss.values())))
    print("\n| RSS MiB, sampled after | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, values in rss.items():
        print(f"| {name} | " + " | ".join(f"{values.get(k, 0):.0f}" for k in columns) + " |")


if __name__ == "__main__":
    main()
