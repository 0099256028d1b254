"""The client's trust configuration: one TOML file, checked strictly, failing closed.

```toml
[service]                      # where the client reaches the system: the relay, and only it
relay = "https://relay.example/"
gateway_name = "gateway.privproc.local"   # the owner of the gateway's key records
log = "https://log.example"    # optional: for auditors (privproc audit); clients use the relay
require_pq = false             # true: refuse gateway and node keys without a post-quantum KEM

[log]
vkey = "log.privproc.local+1234abcd+A..."   # the log's verifier key
witnesses = ["witness.example+...+B..."]      # cosignature/v1 verifier keys (at least one)
quorum = 1                                     # how many must cosign (1..number of witnesses)
max_keys = 2                   # keys of one purpose and owner valid at once (current + next)
max_checkpoint_age = 86400     # seconds: refuse bundles whose checkpoint a quorum of
                               # witnesses last cosigned longer ago (default one day)

[attestation]
allow_simulated = false        # true ONLY for development: simulated evidence proves no TEE
simulated_roots = "path/to/simulated-roots.pem"   # read only when allow_simulated = true
crl = ["amd-milan-crl.der"]    # optional: AMD KDS CRLs; with them every chain is checked

[policy]                       # privproc.attest.evidence.policy_from_mapping keys
allow_debug = false            # default false
max_vmpl = 0                   # default 0
min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }   # default: all 0 (any)

[tokens]
issuer = "https://issuer.example"
account_token = "..."
issuer_name = "issuer.privproc.local"     # default issuer.privproc.local
origin_name = "gateway.privproc.local"    # default: gateway_name
token_type = 2                            # 1 (VOPRF) or 2 (blind RSA, default)
redemption_context = ""                   # default none: the gateway's, if it names one
```

A trust file without witnesses, or with a quorum below 1, is refused: a checkpoint signed
by the log alone proves nothing about what other clients see. Pinned AMD and NVIDIA roots
come with the package; simulated roots are trusted only with ``allow_simulated = true``,
and loading such a configuration prints a warning. Relative paths are relative to the
trust file's folder.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from privproc.attest.evidence import EvidencePolicy, TrustConfig, policy_from_mapping
from privproc.tlog.client import DEFAULT_MAX_CHECKPOINT_AGE, LogPolicy
from privproc.wire import privacypass as pp
from privproc.wire.errors import CheckpointError, NoteError

from .errors import TrustConfigError

__all__ = [
    "DEFAULT_GATEWAY_NAME",
    "DEFAULT_ISSUER_NAME",
    "DEFAULT_MAX_KEYS",
    "ClientTrust",
    "TokenSettings",
    "TrustConfigError",
    "load_trust",
]

DEFAULT_GATEWAY_NAME = "gateway.privproc.local"
DEFAULT_ISSUER_NAME = "issuer.privproc.local"
DEFAULT_MAX_KEYS = 2


@dataclass(frozen=True)
class TokenSettings:
    issuer_url: str
    account_token: str
    issuer_name: str
    origin_name: str
    token_type: int
    redemption_context: bytes = b""

    def challenge(self, token_type: int | None = None) -> pp.TokenChallenge:
        """The challenge the gateway issues: its issuer and origin names, and the
        redemption context it names for every client (none by default)."""
        return pp.TokenChallenge(self.token_type if token_type is None else token_type,
                                 self.issuer_name, self.redemption_context,
                                 [self.origin_name])


@dataclass(frozen=True)
class ClientTrust:
    log: LogPolicy
    roots: TrustConfig
    policy: EvidencePolicy
    relay_url: str
    gateway_name: str = DEFAULT_GATEWAY_NAME
    max_keys: int = DEFAULT_MAX_KEYS
    tokens: TokenSettings | None = None
    log_url: str | None = None  # for auditors; the client itself reaches the log via the relay
    crls: tuple[bytes, ...] = ()
    # True: gateway and node keys must use a post-quantum (hybrid) KEM, MLKEM768-X25519;
    # False: such keys are preferred, classical X25519 keys still accepted.
    require_pq: bool = False
    # A stapled checkpoint whose quorum cosigned it longer ago is refused: a relay serving
    # an old bundle could otherwise hide revocations and new keys forever.
    max_checkpoint_age: float = DEFAULT_MAX_CHECKPOINT_AGE


def _table(doc: dict[str, Any], name: str, known: set[str]) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise TrustConfigError(f"[{name}] must be a table")
    if name != "policy":
        unknown = sorted(set(value) - known)
        if unknown:
            raise TrustConfigError(f"[{name}]: unknown key(s) {unknown}; known: {sorted(known)}")
    return value


def _str(table: str, doc: dict[str, Any], key: str, default: str | None = None) -> str:
    value = doc.get(key, default)
    if value is None:
        raise TrustConfigError(f"[{table}] {key} is required")
    if not isinstance(value, str) or not value:
        raise TrustConfigError(f"[{table}] {key} must be a non-empty string, got {value!r}")
    return value


def _url(table: str, doc: dict[str, Any], key: str) -> str:
    value = _str(table, doc, key)
    if not value.startswith(("http://", "https://")):
        raise TrustConfigError(f"[{table}] {key} must be an http(s) URL, got {value!r}")
    return value


def _log_policy(log: dict[str, Any]) -> tuple[LogPolicy, int]:
    vkey = _str("log", log, "vkey")
    witnesses = log.get("witnesses")
    if not isinstance(witnesses, list) or not witnesses or not all(
            isinstance(w, str) for w in witnesses):
        raise TrustConfigError(
            "[log] witnesses must list at least one witness verifier key: a checkpoint "
            "only the log signed cannot show that every client sees the same log")
    quorum = log.get("quorum")
    if isinstance(quorum, bool) or not isinstance(quorum, int) or not (
            1 <= quorum <= len(witnesses)):
        raise TrustConfigError(
            f"[log] quorum must be an integer from 1 to the {len(witnesses)} witness(es) "
            f"given, got {quorum!r}")
    max_keys = log.get("max_keys", DEFAULT_MAX_KEYS)
    if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
        raise TrustConfigError(f"[log] max_keys must be a positive integer, got {max_keys!r}")
    try:
        return LogPolicy.from_keys(vkey, witnesses, quorum), max_keys
    except (NoteError, CheckpointError, ValueError) as exc:
        raise TrustConfigError(f"[log]: {exc}") from None


def _tokens(tokens: dict[str, Any], gateway_name: str) -> TokenSettings | None:
    if not tokens:
        return None
    token_type = tokens.get("token_type", pp.TOKEN_TYPE_BLIND_RSA)
    if token_type not in (pp.TOKEN_TYPE_VOPRF, pp.TOKEN_TYPE_BLIND_RSA) or isinstance(
            token_type, bool):
        raise TrustConfigError(f"[tokens] token_type must be 1 or 2, got {token_type!r}")
    return TokenSettings(
        issuer_url=_url("tokens", tokens, "issuer"),
        account_token=_str("tokens", tokens, "account_token"),
        issuer_name=_str("tokens", tokens, "issuer_name", DEFAULT_ISSUER_NAME),
        origin_name=_str("tokens", tokens, "origin_name", gateway_name),
        token_type=token_type,
        redemption_context=_context(tokens.get("redemption_context", "")),
    )


def _context(value: object) -> bytes:
    if not isinstance(value, str):
        raise TrustConfigError(f"[tokens] redemption_context must be a string of hex, got "
                               f"{type(value).__name__}")
    try:
        context = bytes.fromhex(value)
    except ValueError:
        raise TrustConfigError("[tokens] redemption_context must be hex") from None
    if len(context) not in (0, 32):
        raise TrustConfigError(f"[tokens] redemption_context must be 32 bytes (64 hex "
                               f"digits) or empty, got {len(context)} bytes")
    return context


def _roots(path: Path, attestation: dict[str, Any], warn: TextIO | None
           ) -> tuple[TrustConfig, tuple[bytes, ...]]:
    roots = TrustConfig()
    allow = attestation.get("allow_simulated", False)
    if not isinstance(allow, bool):
        raise TrustConfigError(f"[attestation] allow_simulated must be true or false, got "
                               f"{allow!r}")
    if allow:
        from privproc.attest.errors import AttestationError
        from privproc.attest.sev_snp import load_certificates
        from privproc.attest.simulated import warn_simulated

        roots_path = _str("attestation", attestation, "simulated_roots")
        try:
            pem = (path.parent / roots_path).read_bytes()
            roots = TrustConfig.with_simulated_roots(load_certificates(pem))
        except (OSError, AttestationError, ValueError) as exc:
            raise TrustConfigError(f"[attestation] simulated_roots: {exc}") from None
        warn_simulated(warn or sys.stderr)
    crl_paths = attestation.get("crl", [])
    if not isinstance(crl_paths, list) or not all(isinstance(p, str) for p in crl_paths):
        raise TrustConfigError("[attestation] crl must be a list of file paths")
    crls: list[bytes] = []
    for crl_path in crl_paths:
        try:
            crls.append((path.parent / crl_path).read_bytes())
        except OSError as exc:
            raise TrustConfigError(f"[attestation] crl {crl_path}: {exc.strerror}") from None
    return roots, tuple(crls)


def load_trust(path: Path, warn: TextIO | None = None) -> ClientTrust:
    try:
        doc = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise TrustConfigError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TrustConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise TrustConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"log", "attestation", "policy", "tokens", "service"})
    if unknown:
        raise TrustConfigError(f"{path}: unknown table(s) {unknown}")
    try:
        service = _table(doc, "service", {"relay", "gateway_name", "log", "require_pq"})
        require_pq = service.get("require_pq", False)
        if not isinstance(require_pq, bool):
            raise TrustConfigError(
                f"[service] require_pq must be true or false, got {require_pq!r}")
        relay_url = _url("service", service, "relay")
        gateway_name = _str("service", service, "gateway_name", DEFAULT_GATEWAY_NAME)
        log_url = _url("service", service, "log") if "log" in service else None
        log_table = _table(doc, "log", {"vkey", "witnesses", "quorum", "max_keys",
                                        "max_checkpoint_age"})
        log_policy, max_keys = _log_policy(log_table)
        max_age = log_table.get("max_checkpoint_age", DEFAULT_MAX_CHECKPOINT_AGE)
        if isinstance(max_age, bool) or not isinstance(max_age, int | float) or not (
                0 < max_age < float("inf")):
            raise TrustConfigError(f"[log] max_checkpoint_age must be a positive number of "
                                   f"seconds, got {max_age!r}")
        roots, crls = _roots(path, _table(doc, "attestation",
                                          {"allow_simulated", "simulated_roots", "crl"}), warn)
        try:
            policy = policy_from_mapping(_table(doc, "policy", set()))
        except ValueError as exc:
            raise TrustConfigError(f"[policy]: {exc}") from None
        tokens = _tokens(_table(doc, "tokens", {"issuer", "account_token", "issuer_name",
                                                "origin_name", "token_type",
                                                "redemption_context"}), gateway_name)
    except TrustConfigError as exc:
        raise TrustConfigError(f"{path}: {exc}") from None
    return ClientTrust(log=log_policy, roots=roots, policy=policy, relay_url=relay_url,
                       gateway_name=gateway_name, max_keys=max_keys, tokens=tokens,
                       log_url=log_url, crls=crls, require_pq=require_pq,
                       max_checkpoint_age=float(max_age))
