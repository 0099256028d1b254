"""``privproc witness serve``: run a C2SP tlog witness for privproc's transparency log.

Wire it into the main command line with a subparser::

    p = witness_sub.add_parser("serve", help=...)
    witness_cli.configure_parser(p)
    p.set_defaults(func=witness_cli.run)

``run`` loads (or, on first start, creates) the witness key in ``--state``, prints the
witness's verifier key to stdout as ``witness vkey: <vkey>``, keeps its state in
``--state/witness.db`` (SQLite) and serves until interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from privproc.wire.errors import NoteError
from privproc.wire.note import Ed25519Verifier, Verifier, check_key_name

__all__ = ["DB_FILE", "DEFAULT_NAME", "configure_parser", "main", "run"]

DEFAULT_NAME = "witness.privproc.local"
DB_FILE = "witness.db"


def _log_key(value: str) -> Ed25519Verifier:
    try:
        return Ed25519Verifier.from_key(value)
    except NoteError as exc:
        raise argparse.ArgumentTypeError(f"log verifier key: {exc}") from None


def _name(value: str) -> str:
    try:
        check_key_name(value)
    except NoteError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``witness serve`` options to ``p``."""
    from privproc import clikit

    clikit.add_service_options(p, state="witness.key (0600), witness.vkey, witness.db")
    p.add_argument("--name", type=_name, default=DEFAULT_NAME, metavar="NAME",
                   help="the witness key name")
    p.add_argument("--log-vkey", type=_log_key, action="append", required=True,
                   metavar="VKEY", dest="logs",
                   help="verifier key of a log to witness (repeatable); the log's origin is "
                        "the key's name, and several keys with one name are all trusted")


def _logs(verifiers: Sequence[Ed25519Verifier]) -> dict[str, list[Verifier]]:
    logs: dict[str, list[Verifier]] = {}
    for v in verifiers:
        group = logs.setdefault(v.name, [])
        if v not in group:
            group.append(v)
    return logs


def run(args: argparse.Namespace) -> int:
    """Run the witness until interrupted; 1 if its key or state cannot be used."""
    from privproc import clikit
    from privproc.service import setup_logging

    from .witness import WitnessStoreError
    from .witness_app import WitnessConfig, WitnessKeyError, create_app, load_or_create_witness_key
    from .witness_store import SqliteWitnessStore

    setup_logging("witness", args.log_level.upper())
    state_dir: Path = args.state
    try:
        signer = load_or_create_witness_key(state_dir, args.name)
    except WitnessKeyError as exc:
        print(f"privproc witness: {exc}", file=sys.stderr)
        return 1
    print(f"witness vkey: {signer.verifier_key}", flush=True)
    try:
        store = SqliteWitnessStore(state_dir / DB_FILE)
    except WitnessStoreError as exc:
        print(f"privproc witness: {exc}", file=sys.stderr)
        return 1
    try:
        config = WitnessConfig(signer=signer, logs=_logs(args.logs), store=store)
        clikit.serve(create_app(config), args)
    finally:
        store.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m privproc.tlog.witness_cli``)."""
    parser = argparse.ArgumentParser(
        prog="privproc witness serve", description="Run a C2SP tlog witness."
    )
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
