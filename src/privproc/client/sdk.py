"""The Private Processing client: one call, a private summary, and a receipt.

Each call: get (or reuse) a token; fetch the node set through the relay; verify every
candidate (evidence chain and policy, key binding and expiry, measurement logged under a
checkpoint signed by the log and a witness quorum and consistent with the last one
seen); pick one uniformly at random among the verified; seal, send, open; return the
result with a receipt. Verified nodes are cached until their key expires. Every failed
check raises its own exception, and nothing of the input leaves the device before all
checks passed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from privproc.attest.errors import AttestationError
from privproc.attest.evidence import decode_bundle, verify_bundle
from privproc.tlog.client import (
    CheckpointStore,
    InclusionProof,
    LogClient,
    LogClientError,
    LogForkError,
    http_fetcher,
)
from privproc.tlog.record import RecordError, decode_record
from privproc.wire import inner, ohttp
from privproc.wire.errors import KeyConfigError

from .errors import ClientError, TransportError
from .node import NodeResponseError, open_task, seal_task
from .ohttp import OHTTPClient
from .tokens import TokenWallet
from .trust import ClientTrust


class NodeVerificationError(ClientError):
    """A candidate node failed verification (the reason names which check)."""


class EvidenceRefusedError(NodeVerificationError):
    """The node's evidence does not verify against the pinned roots and policy."""


class KeyExpiredError(NodeVerificationError):
    """The node's attested key has expired."""


class MeasurementNotLoggedError(NodeVerificationError):
    """The node's measurement is not in the transparency log."""


class NoVerifiedNodeError(ClientError):
    """No candidate node passed verification: nothing was sent."""

    def __init__(self, reasons: dict[str, str]) -> None:
        detail = "; ".join(f"{n}: {r}" for n, r in sorted(reasons.items())) or "none offered"
        super().__init__(f"no verified node ({detail})")
        self.reasons = reasons


@dataclass(frozen=True)
class VerifiedNode:
    node_id: str
    key_config: ohttp.KeyConfig
    expiry: int
    measurement: bytes
    evidence_digest: bytes
    inclusion: InclusionProof


@dataclass(frozen=True)
class Receipt:
    """What processed a request, checkable offline with ``privproc receipt verify``."""

    node_id: str
    evidence_digest: str
    measurement: str
    log_index: int
    log_record: str
    log_proof: list[str]
    log_checkpoint: str
    time: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


@dataclass(frozen=True)
class Result:
    output: list[str]
    receipt: Receipt


class PrivateProcessingClient:
    def __init__(
        self,
        relay_url: str,
        log_url: str,
        trust: ClientTrust,
        *,
        tokens: TokenWallet | None = None,
        checkpoint_store: CheckpointStore | None = None,
        clock: Callable[[], float] = time.time,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.trust = trust
        self.log_url = log_url.rstrip("/")
        self.ohttp = OHTTPClient(relay_url, authority="gateway.privproc.local", tokens=tokens)
        self.log = LogClient(http_fetcher(self.log_url), trust.log, checkpoint_store)
        self.clock = clock
        self.progress = progress or (lambda _: None)
        self._verified: dict[str, VerifiedNode] = {}

    # -- discovery and verification ------------------------------------------------------

    def candidates(self) -> list[tuple[str, bytes]]:
        response = self.ohttp.request("GET", "/v1/nodes")
        if response.status != 200:
            raise TransportError(f"node directory answered {response.status}")
        try:
            nodes = json.loads(response.content)["nodes"]
            return [(str(n["node_id"]), base64.b64decode(n["bundle"])) for n in nodes]
        except (ValueError, KeyError, TypeError) as exc:
            raise TransportError(f"node directory answer is malformed: {exc}") from None

    def _logged(self, measurement: bytes) -> InclusionProof:
        trusted = self.log.update()
        try:
            with urllib.request.urlopen(f"{self.log_url}/lookup/{measurement.hex()}",
                                        timeout=10) as resp:
                indices = [int(i) for i in json.loads(resp.read())["indices"]]
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            raise MeasurementNotLoggedError(f"log lookup failed: {exc}") from None
        for index in reversed(indices):
            if index >= trusted.checkpoint.size:
                continue
            proof = self.log.prove(index, trusted)
            try:
                if decode_record(proof.record).measurement == measurement:
                    return proof
            except RecordError:
                continue
        raise MeasurementNotLoggedError(
            f"measurement {measurement.hex()[:16]}... is in no release under the "
            f"checkpoint of size {trusted.checkpoint.size}")

    def verify_node(self, node_id: str, bundle_bytes: bytes) -> VerifiedNode:
        now = self.clock()
        try:
            claims = verify_bundle(bundle_bytes, self.trust.policy, self.trust.roots,
                                   datetime.fromtimestamp(now, UTC))
        except AttestationError as exc:
            if "expired" in str(exc).lower():
                raise KeyExpiredError(f"{node_id}: {exc}") from None
            raise EvidenceRefusedError(f"{node_id}: {type(exc).__name__}: {exc}") from None
        if claims.expiry <= now:
            raise KeyExpiredError(f"{node_id}: key expired at {claims.expiry}")
        bundle = decode_bundle(bundle_bytes)
        try:
            key_config = ohttp.decode_key_config(bundle.key_config)
        except KeyConfigError as exc:
            raise EvidenceRefusedError(f"{node_id}: key configuration: {exc}") from None
        inclusion = self._logged(claims.measurement)
        return VerifiedNode(node_id, key_config, claims.expiry, claims.measurement,
                            claims.evidence_digest, inclusion)

    def verified_nodes(self) -> list[VerifiedNode]:
        now = self.clock()
        self._verified = {k: v for k, v in self._verified.items() if v.expiry > now}
        reasons: dict[str, str] = {}
        out: list[VerifiedNode] = []
        for node_id, bundle in self.candidates():
            cached = self._verified.get(node_id)
            if cached is not None and cached.key_config.encode() == decode_bundle(
                    bundle).key_config:
                out.append(cached)
                continue
            try:
                node = self.verify_node(node_id, bundle)
            except LogForkError:
                raise  # evidence of a split view: never fall back to other nodes
            except (NodeVerificationError, LogClientError) as exc:
                reasons[node_id] = f"{type(exc).__name__}: {exc}"
                self.progress(f"refused node {node_id}: {type(exc).__name__}")
                continue
            self.progress(f"verified node {node_id}: evidence, key binding, measurement "
                          f"{node.measurement.hex()[:16]}... logged at index "
                          f"{node.inclusion.index}")
            self._verified[node_id] = node
            out.append(node)
        if not out:
            raise NoVerifiedNodeError(reasons)
        return out

    # -- the calls -------------------------------------------------------------------------

    def _nodes(self) -> list[VerifiedNode]:
        """Verified nodes whose keys are still valid; the directory is asked again only
        when none is left (or after a node failed)."""
        now = self.clock()
        cached = [n for n in self._verified.values() if n.expiry > now]
        return cached or self.verified_nodes()

    def _run(self, task: inner.Task, payload: dict[str, Any]) -> Result:
        nodes = self._nodes()
        tried: set[str] = set()
        last: Exception | None = None
        for _ in range(2):  # one retry on another node if the first fails in transit
            choices: Sequence[VerifiedNode] = [n for n in nodes if n.node_id not in tried]
            if not choices:
                break
            node = secrets.choice(choices)
            tried.add(node.node_id)
            sealed, nonce, ctx = seal_task(node.key_config, task, payload)
            response = self.ohttp.request(
                "POST", f"/v1/nodes/{node.node_id}/process", content=sealed,
                headers=[(b"content-type", inner.MEDIA_TYPE_REQUEST.encode())])
            if response.status != 200:
                last = TransportError(f"node {node.node_id} answered {response.status}")
                self._verified.pop(node.node_id, None)
                continue
            try:
                output = open_task(ctx, nonce, response.content)
            except NodeResponseError as exc:
                last = exc
                continue
            return Result(output, self._receipt(node))
        raise last or NoVerifiedNodeError({})

    def _receipt(self, node: VerifiedNode) -> Receipt:
        return Receipt(
            node_id=node.node_id,
            evidence_digest=node.evidence_digest.hex(),
            measurement=node.measurement.hex(),
            log_index=node.inclusion.index,
            log_record=node.inclusion.record.decode(),
            log_proof=[h.hex() for h in node.inclusion.proof],
            log_checkpoint=node.inclusion.checkpoint.decode(),
            time=datetime.fromtimestamp(self.clock(), UTC).isoformat(),
        )

    def summarize(self, messages: Sequence[dict[str, str]], max_bullets: int = 5) -> Result:
        return self._run(inner.Task.SUMMARIZE,
                         {"messages": list(messages), "max_bullets": max_bullets})

    def write(self, draft: str, tone: str) -> Result:
        return self._run(inner.Task.WRITE, {"draft": draft, "tone": tone})


def verify_receipt(receipt: dict[str, Any], trust: ClientTrust) -> None:
    """Offline: the checkpoint's signatures and quorum, the record's inclusion, and that
    the record names the receipt's measurement. Raises ClientError subclasses."""
    from privproc.tlog.client import verify_inclusion_offline

    try:
        proof = InclusionProof(int(receipt["log_index"]), receipt["log_record"].encode(),
                               tuple(bytes.fromhex(h) for h in receipt["log_proof"]),
                               receipt["log_checkpoint"].encode())
        verify_inclusion_offline(proof, trust.log)
        record = decode_record(proof.record)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ClientError(f"receipt malformed: {exc}") from None
    except LogClientError as exc:
        raise ClientError(f"receipt does not verify: {exc}") from None
    if record.measurement.hex() != receipt["measurement"]:
        raise MeasurementNotLoggedError("the logged record is for another measurement")


class AsyncPrivateProcessingClient:
    """The asynchronous variant: the same checks, run off the event loop.

    Verification, sealing and the HTTP exchange run in a worker thread, so an asyncio app
    can ``await client.summarize(...)`` without blocking its loop.
    """

    def __init__(self, relay_url: str, log_url: str, trust: ClientTrust, **kwargs: Any
                 ) -> None:
        self.sync = PrivateProcessingClient(relay_url, log_url, trust, **kwargs)

    async def verified_nodes(self) -> list[VerifiedNode]:
        return await asyncio.to_thread(self.sync.verified_nodes)

    async def summarize(self, messages: Sequence[dict[str, str]], max_bullets: int = 5
                        ) -> Result:
        return await asyncio.to_thread(self.sync.summarize, messages, max_bullets)

    async def write(self, draft: str, tone: str) -> Result:
        return await asyncio.to_thread(self.sync.write, draft, tone)
