"""End-to-end benchmark: the full private path with a no-op task, next to calling the node
directly, and the one-time cost of verifying a new node.

Full path: token + OHTTP through relay and gateway + node sealing (verification cached).
Direct: the same sealed task POSTed straight to the node. ``--quick`` sends fewer requests.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from privproc.client.node import open_task, seal_task
from privproc.client.sdk import PrivateProcessingClient
from privproc.client.tokens import TokenWallet
from privproc.client.trust import load_trust
from privproc.demo.up import ISSUER_NAME, ORIGIN_NAME, start
from privproc.wire import inner
from privproc.wire.privacypass import TOKEN_TYPE_BLIND_RSA, TokenChallenge

PAYLOAD = {"messages": [{"sender": "A", "time": "t", "text": "hello there"}] * 20}


def stats(samples: list[float]) -> tuple[float, float, float]:
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return statistics.median(samples) * 1000, p99 * 1000, len(samples) / sum(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 50 if args.quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        system = start(Path(tmp), backend="echo")
        try:
            trust = load_trust(system.client_config)
            wallet = TokenWallet(str(trust.tokens["issuer"]),
                                 str(trust.tokens["account_token"]), None, batch=n + 20)
            challenge = TokenChallenge(TOKEN_TYPE_BLIND_RSA, ISSUER_NAME, b"", [ORIGIN_NAME])
            wallet.fetch(challenge, n + 10)  # tokens are fetched ahead, not per request
            client = PrivateProcessingClient(str(trust.service["relay"]),
                                             str(trust.service["log"]), trust, tokens=wallet)
            client.ohttp.challenge = challenge
            node_id, bundle = client.candidates()[0]
            verify_times = []
            for _ in range(5):
                start_t = time.perf_counter()
                node = client.verify_node(node_id, bundle)
                verify_times.append(time.perf_counter() - start_t)
            client.verified_nodes()
            for _ in range(5):
                client.summarize(PAYLOAD["messages"])  # warm
            private = []
            for _ in range(n):
                t = time.perf_counter()
                client.summarize(PAYLOAD["messages"])
                private.append(time.perf_counter() - t)
            direct = []
            url = system.urls["node-0"] + "/process"
            for _ in range(n):
                t = time.perf_counter()
                sealed, nonce, ctx = seal_task(node.key_config, inner.Task.SUMMARIZE, PAYLOAD)
                req = urllib.request.Request(url, data=sealed, headers={
                    "content-type": inner.MEDIA_TYPE_REQUEST})
                with urllib.request.urlopen(req, timeout=10) as resp:
                    open_task(ctx, nonce, resp.read())
                direct.append(time.perf_counter() - t)
        finally:
            system.sup.stop_all()
    rows = [("direct to the node (sealed)", stats(direct)),
            ("full private path (token, relay, gateway, node)", stats(private))]
    print("| path (no-op task, sequential) | p50 ms | p99 ms | req/s |")
    print("|---|---:|---:|---:|")
    for name, (p50, p99, rps) in rows:
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {rps:,.0f} |")
    print(f"| privacy overhead (p50) | {rows[1][1][0] - rows[0][1][0]:+.2f} | | |")
    print(f"| one-time verification of a new node (median of 5) | "
          f"{statistics.median(verify_times) * 1000:.1f} | | |")


if __name__ == "__main__":
    main()
