"""``privproc summarize``, ``write`` and ``receipt verify``: the client on the command line.

Each finds the local system's trust file (written by ``privproc up``) without flags, checks
its input against the request limits before anything is sent or a token is spent, and
prints model output with terminal control characters removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from privproc import clikit
from privproc.clikit import CommandError, UsageError, positive_int
from privproc.wire import limits

from .display import printable

CHAT_EXPORT_TAIL = 8 << 20
"""How much of the end of a chat export ``summarize`` reads: the last messages are what
it summarizes (at most 100), and years of a busy chat would otherwise be read and parsed
in full."""

if TYPE_CHECKING:
    from .chat_export import ExportedMessage as _M


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr)


def _trust_file(args: argparse.Namespace) -> Path:
    from privproc.paths import default_trust_file

    path: Path = args.trust if args.trust is not None else default_trust_file()
    if not path.exists():
        hint = ("start the local system with 'privproc up', or pass --trust FILE"
                if args.trust is None else "check the path")
        raise UsageError(f"no trust file at {path}: {hint}")
    return path


def _client(path: Path) -> object:
    """A client for the trust file, its state beside it, refreshed once (no issuer)."""
    from .errors import ClientError
    from .sdk import PrivateProcessingClient

    try:
        client = PrivateProcessingClient.from_trust_file(path, progress=_progress)
        client.refresh(tokens=False)
    except ClientError as exc:
        raise _refused(exc) from None
    return client


def _refused(exc: Exception) -> CommandError:
    return CommandError(f"REFUSED: {type(exc).__name__}: {exc}")


def _print_line(line: str, prefix: str = "- ") -> None:
    text = printable(line)
    print(text if text.startswith("-") else f"{prefix}{text}")


def _finish(result: object, receipt_out: Path | None, *, quiet: bool = False) -> int:
    from .sdk import Result

    assert isinstance(result, Result)
    if not quiet:
        for line in result.output:
            _print_line(line)
    if "fallback" in result.flags:
        print("  (the node kept your words: no rewrite passed its fact check)",
              file=sys.stderr)
    if receipt_out is not None:
        clikit.write_output(receipt_out, result.receipt.to_json().encode(), "the receipt")
        print(f"receipt: {receipt_out}", file=sys.stderr)
    return 0


def _summarize(args: argparse.Namespace) -> int:
    from .chat_export import ChatExportError, last_messages, messages_only, parse_chat_export
    from .errors import ClientError
    from .sdk import PrivateProcessingClient

    if args.receipt is not None:
        clikit.check_writable(args.receipt, "the receipt")
    data, size = clikit.read_input_tail(args.chat, "chat export", CHAT_EXPORT_TAIL)
    if size > len(data):
        print(f"the chat export has {size / 2**20:.0f} MiB: reading its last "
              f"{CHAT_EXPORT_TAIL >> 20} MiB (the last messages are what is summarized)",
              file=sys.stderr)
    try:
        # (a message cut at the start of the tail continues no header: it is left out)
        items = parse_chat_export(data.decode("utf-8", errors="replace"))
    except ChatExportError as exc:
        raise UsageError(f"{args.chat}: {exc}") from None
    messages = _fitting(last_messages(messages_only(items), args.unread), args.unread)
    payload = [{"sender": m.sender, "time": m.time.isoformat(), "text": m.text}
               for m in messages]
    try:
        limits.check_summary_request(payload, args.bullets, args.me)
    except limits.RequestInputError as exc:
        raise UsageError(str(exc)) from None
    trust = _trust_file(args)
    skipped = len(items) - len(messages_only(items))
    print(f"summarizing the last {len(messages)} messages privately"
          + (f" ({skipped} events and placeholders left out)" if skipped else "")
          + (f", for {printable(args.me)}" if args.me else ""), file=sys.stderr)
    client = _client(trust)
    assert isinstance(client, PrivateProcessingClient)
    try:
        with _waiting("the node"):
            result = client.summarize(payload, args.bullets, reader=args.me)
    except ClientError as exc:
        raise _refused(exc) from None
    finally:
        client.close()  # unused leased tokens back to the wallet file
    if args.cite and result.sources is not None:
        for line, sources in zip(result.output, result.sources, strict=True):
            _print_line(line)
            for i in sources:
                if 0 <= i < len(messages):
                    m = messages[i]
                    print(f"    [{m.time:%d %b %H:%M} {printable(m.sender)}: "
                          f"{printable(_one_line(m.text))}]")
        return _finish(result, args.receipt, quiet=True)
    return _finish(result, args.receipt)


def _fitting(messages: list[_M], wanted: int) -> list[_M]:
    """The last messages that fit the request's size limits, saying so when fewer than
    ``wanted`` do (never silently)."""
    lim = limits.DEFAULT_LIMITS
    kept: list[_M] = []
    total = 0
    for m in reversed(messages[-lim.max_messages:]):
        size = len(m.text) + len(m.sender)
        if kept and total + size > lim.max_total_chars:
            break
        kept.append(m)
        total += size
    kept.reverse()
    if len(kept) < min(wanted, len(messages)):
        print(f"  only the last {len(kept)} of {len(messages)} messages fit a request "
              f"({lim.max_messages} messages, {lim.max_total_chars} characters)",
              file=sys.stderr)
    return kept


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


def _draft(args: argparse.Namespace) -> str:
    """The draft: the argument, ``--file FILE``, or standard input (``-`` or nothing)."""
    if args.draft is not None and args.draft != "-":
        if args.file is not None:
            raise UsageError("give the draft as an argument or with --file, not both")
        text: str = args.draft
        return text
    if args.file is not None:
        return clikit.read_text_input(args.file, "draft file")
    if args.draft is None and sys.stdin.isatty():
        raise UsageError("no draft: give it as an argument, with --file FILE, or on "
                         "standard input")
    data = sys.stdin.buffer.read(4 * limits.DEFAULT_LIMITS.max_draft_chars + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the draft on standard input is not UTF-8 text") from None


def _write(args: argparse.Namespace) -> int:
    from .errors import ClientError
    from .sdk import PrivateProcessingClient

    if args.receipt is not None:
        clikit.check_writable(args.receipt, "the receipt")
    draft = _draft(args)
    if args.file is not None or args.draft in (None, "-"):
        draft = draft.rstrip("\n")
    try:
        limits.check_write_request(draft, args.tone)
    except limits.RequestInputError as exc:
        raise UsageError(str(exc)) from None
    client = _client(_trust_file(args))
    assert isinstance(client, PrivateProcessingClient)
    try:
        with _waiting("the node"):
            result = client.write(draft, args.tone)
    except ClientError as exc:
        raise _refused(exc) from None
    finally:
        client.close()  # unused leased tokens back to the wallet file
    return _finish(result, args.receipt)


def _receipt_verify(args: argparse.Namespace) -> int:
    from .receipt import ReceiptError, verify_receipt
    from .trust import TrustConfigError, load_trust

    trust_path = _trust_file(args)
    data = clikit.read_input(args.receipt, "receipt")
    try:
        receipt = json.loads(data)
    except ValueError:
        raise UsageError(f"{args.receipt} is not a JSON receipt") from None
    try:
        trust = load_trust(trust_path)
    except TrustConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        checks = verify_receipt(receipt, trust)
    except ReceiptError as exc:
        print(f"REFUSED: field {exc.field}: {exc}")
        return clikit.EXIT_REFUSED
    for check in checks:
        status = "verified   " if check.verified else "NOT CHECKED"
        print(f"{status} {check.field:16s} {printable(check.detail)}")
    print("receipt OK: every field above marked verified was re-checked offline")
    return 0


def _trust_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust", type=Path, metavar="FILE",
                   help="the trust file: relay, log and witness keys, attestation policy, "
                        "token issuer (default: the one 'privproc up' wrote, "
                        "$PRIVPROC_STATE/client.toml or ~/.local/state/privproc/client.toml)")


def _bullets(value: str) -> int:
    number = positive_int(value)
    top = limits.DEFAULT_LIMITS.max_bullets
    if number > top:
        raise argparse.ArgumentTypeError(f"expected 1..{top} bullets, got {number}")
    return number


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lim = limits.DEFAULT_LIMITS
    summ = clikit.leaf(
        sub, "summarize", "Summarize a WhatsApp chat export privately.", _summarize,
        description="Summarize the last messages of a WhatsApp chat export (.txt, iOS or "
                    "Android format) on an attested node, through the relay. Limits: "
                    f"{lim.max_messages} messages, {lim.max_message_chars} characters each, "
                    f"{lim.max_total_chars} in all; 1..{lim.max_bullets} bullets.")
    summ.add_argument("chat", type=Path, metavar="CHAT.txt",
                      help="the chat export, e.g. the bundled src/privproc/demo/sample_chat.txt")
    summ.add_argument("--unread", type=positive_int, default=50, metavar="N",
                      help="summarize the last N messages")
    summ.add_argument("--bullets", type=_bullets, default=5, metavar="N",
                      help=f"the most bullets (1..{lim.max_bullets})")
    summ.add_argument("--me", metavar="NAME",
                      help="your name in the chat: requests to you come first, addressed to "
                           "you")
    summ.add_argument("--cite", action="store_true",
                      help="print under each bullet the messages it comes from")
    _trust_option(summ)
    summ.add_argument("--receipt", type=Path, metavar="FILE",
                      help="write the receipt here (check it with 'privproc receipt verify')")

    write = clikit.leaf(
        sub, "write", "Private writing help for a draft.", _write,
        description="Rewrite a draft in a tone on an attested node, through the relay. The "
                    "draft comes from the argument, --file FILE, or standard input ('-' or "
                    f"nothing); 1..{lim.max_draft_chars} characters.")
    write.add_argument("draft", nargs="?", metavar="DRAFT",
                       help="the draft text ('-' or nothing: read standard input)")
    write.add_argument("--file", type=Path, metavar="FILE", help="read the draft from FILE")
    write.add_argument("--tone", default="rephrase", choices=list(limits.TONES),
                       help="how to rewrite it")
    _trust_option(write)
    write.add_argument("--receipt", type=Path, metavar="FILE", help="write the receipt here")

    receipt = clikit.group(sub, "receipt", "Receipts of private requests.")
    verify = clikit.leaf(receipt, "verify",
                         "Re-check a receipt offline against the trust file; exit 0/1.",
                         _receipt_verify)
    verify.add_argument("receipt", type=Path, metavar="FILE", help="the receipt (JSON)")
    _trust_option(verify)
