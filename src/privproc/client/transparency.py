"""What the client checks against the transparency log before it trusts a key or a node.

Every key the client uses is in the log: the gateway's OHTTP key and the issuer's token
keys each need a key record, proven by an inclusion proof under a checkpoint signed by the
log and the witness quorum, consistent with the client's :class:`LogView`, and valid now
(``not-before <= now < not-after``). More valid keys of one purpose and owner than the
trust file allows (default 2: current and next) are refused: keys made for one client
cannot hide among the few everyone uses. A node needs a release record for its
measurement, stapled the same way, and no revocation record for it anywhere in the log.

All of it arrives stapled (:mod:`privproc.tlog.bundle`) through the relay; nothing here
talks to the log directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from privproc.attest.errors import AttestationError
from privproc.attest.errors import KeyExpiredError as AttestKeyExpiredError
from privproc.attest.evidence import VerifiedClaims, decode_bundle, node_id_for, verify_bundle
from privproc.tlog.bundle import BundleFormatError, LogBundle
from privproc.tlog.client import (
    InclusionProof,
    LogClientError,
    LogForkError,
    StaleCheckpointError,
)
from privproc.tlog.record import (
    PURPOSE_OHTTP_GATEWAY,
    KeyRecord,
    RecordError,
    ReleaseRecord,
    decode_entry,
    format_time,
    privacypass_purpose,
)
from privproc.tlog.view import LogView
from privproc.wire import hpke, inner, ohttp
from privproc.wire.errors import KeyConfigError, WireError

from .errors import (
    ClassicalKeyRefusedError,
    EvidenceRefusedError,
    KeyDowngradeError,
    KeyExpiredError,
    KeyNotLoggedError,
    LogVerificationError,
    MeasurementNotLoggedError,
    NodeKeyNotPostQuantumError,
    ReleaseRevokedError,
    StaleLogError,
    TooManyKeysError,
)
from .trust import ClientTrust


@dataclass(frozen=True)
class LoggedKey:
    """A key record that verified, and the proof that carried it."""

    record: KeyRecord
    proof: InclusionProof


@dataclass(frozen=True)
class GatewayKey:
    config: ohttp.KeyConfig
    logged: LoggedKey


@dataclass(frozen=True)
class VerifiedKeys:
    """The keys of one key bundle that passed every check, newest first."""

    gateway: tuple[GatewayKey, ...]
    issuer: tuple[LoggedKey, ...]
    witnessed_at: int  # when a quorum of witnesses had cosigned the bundle's checkpoint

    def fresh_at(self, now: float, max_age: float) -> bool:
        """Whether the bundle may still be relied on (``max_checkpoint_age``)."""
        return now - self.witnessed_at <= max_age

    def issuer_key(self, token_type: int, token_key: bytes) -> LoggedKey | None:
        purpose = privacypass_purpose(token_type)
        return next((k for k in self.issuer
                     if k.record.purpose == purpose and k.record.key == token_key), None)


def verified_bundle(bundle: LogBundle, trust: ClientTrust, view: LogView, now: float
                    ) -> int:
    """Signatures, quorum and every proof of ``bundle``, its checkpoint consistent with
    the view (LogForkError is raised as is: it is evidence) and cosigned by a quorum
    within ``max_checkpoint_age`` of ``now``; returns when the quorum had cosigned it."""
    try:
        verified = bundle.verify(trust.log)
        view.accept(bundle.checkpoint)
        return trust.log.check_fresh(verified, now, trust.max_checkpoint_age)
    except LogForkError:
        raise
    except StaleCheckpointError as exc:
        raise StaleLogError(f"stapled checkpoint refused: {exc}") from None
    except LogClientError as exc:
        raise LogVerificationError(f"stapled log proofs do not verify: {exc}") from None


def check_not_surplus(view: LogView, purpose: str, owner: str, now: float, limit: int) -> None:
    valid = [k for k in view.keys(purpose, owner) if k.valid_at(now)]
    if len(valid) > limit:
        indices = ", ".join(str(k.index) for k in valid)
        raise TooManyKeysError(
            f"{len(valid)} {purpose} keys of {owner} are valid at once in the log (records "
            f"{indices}); the trust file allows {limit}: refusing, since extra keys can "
            "single out clients")


def verify_key_bundle(data: bytes, trust: ClientTrust, view: LogView, now: float
                      ) -> VerifiedKeys:
    """The gateway and issuer keys of a key bundle that are logged and valid at ``now``."""
    try:
        bundle = LogBundle.decode(data)
    except BundleFormatError as exc:
        raise LogVerificationError(f"key bundle: {exc}") from None
    witnessed_at = verified_bundle(bundle, trust, view, now)
    gateway: list[GatewayKey] = []
    issuer: list[LoggedKey] = []
    issuer_name = trust.tokens.issuer_name if trust.tokens is not None else None
    for proof in bundle.proofs():
        try:
            record = decode_entry(proof.record)
        except RecordError:
            continue
        if not isinstance(record, KeyRecord) or not record.valid_at(now):
            continue
        logged = LoggedKey(record, proof)
        if record.purpose == PURPOSE_OHTTP_GATEWAY and record.owner == trust.gateway_name:
            try:
                config = ohttp.decode_key_config(record.key)
            except KeyConfigError:
                continue
            if next(config.supported_suites(), None) is not None:
                gateway.append(GatewayKey(config, logged))
        elif record.purpose.startswith("privacypass-") and record.owner == issuer_name:
            issuer.append(logged)
    gateway.sort(key=lambda k: k.logged.record.not_before, reverse=True)
    issuer.sort(key=lambda k: k.record.not_before, reverse=True)
    return VerifiedKeys(tuple(gateway), tuple(issuer), witnessed_at)


def pick_gateway_key(keys: VerifiedKeys, trust: ClientTrust, view: LogView, now: float
                     ) -> GatewayKey:
    check_not_surplus(view, PURPOSE_OHTTP_GATEWAY, trust.gateway_name, now, trust.max_keys)
    valid = [k for k in keys.gateway if k.logged.record.valid_at(now)]
    if not valid:
        raise KeyNotLoggedError(
            f"no OHTTP key of {trust.gateway_name!r} with a key record valid now "
            f"({format_time(int(now))}) was offered: nothing is sent to an unlogged key")
    # the newest post-quantum key first; a classical one only if there is none
    hybrid = [k for k in valid if k.config.post_quantum]
    offered = ", ".join(f"key_id {k.config.key_id} {k.config.kem_name}" for k in valid)
    if not hybrid:
        hidden = [k for k in view.keys(PURPOSE_OHTTP_GATEWAY, trust.gateway_name)
                  if k.post_quantum and k.valid_at(now)]
        if hidden:
            newest = hidden[-1]
            raise KeyDowngradeError(
                f"the key bundle offers only classical OHTTP keys of {trust.gateway_name!r} "
                f"({offered}), but the log holds a valid post-quantum key of it (record "
                f"{newest.index}, {newest.kem_name}, valid until "
                f"{format_time(newest.not_after)}): a replayed old bundle would downgrade "
                "this client; nothing is sent")
    if not hybrid and trust.require_pq:
        raise ClassicalKeyRefusedError(
            f"the trust file says require_pq = true, but every valid OHTTP key of "
            f"{trust.gateway_name!r} is classical ({offered}); expected a post-quantum KEM "
            f"({hpke.kem_name(hpke.KEM_MLKEM768_X25519)}, 0x{hpke.KEM_MLKEM768_X25519:04x}): "
            "nothing is sent")
    return (hybrid or valid)[0]


def check_issuer_key(keys: VerifiedKeys, trust: ClientTrust, view: LogView, *,
                     token_type: int, token_key: bytes, now: float) -> LoggedKey:
    """The key record of an issuer key the wallet is about to use, or KeyNotLoggedError."""
    if trust.tokens is None:
        raise KeyNotLoggedError("the trust file names no issuer ([tokens])")
    purpose = privacypass_purpose(token_type)
    check_not_surplus(view, purpose, trust.tokens.issuer_name, now, trust.max_keys)
    logged = keys.issuer_key(token_type, token_key)
    if logged is None or not logged.record.valid_at(now):
        raise KeyNotLoggedError(
            f"the issuer offered a type 0x{token_type:04x} key that has no key record of "
            f"{trust.tokens.issuer_name!r} valid now in the log: no token is requested for "
            "a key that could single this client out")
    return logged


def release_proofs(doc: Any, trust: ClientTrust, view: LogView, now: float
                   ) -> dict[bytes, InclusionProof]:
    """The release records stapled to a node list, by measurement (all proofs checked)."""
    if doc is None:
        return {}
    try:
        bundle = LogBundle.from_json(doc)
    except BundleFormatError as exc:
        raise LogVerificationError(f"node list's release bundle: {exc}") from None
    verified_bundle(bundle, trust, view, now)
    out: dict[bytes, InclusionProof] = {}
    for proof in bundle.proofs():
        try:
            record = decode_entry(proof.record)
        except RecordError:
            continue
        if isinstance(record, ReleaseRecord):
            out.setdefault(record.measurement, proof)
    return out


@dataclass(frozen=True)
class VerifiedNode:
    node_id: str
    key_config: ohttp.KeyConfig
    claims: VerifiedClaims
    evidence: bytes
    release: InclusionProof

    @property
    def expiry(self) -> int:
        return self.claims.expiry

    @property
    def measurement(self) -> bytes:
        return self.claims.measurement


def verify_node_evidence(node_id: str | None, bundle: bytes,
                         releases: dict[bytes, InclusionProof], *, trust: ClientTrust,
                         view: LogView, now: float) -> VerifiedNode:
    """Every check of one node: the client's before it sends, the directory's before it
    lists. Evidence chain and policy (pinned roots, CRLs), the key binding and expiry, the
    attested registration key and the node id derived from it (``node_id`` None: take
    it), a logged release of the measurement and no revocation in the log."""
    label = node_id or "node"
    if node_id is not None:
        # The name first, from the bundle as it claims to be (cheap): a directory listing
        # one node's evidence under many names costs one chain check, not one per name.
        # (The attested claims are checked against it again below.)
        try:
            declared = decode_bundle(bundle).registration_key
        except AttestationError:
            declared = b""  # verify_bundle says what is wrong with it
        if declared is None:
            raise EvidenceRefusedError(f"{label}: the evidence binds no registration key")
        if declared and node_id_for(declared) != node_id:
            raise EvidenceRefusedError(f"{label}: listed under a name that is not the one "
                                       "its registration key gives")
    try:
        claims = verify_bundle(bundle, trust.policy, trust.roots,
                               datetime.fromtimestamp(now, UTC), crls=trust.crls)
    except AttestKeyExpiredError as exc:
        raise KeyExpiredError(f"{label}: {exc}") from None
    except AttestationError as exc:
        raise EvidenceRefusedError(f"{label}: {type(exc).__name__}: {exc}") from None
    if claims.node_id is None:
        raise EvidenceRefusedError(f"{label}: the evidence binds no registration key")
    if node_id is not None and node_id != claims.node_id:
        raise EvidenceRefusedError(f"{label}: listed under a name that is not the one its "
                                   f"attested registration key gives ({claims.node_id})")
    try:
        key_config = ohttp.decode_key_config(claims.key_config)
    except KeyConfigError as exc:
        raise EvidenceRefusedError(f"{label}: key configuration: {exc}") from None
    try:
        # one trial seal (once per node): a key that parses but takes no request (no
        # suite this client runs, a low-order X25519 share) would fail every call instead
        ohttp.encapsulate_request(key_config, b"", request_label=inner.REQUEST_LABEL,
                                  response_label=inner.RESPONSE_LABEL)
    except WireError as exc:
        raise EvidenceRefusedError(f"{label}: the attested key {key_config.key_id} cannot be "
                                   f"sealed to: {exc}") from None
    if trust.require_pq and not key_config.post_quantum:
        raise NodeKeyNotPostQuantumError(
            f"{label}: the trust file says require_pq = true, but the node's attested key "
            f"{key_config.key_id} uses {key_config.kem_name} (0x{key_config.kem_id:04x}); "
            f"expected a post-quantum KEM ({hpke.kem_name(hpke.KEM_MLKEM768_X25519)}, "
            f"0x{hpke.KEM_MLKEM768_X25519:04x})")
    release = releases.get(claims.measurement)
    if release is None:
        raise MeasurementNotLoggedError(
            f"{label}: no logged release record of measurement "
            f"{claims.measurement.hex()[:16]}... was stapled")
    revoked = view.revocation(claims.measurement)
    if revoked is not None:
        raise ReleaseRevokedError(
            f"{label}: measurement {claims.measurement.hex()[:16]}... was revoked by log "
            f"record {revoked.index} ({revoked.reason})")
    return VerifiedNode(claims.node_id, key_config, claims, bundle, release)
