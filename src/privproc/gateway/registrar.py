"""Admission to the node directory: only an attested, logged node, at an allowed URL.

A registration (:mod:`privproc.wire.registration`) is listed only if, in this order:

1. it carries the operator credential (``Authorization: Bearer``; always required);
2. it parses (bounded size, strict JSON) and is recent (``time`` within ``max_skew``);
3. its URL matches the operator's allowlist (``--node-url-allow`` patterns over
   ``scheme://host:port``, ``*`` standing for one label, address byte or port; no path,
   query, fragment or user info), so the gateway never forwards to an address the
   operator did not allow;
4. its evidence passes exactly the checks a client makes
   (:func:`privproc.client.transparency.verify_node_evidence`: vendor chain, policy, key
   binding and expiry, a logged and unrevoked release of its measurement);
5. it is signed by the registration key the evidence binds; the node is listed under
   the id that key gives (:func:`privproc.attest.evidence.node_id_for`), so no one can
   take over another node's entry.

The checks are sans-IO: the release proofs and the log view come in from the caller.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from privproc.attest.errors import AttestationError
from privproc.attest.evidence import decode_bundle
from privproc.client.errors import ClientError, NodeVerificationError
from privproc.client.transparency import VerifiedNode, verify_node_evidence
from privproc.client.trust import ClientTrust
from privproc.tlog.client import InclusionProof
from privproc.tlog.view import LogView
from privproc.wire.registration import Registration, RegistrationError, decode_registration

from .directory import NodeEntry

NODE_ID = re.compile(r"n[0-9a-f]{31}")


@dataclass(frozen=True)
class RegistrarConfig:
    trust: ClientTrust
    operator_token: str
    url_allow: tuple[str, ...]
    max_skew: float = 300.0


@dataclass(frozen=True)
class Refused:
    status: int
    reason: str  # content-free: safe to log and to answer


def url_allowed(url: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``url`` is a bare ``scheme://host:port`` matching one of ``patterns``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        return False
    if parts.username or parts.password or parts.query or parts.fragment or (
            parts.path not in ("", "/")):
        return False
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    bare = f"{parts.scheme}://{host}:{port}"
    return any(_pattern(p).fullmatch(bare) for p in patterns)


def _pattern(pattern: str) -> re.Pattern[str]:
    """``*`` stands for one DNS label, address byte or port (letters, digits, '-'); every
    other character is itself (so ``[::1]`` is an IPv6 host, not a character class)."""
    return re.compile("[A-Za-z0-9-]*".join(re.escape(part) for part in pattern.split("*")))


class Registrar:
    def __init__(self, config: RegistrarConfig) -> None:
        if not config.operator_token:
            raise ValueError("node registration needs an operator credential")
        if not config.url_allow:
            raise ValueError("node registration needs at least one allowed URL pattern")
        self.config = config
        self._expected = f"Bearer {config.operator_token}".encode()

    def admit(self, authorization: str, body: bytes, now: float
              ) -> tuple[Registration, bytes] | Refused:
        """Steps 1-3, and the measurement to look up: ``(registration, measurement)``."""
        if not hmac.compare_digest(authorization.encode("latin-1", "replace"),
                                   self._expected):
            return Refused(401, "node registration needs the operator credential")
        try:
            registration = decode_registration(body)
        except RegistrationError as exc:
            return Refused(400, f"malformed registration: {exc}")
        if abs(now - registration.time) > self.config.max_skew:
            return Refused(400, "registration time is not current")
        if not url_allowed(registration.url, self.config.url_allow):
            return Refused(403, "node URL is not on the operator's allowlist")
        try:
            bundle = decode_bundle(registration.bundle)
            from privproc.attest.sev_snp import parse_report

            measurement = parse_report(bundle.evidence.cpu_report).measurement
        except AttestationError as exc:
            return Refused(400, f"malformed evidence: {type(exc).__name__}")
        return registration, measurement

    def verify(self, registration: Registration, releases: dict[bytes, InclusionProof],
               view: LogView, now: float) -> NodeEntry | Refused:
        """Steps 4-5: the client's checks, then the signature of the attested key."""
        try:
            node: VerifiedNode = verify_node_evidence(
                None, registration.bundle, releases, trust=self.config.trust, view=view,
                now=now)
        except NodeVerificationError as exc:
            return Refused(403, f"node refused: {type(exc).__name__}")
        except ClientError as exc:
            return Refused(503, f"cannot verify the node now: {type(exc).__name__}")
        assert node.claims.registration_key is not None
        try:
            registration.verify(node.claims.registration_key)
        except RegistrationError:
            return Refused(403, "registration not signed by the attested registration key")
        return NodeEntry(node.node_id, registration.url, registration.bundle, now)
