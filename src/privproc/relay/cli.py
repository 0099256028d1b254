"""``privproc relay serve``."""

from __future__ import annotations

import argparse

from privproc import clikit
from privproc.budget import RELAY_TIMEOUT
from privproc.clikit import positive_int, seconds


def _serve(args: argparse.Namespace) -> int:
    from privproc.relay.app import RelayConfig, create_app
    from privproc.service import setup_logging

    setup_logging("relay", args.log_level.upper())
    config = RelayConfig(gateway=args.gateway, keys_url=args.gateway_keys, max_body=args.max_body,
                         timeout=args.timeout, log=args.log, log_interval=args.log_interval)
    try:
        app = create_app(config)
    except ValueError as exc:
        raise clikit.UsageError(f"--gateway: {exc}") from None
    clikit.serve(app, args)
    return 0


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = clikit.group(sub, "relay", "The OHTTP relay: forwards to one gateway, adds nothing.")
    relay = clikit.leaf(actions, "serve", "Run the OHTTP relay.", _serve)
    clikit.add_service_options(relay, state=None, request_summaries=True)
    relay.add_argument("--gateway", required=True, metavar="URL",
                       help="the gateway's request URL, e.g. http://127.0.0.1:8082/gateway")
    relay.add_argument("--gateway-keys", metavar="URL",
                       help="the gateway's key configuration URL (default: /ohttp-keys there)")
    relay.add_argument("--log", metavar="URL",
                       help="the transparency log to proxy at /log/ (checkpoint and tiles "
                            "only), so clients reach it without revealing themselves")
    relay.add_argument("--max-body", type=positive_int, default=1 << 20, metavar="BYTES",
                       help="the largest encapsulated request forwarded")
    relay.add_argument("--timeout", type=seconds, default=RELAY_TIMEOUT, metavar="SECONDS",
                       help="seconds to wait for the gateway, then 504 'gateway timed out' "
                            "(the gateway's plus a margin)")
