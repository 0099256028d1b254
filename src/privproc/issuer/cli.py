"""``privproc issuer`` commands: serve, rotate-keys, account-keygen, mint-account-token."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from privproc import clikit
from privproc.clikit import positive_int, seconds
from privproc.wire import note
from privproc.wire.errors import NoteError


def _static_accounts(values: list[str]) -> dict[str, str]:
    """TOKEN=ACCOUNT pairs, each given as itself, @FILE (one pair a line) or env:NAME."""
    from privproc.secrets import resolve_lines, warn_if_literal

    accounts: dict[str, str] = {}
    for value in values:
        warn_if_literal(value, "--static-account")
        for line in resolve_lines(value, "--static-account"):
            token, sep, account = line.partition("=")
            if not sep or not token or not account:
                raise ValueError("--static-account: expected TOKEN=ACCOUNT (the value is "
                                 "not shown)")
            accounts[token] = account
    return accounts


def _serve(args: argparse.Namespace) -> int:
    from privproc.service import setup_logging

    from .accounts import AccountVerifier, SignedBearerVerifier, StaticAccountVerifier
    from .app import IssuerConfig, create_app
    from .keystore import IssuerKeyError
    from .quota import QuotaStore, RedisQuota, SqliteQuota

    setup_logging("issuer", args.log_level.upper())
    if not args.account_key and not args.static_account:
        print("privproc issuer serve: give --account-key VKEY (the account service's key) "
              "or --static-account TOKEN=ACCOUNT", file=sys.stderr)
        return 2
    from privproc.secrets import SecretError, resolve, warn_if_literal

    try:
        accounts: AccountVerifier = (
            SignedBearerVerifier([note.Ed25519Verifier.from_key(k) for k in args.account_key])
            if args.account_key else StaticAccountVerifier(_static_accounts(args.static_account))
        )
        redis_url = None
        if args.redis:
            warn_if_literal(args.redis, "--redis", url=True)
            redis_url = resolve(args.redis, "--redis")
    except NoteError as exc:
        print(f"privproc issuer serve: --account-key: {exc}", file=sys.stderr)
        return 2
    except (SecretError, ValueError) as exc:
        print(f"privproc issuer serve: {exc}", file=sys.stderr)
        return 2
    args.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    quota: QuotaStore = (RedisQuota(redis_url) if redis_url
                         else SqliteQuota(args.state / "quota.db"))
    key_logging = None
    if args.log is not None:
        from privproc.tlog.keys import KeyFileError, read_key_publisher

        from .app import KeyLogging

        if args.publisher_key is None:
            print("privproc issuer serve: --log needs --publisher-key FILE (a key publisher "
                  "named like --name)", file=sys.stderr)
            return 2
        try:
            signer = read_key_publisher(args.publisher_key, args.name)
        except KeyFileError as exc:
            print(f"privproc issuer serve: {exc}", file=sys.stderr)
            return 2
        key_logging = KeyLogging(args.log, signer, args.name)
    config = IssuerConfig(state_dir=args.state, accounts=accounts, quota=quota,
                          limit=args.quota, period=int(args.period),
                          key_lifetime=int(args.key_lifetime), overlap=int(args.grace),
                          key_logging=key_logging)
    try:
        app = create_app(config)
    except IssuerKeyError as exc:
        print(f"privproc issuer serve: {exc}", file=sys.stderr)
        return 1
    clikit.serve(app, args)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from privproc.tlog.keys import KeyFileError, read_signer
    from privproc.tlog.publish import PublishError, publish

    from .keystore import IssuerKeyError, rotate

    now = int(time.time())
    if args.log is not None and args.publisher_key is None:
        print("privproc issuer rotate-keys: --log needs --publisher-key FILE", file=sys.stderr)
        return 2
    try:
        signer = read_signer(args.publisher_key) if args.log is not None else None
        keys = rotate(args.state, now, int(args.grace), int(args.key_lifetime))
    except (IssuerKeyError, KeyFileError) as exc:
        print(f"privproc issuer rotate-keys: {exc}", file=sys.stderr)
        return 1
    for k in keys.keys:
        state = "current" if k.retire_at is None else f"accepted until {k.retire_at}"
        print(f"type 0x{k.token_type:04x} key {k.key_id.hex()[:16]}... {state}")
    if signer is None:
        print("key records not published here (no --log): a running issuer with --log "
              "publishes them; clients refuse a key until it is logged", file=sys.stderr)
        return 0
    try:
        for k in keys.keys:
            if k.retire_at is None:
                index = publish(args.log, signer, k.key_record(signer.name).encode())
                print(f"type 0x{k.token_type:04x} key record logged at index {index}")
    except PublishError as exc:
        print(f"privproc issuer rotate-keys: {exc}", file=sys.stderr)
        return 1
    return 0


def _account_keygen(args: argparse.Namespace) -> int:
    from privproc.tlog.keys import KeyFileError, create_signer

    try:
        signer = create_signer(args.out, args.name)
    except KeyFileError as exc:
        print(f"privproc issuer account-keygen: {exc}", file=sys.stderr)
        return 1
    print(signer.verifier_key)
    return 0


def _mint(args: argparse.Namespace) -> int:
    from privproc.tlog.keys import KeyFileError, read_signer

    from .accounts import mint_account_token

    try:
        signer = read_signer(args.key)
    except KeyFileError as exc:
        print(f"privproc issuer mint-account-token: {exc}", file=sys.stderr)
        return 1
    print(mint_account_token(signer, args.account, int(time.time() + args.ttl)))
    return 0


def _key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-lifetime", type=seconds, default=30 * 86400.0, metavar="SECONDS",
                   help="how long a new key is valid (its key record's not-after); keys are "
                        "renewed a quarter before")
    p.add_argument("--grace", type=seconds, default=7 * 86400.0, metavar="SECONDS",
                   help="how long a rotated-out key stays accepted")
    p.add_argument("--log", metavar="URL",
                   help="publish key records to this transparency log (clients use only "
                        "logged keys)")
    p.add_argument("--publisher-key", type=Path, metavar="FILE",
                   help="a key publisher named like the issuer, for --log")


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = clikit.group(sub, "issuer",
                           "The Privacy Pass issuer: run it, manage its keys and accounts.")
    serve = clikit.leaf(actions, "serve", "Serve the issuer directory and token requests.",
                        _serve)
    clikit.add_service_options(serve, state="the issuer's token keys and (without --redis) "
                                            "its quota counts",
                               redis="count quotas in Redis (many replicas)")
    serve.add_argument("--account-key", action="append", default=[], metavar="VKEY",
                       help="verifier key of the app's account service (repeatable)")
    serve.add_argument("--static-account", action="append", default=[],
                       metavar="TOKEN=ACCOUNT",
                       help="a fixed bearer token (tests, demos); @FILE (one TOKEN=ACCOUNT a "
                            "line) or env:NAME keeps it off the command line")
    serve.add_argument("--quota", type=positive_int, default=200, metavar="N",
                       help="tokens per account per period")
    serve.add_argument("--period", type=seconds, default=86400.0, metavar="SECONDS",
                       help="the quota period")
    serve.add_argument("--name", default="issuer.privproc.local", metavar="NAME",
                       help="the issuer name: the owner of its key records in the log and "
                            "the issuer name of token challenges")
    _key_options(serve)
    rotate = clikit.leaf(actions, "rotate-keys",
                         "Make new token keys; keep the old ones for the grace period.", _rotate)
    rotate.add_argument("--state", type=Path, required=True, metavar="DIR",
                        help="the issuer's state directory")
    _key_options(rotate)
    keygen = clikit.leaf(actions, "account-keygen", "Make an account-service signing key.",
                         _account_keygen)
    keygen.add_argument("--name", required=True, metavar="NAME",
                        help="the key's name, e.g. accounts.example.com")
    keygen.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help="where to write the signing key (mode 0600)")
    mint = clikit.leaf(actions, "mint-account-token",
                       "Mint an account bearer token (the account service's job).", _mint)
    mint.add_argument("--key", type=Path, required=True, metavar="FILE",
                      help="the account-service signing key")
    mint.add_argument("--account", required=True, metavar="ID", help="the account it names")
    mint.add_argument("--ttl", type=seconds, default=3600.0, metavar="SECONDS",
                      help="how long the token is valid")
