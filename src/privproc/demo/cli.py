"""``privproc echo serve``: the demo origin."""

from __future__ import annotations

import argparse

from privproc import clikit


def _serve(args: argparse.Namespace) -> int:
    from privproc.demo.echo import create_app
    from privproc.service import setup_logging

    setup_logging("echo", args.log_level.upper())
    clikit.serve(create_app(), args)
    return 0


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = clikit.group(sub, "echo", "A demo origin that answers with what it saw, as JSON.")
    echo = clikit.leaf(actions, "serve", "Run the demo origin.", _serve)
    clikit.add_service_options(echo, state=None)
