"""OHTTP benchmark: crypto operations per core, and the full path through relay+gateway.

Prints two tables. Run with ``make bench`` or ``.venv/bin/python bench/ohttp.py``;
``--quick`` runs fewer requests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from benchlib import cpu_seconds, rate
from hpke import our_cases  # bench/hpke.py
from privproc.client.ohttp import AsyncOHTTPClient
from privproc.up.supervisor import Supervisor
from privproc.wire import hpke

PAYLOAD = bytes(1024)


def crypto_table(seconds: float) -> None:
    """The OHTTP operations of ``bench/hpke.py`` (one definition of each), with a
    DHKEM(X25519) key and with a hybrid MLKEM768-X25519 one (the default; the
    relay+gateway runs below use the gateway's own key)."""
    kems = (hpke.KEM_X25519_SHA256, hpke.KEM_MLKEM768_X25519)
    columns = [{op: rate(fn, seconds) for op, _, fn in our_cases(kem) if op.startswith("OHTTP")}
               for kem in kems]
    print("| OHTTP operation (one core, 1 KiB, AES-128-GCM), ops/s, best of 5 windows "
          "| X25519 | MLKEM768-X25519 |")
    print("|---|---:|---:|")
    for op in columns[0]:
        print(f"| {op} | {columns[0][op]:,.0f} | {columns[1][op]:,.0f} |")
    print()


async def measure(
    send: Callable[[int], Awaitable[None]], concurrency: int, total: int
) -> tuple[float, float, float]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            start = time.perf_counter()
            await send(i)
            latencies.append(time.perf_counter() - start)

    for i in range(min(20, total)):  # warm connections and caches
        await send(i)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return total / elapsed, statistics.median(latencies) * 1000, p99 * 1000


async def path_table(origin: str, relay: str, totals: dict[int, int],
                     pids: dict[str, int]) -> None:
    print("| concurrency | path | req/s | p50 ms | p99 ms | gateway CPU ms/req "
          "| relay CPU ms/req |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    async with aiohttp.ClientSession() as direct, AsyncOHTTPClient(
        relay + "/", authority="bench.example"
    ) as client:
        async def send_direct(i: int) -> None:
            async with direct.post(origin + "/bench", data=PAYLOAD) as resp:
                await resp.read()
                assert resp.status == 200

        async def send_ohttp(i: int) -> None:
            response = await client.request("POST", "/bench", content=PAYLOAD)
            assert response.status == 200

        for concurrency, total in totals.items():
            results = {}
            for name, send in (("direct", send_direct), ("OHTTP relay+gateway", send_ohttp)):
                before = {party: cpu_seconds(pid) for party, pid in pids.items()}
                results[name] = await measure(send, concurrency, total)
                sent = total + min(20, total)  # with the warm-up requests
                cpu = [(cpu_seconds(pid) - before[party]) / sent * 1000
                       for party, pid in pids.items()]
                rps, p50, p99 = results[name]
                cells = (" | ".join(f"{c:.2f}" for c in cpu) if name != "direct"
                         else " | ")
                print(f"| {concurrency} | {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} "
                      f"| {cells} |")
            overhead = results["OHTTP relay+gateway"][1] - results["direct"][1]
            print(f"| {concurrency} | p50 added by OHTTP | | {overhead:+.2f} | | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    args = parser.parse_args()
    crypto_table(0.5 if args.quick else 2.0)
    scale = 1 if args.quick else 4
    totals = {1: 200 * scale, 16: 400 * scale, 64: 400 * scale}
    any_port = "127.0.0.1:0"
    with tempfile.TemporaryDirectory() as tmp, Supervisor(Path(tmp) / "logs") as sup:
        origin = sup.start("origin", ["echo", "serve", "--listen", any_port, "--log-level",
                                      "warning"]).url
        gateway = sup.start("gateway", ["gateway", "serve", "--listen", any_port, "--upstream",
                                        origin, "--state", f"{tmp}/gw", "--log-level",
                                        "warning"]).url
        relay = sup.start("relay", ["relay", "serve", "--listen", any_port, "--gateway",
                                    gateway + "/gateway", "--log-level", "warning"]).url
        pids = {party: sup.services[party].process.pid for party in ("gateway", "relay")}
        asyncio.run(path_table(origin, relay, totals, pids))


if __name__ == "__main__":
    main()
