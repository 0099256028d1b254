"""The ``privproc`` command line: one entry point for every service and tool.

Every service runs as ``privproc PARTY serve``; the client commands (``up``,
``summarize``, ``write``, ``receipt verify``, ``audit``) find the local system's trust file
without flags. Exit codes: 0 ok, 1 refused or a check failed, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from privproc import clikit


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = clikit.Parser(
        prog="privproc",
        description="Private Processing: private cloud AI for chats, with every key logged "
                    "and every node attested. Start with 'privproc up', then "
                    "'privproc summarize CHAT.txt'.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from privproc.up import cli as up_cli

    up_cli.configure(sub)

    from privproc.client import cli as client_cli

    client_cli.configure(sub)

    from privproc.tlog import cli as tlog_cli

    tlog_cli.configure(sub)

    from privproc.relay import cli as relay_cli

    relay_cli.configure(sub)

    from privproc.gateway import cli as gateway_cli

    gateway_cli.configure(sub)

    from privproc.issuer import cli as issuer_cli

    issuer_cli.configure(sub)

    from privproc.node import cli as node_cli

    node_cli.configure(sub)

    from privproc.attest import cli as attest_cli

    attest_cli.configure(sub)

    from privproc.demo import cli as demo_cli

    demo_cli.configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already reported
        return exc.code if isinstance(exc.code, int) else clikit.EXIT_USAGE
    return clikit.run(args)


if __name__ == "__main__":
    sys.exit(main())
