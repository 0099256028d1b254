"""``privproc up``."""

from __future__ import annotations

import argparse
from pathlib import Path

from privproc import clikit
from privproc.clikit import positive_int


def _up(args: argparse.Namespace) -> int:
    from privproc.paths import default_state_dir

    from .system import run

    return run(args.state or default_state_dir(), args.nodes, args.backend, args.node_config)


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = clikit.leaf(sub, "up", "Start every service on loopback (simulated platform).", _up,
                     description="Start the whole system on this machine: log, witness, "
                                 "issuer, gateway, relay and nodes on loopback, the node on "
                                 "the simulated platform (development: it proves no TEE). "
                                 "Writes the client's trust file (client.toml) into the state "
                                 "directory, where summarize, write, receipt verify and audit "
                                 "find it. One 'up' per state directory.")
    up.add_argument("--state", type=Path, metavar="DIR",
                    help="keys, databases, logs and client.toml (default: $PRIVPROC_STATE, "
                         "else $XDG_STATE_HOME/privproc, else ~/.local/state/privproc)")
    up.add_argument("--nodes", type=positive_int, default=1, metavar="N",
                    help="how many processing nodes to start")
    up.add_argument("--backend", choices=["llama", "extractive", "echo"], default="llama",
                    help="what the nodes answer with: the embedded default model, the "
                         "model-free extractive pipeline, or an echo (tests)")
    up.add_argument("--node-config", type=Path, metavar="FILE",
                    help="the nodes' configuration file (measured)")
