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

It then picks a verified node uniformly at random for every call (among those with a
post-quantum key, if any), seals, sends and opens, and returns the output with a receipt
that re-verifies offline (:mod:`privproc.client.receipt`). Under load a busy node (503)
stays verified and the call moves to another, backing off with jitter within the call's
budget when all are busy; a node that does not answer within ``per_node_timeout`` is
hedged with another (each attempt is sealed anew and spends a token).

Log syncs, key refreshes, node directory refreshes and token refills are meant to run in
the background (:meth:`PrivateProcessingClient.start`: once at start without the issuer,
then on jittered schedules), so a request touches the relay alone; only an empty wallet
or information that changed since the last refresh makes a request fetch first (still
through the relay, except the wallet's issuer).

Build a client with :meth:`PrivateProcessingClient.from_trust_file` (or
:meth:`AsyncPrivateProcessingClient.from_trust_file`); :func:`privproc.paths.default_trust_file`
names the trust file of the default state directory. Input is checked against the inner
protocol's limits (:mod:`privproc.wire.limits`) before anything is fetched or spent, and
every public method raises only :class:`~privproc.client.errors.ClientError` subclasses
(:mod:`privproc.client.errors`).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import functools
import http.client
import os
import queue
import secrets
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar
from urllib.parse import urljoin

import aiohttp

from privproc import jsondoc
from privproc.budget import CLIENT_TIMEOUT
from privproc.httpfields import delay_seconds
from privproc.tlog.client import (
    InclusionProof,
    LogClientError,
    LogFetchError,
    LogForkError,
    http_fetcher,
)
from privproc.tlog.record import PURPOSE_OHTTP_GATEWAY, format_time, privacypass_purpose
from privproc.tlog.view import LogView, LogViewStateError
from privproc.wire import inner, ohttp
from privproc.wire import privacypass as pp
from privproc.wire.limits import RequestInputError, check_summary_request, check_write_request

from .backoff import Backoff
from .errors import (
    ClientError,
    EvidenceRefusedError,
    InvalidInputError,
    KeyExpiredError,
    KeyNotLoggedError,
    KeyRecordExpiredError,
    LogForkDetectedError,
    LogUnavailableError,
    LogVerificationError,
    MeasurementNotLoggedError,
    NodeBusyError,
    NodeVerificationError,
    NoVerifiedNodeError,
    RelayRefusedError,
    RelayUnreachableError,
    ReleaseRevokedError,
    StateError,
    TooManyKeysError,
    TransportError,
    TrustConfigError,
    UnexpectedError,
)
from .http import ConnectionPool
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
    "ClientError",
    "EvidenceRefusedError",
    "InvalidInputError",
    "KeyExpiredError",
    "KeyNotLoggedError",
    "KeyRecordExpiredError",
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
    "summary_payload",
    "verify_receipt",
    "write_payload",
]

DEFAULT_REFRESH_SECONDS = 300.0
NODES_REFRESH_SECONDS = 60.0  # the node directory, asked again in the background
TOKEN_CHECK_SECONDS = 5.0  # the wallet's level, looked at (locally) in the background
PER_NODE_TIMEOUT = 30.0  # without an answer by then, a call also asks another node
MAX_BUSY_RETRIES = 6  # requests to busy nodes (503) before giving up; each costs a token
MAX_PARALLEL = 2  # attempts of one call in flight at once (the first, and one hedge)
MAX_GONE = 4  # answers "not listed" (404) a call takes before it stops trying those nodes
MAX_CALL_TOKENS = 10  # tokens one call may spend without an answer (busy, gone, retries...)
MAX_NODES_VERIFIED = 64  # nodes of one directory answer verified (a random sample if more)
MAX_BACKOFF = 2.0  # the longest wait after every node answered busy (before jitter)
# The relay down, or the gateway behind it (502/503/504 from the relay): a restart takes a
# few seconds, so a call waits (jittered, doubling) and sends a new sealed request, for at
# most this long, within its budget. Each new request costs a token.
UNAVAILABLE_RETRY_SECONDS = 15.0
SLOW_AVOID_SECONDS = 60.0  # a node hedged away from is avoided until it answers, or this
# After a node is dropped (failed, or no longer listed) the background asks the directory
# every NODE_RECOVERY_INTERVAL seconds (jittered, one token each) for this long.
NODE_RECOVERY_SECONDS = 60.0
NODE_RECOVERY_INTERVAL = 5.0
# The hedge comes sooner once the answers are known: after HEDGE_FACTOR times the 95th
# percentile of the latest answers to calls of the same task (at least HEDGE_SAMPLES of
# them), never before MIN_HEDGE_SECONDS (a hedge costs a token) nor after per_node_timeout.
HEDGE_FACTOR = 4.0
HEDGE_SAMPLES = 20
MIN_HEDGE_SECONDS = 1.0
_random = secrets.SystemRandom()
_P = ParamSpec("_P")
_R = TypeVar("_R")
# Failures of the network below the SDK's own handling (a read cut short, TLS, DNS).
def _unavailable(error: BaseException) -> bool:
    """The relay, or the gateway behind it, is down or restarting (worth a retry)."""
    return isinstance(error, RelayUnreachableError) or (
        isinstance(error, RelayRefusedError) and error.status in (502, 503, 504))


_NETWORK_ERRORS = (ConnectionError, TimeoutError, socket.gaierror, socket.herror,
                   ssl.SSLError, urllib.error.URLError, http.client.HTTPException,
                   aiohttp.ClientError)


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


def _client_error(exc: Exception) -> ClientError:
    """The ClientError that reports ``exc`` (the caller raises it ``from exc``)."""
    if isinstance(exc, ClientError):
        return exc
    if isinstance(exc, LogForkError):
        return LogForkDetectedError(str(exc), exc.first, exc.second)
    if isinstance(exc, LogViewStateError):
        return StateError(f"the kept log view cannot be used: {exc}")
    if isinstance(exc, LogFetchError):
        return LogUnavailableError(f"cannot read the log through the relay: {exc}")
    if isinstance(exc, LogClientError):
        return LogVerificationError(f"the log does not verify: {exc}")
    if isinstance(exc, _NETWORK_ERRORS):
        return TransportError(f"network failure: {type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):  # what is left of OSError: the state files
        return StateError(f"cannot read or write the client's state: {exc}")
    return UnexpectedError(f"unexpected {type(exc).__name__}: {exc}")


@contextmanager
def _contract() -> Iterator[None]:
    """The SDK's boundary: only ClientErrors leave, the original as ``__cause__``."""
    try:
        yield
    except ClientError:
        raise
    except Exception as exc:  # the contract: every failure leaves as a ClientError
        raise _client_error(exc) from exc


def _public(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A public method of the SDK: it raises ClientErrors only (see :func:`_contract`)."""

    @functools.wraps(method)
    def checked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with _contract():
            return method(*args, **kwargs)

    return checked


@contextmanager
def _log_errors() -> Iterator[None]:
    """Log failures as client errors, but a fork stays a raw LogForkError inside the SDK
    (it is evidence: the token wallet, which takes a ClientError from a key check as a
    refusal of one key, must not swallow it); :func:`_contract` converts it on the way
    out."""
    try:
        yield
    except LogForkError:
        raise
    except LogClientError as exc:
        raise _client_error(exc) from exc


def _invalid(exc: RequestInputError) -> InvalidInputError:
    return InvalidInputError(exc.field, str(exc))


def summary_payload(messages: object, max_bullets: object = 5, reader: object = None
                    ) -> dict[str, Any]:
    """The summarize request's JSON payload, or :class:`InvalidInputError` if the node
    would refuse it (:func:`privproc.wire.limits.check_summary_request`)."""
    try:
        check_summary_request(messages, max_bullets, reader)
    except RequestInputError as exc:
        raise _invalid(exc) from exc
    assert isinstance(messages, list | tuple)
    payload: dict[str, Any] = {
        "messages": [{"sender": m["sender"], "time": m["time"], "text": m["text"]}
                     for m in messages],
        "max_bullets": max_bullets,
    }
    if reader:
        payload["reader"] = reader
    return payload


def write_payload(draft: object, tone: object) -> dict[str, Any]:
    """The write request's JSON payload, or :class:`InvalidInputError` if the node would
    refuse it (:func:`privproc.wire.limits.check_write_request`)."""
    try:
        check_write_request(draft, tone)
    except RequestInputError as exc:
        raise _invalid(exc) from exc
    return {"draft": draft, "tone": tone}


@dataclass(frozen=True)
class _Attempt:
    """One sealed request of a call on its way to a node."""

    node: VerifiedNode
    nonce: bytes
    ctx: ohttp.ClientResponseContext
    spent: list[pp.Token]
    future: concurrent.futures.Future[Any]
    started: float  # monotonic


class _Wakeup:
    """The background loop's wait: ended by :meth:`set` (stop, for good) or by
    :meth:`poke` (something to do now)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stopped = False
        self._poked = False

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True once stopped."""
        with self._cond:
            if not (self._stopped or self._poked):
                self._cond.wait(timeout)
            self._poked = False
            return self._stopped

    def poke(self) -> None:
        with self._cond:
            self._poked = True
            self._cond.notify_all()

    def set(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._stopped = False


class _Latencies:
    """The latest answer times of one kind of call, and the hedge delay they suggest."""

    def __init__(self, keep: int = 200) -> None:
        self._times: collections.deque[float] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._times.append(seconds)

    def hedge_after(self, ceiling: float) -> float:
        """:data:`HEDGE_FACTOR` x p95 of the latest answers, within
        [:data:`MIN_HEDGE_SECONDS`, ``ceiling``]; ``ceiling`` until enough are known."""
        with self._lock:
            if len(self._times) < HEDGE_SAMPLES:
                return ceiling
            times = sorted(self._times)
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        return min(ceiling, max(MIN_HEDGE_SECONDS, HEDGE_FACTOR * p95))


def _wait_any(futures: set[concurrent.futures.Future[Any]], timeout: float
              ) -> set[concurrent.futures.Future[Any]]:
    """The futures done within ``timeout`` seconds (at least one, unless it ran out)."""
    done, _ = concurrent.futures.wait(futures, timeout=max(0.0, timeout),
                                      return_when=concurrent.futures.FIRST_COMPLETED)
    return done


class _Threads:
    """Daemon threads for attempts, kept for reuse (starting a thread per attempt cost
    about a tenth of a millisecond). A task never waits for a busy one: with none idle, a
    new thread starts; an idle one ends after ``idle_exit`` seconds."""

    def __init__(self, idle_exit: float = 60.0) -> None:
        self.idle_exit = idle_exit
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a task and not yet promised one

    def submit(self, task: Callable[[], None]) -> None:
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1  # promised: one waiting thread will take it
        self._tasks.put(task)
        if start:
            threading.Thread(target=self._serve, name="privproc-attempt", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                task = self._tasks.get(timeout=self.idle_exit)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # no task is promised to this thread: end it
                        self._idle -= 1
                        return
                continue
            task()
            with self._lock:
                self._idle += 1


_ATTEMPT_THREADS = _Threads()


class PrivateProcessingClient:
    """A client of Private Processing: verifies the system, then summarizes and rewrites.

    Build it from a trust file, the one documented way::

        client = PrivateProcessingClient.from_trust_file(default_trust_file())
        with client.start():
            result = client.summarize(messages, 5, reader="Sam")

    (``privproc.client.default_trust_file()``: ``client.toml`` in the per-user state
    directory.) The constructor, which takes a parsed :class:`ClientTrust` and an optional
    :class:`TokenWallet`, is for tests and embedders that build those themselves.

    Every public method raises only :class:`~privproc.client.errors.ClientError`
    subclasses. ``summarize`` and ``write`` check their input against the node's limits
    (:mod:`privproc.wire.limits`) first and raise
    :class:`~privproc.client.errors.InvalidInputError` before anything is fetched, sent
    or spent.
    """

    @_public
    def __init__(
        self,
        trust: ClientTrust,
        *,
        tokens: TokenWallet | None = None,
        state_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        progress: Callable[[str], None] | None = None,
        timeout: float = CLIENT_TIMEOUT,
        per_node_timeout: float = PER_NODE_TIMEOUT,
    ) -> None:
        for name, value in (("timeout", timeout), ("per_node_timeout", per_node_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or (
                    not value > 0):
                raise InvalidInputError(name, f"{name} must be a number of seconds > 0, got "
                                              f"{value!r}")
        self.trust = trust
        self.clock = clock
        self.progress = progress or (lambda _: None)
        self.timeout = timeout
        self.per_node_timeout = per_node_timeout
        # Time for deadlines and backoff (tests replace these three: no real waits).
        self._monotonic: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], None] = time.sleep
        self._wait_any: Callable[[set[concurrent.futures.Future[Any]], float],
                                 set[concurrent.futures.Future[Any]]] = _wait_any
        self.relay_url = trust.relay_url if trust.relay_url.endswith("/") else (
            trust.relay_url + "/")
        self._relay_gets = ConnectionPool(self.relay_url)  # keys; OHTTP has its own
        self.view = LogView(http_fetcher(urljoin(self.relay_url, "log"), timeout),
                            trust.log, state_dir / "log-view.json" if state_dir else None)
        self.tokens = tokens
        if tokens is not None:
            tokens.key_check = self._check_issuer_key
        challenge = None
        if trust.tokens is not None:
            challenge = trust.tokens.challenge(
                tokens.token_type if tokens is not None else None)
        self.ohttp = OHTTPClient(self.relay_url, authority=trust.gateway_name, tokens=tokens,
                                 challenge=challenge, key_source=self._gateway_key_config,
                                 clock=clock, timeout=timeout)
        self._lock = threading.RLock()
        self._keys: VerifiedKeys | None = None
        self._gateway: GatewayKey | None = None
        self._verified: dict[str, VerifiedNode] = {}
        self._releases: dict[bytes, InclusionProof] = {}
        self._stop = _Wakeup()
        self._recovering_until = 0.0  # monotonic: the directory is asked often until then
        self._thread: threading.Thread | None = None
        self._retry_after = 1.0
        self.nodes_interval = NODES_REFRESH_SECONDS
        self._slow: dict[str, float] = {}  # node id -> avoided until (monotonic)
        self._latencies: dict[inner.Task, _Latencies] = {}  # answer times, per task
        self._refreshing_nodes = False
        self.token_check_interval = TOKEN_CHECK_SECONDS

    @classmethod
    @_public
    def from_trust_file(cls, path: str | os.PathLike[str], *,
                        state_dir: str | os.PathLike[str] | None = None,
                        progress: Callable[[str], None] | None = None,
                        timeout: float = CLIENT_TIMEOUT,
                        per_node_timeout: float = PER_NODE_TIMEOUT) -> Self:
        """A client for the trust file at ``path`` (see :mod:`privproc.client.trust`),
        keeping its state (log view, token wallet) in ``state_dir`` (default: the trust
        file's folder). ``progress`` is told, in words, what the client verified, refused
        or fetched; ``timeout`` bounds each HTTP exchange and each call as a whole
        (seconds); ``per_node_timeout``: a call with no answer from its node by then also
        asks another verified node (a hedge: one more token; see :meth:`summarize`).

        Raises :class:`TrustConfigError` for the trust file, :class:`StateError` for an
        unusable state file, nothing that is not a ClientError.
        """
        if not isinstance(path, str | os.PathLike):
            raise InvalidInputError("path", f"path must be a path to the trust file, got "
                                            f"{type(path).__name__}")
        path = Path(path)
        try:
            trust = load_trust(path)
        except TrustConfigError:
            raise
        except Exception as exc:  # whatever the loader lets through
            raise TrustConfigError(f"{path}: {type(exc).__name__}: {exc}") from exc
        state = Path(state_dir) if state_dir is not None else path.parent
        wallet = None
        if trust.tokens is not None:
            wallet = TokenWallet(trust.tokens.issuer_url, trust.tokens.account_token,
                                 state / "tokens.json", token_type=trust.tokens.token_type,
                                 on_fetch=progress)
        return cls(trust, tokens=wallet, state_dir=state, progress=progress, timeout=timeout,
                   per_node_timeout=per_node_timeout)

    # -- background ---------------------------------------------------------------------

    @_public
    def refresh(self, *, tokens: bool = True) -> None:
        """Sync the log view, re-verify the key bundle, drop revoked nodes and (with
        ``tokens``) refill the wallet if it runs low and ask the node directory again
        (which spends a token). All through the relay, but refills."""
        with self._lock, _log_errors():
            self.view.sync()
            self._refresh_keys()
            for node_id, node in list(self._verified.items()):
                if self.view.revocation(node.measurement) is not None:
                    self.progress(f"dropped node {node_id}: its release was revoked")
                    del self._verified[node_id]
        if tokens:
            self._refill_tokens()
            self._refresh_nodes()

    def _refresh_nodes(self) -> None:
        """Ask the directory again and verify what it offers (one token): load spreads
        over every verified node, and returns to one that restarted."""
        try:
            self.verified_nodes()
        except NoVerifiedNodeError as exc:
            self.progress(f"node directory: {exc}")

    def _refresh_nodes_soon(self) -> None:
        """:meth:`_refresh_nodes` on an attempt thread, now (one at a time)."""
        with self._lock:
            if self._refreshing_nodes:
                return
            self._refreshing_nodes = True

        def refresh() -> None:
            try:
                with _contract():
                    self._refresh_nodes()
            except ClientError as exc:
                self.progress(f"node directory refresh failed: {type(exc).__name__}: {exc}")
            finally:
                self._refreshing_nodes = False

        _ATTEMPT_THREADS.submit(refresh)

    def _refill_tokens(self) -> None:
        challenge = self.ohttp.challenge
        if self.tokens is not None and challenge is not None:
            added = self.tokens.refill_if_low(challenge)
            if added:
                self.progress(f"token wallet refilled: {added} new tokens")

    @_public
    def start(self, interval: float = DEFAULT_REFRESH_SECONDS, jitter: float = 0.5) -> Self:
        """Refresh once now (without the issuer), then in the background every
        ``interval`` seconds, each wait drawn from ``interval * (1 ± jitter)``."""
        if isinstance(interval, bool) or not isinstance(interval, int | float) or (
                not interval > 0):
            raise InvalidInputError("interval", f"interval must be a number of seconds > 0, "
                                                f"got {interval!r}")
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or (
                not 0 <= jitter < 1):
            raise InvalidInputError("jitter", f"jitter must be a number in [0, 1), got "
                                              f"{jitter!r}")
        self.refresh(tokens=False)
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._background, args=(interval, jitter),
                                            name="privproc-refresh", daemon=True)
            self._thread.start()
        return self

    def _background(self, interval: float, jitter: float) -> None:
        """Three jobs, each on its own jittered schedule: the whole refresh (log, keys,
        nodes, wallet) every ``interval``; the node directory every ``nodes_interval``;
        the wallet's level every ``token_check_interval`` (a local look: the issuer is
        asked only below the low-water mark, never inside a user's request, at a time
        set by this schedule rather than by a request: the timing rule of
        :mod:`privproc.client.tokens`)."""
        def spread(seconds: float) -> float:
            return seconds * _random.uniform(1 - jitter, 1 + jitter)

        jobs: dict[str, tuple[float, Callable[[], None]]] = {
            "refresh": (interval, self.refresh),
            "nodes": (min(interval, self.nodes_interval), self._refresh_nodes),
        }
        if self.tokens is not None:
            jobs["tokens"] = (min(interval, self.token_check_interval), self._refill_tokens)
        now = self._monotonic()
        due = {"refresh": now + _random.uniform(0, interval * max(jitter, 0.1))}
        due |= {name: now + spread(every) for name, (every, _) in jobs.items()
                if name != "refresh"}
        while True:
            now = self._monotonic()
            if now < self._recovering_until:  # a node was dropped: ask soon, and often
                due["nodes"] = min(due["nodes"], now + spread(NODE_RECOVERY_INTERVAL))
            name = min(due, key=lambda n: due[n])
            if self._stop.wait(max(0.0, due[name] - now)):
                return
            if due[name] > self._monotonic():  # woken early (a node dropped): look again
                continue
            every, job = jobs[name]
            try:
                with _contract():
                    job()
            except ClientError as exc:
                self.progress(f"background {name} failed: {type(exc).__name__}: {exc}")
            if name == "nodes" and self._monotonic() < self._recovering_until:
                every = NODE_RECOVERY_INTERVAL
            due[name] = self._monotonic() + spread(every)

    def _node_dropped(self) -> None:
        """A node left the verified set: ask the directory every
        :data:`NODE_RECOVERY_INTERVAL` for :data:`NODE_RECOVERY_SECONDS` (its replacement,
        or the node itself back under a new id, registers within seconds), starting now;
        without the background, once now."""
        self._recovering_until = self._monotonic() + NODE_RECOVERY_SECONDS
        if self._thread is not None:
            self._stop.poke()
        else:
            self._refresh_nodes_soon()

    @_public
    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._relay_gets.close()
        self.ohttp.close()
        if self.tokens is not None:
            self.tokens.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- keys -------------------------------------------------------------------------------

    def _get(self, path: str) -> bytes:
        try:
            status, _, body = self._relay_gets.request("GET", urljoin(self.relay_url, path),
                                                       timeout=self.timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise TransportError(f"cannot reach relay {self.relay_url}: {exc}") from exc
        if status != 200:
            raise TransportError(f"relay answered {status} for {path}")
        return body

    @_public
    def refresh_keys(self) -> VerifiedKeys:
        """Fetch the key bundle through the relay and keep the keys that verify."""
        return self._refresh_keys()

    # The private methods run inside the SDK (the wallet's key check among them) and call
    # no public one: they may raise a raw LogForkError, which the public methods convert.

    def _refresh_keys(self) -> VerifiedKeys:
        body = self._get("privproc/keys")
        with self._lock, _log_errors():
            keys = verify_key_bundle(body, self.trust, self.view, self.clock())
            self._keys, self._gateway = keys, None
        return keys

    @_public
    def gateway_key(self) -> GatewayKey:
        """The gateway key to seal to: logged, valid now, not one of a surplus."""
        return self._gateway_key()

    def _gateway_key(self) -> GatewayKey:
        now = self.clock()
        keys = self._keys
        if keys is None or not keys.fresh_at(now, self.trust.max_checkpoint_age):
            # (the background refresh failed all along: ask now, StaleLogError if the
            # relay still serves only bundles too old to rely on)
            keys = self._refresh_keys()
        current = self._gateway
        if current is not None and current.logged.record.valid_at(now):
            return current
        try:
            with _log_errors():
                current = pick_gateway_key(keys, self.trust, self.view, now)
        except TooManyKeysError:
            raise
        except KeyNotLoggedError:
            keys = self._refresh_keys()  # the kept bundle may be older than a rotation
            with (self._expiry(PURPOSE_OHTTP_GATEWAY, self.trust.gateway_name, now),
                  _log_errors()):
                current = pick_gateway_key(keys, self.trust, self.view, now)
        self._gateway = current
        return current

    @contextmanager
    def _expiry(self, purpose: str, owner: str, now: float) -> Iterator[None]:
        """A KeyNotLoggedError raised as KeyRecordExpiredError when every key record of
        ``purpose`` and ``owner`` in the log has expired."""
        try:
            yield
        except KeyNotLoggedError as exc:
            if isinstance(exc, TooManyKeysError | KeyRecordExpiredError):
                raise
            records = self.view.keys(purpose, owner)
            if not records or any(k.not_after > now for k in records):
                raise
            last = max(k.not_after for k in records)
            raise KeyRecordExpiredError(
                f"every {purpose} key record of {owner!r} in the log has expired, the last "
                f"at {format_time(last)} (now is {format_time(int(now))}): {owner} has not "
                "logged a new key, or this device's clock is ahead") from exc

    def _gateway_key_config(self, refresh: bool) -> ohttp.KeyConfig:
        if refresh:  # the gateway answered 422: it has rotated since
            self._refresh_keys()
        return self._gateway_key().config

    def _check_issuer_key(self, token_type: int, token_key: bytes) -> None:
        keys = self._keys if self._keys is not None else self._refresh_keys()
        now = self.clock()
        try:
            with _log_errors():
                check_issuer_key(keys, self.trust, self.view, token_type=token_type,
                                 token_key=token_key, now=now)
        except TooManyKeysError:
            raise
        except KeyNotLoggedError:
            keys = self._refresh_keys()
            issuer = self.trust.tokens.issuer_name if self.trust.tokens is not None else ""
            with self._expiry(privacypass_purpose(token_type), issuer, now), _log_errors():
                check_issuer_key(keys, self.trust, self.view, token_type=token_type,
                                 token_key=token_key, now=now)

    # -- discovery and verification ------------------------------------------------------

    @_public
    def candidates(self) -> NodeList:
        """The directory's node list, through OHTTP, with its stapled release proofs."""
        response = self.ohttp.request("GET", "/v1/nodes")
        if response.status != 200:
            raise TransportError(f"node directory answered {response.status}")
        try:
            doc = jsondoc.parse(response.content)
            nodes = [(str(n["node_id"]), base64.b64decode(n["bundle"])) for n in doc["nodes"]]
            log_doc = doc.get("log")
        except (ValueError, KeyError, TypeError) as exc:
            raise TransportError(f"node directory answer is malformed: {exc}") from None
        with _log_errors():
            releases = release_proofs(log_doc, self.trust, self.view, self.clock())
        self._releases = releases
        return NodeList(nodes, releases)

    @_public
    def verify_node(self, node_id: str, bundle_bytes: bytes,
                    releases: dict[bytes, InclusionProof] | None = None) -> VerifiedNode:
        """Every check of one node, against the release proofs of its node list."""
        with _log_errors():
            return verify_node_evidence(
                node_id, bundle_bytes, self._releases if releases is None else releases,
                trust=self.trust, view=self.view, now=self.clock())

    @_public
    def verified_nodes(self) -> list[VerifiedNode]:
        """Ask the directory and verify every node offered; raises if none passes."""
        offered = self.candidates()
        with self._lock:
            now = self.clock()
            offered_ids = {node_id for node_id, _ in offered.nodes}
            # the directory says which nodes exist: one it no longer lists is dropped
            self._verified = {k: v for k, v in self._verified.items()
                              if v.expiry > now and k in offered_ids}
            reasons: dict[str, str] = {}
            errors: dict[str, NodeVerificationError] = {}
            out: list[VerifiedNode] = []
            listed = offered.nodes
            if len(listed) > MAX_NODES_VERIFIED:
                # a uniform sample (never the directory's choice): each check costs a
                # millisecond or two, and a directory may list thousands
                listed = _random.sample(listed, MAX_NODES_VERIFIED)
            for node_id, bundle in listed:
                cached = self._verified.get(node_id)
                if cached is not None and cached.evidence == bundle:
                    out.append(cached)
                    continue
                try:
                    node = self.verify_node(node_id, bundle, offered.releases)
                except NodeVerificationError as exc:
                    reasons[node_id] = f"{type(exc).__name__}: {exc}"
                    errors[node_id] = exc
                    self.progress(f"refused node {node_id}: {type(exc).__name__}")
                    continue
                self.progress(f"verified node {node_id}: evidence, key binding "
                              f"(kem {node.key_config.kem_name}), measurement "
                              f"{node.measurement.hex()[:16]}... logged at index "
                              f"{node.release.index}, not revoked")
                self._verified[node_id] = node
                out.append(node)
        if not out:
            raise NoVerifiedNodeError(reasons, errors)
        return out

    # -- the calls -------------------------------------------------------------------------

    def _nodes(self) -> list[VerifiedNode]:
        """Verified nodes whose keys are still valid and whose release is not revoked; the
        directory is asked here only when none is left (otherwise in the background)."""
        now = self.clock()
        cached = [n for n in self._verified.values()
                  if n.expiry > now and self.view.revocation(n.measurement) is None]
        return cached or self.verified_nodes()

    @staticmethod
    def _pick(choices: Sequence[VerifiedNode]) -> VerifiedNode:
        """Uniformly at random (never sticky), among nodes with a post-quantum (hybrid)
        key if any, else among all."""
        return secrets.choice([n for n in choices if n.key_config.post_quantum] or choices)

    def _choose(self, choices: Sequence[VerifiedNode]) -> VerifiedNode:
        """:meth:`_pick` among the nodes not being avoided as slow (a call had to hedge
        away from them and they have not answered since), or among all if every one is."""
        now = self._monotonic()
        return self._pick([n for n in choices if self._slow.get(n.node_id, 0.0) <= now]
                          or choices)

    def _answered(self, node_id: str, future: concurrent.futures.Future[Any]) -> None:
        """An attempt ended: a node that answered (not with the gateway's 504) is no
        longer avoided as slow."""
        if future.cancelled() or future.exception() is not None:
            return
        if getattr(future.result(), "status", 504) != 504:
            self._slow.pop(node_id, None)

    def _attempt(self, node: VerifiedNode, task: inner.Task, payload: dict[str, Any],
                 deadline: float, *, inline: bool = False, token: pp.Token | None = None
                 ) -> _Attempt:
        """Seal the task to ``node`` and send it on a thread of its own, or, ``inline``,
        on this one (a fresh sealed request per attempt: a sealed request is never sent
        twice; a fresh token too, unless ``token``, a failed try's, is given)."""
        sealed, nonce, ctx = seal_task(node.key_config, task, payload)
        spent: list[pp.Token] = []

        def send() -> Any:
            return self.ohttp.request(
                "POST", f"/v1/nodes/{node.node_id}/process", content=sealed,
                headers=[(b"content-type", inner.MEDIA_TYPE_REQUEST.encode())], spent=spent,
                timeout=max(0.001, deadline - self._monotonic()), token=token)

        started = self._monotonic()
        future = self._spawn(node.node_id, send, inline=inline)
        future.add_done_callback(functools.partial(self._answered, node.node_id))
        return _Attempt(node, nonce, ctx, spent, future, started)

    def _spawn(self, node_id: str, send: Callable[[], Any], *, inline: bool = False
               ) -> concurrent.futures.Future[Any]:
        """Run ``send`` on a daemon thread (``inline``: on this one, done on return); its
        future carries the answer or the error."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(send())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting call
                future.set_exception(exc)

        if inline:
            run()
        else:
            _ATTEMPT_THREADS.submit(run)
        return future

    def _run(self, task: inner.Task, payload: dict[str, Any]) -> Result:
        """Send the task to verified nodes until one answers, within the call's budget
        (``timeout``, :data:`privproc.budget.CLIENT_TIMEOUT`).

        - A node chosen uniformly at random among the verified ones not tried yet.
        - 503 (busy, with Retry-After) keeps the node verified; the call tries another,
          and when every node was busy waits a jittered backoff (bounded by what is left
          of the budget) and tries again, up to :data:`MAX_BUSY_RETRIES` busy answers.
        - No answer within ``per_node_timeout`` (or, once :data:`HEDGE_SAMPLES` calls of
          this task have answered, within :data:`HEDGE_FACTOR` x the p95 of the latest
          answer times if that is sooner, but at least :data:`MIN_HEDGE_SECONDS`): the
          call also asks another verified node (a hedge, a new sealed request and a new
          token) and takes the first answer; later calls avoid the slow node until it
          answers (at most :data:`SLOW_AVOID_SECONDS`) while another is available.
        - 404 (the directory no longer lists the node: it restarted under a new id, its
          registration lapsed, or the gateway restarted and the node has not registered
          again yet) drops it and asks the directory again at once, in the background;
          the call goes on with the nodes listed (the same one again if it is listed
          again, up to :data:`MAX_GONE` such answers).
        - Any other failure drops the node from the verified set (the background
          directory refresh brings it back if it verifies again).
        """
        deadline = self._monotonic() + self.timeout
        gateway = self._gateway_key()
        latencies = self._latencies.setdefault(task, _Latencies())
        tried: set[str] = set()
        failures = busy = gone = 0
        restarting = Backoff(self._monotonic(), UNAVAILABLE_RETRY_SECONDS, cap=MAX_BACKOFF)
        last: BaseException | None = None
        flying: dict[concurrent.futures.Future[Any], _Attempt] = {}
        ended: list[pp.Token] = []  # the tokens of the attempts that have ended
        again: pp.Token | None = None  # a token the relay failed: it goes on the next try

        def spent() -> int:  # distinct tokens (a retry may carry a failed try's again)
            return len({id(t) for t in ended}
                       | {id(t) for a in flying.values() for t in a.spent})

        while True:
            left = deadline - self._monotonic()
            if left <= 0:
                raise TransportError(
                    f"no node answered within the call's {self.timeout:.0f} s") from last
            if spent() >= MAX_CALL_TOKENS and not flying:
                # Answers that keep costing tokens (busy, not listed, a relay that fails
                # after the token was sealed in) would otherwise drain the wallet, and an
                # empty wallet fetches from the issuer inside the request.
                raise TransportError(
                    f"this call spent {spent()} tokens without an answer and stops there "
                    f"(at most {MAX_CALL_TOKENS})") from last
            try:
                nodes = self._nodes()
            except NoVerifiedNodeError as exc:
                # A directory that offers no node at all: a gateway that has just
                # restarted lists its nodes again as they renew their registrations.
                wait = (None if exc.reasons or flying
                        else restarting.next_wait(self._monotonic(), left))
                if wait is None:
                    raise
                self.progress(f"{exc}; asking again in {wait:.1f} s")
                self._sleep(wait)
                continue
            untried = [n for n in nodes if n.node_id not in tried]
            if not flying:
                if failures >= 2 or busy > MAX_BUSY_RETRIES:
                    break
                if not untried:
                    if not busy or failures:
                        break
                    # every node is busy: wait a little (jittered, within the budget)
                    self._sleep(min(min(self._retry_after, MAX_BACKOFF)
                                    * _random.uniform(0.25, 1.0), left))
                    tried.clear()
                    continue
                node = self._choose(untried)
                tried.add(node.node_id)
                # With no other node to hedge with, the call has nothing to do while it
                # waits: it sends on its own thread (two thread switches fewer).
                attempt = self._attempt(node, task, payload, deadline,
                                        inline=len(untried) == 1, token=again)
                again = None
                flying[attempt.future] = attempt
                continue
            hedge = bool(untried) and len(flying) < MAX_PARALLEL and spent() < MAX_CALL_TOKENS
            hedge_after = latencies.hedge_after(self.per_node_timeout)
            wait = left
            if hedge:
                first = min(a.started for a in flying.values())
                wait = min(left, max(0.0, first + hedge_after - self._monotonic()))
            done = self._wait_any(set(flying), wait)
            if not done:
                if hedge and deadline - self._monotonic() > 0:
                    avoid = self._monotonic() + SLOW_AVOID_SECONDS
                    for waiting in flying.values():  # later calls avoid them for now
                        self._slow[waiting.node.node_id] = avoid
                    node = self._choose(untried)
                    tried.add(node.node_id)
                    self.progress(f"no answer from the node within {hedge_after:.3g} "
                                  f"s: also asking node {node.node_id}")
                    attempt = self._attempt(node, task, payload, deadline)
                    flying[attempt.future] = attempt
                continue
            for future in done:
                attempt = flying.pop(future)
                ended += attempt.spent
                node = attempt.node
                error = future.exception()
                if error is not None:
                    if flying:  # another attempt may still answer
                        last = error
                        continue
                    now = self._monotonic()
                    wait = (restarting.next_wait(now, deadline - now)
                            if _unavailable(error) else None)
                    if wait is None:
                        raise error
                    # the relay or the gateway is restarting: not the node's fault; the next
                    # try carries this try's token (most likely never redeemed; if it was,
                    # the gateway's 401 gets a fresh one)
                    again = attempt.spent[-1] if attempt.spent else None
                    last = error
                    self.progress(f"{error}; trying again in {wait:.1f} s")
                    self._sleep(wait)
                    tried.discard(node.node_id)
                    continue
                response = future.result()
                if response.status == 503:  # busy, not broken: the node stays verified
                    busy += 1
                    retry = delay_seconds(next((f.value for f in response.headers
                                                if f.name == b"retry-after"), None))
                    self._retry_after = 1.0 if retry is None else float(retry)
                    last = NodeBusyError(f"node {node.node_id} is busy (503)")
                    continue
                if response.status == 404:
                    # Not listed any more (a restarted node comes back under a new id):
                    # the node list is stale, not the node broken. Ask the directory again
                    # in the background; this call goes on with the other nodes.
                    self._verified.pop(node.node_id, None)
                    last = TransportError(f"node {node.node_id} is no longer listed (404)")
                    gone += 1
                    if gone <= MAX_GONE:  # listed again (a restarted gateway): try it again
                        tried.discard(node.node_id)
                    self._node_dropped()
                    continue
                if response.status != 200:
                    failures += 1
                    last = TransportError(
                        f"the gateway gave up waiting for node {node.node_id} (504)"
                        if response.status == 504 else
                        f"node {node.node_id} answered {response.status}")
                    self._verified.pop(node.node_id, None)
                    self._node_dropped()
                    continue
                try:
                    output = open_output(attempt.ctx, attempt.nonce, response.content)
                except NodeResponseError as exc:
                    failures += 1
                    last = exc
                    continue
                latencies.add(self._monotonic() - attempt.started)
                return Result(output.result, self._receipt(node, gateway, attempt.spent),
                              output.sources, output.flags)
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

    @_public
    def summarize(self, messages: Sequence[Mapping[str, str]], max_bullets: int = 5, *,
                  reader: str | None = None) -> Result:
        """Bullets for ``reader`` (the user's name in the chat: requests to them come
        first, in the second person), each with the indices of its source messages.

        ``messages``: 1 to 100 ``{"sender", "time", "text"}`` string objects (limits in
        :mod:`privproc.wire.limits`), checked before anything is fetched, sent or spent
        (:class:`InvalidInputError`).

        Under load: a busy node (503) stays verified and the call tries another, backing
        off with jitter when all are busy; a node that has not answered within
        ``per_node_timeout`` is hedged with a second one, the first answer wins. Each
        node request is sealed anew and spends one token: a call spends one token per
        attempt (busy answers and hedges included); attempts end after
        :data:`MAX_BUSY_RETRIES` busy answers, two failed nodes or ``timeout``."""
        payload = summary_payload(messages, max_bullets, reader)
        result = self._run(inner.Task.SUMMARIZE, payload)
        if result.sources is not None and any(
                not 0 <= i < len(payload["messages"]) for s in result.sources for i in s):
            raise NodeResponseError("the node cited a message that was not sent")
        return result

    @_public
    def write(self, draft: str, tone: str) -> Result:
        """``draft`` (not blank, at most 2000 characters) rewritten in ``tone`` (one of
        :data:`privproc.wire.limits.TONES`), checked before anything is fetched, sent or
        spent (:class:`InvalidInputError`)."""
        return self._run(inner.Task.WRITE, write_payload(draft, tone))


class AsyncPrivateProcessingClient:
    """The asynchronous variant: the same checks, run off the event loop.

    Build it with :meth:`from_trust_file`, as the synchronous client::

        async with AsyncPrivateProcessingClient.from_trust_file(path) as client:
            await client.start()
            result = await client.summarize(messages)

    Verification, sealing and the HTTP exchange run in a worker thread, so an asyncio app
    can ``await client.summarize(...)`` without blocking its loop. Like the synchronous
    client, it raises only ClientErrors (a cancellation stays a cancellation).
    """

    sync: PrivateProcessingClient

    def __init__(self, trust: ClientTrust, **kwargs: Any) -> None:
        self.sync = PrivateProcessingClient(trust, **kwargs)

    @classmethod
    def from_trust_file(cls, path: str | os.PathLike[str], *,
                        state_dir: str | os.PathLike[str] | None = None,
                        progress: Callable[[str], None] | None = None,
                        timeout: float = CLIENT_TIMEOUT,
                        per_node_timeout: float = PER_NODE_TIMEOUT) -> Self:
        """See :meth:`PrivateProcessingClient.from_trust_file` (it reads only local files:
        no network)."""
        client = cls.__new__(cls)
        client.sync = PrivateProcessingClient.from_trust_file(
            path, state_dir=state_dir, progress=progress, timeout=timeout,
            per_node_timeout=per_node_timeout)
        return client

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def _call(self, method: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
                    ) -> _R:
        with _contract():  # to_thread itself may fail (an executor that was shut down)
            return await asyncio.to_thread(method, *args, **kwargs)

    async def start(self, interval: float = DEFAULT_REFRESH_SECONDS, jitter: float = 0.5
                    ) -> None:
        await self._call(self.sync.start, interval, jitter)

    async def refresh(self, *, tokens: bool = True) -> None:
        await self._call(self.sync.refresh, tokens=tokens)

    async def close(self) -> None:
        await self._call(self.sync.close)

    async def verified_nodes(self) -> list[VerifiedNode]:
        return await self._call(self.sync.verified_nodes)

    async def summarize(self, messages: Sequence[Mapping[str, str]], max_bullets: int = 5, *,
                        reader: str | None = None) -> Result:
        return await self._call(self.sync.summarize, messages, max_bullets, reader=reader)

    async def write(self, draft: str, tone: str) -> Result:
        return await self._call(self.sync.write, draft, tone)
