"""The ``privproc`` command line: one entry point for every service and tool."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from privproc.budget import GATEWAY_TIMEOUT, RELAY_TIMEOUT
from privproc.service import Listen
from privproc.wire import note

if TYPE_CHECKING:
    from privproc.gateway.app import DirectoryConfig, GatewayConfig


def _listen(value: str) -> Listen:
    try:
        return Listen.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return number


def _cmd_relay(args: argparse.Namespace) -> int:
    from privproc.relay.app import RelayConfig, create_app
    from privproc.service import serve, setup_logging

    setup_logging("relay", args.log_level.upper())
    config = RelayConfig(gateway=args.gateway, keys_url=args.gateway_keys, max_body=args.max_body,
                         timeout=args.timeout, log=args.log)
    serve(create_app(config), args.listen, args.log_level)
    return 0


def _publisher(command: str, key: Path | None, owner: str) -> note.Signer:
    """A key publisher named ``owner`` (the log takes key records only from such a key)."""
    from privproc.tlog.keys import KeyFileError, read_key_publisher

    if key is None:
        raise _UsageError(f"privproc {command}: --log needs --publisher-key FILE")
    try:
        return read_key_publisher(key, owner)
    except KeyFileError as exc:
        raise _UsageError(f"privproc {command}: {exc}") from None


class _UsageError(Exception):
    pass


def _gateway_rotate(args: argparse.Namespace) -> int:
    from privproc.gateway import keystore
    from privproc.tlog.publish import PublishError, publish

    try:
        signer = (_publisher("gateway rotate-keys", args.publisher_key, args.origin_name)
                  if args.log is not None else None)
        state = keystore.rotate(args.state, time.time(), args.grace,
                                lifetime=args.key_lifetime)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except keystore.KeyStoreError as exc:
        print(f"privproc gateway rotate-keys: {exc}", file=sys.stderr)
        return 1
    old = [k for k in state.keys if k.retire_at is not None]
    print(f"new current key_id={state.current.key_id}")
    for k in old:
        print(f"key_id={k.key_id} accepted until "
              f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(k.retire_at or 0))}")
    if signer is None:
        print("key record not published here (no --log): a running gateway with --log "
              "publishes it; clients refuse a key until it is logged", file=sys.stderr)
        return 0
    try:
        index = publish(args.log, signer, state.current.key_record(signer.name).encode())
    except PublishError as exc:
        print(f"privproc gateway rotate-keys: {exc}", file=sys.stderr)
        return 1
    print(f"key record logged at index {index}")
    return 0


def _cmd_gateway(args: argparse.Namespace) -> int:
    from privproc.gateway import keystore

    if args.action == "rotate-keys":
        return _gateway_rotate(args)
    if args.listen is None or args.upstream is None or args.state is None:
        print("privproc gateway: --listen, --upstream and --state are required", file=sys.stderr)
        return 2
    try:
        config = _gateway_config(args)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    from privproc.gateway.app import create_app
    from privproc.service import serve, setup_logging

    setup_logging("gateway", args.log_level.upper())
    try:
        app = create_app(config)
    except keystore.KeyStoreError as exc:
        print(f"privproc gateway: {exc}", file=sys.stderr)
        return 1
    serve(app, args.listen, args.log_level)
    return 0


def _secret(value: str, what: str, *, url: bool = False) -> str:
    from privproc.secrets import SecretError, resolve, warn_if_literal

    warn_if_literal(value, what, url=url)
    try:
        return resolve(value, what)
    except SecretError as exc:
        raise _UsageError(f"privproc: {exc}") from None


def _gateway_config(args: argparse.Namespace) -> GatewayConfig:
    redis_url = _secret(args.redis, "--redis", url=True) if args.redis else None
    args.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    redemption = None
    if args.issuer_keys is not None:
        from privproc.gateway.redeem import RedemptionConfig
        from privproc.gateway.spend import RedisSpendStore, SpendStore, SqliteSpendStore

        store: SpendStore = (RedisSpendStore(redis_url) if redis_url
                             else SqliteSpendStore(args.state / "spent-tokens.db"))
        redemption = RedemptionConfig(
            issuer_keys=args.issuer_keys, issuer_name=args.issuer_name,
            origin_name=args.origin_name, spend_store=store,
            redemption_context=bytes.fromhex(args.redemption_context),
        )
    from privproc.gateway.app import GatewayConfig

    transparency = None
    if args.log is not None:
        from privproc.gateway.transparency import TransparencyConfig

        signer = (_publisher("gateway", args.publisher_key, args.origin_name)
                  if args.publisher_key is not None else None)
        transparency = TransparencyConfig(log_url=args.log, owner=args.origin_name,
                                          signer=signer, refresh=args.staple_refresh)
    directory = None
    if args.node_directory:
        directory = _directory_config(args, redis_url)
    replay = None
    if redis_url:
        from privproc.gateway.replay import RedisReplayGuard

        replay = RedisReplayGuard(redis_url, args.replay_window)
    return GatewayConfig(
        state_dir=args.state, upstream=args.upstream, max_body=args.max_body,
        max_upstream_body=args.max_upstream_body, replay_window=args.replay_window,
        upstream_timeout=args.timeout, redemption=redemption, directory=directory,
        transparency=transparency, replay=replay, key_lifetime=args.key_lifetime,
        key_grace=args.grace,
    )


def _directory_config(args: argparse.Namespace, redis_url: str | None) -> DirectoryConfig:
    from privproc.client.trust import TrustConfigError, load_trust
    from privproc.gateway.directory import MemoryRegistry, NodeRegistry, RedisRegistry
    from privproc.gateway.registrar import RegistrarConfig

    missing = [flag for flag, value in (("--trust", args.trust), ("--log", args.log),
                                        ("--node-url-allow", args.node_url_allow))
               if not value]
    if missing:
        raise _UsageError(f"privproc gateway: --node-directory needs {', '.join(missing)}: "
                          "nodes are listed only after the checks a client makes, at "
                          "allowed URLs")
    token = _secret(args.node_token, "--node-token")
    try:
        trust = load_trust(args.trust)
    except TrustConfigError as exc:
        raise _UsageError(f"privproc gateway: --trust: {exc}") from None
    from privproc.gateway.app import DirectoryConfig

    registry: NodeRegistry = (RedisRegistry(redis_url, max_nodes=args.max_nodes) if redis_url
                              else MemoryRegistry(max_nodes=args.max_nodes))
    return DirectoryConfig(
        registry=registry,
        registrar=RegistrarConfig(trust=trust, operator_token=token,
                                  url_allow=tuple(args.node_url_allow)),
        ttl=args.node_ttl, window=args.directory_window, subset=args.directory_size)


def _cmd_echo(args: argparse.Namespace) -> int:
    from privproc.demo.echo import create_app
    from privproc.service import serve, setup_logging

    setup_logging("echo", args.log_level.upper())
    serve(create_app(), args.listen, args.log_level)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privproc", description="Private Processing: services and tools."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def service(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])
        return p

    relay = service("relay", "Run the OHTTP relay (forwards to one gateway, adds nothing).")
    relay.add_argument("--listen", type=_listen, required=True, metavar="HOST:PORT")
    relay.add_argument("--gateway", required=True, metavar="URL",
                       help="the gateway's request URL, e.g. http://127.0.0.1:8082/gateway")
    relay.add_argument("--gateway-keys", metavar="URL",
                       help="the gateway's key configuration URL (default: /ohttp-keys there)")
    relay.add_argument("--log", metavar="URL",
                       help="the transparency log to proxy at /log/ (checkpoint and tiles "
                            "only), so clients reach it without revealing themselves")
    relay.add_argument("--max-body", type=_positive_int, default=1 << 20, metavar="BYTES")
    relay.add_argument("--timeout", type=float, default=RELAY_TIMEOUT, metavar="SECONDS",
                       help="seconds to wait for the gateway, then 504 'gateway timed out' "
                            f"(default {RELAY_TIMEOUT:.0f}: the gateway's plus a margin)")
    relay.set_defaults(func=_cmd_relay)

    gateway = service("gateway", "Run the OHTTP gateway, or rotate its keys.")
    gateway.add_argument("--listen", type=_listen, metavar="HOST:PORT")
    gateway.add_argument("--upstream", metavar="URL", help="the origin inner requests go to")
    gateway.add_argument("--state", type=Path, metavar="DIR", help="key state directory")
    gateway.add_argument("--max-body", type=_positive_int, default=1 << 20, metavar="BYTES")
    gateway.add_argument("--replay-window", type=float, default=60.0, metavar="SECONDS",
                         help="accepted clock difference of the inner Date (default 60)")
    gateway.add_argument("--timeout", type=float, default=GATEWAY_TIMEOUT, metavar="SECONDS",
                         help="seconds to wait for the origin or a node, then a sealed 504 "
                              f"naming it (default {GATEWAY_TIMEOUT:.0f}: the node deadline "
                              "plus a margin)")
    gateway.add_argument("--issuer-keys", type=Path, metavar="DIR",
                         help="require Privacy Pass tokens from the issuer whose key "
                              "directory this is (type 0x0001 needs its secret)")
    gateway.add_argument("--issuer-name", default="issuer.privproc.local",
                         help="the issuer name in the token challenge")
    gateway.add_argument("--origin-name", default="gateway.privproc.local",
                         help="the gateway's name: the origin name in token challenges and "
                              "the owner of its key records (default gateway.privproc.local)")
    gateway.add_argument("--log", metavar="URL",
                         help="the transparency log: staple its proofs for clients "
                              "(/privproc/keys, the node list) and publish key records there")
    gateway.add_argument("--publisher-key", type=Path, metavar="FILE",
                         help="a key publisher named like --origin-name: publish this "
                              "gateway's key records to --log (at start, after rotation)")
    gateway.add_argument("--staple-refresh", type=float, default=10.0, metavar="SECONDS",
                         help="how often stapled log proofs are renewed (default 10)")
    gateway.add_argument("--key-lifetime", type=float, default=30 * 86400.0, metavar="SECONDS",
                         help="validity of a new OHTTP key (its key record's not-after; "
                              "default 30 days); renewed when a quarter is left")
    gateway.add_argument("--grace", type=float, default=24 * 3600.0, metavar="SECONDS",
                         help="how long a renewed key stays accepted (default 86400)")
    gateway.add_argument("--redemption-context", default="", metavar="HEX",
                         help="32-byte redemption context of the challenge (default none)")
    gateway.add_argument("--redis", metavar="URL",
                         help="double-spend store, replay store and node directory in "
                              "Redis, shared by gateway replicas (default: SQLite in --state "
                              "and memory); @FILE or env:NAME keeps a password off the "
                              "command line")
    gateway.add_argument("--max-upstream-body", type=_positive_int, default=4 << 20,
                         metavar="BYTES", help="a larger answer from the origin or a node "
                                               "is refused with 502 (default 4 MiB)")
    gateway.add_argument("--node-directory", action="store_true",
                         help="keep a directory of processing nodes (they register at "
                              "/nodes/register; clients reach them at /v1/nodes through OHTTP)")
    gateway.add_argument("--trust", type=Path, metavar="TOML",
                         help="with --node-directory: the trust file (same format as the "
                              "clients') nodes are checked against before they are listed")
    gateway.add_argument("--node-url-allow", action="append", default=[], metavar="PATTERN",
                         help="with --node-directory: a node URL pattern nodes may register "
                              "(glob over scheme://host:port, e.g. 'http://10.0.0.*:8443'; "
                              "repeatable; nothing is allowed by default)")
    gateway.add_argument("--node-token", default="env:PRIVPROC_NODE_TOKEN", metavar="SECRET",
                         help="the operator credential nodes register with: @FILE or "
                              "env:NAME (default env:PRIVPROC_NODE_TOKEN)")
    gateway.add_argument("--max-nodes", type=_positive_int, default=1024,
                         help="the most nodes the directory lists (default 1024)")
    gateway.add_argument("--node-ttl", type=float, default=30.0, metavar="SECONDS",
                         help="drop nodes silent this long (default 30)")
    gateway.add_argument("--directory-window", type=float, default=60.0, metavar="SECONDS",
                         help="the node list is the same for every caller within a window")
    gateway.add_argument("--directory-size", type=int, default=8,
                         help="how many nodes the directory offers (default 8)")
    gateway.set_defaults(func=_cmd_gateway, action=None)
    gateway_sub = gateway.add_subparsers(dest="action", metavar="ACTION")
    rotate = gateway_sub.add_parser(
        "rotate-keys", help="make a new current key; keep the old one for the grace period"
    )
    rotate.add_argument("--state", type=Path, required=True, metavar="DIR")
    rotate.add_argument("--grace", type=float, default=24 * 3600.0, metavar="SECONDS",
                        help="how long the previous key stays accepted (default 86400)")
    rotate.add_argument("--key-lifetime", type=float, default=30 * 86400.0, metavar="SECONDS",
                        help="validity of the new key (default 30 days)")
    rotate.add_argument("--log", metavar="URL", help="publish the new key's record here")
    rotate.add_argument("--publisher-key", type=Path, metavar="FILE",
                        help="a key publisher named like --origin-name, for --log")
    rotate.add_argument("--origin-name", default="gateway.privproc.local",
                        help="the gateway's name, the owner of its key records")

    from privproc.tlog.cli import configure as configure_tlog

    configure_tlog(sub)

    from privproc.issuer.cli import configure as configure_issuer

    configure_issuer(sub)

    from privproc.client.cli import configure as configure_client

    configure_client(sub)

    from privproc.node.cli import configure as configure_node

    configure_node(sub)

    from privproc.attest import cli as attest_cli

    attest = sub.add_parser("attest", help="Attestation evidence tools.")
    attest_sub = attest.add_subparsers(dest="attest_action", required=True, metavar="ACTION")
    verify = attest_sub.add_parser(
        "verify", help="Verify an evidence bundle or an SEV-SNP report; exit 0/1."
    )
    attest_cli.configure_verify_parser(verify)
    verify.set_defaults(func=attest_cli.run_verify)
    measure = sub.add_parser("measure", help="Compute the launch measurement of a node release.")
    attest_cli.configure_measure_parser(measure)
    measure.set_defaults(func=attest_cli.run_measure)

    echo = service("echo", "Run a demo origin that answers with what it saw, as JSON.")
    echo.add_argument("--listen", type=_listen, required=True, metavar="HOST:PORT")
    echo.set_defaults(func=_cmd_echo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
