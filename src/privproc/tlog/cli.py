"""The ``privproc log``, ``privproc witness`` and ``privproc release`` commands."""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from privproc.secrets import SecretError, resolve, warn_if_literal
from privproc.service import Listen
from privproc.wire import note
from privproc.wire.errors import CheckpointError, NoteError

from . import witness_cli
from .audit import DEFAULT_MAX_KEYS, AuditError, Progress, SeenCheckpoints, audit
from .client import Fetch, LogClientError, LogPolicy, http_fetcher
from .keys import KeyFileError, create_signer, load_or_create_signer, read_signer
from .publish import PublishError, publish
from .record import RecordError, ReleaseRecord, RevocationRecord, format_time


def _listen(value: str) -> Listen:
    try:
        return Listen.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _hex(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected hex, got {value[:40]!r}") from None


def _witness(value: str) -> tuple[str, str]:
    url, sep, vkey = value.partition("=")
    if not sep or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected URL=VKEY, got {value[:60]!r}")
    return url, vkey


def _iso_time(value: str) -> int:
    return int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp())


def _err(command: str, message: str) -> int:
    print(f"privproc {command}: {message}", file=sys.stderr)
    return 1


# ------------------------------------------------------------------ log serve


def _log_serve(args: argparse.Namespace) -> int:
    from privproc.service import serve, setup_logging
    from privproc.wire.checkpoint import CosignatureVerifier

    from .log_app import LogConfig, WitnessEndpoint, create_app
    from .storage import StorageError, open_storage

    setup_logging("log", args.log_level.upper())
    try:
        signer = load_or_create_signer(args.state / "log.key", args.origin)
        publishers = [note.Ed25519Verifier.from_key(k) for k in args.publisher]
        key_publishers = [note.Ed25519Verifier.from_key(k) for k in args.key_publisher]
        witnesses = [WitnessEndpoint(url.rstrip("/"), CosignatureVerifier.from_key(vkey))
                     for url, vkey in args.witness]
        db = None
        if args.db:
            warn_if_literal(args.db, "--db", url=True)
            db = resolve(args.db, "--db")
        storage = open_storage(args.state, db, args.db_schema)
    except (KeyFileError, NoteError, StorageError, SecretError) as exc:
        return _err("log serve", str(exc))
    if args.quorum > len(witnesses):
        return _err("log serve", f"--quorum {args.quorum} exceeds the {len(witnesses)} witnesses")
    print(f"log vkey: {signer.verifier_key}", flush=True)
    config = LogConfig(origin=args.origin, signer=signer, publishers=publishers,
                       key_publishers=key_publishers, witnesses=witnesses, quorum=args.quorum,
                       batch_max=args.batch_max, batch_wait=args.batch_wait)
    serve(create_app(storage, config), args.listen, args.log_level)
    return 0


# ------------------------------------------------------------------ log audit


def _max_keys(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value[:20]!r}")
    return number


def audit_output(
    fetch: Fetch,
    policy: LogPolicy | None,
    seen: SeenCheckpoints,
    max_keys: int = DEFAULT_MAX_KEYS,
    progress: Progress | None = None,
) -> tuple[int, str, str]:
    """Audit the log behind ``fetch``: the exit code and the text for stdout and stderr."""
    try:
        report = audit(fetch, policy, seen, progress)
    except AuditError as exc:
        return 1, "", f"privproc log audit: AUDIT FAILED: {exc}\n"
    except LogClientError as exc:
        return 1, "", f"privproc log audit: {exc}\n"
    cp = report.checkpoint
    out = [
        f"log {cp.origin}: size {cp.size}, root {cp.root_hash.hex()}",
        f"re-hashed {report.tiles_checked} tiles from {cp.size} entries; consistent with "
        f"{report.checkpoints_checked} earlier checkpoint(s)",
    ]
    revoked = report.revoked()
    for index, rec in report.releases:
        line = (f"  #{index} version={rec.version} measurement={rec.measurement.hex()} "
                f"model=sha256:{rec.model_sha256.hex()[:16]}... source={rec.source} "
                f"{format_time(rec.time)}")
        if rec.measurement in revoked:
            line += f" REVOKED at #{revoked[rec.measurement]}"
        out.append(line)
    for index, key in report.keys:
        out.append(f"  #{index} key purpose={key.purpose} owner={key.owner} "
                   f"sha256={key.key_sha256.hex()[:16]}... valid {format_time(key.not_before)} "
                   f"to {format_time(key.not_after)}")
    for index, rev in report.revocations:
        out.append(f"  #{index} revocation measurement={rev.measurement.hex()} "
                   f"reason={rev.reason} {format_time(rev.time)}")
    if report.other_entries:
        out.append(f"  ({report.other_entries} entries are not privproc records)")
    surplus = report.surplus(max_keys)
    for s in surplus:
        out.append(f"SURPLUS KEYS: purpose={s.purpose} owner={s.owner}: {s.count} keys valid "
                   f"at once, {s.allowed} allowed, at {format_time(s.at)}: records "
                   + ", ".join(f"#{i}" for i in s.indices))
    if surplus:
        return 1, "\n".join(out) + "\n", (
            f"privproc log audit: AUDIT FAILED: {len(surplus)} purpose(s) with more "
            "concurrently valid keys than allowed\n")
    out.append("audit OK")
    return 0, "\n".join(out) + "\n", ""


def _log_audit(args: argparse.Namespace) -> int:
    policy = None
    if args.vkey:
        try:
            policy = LogPolicy.from_keys(args.vkey, args.witness_vkey, args.quorum)
        except (NoteError, CheckpointError, ValueError) as exc:
            return _err("log audit", str(exc))
    else:
        print("warning: no --vkey given: the checkpoint signature is not verified",
              file=sys.stderr)
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or done == total:
            last[0] = now
            print(f"audited {done}/{total} entries ({now - started:.1f}s)", file=sys.stderr)

    try:
        seen = SeenCheckpoints(args.state)
    except AuditError as exc:
        return _err("log audit", f"AUDIT FAILED: {exc}")
    code, out, err = audit_output(http_fetcher(args.log), policy, seen, args.max_keys, progress)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


# ------------------------------------------------------------------ release


def _release_keygen(args: argparse.Namespace) -> int:
    try:
        signer = create_signer(args.out, args.name)
    except KeyFileError as exc:
        return _err("release keygen", str(exc))
    print(signer.verifier_key)
    return 0


def _release_add(args: argparse.Namespace) -> int:
    try:
        signer = read_signer(args.key)
    except KeyFileError as exc:
        return _err("release add", str(exc))
    if (args.model is None) == (args.model_digest is None):
        return _err("release add", "give exactly one of --model FILE or --model-digest HEX")
    if args.model is not None:
        digest = hashlib.sha256()
        with args.model.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        model = digest.digest()
    else:
        model = args.model_digest
    when = int(time.time()) if args.time is None else _iso_time(args.time)
    gpu = []
    for item in args.gpu:
        name, _, value = item.partition("=")
        gpu.append((name, _hex(value)))
    try:
        record = ReleaseRecord(measurement=args.measurement, model_sha256=model,
                               version=args.version, source=args.source, time=when,
                               gpu=tuple(sorted(gpu)))
    except RecordError as exc:
        return _err("release add", str(exc))
    try:
        index = publish(args.log, signer, record.encode())
    except PublishError as exc:
        return _err("release add", str(exc))
    print(f"logged release {record.version} at index {index}")
    return 0


def _release_revoke(args: argparse.Namespace) -> int:
    try:
        signer = read_signer(args.key)
    except KeyFileError as exc:
        return _err("release revoke", str(exc))
    when = int(time.time()) if args.time is None else _iso_time(args.time)
    try:
        record = RevocationRecord(measurement=args.measurement, reason=args.reason, time=when)
        index = publish(args.log, signer, record.encode())
    except RecordError as exc:
        return _err("release revoke", str(exc))
    except PublishError as exc:
        return _err("release revoke", str(exc))
    print(f"logged the revocation of measurement {args.measurement.hex()[:16]}... at index "
          f"{index}: clients refuse it once they see this record")
    return 0


# ------------------------------------------------------------------ parsers


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    log = sub.add_parser("log", help="Run or audit the transparency log of releases.")
    log_sub = log.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = log_sub.add_parser("serve", help="Run the log: sequencer, tiles, checkpoints.")
    serve.add_argument("--listen", type=_listen, required=True, metavar="HOST:PORT")
    serve.add_argument("--state", type=Path, required=True, metavar="DIR",
                       help="log key (log.key, created on first start) and SQLite database")
    serve.add_argument("--db", metavar="URL",
                       help="postgresql://... to keep the log in PostgreSQL instead of SQLite; "
                            "@FILE or env:NAME keeps a password off the command line")
    serve.add_argument("--db-schema", default="privproc_log", metavar="NAME",
                       help="PostgreSQL schema holding this log's tables (default privproc_log)")
    serve.add_argument("--origin", default="log.privproc.local",
                       help="the log's origin line and key name (default log.privproc.local)")
    serve.add_argument("--publisher", action="append", default=[], metavar="VKEY",
                       help="verifier key of a publisher allowed to add any record "
                            "(releases, revocations, keys; repeatable)")
    serve.add_argument("--key-publisher", action="append", default=[], metavar="VKEY",
                       help="verifier key of a gateway or issuer allowed to add only key "
                            "records whose owner is the key's name (repeatable)")
    serve.add_argument("--witness", action="append", default=[], type=_witness,
                       metavar="URL=VKEY", help="a witness to collect cosignatures from")
    serve.add_argument("--quorum", type=int, default=0,
                       help="cosignatures needed before a checkpoint is published")
    serve.add_argument("--batch-max", type=int, default=4096)
    serve.add_argument("--batch-wait", type=float, default=0.01, metavar="SECONDS")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_log_serve)

    for parser in (
        log_sub.add_parser("audit", help="Re-hash every tile and check every checkpoint."),
        sub.add_parser("audit", help="Audit the log: consistency, cosignatures, releases "
                                     "(same as 'privproc log audit')."),
    ):
        parser.add_argument("--log", required=True, metavar="URL")
        parser.add_argument("--vkey",
                            help="the log's verifier key (else the signature is not checked)")
        parser.add_argument("--witness-vkey", action="append", default=[], metavar="VKEY")
        parser.add_argument("--quorum", type=int, default=0)
        parser.add_argument("--state", type=Path, metavar="FILE",
                            help="checkpoints seen before (created; consistency is checked)")
        parser.add_argument("--max-keys", type=_max_keys, default=DEFAULT_MAX_KEYS, metavar="N",
                            help="fail if more than N keys of one purpose and owner are valid "
                                 f"at one instant (default {DEFAULT_MAX_KEYS}: the current key "
                                 "and the next one; more means some clients may be getting "
                                 "keys of their own)")
        parser.set_defaults(func=_log_audit)

    witness = sub.add_parser("witness", help="Run a C2SP tlog witness.")
    witness_sub = witness.add_subparsers(dest="action", required=True, metavar="ACTION")
    wserve = witness_sub.add_parser("serve", help="Serve add-checkpoint and cosign.")
    witness_cli.configure_parser(wserve)
    wserve.set_defaults(func=witness_cli.run)

    release = sub.add_parser("release", help="Publish node releases to the log.")
    release_sub = release.add_subparsers(dest="action", required=True, metavar="ACTION")
    keygen = release_sub.add_parser("keygen", help="Make a release publisher key.")
    keygen.add_argument("--name", required=True, help="key name, e.g. releases.example.com")
    keygen.add_argument("--out", type=Path, required=True, metavar="FILE")
    keygen.set_defaults(func=_release_keygen)
    add = release_sub.add_parser("add", help="Sign a release record and add it to the log.")
    add.add_argument("--log", required=True, metavar="URL")
    add.add_argument("--key", type=Path, required=True, metavar="FILE",
                     help="the publisher key (from 'privproc release keygen')")
    add.add_argument("--measurement", type=_hex, required=True, metavar="HEX")
    add.add_argument("--model", type=Path, metavar="FILE", help="model file (hashed)")
    add.add_argument("--model-digest", type=_hex, metavar="HEX", help="or its SHA-256")
    add.add_argument("--version", required=True)
    add.add_argument("--source", required=True, metavar="REVISION")
    add.add_argument("--gpu", action="append", default=[], metavar="NAME=HEX",
                     help="a GPU reference value (repeatable)")
    add.add_argument("--time", metavar="ISO", help="release time, UTC (default now)")
    add.set_defaults(func=_release_add)
    revoke = release_sub.add_parser(
        "revoke", help="Log a revocation: clients refuse every release of a measurement.")
    revoke.add_argument("--log", required=True, metavar="URL")
    revoke.add_argument("--key", type=Path, required=True, metavar="FILE",
                        help="the publisher key (from 'privproc release keygen')")
    revoke.add_argument("--measurement", type=_hex, required=True, metavar="HEX")
    revoke.add_argument("--reason", required=True,
                        help="a token naming why, e.g. CVE-2026-1234 or key-compromise")
    revoke.add_argument("--time", metavar="ISO", help="revocation time, UTC (default now)")
    revoke.set_defaults(func=_release_revoke)
