"""``privproc up``, ``summarize``, ``write``, ``receipt verify`` and ``audit``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

DEFAULT_CONFIG = Path("client.toml")


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr)


def _client(config: Path) -> object:
    """A client for the trust file, its state beside it, refreshed once (no issuer)."""
    from .sdk import PrivateProcessingClient

    client = PrivateProcessingClient.from_trust_file(config, progress=_progress)
    client.refresh(tokens=False)
    return client


def _finish(result: object, receipt_out: Path | None, *, quiet: bool = False) -> int:
    from .sdk import Result

    assert isinstance(result, Result)
    if not quiet:
        for line in result.output:
            print(line if line.startswith("-") else f"- {line}")
    if "fallback" in result.flags:
        print("  (the node kept your words: no rewrite passed its fact check)",
              file=sys.stderr)
    if receipt_out is not None:
        receipt_out.write_text(result.receipt.to_json())
        print(f"receipt: {receipt_out}", file=sys.stderr)
    return 0


def _summarize(args: argparse.Namespace) -> int:
    from privproc.tlog.client import LogClientError

    from .chat_export import ChatExportError, last_messages, messages_only, parse_chat_export
    from .errors import ClientError
    from .sdk import PrivateProcessingClient

    try:
        items = parse_chat_export(args.chat.read_text(errors="replace"))
        messages = last_messages(messages_only(items), args.unread)
    except (OSError, ChatExportError, ValueError) as exc:
        print(f"privproc summarize: {exc}", file=sys.stderr)
        return 2
    skipped = len(items) - len(messages_only(items))
    print(f"summarizing the last {len(messages)} messages privately"
          + (f" ({skipped} events and placeholders left out)" if skipped else "")
          + (f", for {args.me}" if args.me else ""), file=sys.stderr)
    try:
        client = _client(args.config)
        assert isinstance(client, PrivateProcessingClient)
        with _waiting("the node"):
            result = client.summarize([{"sender": m.sender, "time": m.time.isoformat(),
                                        "text": m.text} for m in messages], args.bullets,
                                      reader=args.me)
    except (ClientError, LogClientError) as exc:
        print(f"privproc summarize: REFUSED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.cite and result.sources is not None:
        for line, sources in zip(result.output, result.sources, strict=True):
            print(f"- {line}")
            for i in sources:
                if 0 <= i < len(messages):
                    m = messages[i]
                    print(f"    [{m.time:%d %b %H:%M} {m.sender}: {_one_line(m.text)}]")
        return _finish(result, args.receipt, quiet=True)
    return _finish(result, args.receipt)


def _one_line(text: str, limit: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


@contextlib.contextmanager
def _waiting(what: str, every: float = 5.0) -> Iterator[None]:
    """Say on stderr, every few seconds, that we are still waiting for ``what``."""
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(every):
            print(f"  still waiting for {what} ({time.monotonic() - started:.0f} s)",
                  file=sys.stderr, flush=True)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


def _write(args: argparse.Namespace) -> int:
    from privproc.tlog.client import LogClientError

    from .errors import ClientError
    from .sdk import PrivateProcessingClient

    try:
        client = _client(args.config)
        assert isinstance(client, PrivateProcessingClient)
        with _waiting("the node"):
            result = client.write(args.draft, args.tone)
    except (ClientError, LogClientError) as exc:
        print(f"privproc write: REFUSED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return _finish(result, args.receipt)


def _receipt_verify(args: argparse.Namespace) -> int:
    from .errors import ClientError
    from .receipt import ReceiptError, verify_receipt
    from .trust import load_trust

    try:
        receipt = json.loads(args.receipt.read_bytes())
    except OSError as exc:
        print(f"privproc receipt verify: {args.receipt}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"privproc receipt verify: {args.receipt} is not JSON", file=sys.stderr)
        return 2
    try:
        checks = verify_receipt(receipt, load_trust(args.config))
    except ReceiptError as exc:
        print(f"REFUSED: field {exc.field}: {exc}")
        return 1
    except ClientError as exc:
        print(f"privproc receipt verify: {exc}", file=sys.stderr)
        return 2
    for check in checks:
        status = "verified   " if check.verified else "NOT CHECKED"
        print(f"{status} {check.field:16s} {check.detail}")
    print(f"receipt OK: measurement {receipt['measurement'][:16]}..., every field above "
          "marked verified was re-checked offline")
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
    summ.add_argument("--me", metavar="NAME",
                      help="your name in the chat: requests to you come first, "
                           "addressed to you")
    summ.add_argument("--cite", action="store_true",
                      help="print under each bullet the messages it comes from")
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
