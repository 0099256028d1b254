"""OHTTP benchmark: crypto operations per core, and the full path through relay+gateway.

Prints two tables. Run with ``make bench`` or ``.venv/bin/python bench/ohttp.py``;
``--quick`` runs fewer requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from privproc.client.ohttp import AsyncOHTTPClient
from privproc.up.supervisor import Supervisor
from privproc.wire import hpke, ohttp

PAYLOAD = bytes(1024)


def rate(fn: Callable[[], object], seconds: float = 1.0) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()
        count += 50
    return count / elapsed


def crypto_rates(kem_id: int, seconds: float) -> list[tuple[str, float]]:
    key = ohttp.GatewayKey.create(1, hpke.KeyPair.generate(kem_id=kem_id))
    keys = ohttp.GatewayKeys([key])
    sealed, cctx = ohttp.encapsulate_request(key.config, PAYLOAD)
    _, sctx = keys.decapsulate_request(sealed)
    sealed_response = sctx.encapsulate_response(PAYLOAD)

    def gateway_round() -> None:
        _, ctx = keys.decapsulate_request(sealed)
        ctx.encapsulate_response(PAYLOAD)

    return [
        ("client encapsulate request (1 KiB)", rate(lambda: ohttp.encapsulate_request(
            key.config, PAYLOAD), seconds)),
        ("gateway decapsulate request (1 KiB)", rate(lambda: keys.decapsulate_request(sealed),
                                                     seconds)),
        ("gateway seal response (1 KiB)", rate(lambda: sctx.encapsulate_response(PAYLOAD),
                                               seconds)),
        ("client open response (1 KiB)", rate(lambda: cctx.decapsulate_response(
            sealed_response), seconds)),
        ("gateway decapsulate + seal (1 KiB)", rate(gateway_round, seconds)),
    ]


def crypto_table(seconds: float) -> None:
    """Each operation with a DHKEM(X25519) key and with a hybrid MLKEM768-X25519 one (the
    default; the relay+gateway runs below use the gateway's own key)."""
    classical = crypto_rates(hpke.KEM_X25519_SHA256, seconds)
    hybrid = crypto_rates(hpke.KEM_MLKEM768_X25519, seconds)
    print("| operation (one core), ops/s | X25519 | MLKEM768-X25519 |")
    print("|---|---:|---:|")
    for (name, x25519), (_, pq) in zip(classical, hybrid, strict=True):
        print(f"| {name} | {x25519:,.0f} | {pq:,.0f} |")
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (live and exited)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
