"""``make demo``: the whole private path on one machine, printing each verification step.

Starts every service (``privproc up``, simulated platform, the default embedded model),
then, as an app would: fetches tokens, verifies the node (evidence, key binding,
measurement in the witness-cosigned log), sends a summary of a bundled sample chat and a
writing request through relay → gateway → node, checks the receipts offline, checks that
no service logged the chat's text, and shuts everything down.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from importlib import resources
from pathlib import Path

from privproc.client.chat_export import parse_chat_export
from privproc.client.sdk import PrivateProcessingClient, verify_receipt
from privproc.client.tokens import TokenWallet
from privproc.client.trust import load_trust
from privproc.tlog.client import CheckpointStore
from privproc.wire.privacypass import TOKEN_TYPE_BLIND_RSA, TokenChallenge

from .up import ISSUER_NAME, ORIGIN_NAME, start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["llama", "extractive", "echo"], default="llama")
    args = parser.parse_args()
    chat_text = resources.files("privproc.demo").joinpath("sample_chat.txt").read_text()
    messages = parse_chat_export(chat_text)
    with tempfile.TemporaryDirectory(prefix="privproc-demo-") as tmp:
        state = Path(tmp)
        print("== 1. starting every service on loopback")
        system = start(state, backend=args.backend)
        try:
            for name, url in system.urls.items():
                print(f"   {name:9s} {url}")
            trust = load_trust(system.client_config)
            wallet = TokenWallet(str(trust.tokens["issuer"]),
                                 str(trust.tokens["account_token"]), state / "tokens.json",
                                 batch=4)
            client = PrivateProcessingClient(
                str(trust.service["relay"]), str(trust.service["log"]), trust, tokens=wallet,
                checkpoint_store=CheckpointStore(state / "checkpoint.note"),
                progress=lambda m: print(f"   {m}"))
            client.ohttp.challenge = TokenChallenge(TOKEN_TYPE_BLIND_RSA, ISSUER_NAME, b"",
                                                    [ORIGIN_NAME])
            print("== 2. discovering and verifying nodes through the relay")
            nodes = client.verified_nodes()
            print(f"   {len(nodes)} node(s) verified: SEV-SNP-shaped report and chain "
                  "(simulated root), REPORT_DATA binds the key and expiry, release in the "
                  "log with an inclusion proof under a log+witness signed checkpoint")
            print(f"== 3. summarizing {len(messages)} chat messages privately "
                  f"(token from the issuer, OHTTP via the relay, sealed to the node)")
            summary = client.summarize([{"sender": m.sender, "time": m.time.isoformat(),
                                         "text": m.text} for m in messages], 4)
            for line in summary.output:
                print(f"   {line}")
            print("== 4. writing help (tone: professional)")
            draft = "sorry cant make the meeting tmrw, can we move it to friday?"
            suggestion = client.write(draft, "professional")
            for line in suggestion.output:
                print(f"   {line}")
            print("== 5. checking both receipts offline")
            for result in (summary, suggestion):
                verify_receipt(json.loads(result.receipt.to_json()), trust)
                print(f"   receipt OK: node {result.receipt.node_id}, measurement "
                      f"{result.receipt.measurement[:16]}..., log index "
                      f"{result.receipt.log_index}")
            print("== 6. checking that no service logged the chat")
            leaked = [name for name, service in system.sup.services.items()
                      if any(m.text.splitlines()[0] in service.log_text() for m in messages
                             if len(m.text) > 20)]
            if leaked:
                print(f"demo FAILED: chat text in the logs of {leaked}", file=sys.stderr)
                return 1
            print("   no chat text in any log")
        finally:
            print("== 7. stopping every service")
            system.sup.stop_all()
    print("demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
