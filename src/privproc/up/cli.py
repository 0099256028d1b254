"""``privproc up``."""

from __future__ import annotations

import argparse
from pathlib import Path

from privproc import clikit
from privproc.clikit import positive_int, seconds


def _up(args: argparse.Namespace) -> int:
    from privproc.paths import default_state_dir

    from .supervisor import RestartPolicy
    from .system import run

    policy = RestartPolicy(max_restarts=args.max_restarts, window=args.restart_window)
    return run(args.state or default_state_dir(), args.nodes, args.backend, args.node_config,
               policy)


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = clikit.leaf(sub, "up", "Start every service on loopback (simulated platform).", _up,
                     description="Start the whole system on this machine: log, witness, "
                                 "issuer, gateway, relay and nodes on loopback, the node on "
                                 "the simulated platform (development: it proves no TEE). "
                                 "Writes the client's trust file (client.toml) into the state "
                                 "directory, where summarize, write, receipt verify and audit "
                                 "find it. One 'up' per state directory. A service that "
                                 "exits is restarted on the address it had (after 1 s, "
                                 "doubling up to 30 s); one that exits more than "
                                 "--max-restarts times within --restart-window stops "
                                 "everything (exit 1).")
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
    up.add_argument("--max-restarts", type=positive_int, default=5, metavar="N",
                    help="restarts of one service within --restart-window after which 'up' "
                         "gives up and stops everything")
    up.add_argument("--restart-window", type=seconds, default=60.0, metavar="SECONDS",
                    help="the window --max-restarts counts in")
