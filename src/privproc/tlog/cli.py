"""The ``privproc log``, ``privproc witness`` and ``privproc release`` commands."""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from privproc import clikit
from privproc.clikit import UsageError, hex_bytes, positive_int, seconds
from privproc.secrets import SecretError, resolve, warn_if_literal
from privproc.wire import note, ohttp
from privproc.wire.errors import CheckpointError, KeyConfigError, NoteError

from . import witness_cli
from .audit import DEFAULT_MAX_KEYS, AuditError, Progress, SeenCheckpoints, audit
from .client import (
    DEFAULT_MAX_CHECKPOINT_AGE,
    Fetch,
    LogClientError,
    LogPolicy,
    StaleCheckpointError,
    http_fetcher,
)
from .keys import KeyFileError, create_signer, load_or_create_signer, read_signer
from .publish import PublishError, publish
from .record import (
    PURPOSE_OHTTP_GATEWAY,
    KeyRecord,
    RecordError,
    ReleaseRecord,
    RevocationRecord,
    format_time,
)


def _witness(value: str) -> tuple[str, str]:
    url, sep, vkey = value.partition("=")
    if not sep or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected URL=VKEY, got {value[:60]!r}")
    return url, vkey


def _iso_time(value: str) -> int:
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2026-06-01T00:00:00Z, got {value[:40]!r}"
        ) from None
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp())


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value[:20]!r}")
    return number


def _err(command: str, message: str) -> int:
    print(f"privproc {command}: {message}", file=sys.stderr)
    return 1


# ------------------------------------------------------------------ log serve


def _log_serve(args: argparse.Namespace) -> int:
    from privproc.service import setup_logging
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
                       batch_max=args.batch_max, batch_wait=args.batch_wait,
                       recosign_interval=args.recosign_interval)
    clikit.serve(create_app(storage, config), args)
    return 0


# ------------------------------------------------------------------ log audit


def _gpu_hex(item: str, value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise UsageError(f"--gpu {item[:40]!r}: expected NAME=HEX") from None


def _key_kem(key: KeyRecord) -> str:
    """" kem=NAME" for an OHTTP gateway key record (its key is a key configuration)."""
    if key.purpose != PURPOSE_OHTTP_GATEWAY:
        return ""
    try:
        config = ohttp.decode_key_config(key.key)
    except KeyConfigError:
        return " kem=UNKNOWN"  # not a key configuration this version can decode
    return f" kem={config.kem_name}"


def audit_output(
    fetch: Fetch,
    policy: LogPolicy | None,
    seen: SeenCheckpoints,
    max_keys: int = DEFAULT_MAX_KEYS,
    progress: Progress | None = None,
    *,
    now: float | None = None,
    max_age: float = DEFAULT_MAX_CHECKPOINT_AGE,
) -> tuple[int, str, str]:
    """Audit the log behind ``fetch``: the exit code and the text for stdout and stderr.
    With ``now``, the latest checkpoint must have been cosigned by a quorum within
    ``max_age`` (what clients require: else the witnesses have stopped, or the log)."""
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
    stale = ""
    if policy is not None and policy.quorum and report.verified is not None and now is not None:
        # the clients' own judgement, so the audit fails exactly when they would refuse
        try:
            at = policy.check_fresh(report.verified, now, max_age)
        except StaleCheckpointError as exc:
            stale = (f"{exc}; clients refuse it: are the witnesses and the log's "
                     "re-cosigning running?")
        else:
            out.append(f"cosigned by a quorum of witnesses at {format_time(at)} "
                       f"({now - at:.0f} s ago; clients accept up to {max_age:g} s)")
    revoked = report.revoked()
    for index, rec in report.releases:
        line = (f"  #{index} version={rec.version} measurement={rec.measurement.hex()} "
                f"model=sha256:{rec.model_sha256.hex()[:16]}... source={rec.source} "
                f"{format_time(rec.time)}")
        if rec.measurement in revoked:
            line += f" REVOKED at #{revoked[rec.measurement]}"
        out.append(line)
    for index, key in report.keys:
        out.append(f"  #{index} key purpose={key.purpose} owner={key.owner}{_key_kem(key)} "
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
    if stale:
        return 1, "\n".join(out) + "\n", f"privproc log audit: AUDIT FAILED: {stale}\n"
    out.append("audit OK")
    return 0, "\n".join(out) + "\n", ""


AUDIT_STATE_FILE = "audit-checkpoints.json"


def _audit_policy(args: argparse.Namespace) -> tuple[str, LogPolicy, Path, int, float]:
    """The log URL, the policy its checkpoints must meet and the audit state file: from
    the trust file, each overridable by an option."""
    from privproc.client.trust import TrustConfigError, load_trust
    from privproc.paths import default_trust_file

    trust_path: Path | None = args.trust
    if trust_path is None and args.vkey is None:
        trust_path = default_trust_file()
        if not trust_path.exists():
            raise UsageError(f"no trust file at {trust_path}: start the local system with "
                             "'privproc up', or pass --trust FILE, or --log URL --vkey VKEY")
    log_url = args.log
    state_dir = args.state
    max_keys = DEFAULT_MAX_KEYS
    max_age = DEFAULT_MAX_CHECKPOINT_AGE
    if trust_path is not None:
        try:
            trust = load_trust(trust_path)
        except TrustConfigError as exc:
            raise UsageError(str(exc)) from None
        policy = trust.log
        log_url = log_url or trust.log_url or trust.relay_url.rstrip("/") + "/log"
        state_dir = state_dir or trust_path.parent
        max_keys = trust.max_keys
        max_age = trust.max_checkpoint_age
    if args.vkey is not None:
        quorum = len(args.witness_vkey) if args.quorum is None else args.quorum
        try:
            policy = LogPolicy.from_keys(args.vkey, args.witness_vkey, quorum)
        except (NoteError, CheckpointError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    if log_url is None:
        raise UsageError("--vkey without a trust file needs --log URL")
    if state_dir is None:
        from privproc.paths import default_state_dir

        state_dir = default_state_dir()
    if args.max_keys is not None:
        max_keys = args.max_keys
    return log_url, policy, state_dir / AUDIT_STATE_FILE, max_keys, max_age


def _log_audit(args: argparse.Namespace) -> int:
    log_url, policy, state_file, max_keys, max_age = _audit_policy(args)
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or done == total:
            last[0] = now
            print(f"audited {done}/{total} entries ({now - started:.1f}s)", file=sys.stderr)

    try:
        state_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        seen = SeenCheckpoints(state_file)
    except AuditError as exc:
        return _err("audit", f"AUDIT FAILED: {exc}")
    except OSError as exc:
        raise UsageError(f"--state {state_file.parent}: {exc.strerror or exc}") from None
    print(f"auditing {log_url} (checkpoints seen before: {state_file})", file=sys.stderr)
    code, out, err = audit_output(http_fetcher(log_url), policy, seen, max_keys, progress,
                                  now=time.time(), max_age=max_age)
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
    when = int(time.time()) if args.time is None else args.time
    gpu = []
    for item in args.gpu:
        name, _, value = item.partition("=")
        gpu.append((name, _gpu_hex(item, value)))
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
    when = int(time.time()) if args.time is None else args.time
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
    actions = clikit.group(sub, "log", "The transparency log of releases and keys: run it, "
                                       "audit it.")
    serve = clikit.leaf(actions, "serve", "Run the log: sequencer, tiles, checkpoints.",
                        _log_serve)
    clikit.add_service_options(serve, state="the log key (log.key, created on first start) "
                                            "and the SQLite database")
    serve.add_argument("--db", metavar="URL",
                       help="postgresql://... to keep the log in PostgreSQL instead of SQLite; "
                            "@FILE or env:NAME keeps a password off the command line")
    serve.add_argument("--db-schema", default="privproc_log", metavar="NAME",
                       help="the PostgreSQL schema holding this log's tables")
    serve.add_argument("--origin", default="log.privproc.local", metavar="NAME",
                       help="the log's origin line and key name")
    serve.add_argument("--publisher", action="append", default=[], metavar="VKEY",
                       help="verifier key of a publisher allowed to add any record "
                            "(releases, revocations, keys; repeatable)")
    serve.add_argument("--key-publisher", action="append", default=[], metavar="VKEY",
                       help="verifier key of a gateway or issuer allowed to add only key "
                            "records whose owner is the key's name (repeatable)")
    serve.add_argument("--witness", action="append", default=[], type=_witness,
                       metavar="URL=VKEY", help="a witness to collect cosignatures from "
                                                "(repeatable)")
    serve.add_argument("--quorum", type=_non_negative_int, default=0, metavar="N",
                       help="cosignatures needed before a checkpoint is published")
    serve.add_argument("--batch-max", type=positive_int, default=4096, metavar="N",
                       help="the most entries sequenced in one batch")
    serve.add_argument("--batch-wait", type=seconds, default=0.01, metavar="SECONDS",
                       help="how long the sequencer gathers a batch")
    serve.add_argument("--recosign-interval", type=seconds, default=300.0,
                       metavar="SECONDS",
                       help="cosign an unchanged checkpoint again after this long, so "
                            "clients can tell how recent it is (default 300)")

    audit_help = ("Audit the log: re-hash every tile, check every checkpoint against the "
                  "trust file's keys and the ones seen before, list releases and keys.")
    for parser in (clikit.leaf(actions, "audit", audit_help, _log_audit),
                   clikit.leaf(sub, "audit", audit_help + " (same as 'privproc log audit')",
                               _log_audit)):
        parser.add_argument("--trust", type=Path, metavar="FILE",
                            help="the trust file giving the log's URL, key, witnesses and "
                                 "quorum (default: the local system's, from 'privproc up')")
        parser.add_argument("--log", metavar="URL",
                            help="the log's URL (default: the trust file's log, else its "
                                 "relay's /log)")
        parser.add_argument("--vkey", metavar="VKEY",
                            help="the log's verifier key, instead of the trust file's")
        parser.add_argument("--witness-vkey", action="append", default=[], metavar="VKEY",
                            help="with --vkey: a witness's verifier key (repeatable)")
        parser.add_argument("--quorum", type=_non_negative_int, metavar="N",
                            help="with --vkey: cosignatures required (default: every "
                                 "--witness-vkey)")
        parser.add_argument("--state", type=Path, metavar="DIR",
                            help=f"where the checkpoints seen before are kept ({AUDIT_STATE_FILE}"
                                 "; default: beside the trust file)")
        parser.add_argument("--max-keys", type=positive_int, metavar="N",
                            help="fail if more than N keys of one purpose and owner are valid "
                                 "at one instant (default: the trust file's max_keys, else "
                                 f"{DEFAULT_MAX_KEYS}: the current key and the next one; more "
                                 "means some clients may be getting keys of their own)")

    witness = clikit.group(sub, "witness", "A C2SP tlog witness that cosigns the log.")
    wserve = clikit.leaf(witness, "serve", "Serve add-checkpoint and cosign.", witness_cli.run)
    witness_cli.configure_parser(wserve)

    release = clikit.group(sub, "release", "Publish node releases (and revoke them) in the log.")
    keygen = clikit.leaf(release, "keygen", "Make a release publisher key.", _release_keygen)
    keygen.add_argument("--name", required=True, metavar="NAME",
                        help="the key name, e.g. releases.example.com")
    keygen.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help="where to write the signing key (mode 0600)")
    add = clikit.leaf(release, "add", "Sign a release record and add it to the log.",
                      _release_add)
    add.add_argument("--log", required=True, metavar="URL", help="the transparency log")
    add.add_argument("--key", type=Path, required=True, metavar="FILE",
                     help="the release publisher key (privproc release keygen)")
    add.add_argument("--measurement", type=hex_bytes, required=True, metavar="HEX",
                     help="the node's launch measurement (privproc measure)")
    add.add_argument("--model", type=Path, metavar="FILE", help="the model file (hashed)")
    add.add_argument("--model-digest", type=hex_bytes, metavar="HEX",
                     help="or the model file's SHA-256")
    add.add_argument("--version", required=True, help="the release's version")
    add.add_argument("--source", required=True, metavar="REVISION",
                     help="the source revision it was built from")
    add.add_argument("--gpu", action="append", default=[], metavar="NAME=HEX",
                     help="a GPU reference measurement (repeatable)")
    add.add_argument("--time", type=_iso_time, metavar="ISO", help="release time, UTC "
                                                                   "(default: now)")
    revoke = clikit.leaf(release, "revoke",
                         "Revoke a release: clients refuse its measurement from then on.",
                         _release_revoke)
    revoke.add_argument("--log", required=True, metavar="URL", help="the transparency log")
    revoke.add_argument("--key", type=Path, required=True, metavar="FILE",
                        help="the release publisher key")
    revoke.add_argument("--measurement", type=hex_bytes, required=True, metavar="HEX",
                        help="the measurement to revoke")
    revoke.add_argument("--reason", required=True, help="why, for auditors")
    revoke.add_argument("--time", type=_iso_time, metavar="ISO",
                        help="revocation time, UTC (default: now)")
