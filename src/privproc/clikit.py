"""What every ``privproc`` command shares: option types, the service scaffold, one error
contract and the exit codes.

Exit codes: 0 ok, 1 refused or a check failed, 2 usage (bad options or input files).
Every error a command reports is one line on stderr, ``privproc COMMAND: what happened``;
no traceback reaches a user (``PRIVPROC_DEBUG=1`` shows it, for bug reports).
"""

from __future__ import annotations

import argparse
import os
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from privproc.errors import PrivprocError
from privproc.service import Limits, Listen

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

LOG_LEVELS = ("debug", "info", "warning", "error")


class CommandError(PrivprocError):
    """A command refused, or one of its checks failed (exit 1)."""

    exit_code = EXIT_REFUSED


class UsageError(CommandError):
    """The options or an input file given to a command are unusable (exit 2)."""

    exit_code = EXIT_USAGE


def one_line(text: str) -> str:
    """``text`` on one line: line breaks become ``; ``."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "(default" in text or default is None
                or default is argparse.SUPPRESS or default is False or default == []
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit 2."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {one_line(message)} (see '{self.prog} --help')\n")


def command(parser: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]) -> None:
    """Make ``func`` the action of ``parser``; errors it raises are named after the parser."""
    parser.set_defaults(func=func, command_name=parser.prog)


def group(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str,
          ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """A command group (``privproc NAME ACTION``) with its description."""
    parser = sub.add_parser(name, help=help_, description=help_)
    return parser.add_subparsers(dest=f"{name}_action", required=True, metavar="ACTION")


def leaf(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str,
         func: Callable[[argparse.Namespace], int], description: str | None = None,
         ) -> argparse.ArgumentParser:
    """A command that does something, with its help and description."""
    parser = sub.add_parser(name, help=help_, description=description or help_)
    command(parser, func)
    return parser


# ---- option types -----------------------------------------------------------------


def listen(value: str) -> Listen:
    try:
        return Listen.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return number


def seconds(value: str) -> float:
    """A positive duration in seconds (fractions allowed)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value}")
    return number


def hex_bytes(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected hex, got {value!r}") from None


# ---- the service scaffold ---------------------------------------------------------


def add_service_options(parser: argparse.ArgumentParser, *, state: str | None,
                        redis: str | None = None, request_summaries: bool = False) -> None:
    """``--listen``, ``--state``, ``--log-level``, (where shared stores exist) ``--redis``,
    (where the log sums up requests, :mod:`privproc.reqlog`) ``--log-interval``, and the
    connection limits (``--header-timeout``, ``--body-timeout``, ``--max-connections``:
    see :func:`serve`)."""
    parser.add_argument("--listen", type=listen, required=True, metavar="HOST:PORT",
                        help="the address to serve on (port 0: any free port, printed at "
                             "start)")
    if state is not None:
        parser.add_argument("--state", type=Path, required=True, metavar="DIR", help=state)
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS,
                        help="how much the service logs (content-free fields only)")
    if request_summaries:
        parser.add_argument("--log-interval", type=seconds, default=60.0, metavar="SECONDS",
                            help="log a summary of the requests (count per outcome, p50 "
                                 "and p99 ms) this often; each request is logged at "
                                 "--log-level debug")
    if redis is not None:
        parser.add_argument("--redis", metavar="URL",
                            help=f"{redis}; @FILE or env:NAME keeps a password off the "
                                 "command line")
    defaults = Limits()
    parser.add_argument("--header-timeout", type=seconds, default=defaults.header_timeout,
                        metavar="SECONDS",
                        help="close a connection whose request headers are not complete "
                             "within this time (answering 408)")
    parser.add_argument("--body-timeout", type=seconds, default=defaults.body_timeout,
                        metavar="SECONDS",
                        help="close a connection whose request body brings no data for "
                             "this long")
    parser.add_argument("--max-connections", type=positive_int,
                        default=defaults.max_connections, metavar="N",
                        help="open connections (and requests in progress) beyond which "
                             "requests are answered 503")
    parser.add_argument("--max-head-bytes", type=positive_int,
                        default=defaults.max_head_bytes, metavar="BYTES",
                        help="a request line and header fields larger than this are "
                             "answered 414 or 431 and the connection closed")


def serve(app: Any, args: argparse.Namespace,
          listen: Listen | socket.socket | None = None) -> None:
    """Serve ``app`` as :func:`add_service_options`' options say: at ``--listen`` (or an
    already bound ``listen``), with its log level and connection limits."""
    from privproc.service import serve as serve_app

    limits = Limits(header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                    max_connections=args.max_connections, max_head_bytes=args.max_head_bytes)
    serve_app(app, args.listen if listen is None else listen, args.log_level, limits)


def secret(value: str, option: str, *, url: bool = False) -> str:
    """A secret given as ``@FILE``, ``env:NAME`` (or, with a warning, literally)."""
    from privproc.secrets import SecretError, resolve, warn_if_literal

    warn_if_literal(value, option, url=url)
    try:
        return resolve(value, option)
    except SecretError as exc:
        raise UsageError(str(exc)) from None


def read_input(path: Path, what: str) -> bytes:
    """The bytes of an input file, or a usage error naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None


def read_input_tail(path: Path, what: str, limit: int) -> tuple[bytes, int]:
    """The last ``limit`` bytes of an input file (all of it if shorter) and its size in
    bytes, or a usage error naming it; a pipe is read through, keeping only its end."""
    try:
        with path.open("rb") as f:
            status = os.fstat(f.fileno())
            if stat.S_ISREG(status.st_mode):
                if status.st_size > limit:
                    f.seek(status.st_size - limit)
                return f.read(limit), status.st_size
            kept, total = bytearray(), 0
            while chunk := f.read(1 << 20):
                kept += chunk
                total += len(chunk)
                if len(kept) > 2 * limit:
                    del kept[:-limit]
            return bytes(kept[-limit:]), total
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None


def read_text_input(path: Path, what: str) -> str:
    """The UTF-8 text of an input file, or a usage error naming it."""
    data = read_input(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def write_output(path: Path, data: bytes, what: str) -> None:
    """Write an output file, or raise a usage error naming it."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: {exc.strerror or exc}") from None


def check_writable(path: Path, what: str) -> None:
    """Refuse early (before any work) an output path whose directory does not exist."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"cannot write {what} {path}: no directory {parent}")
    if path.is_dir():
        raise UsageError(f"cannot write {what} {path}: it is a directory")


# ---- running a command ------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; report any failure as one line on stderr."""
    name = getattr(args, "command_name", "privproc")
    try:
        code: int = args.func(args)
        return code
    except CommandError as exc:
        _report(name, str(exc))
        return exc.exit_code
    except PrivprocError as exc:
        _report(name, str(exc))
        return EXIT_REFUSED
    except KeyboardInterrupt:
        _report(name, "interrupted")
        return 130
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _report(name, f"{where}{exc.strerror or exc}")
        return EXIT_REFUSED
    except Exception as exc:  # the last line of defence: no traceback reaches a user
        if os.environ.get("PRIVPROC_DEBUG"):
            raise
        _report(name, f"internal error ({type(exc).__name__}: {exc}); please report it, "
                      "with PRIVPROC_DEBUG=1 set for the traceback")
        return EXIT_REFUSED


def _report(name: str, message: str) -> None:
    print(f"{name}: {one_line(message)}", file=sys.stderr, flush=True)
