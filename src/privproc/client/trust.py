"""The client's trust configuration: one TOML file.

```toml
[log]
vkey = "log.privproc.local+1234abcd+A..."   # the log's verifier key
witnesses = ["witness.example+...+B..."]      # cosignature/v1 verifier keys
quorum = 1                                     # how many witnesses must cosign

[attestation]
allow_simulated = false        # true ONLY for development: simulated evidence proves no TEE
simulated_roots = "path/to/simulated-roots.pem"   # read only when allow_simulated = true

[policy]                       # privproc.attest.evidence.policy_from_mapping keys
allow_debug = false
max_vmpl = 0

[service]                      # where the client reaches the system
relay = "http://127.0.0.1:8081/"
log = "http://127.0.0.1:8083"

[tokens]
issuer = "http://127.0.0.1:8085"
account_token = "..."
token_type = 2
```

Pinned AMD and NVIDIA roots come with the package; simulated roots are trusted only
with ``allow_simulated = true``, and loading such a configuration prints a warning.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from privproc.attest.evidence import EvidencePolicy, TrustConfig, policy_from_mapping
from privproc.tlog.client import LogPolicy

from .errors import ClientError


class TrustConfigError(ClientError):
    """The trust configuration file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class ClientTrust:
    log: LogPolicy
    roots: TrustConfig
    policy: EvidencePolicy
    tokens: dict[str, Any]
    service: dict[str, Any]


def _table(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise TrustConfigError(f"[{name}] must be a table")
    return value


def load_trust(path: Path, warn: TextIO | None = None) -> ClientTrust:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TrustConfigError(f"{path}: {exc}") from None
    unknown = sorted(set(doc) - {"log", "attestation", "policy", "tokens", "service"})
    if unknown:
        raise TrustConfigError(f"{path}: unknown table(s) {unknown}")
    log = _table(doc, "log")
    try:
        log_policy = LogPolicy.from_keys(str(log["vkey"]), [str(w) for w in
                                                           log.get("witnesses", [])],
                                         int(log.get("quorum", 0)))
    except KeyError:
        raise TrustConfigError(f"{path}: [log] vkey is required") from None
    except ValueError as exc:
        raise TrustConfigError(f"{path}: [log]: {exc}") from None
    attestation = _table(doc, "attestation")
    roots = TrustConfig()
    if attestation.get("allow_simulated") is True:
        from privproc.attest.sev_snp import load_certificates
        from privproc.attest.simulated import warn_simulated

        roots_path = attestation.get("simulated_roots")
        if not isinstance(roots_path, str):
            raise TrustConfigError(f"{path}: allow_simulated needs simulated_roots = PATH")
        pem = (path.parent / roots_path).read_bytes()
        roots = TrustConfig.with_simulated_roots(load_certificates(pem))
        warn_simulated(warn or sys.stderr)
    try:
        policy = policy_from_mapping(_table(doc, "policy"))
    except ValueError as exc:
        raise TrustConfigError(f"{path}: [policy]: {exc}") from None
    return ClientTrust(log_policy, roots, policy, _table(doc, "tokens"), _table(doc, "service"))
