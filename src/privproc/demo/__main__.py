"""``make demo``: the whole private path on one machine, printing each verification step.

Starts every service (``privproc up``, simulated platform, the default embedded model),
then, as an app would: syncs its copy of the witness-cosigned log through the relay,
verifies the gateway's and the issuer's keys against their key records, fetches tokens,
verifies the node (evidence, key binding, logged and unrevoked release), sends a summary
of a bundled sample chat and a writing request through relay → gateway → node, checks the
receipts offline field by field, checks that no service logged the chat's text, and
shuts everything down.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from importlib import resources
from pathlib import Path

from privproc.client.chat_export import messages_only, parse_chat_export
from privproc.client.display import printable
from privproc.client.receipt import verify_receipt
from privproc.client.sdk import PrivateProcessingClient
from privproc.up.system import start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["llama", "extractive", "echo"], default="llama")
    args = parser.parse_args()
    chat_text = resources.files("privproc.demo").joinpath("sample_chat.txt").read_text()
    messages = messages_only(parse_chat_export(chat_text))  # events are not messages
    with tempfile.TemporaryDirectory(prefix="privproc-demo-") as tmp:
        state = Path(tmp)
        print("== 1. starting every service on loopback")
        system = start(state, backend=args.backend)
        try:
            for name, url in system.urls.items():
                print(f"   {name:9s} {url}")
            client = PrivateProcessingClient.from_trust_file(
                system.client_config, state_dir=state, progress=lambda m: print(f"   {m}"))
            trust = client.trust
            print("== 2. syncing the transparency log and checking every key against it "
                  "(all through the relay)")
            client.refresh()
            print(f"   log replayed to size {client.view.size}: every record seen, "
                  "checkpoint signed by the log and cosigned by the witness quorum")
            gateway = client.gateway_key()
            print(f"   gateway OHTTP key: key record #{gateway.logged.proof.index} "
                  f"({gateway.logged.record.owner}), valid now")
            print("   issuer token keys: tokens were requested only under logged keys")
            print("== 3. discovering and verifying nodes through the relay")
            nodes = client.verified_nodes()
            print(f"   {len(nodes)} node(s) verified: SEV-SNP-shaped report and chain "
                  "(simulated root), REPORT_DATA binds the key and expiry, release in the "
                  "log (stapled inclusion proof) and not revoked")
            print(f"== 4. summarizing {len(messages)} chat messages privately for Sam "
                  f"(token from the issuer, OHTTP via the relay, sealed to the node)")
            summary = client.summarize([{"sender": m.sender, "time": m.time.isoformat(),
                                         "text": m.text} for m in messages], 4, reader="Sam")
            for line, sources in zip(summary.output, summary.sources or [], strict=False):
                print(f"   - {printable(line)}")
                print(f"       (from message{'s' if len(sources) > 1 else ''} "
                      f"{', '.join(str(i + 1) for i in sources)})")
            print("== 5. writing help (tone: professional)")
            draft = "sorry cant make the meeting tmrw, can we move it to friday?"
            suggestion = client.write(draft, "professional")
            for line in suggestion.output:
                print(f"   {printable(line)}")
            if "fallback" in suggestion.flags:
                print("   (no rewrite passed the fact check: your words, lightly corrected)")
            print("== 6. checking both receipts offline, field by field")
            for result in (summary, suggestion):
                checks = verify_receipt(json.loads(result.receipt.to_json()), trust)
                verified = [c.field for c in checks if c.verified]
                print(f"   receipt OK: node {result.receipt.node_id}, measurement "
                      f"{result.receipt.measurement[:16]}..., release at log index "
                      f"{result.receipt.log_index}; verified: {', '.join(verified)}")
            print("== 7. checking that no service logged the chat")
            leaked = [name for name, service in system.sup.services.items()
                      if any(m.text.splitlines()[0] in service.log_text() for m in messages
                             if len(m.text) > 20)]
            if leaked:
                print(f"demo FAILED: chat text in the logs of {leaked}", file=sys.stderr)
                return 1
            print("   no chat text in any log")
        finally:
            print("== 8. stopping every service")
            system.stop()
    print("demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
