"""``privproc gateway serve`` and ``privproc gateway rotate-keys``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from privproc import clikit
from privproc.budget import GATEWAY_TIMEOUT
from privproc.clikit import CommandError, UsageError, positive_int, seconds
from privproc.wire import note

if TYPE_CHECKING:
    from privproc.gateway.app import DirectoryConfig, GatewayConfig

DEFAULT_ORIGIN_NAME = "gateway.privproc.local"
DEFAULT_GRACE = 24 * 3600.0
DEFAULT_KEY_LIFETIME = 30 * 86400.0


def publisher(key: Path | None, owner: str) -> note.Signer:
    """A key publisher named ``owner`` (the log takes key records only from such a key)."""
    from privproc.tlog.keys import KeyFileError, read_key_publisher

    if key is None:
        raise UsageError("--log needs --publisher-key FILE")
    try:
        return read_key_publisher(key, owner)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None


def _rotate(args: argparse.Namespace) -> int:
    from privproc.gateway import keystore
    from privproc.tlog.publish import PublishError, publish

    signer = publisher(args.publisher_key, args.origin_name) if args.log is not None else None
    try:
        state = keystore.rotate(args.state, time.time(), args.grace, lifetime=args.key_lifetime)
    except keystore.KeyStoreError as exc:
        raise CommandError(str(exc)) from None
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
        raise CommandError(str(exc)) from None
    print(f"key record logged at index {index}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from privproc.gateway import keystore
    from privproc.gateway.app import create_app
    from privproc.service import setup_logging

    config = _config(args)
    setup_logging("gateway", args.log_level.upper())
    try:
        app = create_app(config)
    except keystore.KeyStoreError as exc:
        raise CommandError(str(exc)) from None
    clikit.serve(app, args)
    return 0


def _config(args: argparse.Namespace) -> GatewayConfig:
    redis_url = clikit.secret(args.redis, "--redis", url=True) if args.redis else None
    try:
        args.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--state {args.state}: {exc.strerror or exc}") from None
    redemption = None
    if args.issuer_keys is not None:
        from privproc.gateway.redeem import RedemptionConfig
        from privproc.gateway.spend import RedisSpendStore, SpendStore, SqliteSpendStore

        store: SpendStore = (RedisSpendStore(redis_url) if redis_url
                             else SqliteSpendStore(args.state / "spent-tokens.db"))
        redemption = RedemptionConfig(
            issuer_keys=args.issuer_keys, issuer_name=args.issuer_name,
            origin_name=args.origin_name, spend_store=store,
            redemption_context=args.redemption_context,
        )
    from privproc.gateway.app import GatewayConfig

    transparency = None
    if args.log is not None:
        from privproc.gateway.transparency import TransparencyConfig

        signer = (publisher(args.publisher_key, args.origin_name)
                  if args.publisher_key is not None else None)
        transparency = TransparencyConfig(log_url=args.log, owner=args.origin_name,
                                          signer=signer, refresh=args.staple_refresh)
    directory = _directory_config(args, redis_url) if args.node_directory else None
    from privproc.gateway.core import ReplayJudge
    from privproc.gateway.replay import RedisReplayGuard, SqliteReplayGuard

    replay: ReplayJudge = (RedisReplayGuard(redis_url, args.replay_window) if redis_url
                           else SqliteReplayGuard(args.state / "replay.db", args.replay_window))
    return GatewayConfig(
        state_dir=args.state, upstream=args.upstream, max_body=args.max_body,
        max_upstream_body=args.max_upstream_body, replay_window=args.replay_window,
        upstream_timeout=args.timeout, redemption=redemption, directory=directory,
        transparency=transparency, replay=replay, key_lifetime=args.key_lifetime,
        key_grace=args.grace, log_interval=args.log_interval,
    )


def _directory_config(args: argparse.Namespace, redis_url: str | None) -> DirectoryConfig:
    from privproc.client.trust import TrustConfigError, load_trust
    from privproc.gateway.directory import MemoryRegistry, NodeRegistry, RedisRegistry
    from privproc.gateway.registrar import RegistrarConfig

    missing = [flag for flag, value in (("--trust", args.trust), ("--log", args.log),
                                        ("--node-url-allow", args.node_url_allow))
               if not value]
    if missing:
        raise UsageError(f"--node-directory needs {', '.join(missing)}: nodes are listed only "
                         "after the checks a client makes, at allowed URLs")
    token = clikit.secret(args.node_token, "--node-token")
    try:
        trust = load_trust(args.trust)
    except TrustConfigError as exc:
        raise UsageError(f"--trust: {exc}") from None
    from privproc.gateway.app import DirectoryConfig

    registry: NodeRegistry = (RedisRegistry(redis_url, max_nodes=args.max_nodes) if redis_url
                              else MemoryRegistry(max_nodes=args.max_nodes))
    return DirectoryConfig(
        registry=registry,
        registrar=RegistrarConfig(trust=trust, operator_token=token,
                                  url_allow=tuple(args.node_url_allow)),
        ttl=args.node_ttl, window=args.directory_window, subset=args.directory_size)


def _redemption_context(value: str) -> bytes:
    context = clikit.hex_bytes(value)
    if len(context) not in (0, 32):
        raise argparse.ArgumentTypeError(f"expected 32 bytes of hex, got {len(context)} bytes")
    return context


def _key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--origin-name", default=DEFAULT_ORIGIN_NAME, metavar="NAME",
                   help="the gateway's name: the origin name in token challenges and the "
                        "owner of its key records")
    p.add_argument("--key-lifetime", type=seconds, default=DEFAULT_KEY_LIFETIME,
                   metavar="SECONDS", help="validity of a new OHTTP key (its key record's "
                                           "not-after); renewed when a quarter is left")
    p.add_argument("--grace", type=seconds, default=DEFAULT_GRACE, metavar="SECONDS",
                   help="how long the previous key stays accepted after a rotation")
    p.add_argument("--log", metavar="URL",
                   help="the transparency log: publish key records there (and, for serve, "
                        "staple its proofs for clients)")
    p.add_argument("--publisher-key", type=Path, metavar="FILE",
                   help="a key publisher named like --origin-name, to publish key records "
                        "to --log")


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = clikit.group(sub, "gateway", "The OHTTP gateway: run it, or rotate its keys.")
    gateway = clikit.leaf(actions, "serve", "Run the OHTTP gateway.", _serve)
    clikit.add_service_options(
        gateway, state="the gateway's keys and (without --redis) its spent tokens",
        redis="double-spend store, replay store and node directory in Redis, shared by "
              "gateway replicas (default: SQLite in --state and memory)",
        request_summaries=True)
    gateway.add_argument("--upstream", required=True, metavar="URL",
                         help="the origin plain inner requests go to")
    gateway.add_argument("--max-body", type=positive_int, default=1 << 20, metavar="BYTES",
                         help="the largest encapsulated request accepted")
    gateway.add_argument("--max-upstream-body", type=positive_int, default=4 << 20,
                         metavar="BYTES", help="a larger answer from the origin or a node "
                                               "is refused with 502")
    gateway.add_argument("--replay-window", type=seconds, default=60.0, metavar="SECONDS",
                         help="accepted clock difference of the inner Date; requests "
                              "seen are remembered for twice this (without --redis in "
                              "--state/replay.db, so a restart forgets none)")
    gateway.add_argument("--timeout", type=seconds, default=GATEWAY_TIMEOUT, metavar="SECONDS",
                         help="seconds to wait for the origin or a node, then a sealed 504 "
                              "naming it (the node deadline plus a margin)")
    gateway.add_argument("--issuer-keys", type=Path, metavar="DIR",
                         help="require Privacy Pass tokens from the issuer whose key "
                              "directory this is (type 0x0001 needs its secret)")
    gateway.add_argument("--issuer-name", default="issuer.privproc.local", metavar="NAME",
                         help="the issuer name in the token challenge")
    gateway.add_argument("--redemption-context", type=_redemption_context, default=b"",
                         metavar="HEX", help="32-byte redemption context of the challenge "
                                             "(default: none)")
    _key_options(gateway)
    gateway.add_argument("--staple-refresh", type=seconds, default=10.0, metavar="SECONDS",
                         help="how often stapled log proofs are renewed")
    gateway.add_argument("--node-directory", action="store_true",
                         help="keep a directory of processing nodes (they register at "
                              "/nodes/register; clients reach them at /v1/nodes through OHTTP)")
    gateway.add_argument("--trust", type=Path, metavar="FILE",
                         help="with --node-directory: the trust file (the clients' format) "
                              "nodes are checked against before they are listed")
    gateway.add_argument("--node-url-allow", action="append", default=[], metavar="PATTERN",
                         help="with --node-directory: a node URL pattern nodes may register "
                              "(glob over scheme://host:port, e.g. 'http://10.0.0.*:8443'; "
                              "repeatable; nothing is allowed by default)")
    gateway.add_argument("--node-token", default="env:PRIVPROC_NODE_TOKEN", metavar="SECRET",
                         help="the operator credential nodes register with: @FILE or env:NAME")
    gateway.add_argument("--max-nodes", type=positive_int, default=1024, metavar="N",
                         help="the most nodes the directory lists")
    gateway.add_argument("--node-ttl", type=seconds, default=30.0, metavar="SECONDS",
                         help="drop nodes silent this long")
    gateway.add_argument("--directory-window", type=seconds, default=60.0, metavar="SECONDS",
                         help="the node list is the same for every caller within a window")
    gateway.add_argument("--directory-size", type=positive_int, default=8, metavar="N",
                         help="how many nodes the directory offers")

    rotate = clikit.leaf(actions, "rotate-keys",
                         "Make a new current OHTTP key; keep the old one for the grace period.",
                         _rotate)
    rotate.add_argument("--state", type=Path, required=True, metavar="DIR",
                        help="the gateway's state directory")
    _key_options(rotate)
