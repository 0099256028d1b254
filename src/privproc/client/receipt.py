"""Receipts: what processed a request, with everything needed to re-check it offline.

A receipt (JSON, version 2) carries the node's whole evidence bundle, the release record
of its measurement, the key record of the gateway key the request was sealed to and of
the issuer key whose token paid for it, each with its inclusion proof and the cosigned
checkpoint it is under::

    {"version": 2, "time": "2026-11-29T15:00:00Z", "node_id": "n5c0e...",
     "node_key": "<hex SHA-256 of the node key configuration>",
     "measurement": "<hex>", "evidence_digest": "<hex SHA-256 of the evidence>",
     "evidence": "<base64 evidence bundle>",
     "release": {"index": 3, "record": "...", "proof": ["<hex>", ...], "checkpoint": "..."},
     "gateway_key": {...same shape...}, "issuer_key": {...} or null}

:func:`verify_receipt` re-verifies every field it reports, and says which it cannot check
(``time`` is the client's clock, checked only
against the validity of the keys and the release; later revocations need the log): an
edited field fails with :class:`ReceiptError` naming it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from privproc.attest.errors import AttestationError
from privproc.attest.evidence import VerifiedClaims, decode_bundle, verify_bundle
from privproc.tlog.client import InclusionProof, LogClientError, verify_inclusion_offline
from privproc.tlog.record import (
    PURPOSE_OHTTP_GATEWAY,
    KeyRecord,
    RecordError,
    ReleaseRecord,
    decode_key_record,
    decode_record,
    format_time,
)
from privproc.wire.checkpoint import VerifiedCheckpoint

from .errors import ClientError
from .trust import ClientTrust

RECEIPT_VERSION = 2
_FIELDS = frozenset({"version", "time", "node_id", "node_key", "measurement",
                     "evidence_digest", "evidence", "release", "gateway_key", "issuer_key"})


class ReceiptError(ClientError):
    """A receipt field does not verify (``field`` names it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def proof_json(proof: InclusionProof) -> dict[str, Any]:
    return {"index": proof.index, "record": proof.record.decode("utf-8"),
            "proof": [h.hex() for h in proof.proof],
            "checkpoint": proof.checkpoint.decode("utf-8")}


@dataclass(frozen=True)
class Receipt:
    time: int
    node_id: str
    evidence: bytes
    claims: VerifiedClaims
    release: InclusionProof
    gateway_key: InclusionProof
    issuer_key: InclusionProof | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECEIPT_VERSION,
            "time": format_time(self.time),
            "node_id": self.node_id,
            "node_key": hashlib.sha256(self.claims.key_config).hexdigest(),
            "measurement": self.claims.measurement.hex(),
            "evidence_digest": hashlib.sha256(self.evidence).hexdigest(),
            "evidence": base64.b64encode(self.evidence).decode(),
            "release": proof_json(self.release),
            "gateway_key": proof_json(self.gateway_key),
            "issuer_key": proof_json(self.issuer_key) if self.issuer_key else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @property
    def measurement(self) -> str:
        return self.claims.measurement.hex()

    @property
    def log_index(self) -> int:
        return self.release.index


@dataclass(frozen=True)
class FieldCheck:
    field: str
    verified: bool  # False: reported, but not checkable offline
    detail: str


def _str(doc: dict[str, Any], field: str) -> str:
    value = doc.get(field)
    if not isinstance(value, str):
        raise ReceiptError(field, "missing or not a string")
    return value


def _proof(doc: dict[str, Any], field: str, trust: ClientTrust
           ) -> tuple[InclusionProof, VerifiedCheckpoint]:
    value = doc.get(field)
    if not isinstance(value, dict) or set(value) != {"index", "record", "proof", "checkpoint"}:
        raise ReceiptError(field, "must be an object with index, record, proof, checkpoint")
    try:
        index = value["index"]
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError("index is not an integer")
        proof = InclusionProof(index, str(value["record"]).encode(),
                               tuple(bytes.fromhex(h) for h in value["proof"]),
                               str(value["checkpoint"]).encode())
    except (TypeError, ValueError) as exc:
        raise ReceiptError(field, f"malformed: {exc}") from None
    try:
        checkpoint = verify_inclusion_offline(proof, trust.log)
    except LogClientError as exc:
        raise ReceiptError(field, f"not proven in the log: {exc}") from None
    return proof, checkpoint


def _key_record(doc: dict[str, Any], field: str, trust: ClientTrust, purpose_prefix: str,
                owner: str | None) -> tuple[KeyRecord, InclusionProof]:
    proof, _ = _proof(doc, field, trust)
    try:
        record = decode_key_record(proof.record)
    except RecordError as exc:
        raise ReceiptError(field, f"not a key record: {exc}") from None
    if not record.purpose.startswith(purpose_prefix):
        raise ReceiptError(field, f"purpose is {record.purpose!r}, expected {purpose_prefix}...")
    if owner is not None and record.owner != owner:
        raise ReceiptError(field, f"owner is {record.owner!r}, the trust file names {owner!r}")
    return record, proof


def _evidence_or_time(evidence: bytes, trust: ClientTrust, stamp: str,
                      exc: AttestationError) -> ReceiptError:
    """The evidence failed at the receipt's time: blame the time if it verifies inside
    the node key's own validity, else the evidence."""
    try:
        expiry = decode_bundle(evidence).expiry
        verify_bundle(evidence, trust.policy, trust.roots,
                      datetime.fromtimestamp(expiry - 1, UTC), crls=trust.crls)
    except (AttestationError, OverflowError, OSError, ValueError):  # (an expiry no clock holds)
        return ReceiptError("evidence", f"does not verify: {type(exc).__name__}: {exc}")
    return ReceiptError("time", f"{stamp}: the evidence is not valid then "
                                f"({type(exc).__name__}: {exc})")


def verify_receipt(doc: object, trust: ClientTrust) -> list[FieldCheck]:
    """Re-verify a receipt offline; returns what was checked, raises ReceiptError."""
    if not isinstance(doc, dict):
        raise ReceiptError("receipt", "must be a JSON object")
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise ReceiptError(unknown[0], "unknown field")
    if doc.get("version") != RECEIPT_VERSION:
        raise ReceiptError("version", f"is {doc.get('version')!r}, expected {RECEIPT_VERSION} "
                                      "(receipts of version 1 cannot be re-verified)")
    checks: list[FieldCheck] = []
    stamp = _str(doc, "time")
    try:
        when = int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                   .timestamp())
    except ValueError:
        raise ReceiptError("time", f"must be YYYY-MM-DDTHH:MM:SSZ, got {stamp[:40]!r}") from None

    try:
        evidence = base64.b64decode(_str(doc, "evidence"), validate=True)
    except ValueError:  # binascii.Error, or a character that is not ASCII
        raise ReceiptError("evidence", "not base64") from None
    try:
        claims = verify_bundle(evidence, trust.policy, trust.roots,
                               datetime.fromtimestamp(when, UTC), crls=trust.crls)
    except AttestationError as exc:
        raise _evidence_or_time(evidence, trust, stamp, exc) from None
    checks.append(FieldCheck("evidence", True, f"{claims.platform} report and certificate "
                             "chain verify against the pinned roots and the policy"))
    digest = hashlib.sha256(evidence).hexdigest()
    if _str(doc, "evidence_digest") != digest:
        raise ReceiptError("evidence_digest", f"is not the SHA-256 of the evidence ({digest})")
    checks.append(FieldCheck("evidence_digest", True, "the SHA-256 of the evidence"))
    node_key = hashlib.sha256(claims.key_config).hexdigest()
    if _str(doc, "node_key") != node_key:
        raise ReceiptError("node_key", "is not the key the evidence binds")
    checks.append(FieldCheck("node_key", True, "bound into the evidence's REPORT_DATA"))
    if _str(doc, "measurement") != claims.measurement.hex():
        raise ReceiptError("measurement", "is not the measurement in the evidence")

    release_proof, release_cp = _proof(doc, "release", trust)
    try:
        release: ReleaseRecord = decode_record(release_proof.record)
    except RecordError as exc:
        raise ReceiptError("release", f"not a release record: {exc}") from None
    if release.measurement != claims.measurement:
        raise ReceiptError("release", "the logged release is for another measurement")
    checks.append(FieldCheck("measurement", True, "in the evidence and in the release record"))
    checks.append(FieldCheck(
        "release", True, f"record #{release_proof.index} (version {release.version}, source "
        f"{release.source}) under a checkpoint of size {release_cp.checkpoint.size} signed "
        "by the log and the witness quorum"))

    gateway, _ = _key_record(doc, "gateway_key", trust, PURPOSE_OHTTP_GATEWAY,
                             trust.gateway_name)
    checks.append(FieldCheck("gateway_key", True, f"key record of {gateway.owner}, valid "
                             f"{format_time(gateway.not_before)} to "
                             f"{format_time(gateway.not_after)}, in the log"))
    issuer: KeyRecord | None = None
    if doc.get("issuer_key") is not None:
        issuer, _ = _key_record(doc, "issuer_key", trust, "privacypass-",
                                trust.tokens.issuer_name if trust.tokens else None)
        checks.append(FieldCheck("issuer_key", True, f"key record of {issuer.owner} "
                                 f"({issuer.purpose}), in the log"))

    if not release.time <= when < claims.expiry:
        raise ReceiptError("time", f"{stamp} is outside the release ({format_time(release.time)})"
                                   f" and node key ({format_time(claims.expiry)}) validity")
    for name, key in (("gateway_key", gateway), ("issuer_key", issuer)):
        if key is not None and not key.valid_at(when):
            raise ReceiptError("time", f"{stamp} is outside the validity of the {name}")
    checks.append(FieldCheck("time", False, "the client's clock: consistent with the "
                             "release and the keys' validity, not provable"))
    node_id = _str(doc, "node_id")
    if claims.node_id is None or node_id != claims.node_id:
        raise ReceiptError("node_id", "is not the name the evidence's registration key gives")
    checks.append(FieldCheck("node_id", True, "derived from the registration key the "
                             "evidence binds"))
    checks.append(FieldCheck("revocation", False, "a later revocation needs the log: "
                             "privproc audit lists them"))
    return checks
