"""End-to-end benchmark: the full private path with a no-op task, next to calling the node
directly, and the one-time cost of verifying keys and a new node from stapled proofs.

Full path: token + OHTTP through relay and gateway + node sealing (verification cached).
Direct: the same sealed task POSTed straight to the node. One-time costs: verifying the
key bundle (gateway and issuer key records, proofs, checkpoint consistency with the
client's log view) and a node (evidence, key binding, the stapled release proof,
revocation), both offline once the bundles are in hand. ``--quick`` sends fewer requests.
The issuer that ``privproc up`` starts allows 200 tokens a day per account, so the full
run sends 150.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from privproc.client.node import open_task, seal_task
from privproc.client.sdk import PrivateProcessingClient
from privproc.client.tokens import TokenWallet
from privproc.client.transparency import release_proofs, verify_key_bundle
from privproc.client.trust import load_trust
from privproc.up.system import start
from privproc.wire import inner

PAYLOAD = {"messages": [{"sender": "A", "time": "t", "text": "hello there"}] * 20}


def stats(samples: list[float]) -> tuple[float, float, float]:
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return statistics.median(samples) * 1000, p99 * 1000, len(samples) / sum(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 50 if args.quick else 150
    with tempfile.TemporaryDirectory() as tmp:
        system = start(Path(tmp), backend="echo")
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
                releases = release_proofs(doc["log"], trust, client.view)
                node = client.verify_node(node_id, bundle, releases)
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
    print(f"| one-time verification of the key bundle, stapled (median of 20) | "
          f"{statistics.median(key_times) * 1000:.2f} | | |")
    print(f"| one-time verification of a new node, stapled (median of 20) | "
          f"{statistics.median(verify_times) * 1000:.2f} | | |")


if __name__ == "__main__":
    main()
