"""End-to-end benchmark: the full private path with a no-op task, next to calling the node
directly, and the one-time cost of verifying keys and a new node from stapled proofs.

Full path: token + OHTTP through relay and gateway + node sealing (verification cached).
Direct: the same sealed task POSTed straight to the node (on a kept-alive connection,
as the client's to the relay). One-time costs: verifying the
key bundle (gateway and issuer key records, proofs, checkpoint consistency with the
client's log view) and a node (evidence, key binding, the stapled release proof,
revocation), both offline once the bundles are in hand. ``--quick`` sends fewer requests.
The issuer is started with a quota that covers the run (``privproc up``'s default of 200
tokens a day per account would not: the full run fetches over 300).

Also the CPU time the gateway and the relay spend per private request (utime + stime
from /proc over the sequential run), and, once the services are stopped, the gateway's
redemption in process (parse, verify, spend with SQLite group commit) on one core, 64
and 1 at a time, per second of wall time and per second of CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchlib import cpu_seconds
from privproc.client.http import ConnectionPool
from privproc.client.node import open_task, seal_task
from privproc.client.sdk import PrivateProcessingClient
from privproc.client.tokens import TokenWallet
from privproc.client.transparency import release_proofs, verify_key_bundle
from privproc.client.trust import ClientTrust, load_trust
from privproc.gateway.redeem import Redeemer, RedemptionConfig
from privproc.gateway.spend import SqliteSpendStore
from privproc.issuer import keystore
from privproc.up.system import start
from privproc.wire import bhttp, inner
from privproc.wire import privacypass as pp

PAYLOAD = {"messages": [{"sender": "A", "time": "t", "text": "hello there"}] * 20}


def redemption_rate(token_type: int, tokens: int, concurrency: int) -> tuple[float, float]:
    """Redemptions per second of the gateway's :class:`Redeemer` in process: parse the
    Authorization field, look up the key, verify, and spend in SQLite (group commit,
    fsynced), ``concurrency`` requests at a time. Run pinned to one core. Returns the rate
    per second of wall time and per second of the process's CPU time (all its threads:
    what one core does when nothing else wants it)."""
    with tempfile.TemporaryDirectory() as tmp:
        keydir = Path(tmp) / "issuer"
        keydir.mkdir(mode=0o700)
        key = keystore.load_or_create(keydir, int(time.time())).current(token_type)
        challenge = pp.TokenChallenge(token_type, "issuer.bench", b"", ["origin.bench"])
        requests = []
        for _ in range(tokens):
            request, state = pp.begin_issuance(token_type, key.public, challenge)
            token = pp.finalize_token(state, pp.issue(key.private, request))
            requests.append(bhttp.Request(
                method=b"POST", scheme=b"https", authority=b"origin.bench", path=b"/x",
                headers=(bhttp.Field(b"authorization",
                                     pp.format_authorization(token).encode()),),
                content=b""))
        store = SqliteSpendStore(Path(tmp) / "spent.db")
        redeemer = Redeemer(RedemptionConfig(issuer_keys=keydir, issuer_name="issuer.bench",
                                             origin_name="origin.bench", spend_store=store))

        async def run() -> tuple[float, float]:
            todo = iter(requests)

            async def worker() -> None:
                for request in todo:
                    _, refusal = await redeemer.redeem(request, time.time())
                    assert refusal is None, refusal.reason

            started, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return (tokens / (time.perf_counter() - started),
                    tokens / (time.process_time() - cpu))

        try:
            return asyncio.run(run())
        finally:
            store.close()


def redemption_table(quick: bool) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, writer included
    tokens = 300 if quick else 2000
    print()
    print("| gateway redemption in process, one core (parse, verify, spend in SQLite, "
          "fsync) | redemptions/s | per CPU-second |")
    print("|---|---:|---:|")
    for token_type, name in ((pp.TOKEN_TYPE_BLIND_RSA, "0x0002 blind RSA"),
                             (pp.TOKEN_TYPE_VOPRF, "0x0001 VOPRF")):
        for concurrency in (64, 1):
            count = tokens if concurrency > 1 and token_type == pp.TOKEN_TYPE_BLIND_RSA \
                else tokens // 4
            rate, per_cpu = redemption_rate(token_type, count, concurrency)
            print(f"| {name}, {concurrency} at a time | {rate:,.0f} | {per_cpu:,.0f} |")


CONCURRENT = 8


def concurrent_run(trust: ClientTrust, pids: dict[str, int], clients: int, each: int
                   ) -> tuple[float, dict[str, float]]:
    """``clients`` SDK clients on threads, ``each`` summaries apiece, at once: requests per
    second, and CPU seconds per request of each service in ``pids`` (spends share their
    fsync under load: group commit)."""
    assert trust.tokens is not None
    ready = []
    for _ in range(clients):
        wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token, None,
                             batch=each + 10)
        client = PrivateProcessingClient(trust, tokens=wallet)
        client.refresh(tokens=False)
        assert client.ohttp.challenge is not None
        wallet.fetch(client.ohttp.challenge, each + 5)
        client.summarize(PAYLOAD["messages"])  # warm: keys, node verified
        ready.append(client)

    def work(client: PrivateProcessingClient) -> None:
        for _ in range(each):
            client.summarize(PAYLOAD["messages"])

    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(c,)) for c in ready]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    total = clients * each
    return total / elapsed, {name: (cpu_seconds(pid) - before[name]) / total
                             for name, pid in pids.items()}


def stats(samples: list[float]) -> tuple[float, float, float]:
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return statistics.median(samples) * 1000, p99 * 1000, len(samples) / sum(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 100 if args.quick else 400
    with tempfile.TemporaryDirectory() as tmp:
        # Tokens: a batch of n + 20 per fetch, fetched ahead and again as the wallet runs low.
        system = start(Path(tmp), backend="echo", issuer_quota=4 * n + 1000)
        try:
            trust = load_trust(system.client_config)
            assert trust.tokens is not None
            wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token, None,
                                 batch=n + 20)
            client = PrivateProcessingClient(trust, tokens=wallet)
            client.refresh(tokens=False)
            assert client.ohttp.challenge is not None
            wallet.fetch(client.ohttp.challenge, n + 10)  # ahead, not per request
            key_body = client._get("privproc/keys")
            key_times = []
            for _ in range(20):
                start_t = time.perf_counter()
                verify_key_bundle(key_body, trust, client.view, time.time())
                key_times.append(time.perf_counter() - start_t)
            response = client.ohttp.request("GET", "/v1/nodes")
            doc = json.loads(response.content)
            node_id = doc["nodes"][0]["node_id"]
            bundle = base64.b64decode(doc["nodes"][0]["bundle"])
            verify_times = []
            for _ in range(20):
                start_t = time.perf_counter()
                releases = release_proofs(doc["log"], trust, client.view, time.time())
                node = client.verify_node(node_id, bundle, releases)
                verify_times.append(time.perf_counter() - start_t)
            client.verified_nodes()
            for _ in range(5):
                client.summarize(PAYLOAD["messages"])  # warm
            url = system.urls["node-0"] + "/process"
            node_connection = ConnectionPool(url)  # kept alive, as the client's to the relay

            def direct_call() -> None:
                sealed, nonce, ctx = seal_task(node.key_config, inner.Task.SUMMARIZE, PAYLOAD)
                _, _, answer = node_connection.request(
                    "POST", url, sealed, headers={"content-type": inner.MEDIA_TYPE_REQUEST},
                    timeout=10)
                open_task(ctx, nonce, answer)

            for _ in range(5):
                direct_call()  # warm
            # One private call, then one direct call, n times: both paths see the same
            # machine (a shared 2-core VM drifts by tens of per cent within a minute).
            private: list[float] = []
            direct: list[float] = []
            pids = {name: system.sup.services[name].process.pid for name in ("gateway", "relay")}
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            gateway_loop_before = cpu_seconds(pids["gateway"], pids["gateway"])
            for _ in range(n):
                t = time.perf_counter()
                client.summarize(PAYLOAD["messages"])
                private.append(time.perf_counter() - t)
                t = time.perf_counter()
                direct_call()
                direct.append(time.perf_counter() - t)
            cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / n
                   for name, pid in pids.items()}
            # the main thread runs the event loop; the others are the spend writer's
            # (one fsync per lone request) and the connection guard's
            gateway_loop = (cpu_seconds(pids["gateway"], pids["gateway"])
                            - gateway_loop_before) / n
            loaded = concurrent_run(trust, pids, CONCURRENT, n // 4)
        finally:
            system.stop()
    rows = [("direct to the node (sealed)", stats(direct)),
            ("full private path (token, relay, gateway, node)", stats(private))]
    print("| path (no-op task, sequential) | p50 ms | p99 ms | req/s |")
    print("|---|---:|---:|---:|")
    for name, (p50, p99, rps) in rows:
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {rps:,.0f} |")
    overhead = sorted(p - d for p, d in zip(private, direct, strict=True))
    print(f"| privacy overhead: p50 of (private - direct), pairwise | "
          f"{statistics.median(overhead) * 1000:+.2f} | | |")
    print(f"| privacy overhead: p50 private - p50 direct | "
          f"{rows[1][1][0] - rows[0][1][0]:+.2f} | | |")
    for name in ("gateway", "relay"):
        print(f"| {name} CPU per private request, ms (utime+stime over {n} requests, "
              f"background work included) | {cpu[name] * 1000:.2f} | | |")
    print(f"| of the gateway's: its event loop thread / its other threads (spend writer: "
          f"one fsync per lone request) | {gateway_loop * 1000:.2f} / "
          f"{(cpu['gateway'] - gateway_loop) * 1000:.2f} | | |")
    rate, loaded_cpu = loaded
    for name in ("gateway", "relay"):
        print(f"| {name} CPU per private request with {CONCURRENT} clients at once, ms "
              f"({rate:,.0f} req/s) | {loaded_cpu[name] * 1000:.2f} | | |")
    print(f"| one-time verification of the key bundle, stapled (median of 20) | "
          f"{statistics.median(key_times) * 1000:.2f} | | |")
    print(f"| one-time verification of a new node, stapled (median of 20) | "
          f"{statistics.median(verify_times) * 1000:.2f} | | |")
    redemption_table(args.quick)


if __name__ == "__main__":
    main()
