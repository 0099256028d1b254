"""``privproc up``, ``summarize``, ``write``, ``receipt verify`` and ``audit``."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

DEFAULT_CONFIG = Path("client.toml")


def _client(config: Path) -> object:
    from privproc.tlog.client import CheckpointStore
    from privproc.wire.privacypass import TokenChallenge

    from .sdk import PrivateProcessingClient
    from .tokens import TokenWallet
    from .trust import load_trust

    trust = load_trust(config)
    wallet = None
    if trust.tokens:
        wallet = TokenWallet(str(trust.tokens["issuer"]), str(trust.tokens["account_token"]),
                             config.parent / "tokens.json",
                             token_type=int(trust.tokens.get("token_type", 2)))
    client = PrivateProcessingClient(
        str(trust.service["relay"]), str(trust.service["log"]), trust, tokens=wallet,
        checkpoint_store=CheckpointStore(config.parent / "checkpoint.note"),
        progress=lambda m: print(f"  {m}", file=sys.stderr),
    )
    if wallet is not None and "issuer_name" in trust.tokens:
        client.ohttp.challenge = TokenChallenge(
            wallet.token_type, str(trust.tokens["issuer_name"]), b"",
            [str(trust.tokens.get("origin_name", "gateway.privproc.local"))])
    return client


def _finish(result: object, receipt_out: Path | None) -> int:
    from .sdk import Result

    assert isinstance(result, Result)
    for line in result.output:
        print(line if line.startswith("-") else f"- {line}")
    if receipt_out is not None:
        receipt_out.write_text(result.receipt.to_json())
        print(f"receipt: {receipt_out}", file=sys.stderr)
    return 0


def _summarize(args: argparse.Namespace) -> int:
    from .chat_export import ChatExportError, last_messages, parse_chat_export
    from .errors import ClientError
    from .sdk import PrivateProcessingClient

    try:
        messages = last_messages(parse_chat_export(args.chat.read_text(errors="replace")),
                                 args.unread)
    except (OSError, ChatExportError, ValueError) as exc:
        print(f"privproc summarize: {exc}", file=sys.stderr)
        return 2
    print(f"summarizing the last {len(messages)} messages privately", file=sys.stderr)
    try:
        client = _client(args.config)
        assert isinstance(client, PrivateProcessingClient)
        result = client.summarize([{"sender": m.sender, "time": m.time.isoformat(),
                                    "text": m.text} for m in messages], args.bullets)
    except ClientError as exc:
        print(f"privproc summarize: REFUSED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return _finish(result, args.receipt)


def _write(args: argparse.Namespace) -> int:
    from .errors import ClientError
    from .sdk import PrivateProcessingClient

    try:
        client = _client(args.config)
        assert isinstance(client, PrivateProcessingClient)
        result = client.write(args.draft, args.tone)
    except ClientError as exc:
        print(f"privproc write: REFUSED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return _finish(result, args.receipt)


def _receipt_verify(args: argparse.Namespace) -> int:
    from .errors import ClientError
    from .sdk import verify_receipt
    from .trust import load_trust

    try:
        receipt = json.loads(args.receipt.read_text())
        verify_receipt(receipt, load_trust(args.config))
    except (OSError, ValueError) as exc:
        print(f"privproc receipt verify: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"REFUSED: {exc}")
        return 1
    print(f"receipt OK: node {receipt['node_id']} ran measurement "
          f"{receipt['measurement'][:16]}..., logged at index {receipt['log_index']} under a "
          "checkpoint signed by the log and the witness quorum")
    return 0


def _up(args: argparse.Namespace) -> int:
    from privproc.demo.up import run

    state = args.state or Path(tempfile.mkdtemp(prefix="privproc-up-"))
    return run(state, args.nodes, args.backend, args.node_config)


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="Start every service on loopback (simulated platform).")
    up.add_argument("--state", type=Path, metavar="DIR", help="default: a new temp dir")
    up.add_argument("--nodes", type=int, default=1)
    up.add_argument("--backend", choices=["llama", "extractive", "echo"], default="llama")
    up.add_argument("--node-config", type=Path, metavar="FILE")
    up.set_defaults(func=_up)

    summ = sub.add_parser("summarize", help="Summarize a WhatsApp chat export privately.")
    summ.add_argument("chat", type=Path, metavar="CHAT.txt")
    summ.add_argument("--unread", type=int, default=50, help="last N messages (default 50)")
    summ.add_argument("--bullets", type=int, default=5)
    summ.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="TOML")
    summ.add_argument("--receipt", type=Path, metavar="FILE", help="write the receipt here")
    summ.set_defaults(func=_summarize)

    write = sub.add_parser("write", help="Private writing help for a draft.")
    write.add_argument("draft")
    write.add_argument("--tone", required=True,
                       choices=["rephrase", "professional", "funny", "supportive", "proofread"])
    write.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="TOML")
    write.add_argument("--receipt", type=Path, metavar="FILE")
    write.set_defaults(func=_write)

    receipt = sub.add_parser("receipt", help="Check a receipt offline.")
    rsub = receipt.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = rsub.add_parser("verify", help="Verify a receipt against the trust config.")
    verify.add_argument("receipt", type=Path, metavar="FILE")
    verify.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="TOML")
    verify.set_defaults(func=_receipt_verify)
