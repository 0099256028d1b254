"""Node benchmark: the crypto a node adds per request (open + seal) next to model time.

Opening is HPKE decapsulation of the sealed inner request plus decoding; sealing is
encoding the answer plus the response encapsulation (HPKE export + AES-GCM). The model
time is the summarize task on the same 20-message chat with the default embedded model.
``--quick`` runs fewer model calls.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from privproc.client.node import seal_task
from privproc.wire import hpke, inner, ohttp

sys.path.insert(0, str(Path(__file__).parent))
from inference import CHAT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    key = ohttp.GatewayKey.create(1, hpke.KeyPair.generate())
    keys = ohttp.GatewayKeys([key])
    payload = {"messages": [{"sender": c.sender, "time": c.time, "text": c.text} for c in CHAT],
               "max_bullets": 5}
    sealed, _, _ = seal_task(key.config, inner.Task.SUMMARIZE, payload)
    answer = {"result": ["- a bullet of about this length, as a summary line"] * 5,
              "nonce": "00" * 16}
    labels = {"request_label": inner.REQUEST_LABEL, "response_label": inner.RESPONSE_LABEL}
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        plain, ctx = keys.decapsulate_request(sealed, **labels)
        inner.InnerRequest.decode(plain)
    open_us = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n):
        ctx.encapsulate_response(inner.InnerResponse(inner.Status.OK, answer).encode())
    seal_us = (time.perf_counter() - start) / n * 1e6

    from privproc.inference import LlamaBackend, summarize

    backend = LlamaBackend()
    runs = 2 if args.quick else 5
    summarize(backend, CHAT, 5)  # warm
    start = time.perf_counter()
    for _ in range(runs):
        summarize(backend, CHAT, 5)
    model_s = (time.perf_counter() - start) / runs
    backend.close()
    print(f"| per request ({len(CHAT)}-message chat, {len(sealed)} B sealed) | time |")
    print("|---|---:|")
    print(f"| node open (HPKE decapsulate + decode) | {open_us:,.0f} µs |")
    print(f"| node seal (encode + response encapsulation) | {seal_us:,.0f} µs |")
    print(f"| model: summarize with the default model (llama.cpp, 2 threads) | "
          f"{model_s:,.2f} s |")
    print(f"| crypto share of the request | {(open_us + seal_us) / 1e6 / model_s:.4%} |")
    print(f"| summaries per minute | {60 / model_s:,.1f} |")


if __name__ == "__main__":
    main()
