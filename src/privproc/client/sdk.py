"""The Private Processing client: one call, a private summary, and a receipt.

Everything the client learns about the system comes through the relay, verified against
the trust file, before any input leaves the device:

- the log (checkpoint, tiles) through the relay's ``/log/`` proxy, into a
  :class:`~privproc.tlog.view.LogView` that replays every record (revocations and key
  records included) and proves each new checkpoint consistent with the last;
- the gateway's and the issuer's keys as a stapled log bundle (``GET /privproc/keys``):
  only keys with a valid key record are used (:mod:`privproc.client.transparency`);
- the nodes (``GET /v1/nodes`` through OHTTP) with a bundle of their release records:
  evidence chain and policy, key binding and expiry, a logged and unrevoked release.

It then picks a verified node uniformly at random, seals, sends and opens, and returns
the output with a receipt that re-verifies offline (:mod:`privproc.client.receipt`).

Log syncs, key refreshes and token refills are meant to run in the background
(:meth:`PrivateProcessingClient.start`: once at start without the issuer, then on a
jittered schedule), so a request touches the relay alone; only an empty wallet or
information that changed since the last refresh makes a request fetch first (still
through the relay, except the wallet's issuer).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urljoin

from privproc.budget import CLIENT_TIMEOUT
from privproc.tlog.client import (
    InclusionProof,
    LogClientError,
    LogFetchError,
    LogForkError,
    http_fetcher,
)
from privproc.tlog.view import LogView
from privproc.wire import inner, ohttp
from privproc.wire import privacypass as pp

from .errors import (
    ClientError,
    EvidenceRefusedError,
    KeyExpiredError,
    KeyNotLoggedError,
    LogVerificationError,
    MeasurementNotLoggedError,
    NodeBusyError,
    NodeVerificationError,
    NoVerifiedNodeError,
    ReleaseRevokedError,
    TooManyKeysError,
    TransportError,
)
from .node import NodeResponseError, open_output, seal_task
from .ohttp import OHTTPClient
from .receipt import Receipt, verify_receipt
from .tokens import TokenWallet
from .transparency import (
    GatewayKey,
    VerifiedKeys,
    VerifiedNode,
    check_issuer_key,
    pick_gateway_key,
    release_proofs,
    verify_key_bundle,
    verify_node_evidence,
)
from .trust import ClientTrust, load_trust

__all__ = [
    "AsyncPrivateProcessingClient",
    "EvidenceRefusedError",
    "KeyExpiredError",
    "KeyNotLoggedError",
    "MeasurementNotLoggedError",
    "NoVerifiedNodeError",
    "NodeList",
    "NodeVerificationError",
    "PrivateProcessingClient",
    "Receipt",
    "ReleaseRevokedError",
    "Result",
    "TooManyKeysError",
    "VerifiedNode",
    "verify_receipt",
]

DEFAULT_REFRESH_SECONDS = 300.0
MAX_BUSY_RETRIES = 6  # requests to busy nodes (503) before giving up; each costs a token
_random = secrets.SystemRandom()


@dataclass(frozen=True)
class NodeList:
    """What the directory offered: nodes and the stapled proofs of their releases."""

    nodes: list[tuple[str, bytes]]
    releases: dict[bytes, InclusionProof]


@dataclass(frozen=True)
class Result:
    """The answer: ``output`` (bullets, or the rewrite), for summaries each bullet's
    ``sources`` (indices into the messages sent), for rewrites ``flags`` ("fallback": the
    node kept the draft's words, lightly corrected), and the receipt."""

    output: list[str]
    receipt: Receipt
    sources: list[list[int]] | None = None
    flags: tuple[str, ...] = ()


@contextmanager
def _log_errors() -> Iterator[None]:
    """Log failures as client errors; a fork stays a LogForkError (it is evidence)."""
    try:
        yield
    except LogForkError:
        raise
    except LogFetchError as exc:
        raise TransportError(f"cannot read the log through the relay: {exc}") from None
    except LogClientError as exc:
        raise LogVerificationError(f"the log does not verify: {exc}") from None


class PrivateProcessingClient:
    def __init__(
        self,
        trust: ClientTrust,
        *,
        tokens: TokenWallet | None = None,
        state_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        progress: Callable[[str], None] | None = None,
        timeout: float = CLIENT_TIMEOUT,
    ) -> None:
        self.trust = trust
        self.clock = clock
        self.progress = progress or (lambda _: None)
        self.timeout = timeout
        self.relay_url = trust.relay_url if trust.relay_url.endswith("/") else (
            trust.relay_url + "/")
        self.view = LogView(http_fetcher(urljoin(self.relay_url, "log"), timeout),
                            trust.log, state_dir / "log-view.json" if state_dir else None)
        self.tokens = tokens
        if tokens is not None:
            tokens.key_check = self._check_issuer_key
        challenge = None
        if trust.tokens is not None:
            challenge = pp.TokenChallenge(
                tokens.token_type if tokens is not None else trust.tokens.token_type,
                trust.tokens.issuer_name, b"", [trust.tokens.origin_name])
        self.ohttp = OHTTPClient(self.relay_url, authority=trust.gateway_name, tokens=tokens,
                                 challenge=challenge, key_source=self._gateway_key_config,
                                 clock=clock, timeout=timeout)
        self._lock = threading.RLock()
        self._keys: VerifiedKeys | None = None
        self._gateway: GatewayKey | None = None
        self._verified: dict[str, VerifiedNode] = {}
        self._releases: dict[bytes, InclusionProof] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_after = 1.0

    @classmethod
    def from_trust_file(cls, path: Path, *, state_dir: Path | None = None,
                        **kwargs: Any) -> Self:
        """A client for the trust file at ``path``, keeping its state (log view, tokens)
        in ``state_dir`` (default: the trust file's folder)."""
        trust = load_trust(path)
        state_dir = state_dir if state_dir is not None else path.parent
        wallet = None
        if trust.tokens is not None:
            wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token,
                                 state_dir / "tokens.json", token_type=trust.tokens.token_type,
                                 on_fetch=kwargs.get("progress"))
        return cls(trust, tokens=wallet, state_dir=state_dir, **kwargs)

    # -- background ---------------------------------------------------------------------

    def refresh(self, *, tokens: bool = True) -> None:
        """Sync the log view, re-verify the key bundle, drop revoked nodes and (with
        ``tokens``) refill the wallet if it runs low. All through the relay, but refills."""
        with self._lock, _log_errors():
            self.view.sync()
            self.refresh_keys()
            for node_id, node in list(self._verified.items()):
                if self.view.revocation(node.measurement) is not None:
                    self.progress(f"dropped node {node_id}: its release was revoked")
                    del self._verified[node_id]
        challenge = self.ohttp.challenge
        if tokens and self.tokens is not None and challenge is not None:
            added = self.tokens.refill_if_low(challenge)
            if added:
                self.progress(f"token wallet refilled: {added} new tokens")

    def start(self, interval: float = DEFAULT_REFRESH_SECONDS, jitter: float = 0.5) -> Self:
        """Refresh once now (without the issuer), then in the background every
        ``interval`` seconds, each wait drawn from ``interval * (1 ± jitter)``."""
        if not 0 <= jitter < 1 or interval <= 0:
            raise ValueError(f"need interval > 0 and 0 <= jitter < 1, got {interval}, {jitter}")
        self.refresh(tokens=False)
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._background, args=(interval, jitter),
                                            name="privproc-refresh", daemon=True)
            self._thread.start()
        return self

    def _background(self, interval: float, jitter: float) -> None:
        delay = _random.uniform(0, interval * max(jitter, 0.1))
        while not self._stop.wait(delay):
            try:
                self.refresh()
            except (ClientError, LogClientError) as exc:
                self.progress(f"background refresh failed: {type(exc).__name__}: {exc}")
            delay = interval * _random.uniform(1 - jitter, 1 + jitter)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- keys -------------------------------------------------------------------------------

    def _get(self, path: str) -> bytes:
        url = urljoin(self.relay_url, path)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                body: bytes = resp.read()
                return body
        except urllib.error.HTTPError as exc:
            raise TransportError(f"relay answered {exc.code} for {path}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransportError(f"cannot reach relay {self.relay_url}: {exc}") from None

    def refresh_keys(self) -> VerifiedKeys:
        """Fetch the key bundle through the relay and keep the keys that verify."""
        body = self._get("privproc/keys")
        with self._lock, _log_errors():
            keys = verify_key_bundle(body, self.trust, self.view, self.clock())
            self._keys, self._gateway = keys, None
        return keys

    def gateway_key(self) -> GatewayKey:
        """The gateway key to seal to: logged, valid now, not one of a surplus."""
        now = self.clock()
        current = self._gateway
        if current is not None and current.logged.record.valid_at(now):
            return current
        keys = self._keys if self._keys is not None else self.refresh_keys()
        try:
            with _log_errors():
                current = pick_gateway_key(keys, self.trust, self.view, now)
        except TooManyKeysError:
            raise
        except KeyNotLoggedError:
            keys = self.refresh_keys()  # the kept bundle may be older than a rotation
            with _log_errors():
                current = pick_gateway_key(keys, self.trust, self.view, now)
        self._gateway = current
        return current

    def _gateway_key_config(self, refresh: bool) -> ohttp.KeyConfig:
        if refresh:  # the gateway answered 422: it has rotated since
            self.refresh_keys()
        return self.gateway_key().config

    def _check_issuer_key(self, token_type: int, token_key: bytes) -> None:
        keys = self._keys if self._keys is not None else self.refresh_keys()
        now = self.clock()
        try:
            with _log_errors():
                check_issuer_key(keys, self.trust, self.view, token_type=token_type,
                                 token_key=token_key, now=now)
        except TooManyKeysError:
            raise
        except KeyNotLoggedError:
            keys = self.refresh_keys()
            with _log_errors():
                check_issuer_key(keys, self.trust, self.view, token_type=token_type,
                                 token_key=token_key, now=now)

    # -- discovery and verification ------------------------------------------------------

    def candidates(self) -> NodeList:
        """The directory's node list, through OHTTP, with its stapled release proofs."""
        response = self.ohttp.request("GET", "/v1/nodes")
        if response.status != 200:
            raise TransportError(f"node directory answered {response.status}")
        try:
            doc = json.loads(response.content)
            nodes = [(str(n["node_id"]), base64.b64decode(n["bundle"])) for n in doc["nodes"]]
            log_doc = doc.get("log")
        except (ValueError, KeyError, TypeError) as exc:
            raise TransportError(f"node directory answer is malformed: {exc}") from None
        with _log_errors():
            releases = release_proofs(log_doc, self.trust, self.view)
        self._releases = releases
        return NodeList(nodes, releases)

    def verify_node(self, node_id: str, bundle_bytes: bytes,
                    releases: dict[bytes, InclusionProof] | None = None) -> VerifiedNode:
        """Every check of one node, against the release proofs of its node list."""
        with _log_errors():
            return verify_node_evidence(
                node_id, bundle_bytes, self._releases if releases is None else releases,
                trust=self.trust, view=self.view, now=self.clock())

    def verified_nodes(self) -> list[VerifiedNode]:
        """Ask the directory and verify every node offered; raises if none passes."""
        offered = self.candidates()
        with self._lock:
            now = self.clock()
            self._verified = {k: v for k, v in self._verified.items() if v.expiry > now}
            reasons: dict[str, str] = {}
            out: list[VerifiedNode] = []
            for node_id, bundle in offered.nodes:
                cached = self._verified.get(node_id)
                if cached is not None and cached.evidence == bundle:
                    out.append(cached)
                    continue
                try:
                    node = self.verify_node(node_id, bundle, offered.releases)
                except NodeVerificationError as exc:
                    reasons[node_id] = f"{type(exc).__name__}: {exc}"
                    self.progress(f"refused node {node_id}: {type(exc).__name__}")
                    continue
                self.progress(f"verified node {node_id}: evidence, key binding, measurement "
                              f"{node.measurement.hex()[:16]}... logged at index "
                              f"{node.release.index}, not revoked")
                self._verified[node_id] = node
                out.append(node)
        if not out:
            raise NoVerifiedNodeError(reasons)
        return out

    # -- the calls -------------------------------------------------------------------------

    def _nodes(self) -> list[VerifiedNode]:
        """Verified nodes whose keys are still valid and whose release is not revoked; the
        directory is asked again only when none is left (or after a node failed)."""
        now = self.clock()
        cached = [n for n in self._verified.values()
                  if n.expiry > now and self.view.revocation(n.measurement) is None]
        return cached or self.verified_nodes()

    def _run(self, task: inner.Task, payload: dict[str, Any]) -> Result:
        gateway = self.gateway_key()
        nodes = self._nodes()
        tried: set[str] = set()
        failures = busy = 0
        last: Exception | None = None
        while failures < 2 and busy <= MAX_BUSY_RETRIES:
            choices: Sequence[VerifiedNode] = [n for n in nodes if n.node_id not in tried]
            if not choices:
                if not busy or failures:
                    break
                # every node is busy: wait a little (jittered), then try them again
                time.sleep(min(self._retry_after, 2.0) * _random.uniform(0.25, 1.0))
                tried.clear()
                continue
            node = secrets.choice(choices)
            tried.add(node.node_id)
            sealed, nonce, ctx = seal_task(node.key_config, task, payload)
            spent: list[pp.Token] = []
            response = self.ohttp.request(
                "POST", f"/v1/nodes/{node.node_id}/process", content=sealed,
                headers=[(b"content-type", inner.MEDIA_TYPE_REQUEST.encode())], spent=spent)
            if response.status == 503:  # busy, not broken: the node stays verified
                busy += 1
                retry = next((f.value for f in response.headers if f.name == b"retry-after"),
                             b"1")
                self._retry_after = float(retry) if retry.isdigit() else 1.0
                last = NodeBusyError(f"node {node.node_id} is busy (503)")
                continue
            if response.status != 200:
                failures += 1
                last = TransportError(
                    f"the gateway gave up waiting for node {node.node_id} (504)"
                    if response.status == 504 else
                    f"node {node.node_id} answered {response.status}")
                self._verified.pop(node.node_id, None)
                continue
            try:
                output = open_output(ctx, nonce, response.content)
            except NodeResponseError as exc:
                failures += 1
                last = exc
                continue
            return Result(output.result, self._receipt(node, gateway, spent), output.sources,
                          output.flags)
        raise last or NoVerifiedNodeError({})

    def _receipt(self, node: VerifiedNode, gateway: GatewayKey, spent: list[pp.Token]
                 ) -> Receipt:
        issuer = None
        if spent and self._keys is not None:
            logged = next((k for k in self._keys.issuer
                           if k.record.key_sha256 == spent[-1].token_key_id), None)
            issuer = logged.proof if logged is not None else None
        return Receipt(time=int(self.clock()), node_id=node.node_id, evidence=node.evidence,
                       claims=node.claims, release=node.release,
                       gateway_key=gateway.logged.proof, issuer_key=issuer)

    def summarize(self, messages: Sequence[dict[str, str]], max_bullets: int = 5, *,
                  reader: str | None = None) -> Result:
        """Bullets for ``reader`` (the user's name in the chat: requests to them come
        first, in the second person), each with the indices of its source messages."""
        payload: dict[str, Any] = {"messages": list(messages), "max_bullets": max_bullets}
        if reader:
            payload["reader"] = reader
        result = self._run(inner.Task.SUMMARIZE, payload)
        if result.sources is not None and any(
                not 0 <= i < len(payload["messages"]) for s in result.sources for i in s):
            raise NodeResponseError("the node cited a message that was not sent")
        return result

    def write(self, draft: str, tone: str) -> Result:
        return self._run(inner.Task.WRITE, {"draft": draft, "tone": tone})


class AsyncPrivateProcessingClient:
    """The asynchronous variant: the same checks, run off the event loop.

    Verification, sealing and the HTTP exchange run in a worker thread, so an asyncio app
    can ``await client.summarize(...)`` without blocking its loop.
    """

    def __init__(self, trust: ClientTrust, **kwargs: Any) -> None:
        self.sync = PrivateProcessingClient(trust, **kwargs)

    async def start(self, interval: float = DEFAULT_REFRESH_SECONDS, jitter: float = 0.5
                    ) -> None:
        await asyncio.to_thread(self.sync.start, interval, jitter)

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def verified_nodes(self) -> list[VerifiedNode]:
        return await asyncio.to_thread(self.sync.verified_nodes)

    async def summarize(self, messages: Sequence[dict[str, str]], max_bullets: int = 5, *,
                        reader: str | None = None) -> Result:
        return await asyncio.to_thread(self.sync.summarize, messages, max_bullets,
                                       reader=reader)

    async def write(self, draft: str, tone: str) -> Result:
        return await asyncio.to_thread(self.sync.write, draft, tone)
