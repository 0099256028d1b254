"""The processing node's logic, sans-IO: bytes in, answers out, time and tasks injected.

:class:`NodeCore` holds everything ``POST /process``, ``GET /evidence``, ``/healthz`` and
``/metrics`` decide; the Starlette app in :mod:`.app` only reads bodies and writes
answers. A request goes through three steps:

1. :meth:`NodeCore.open` — opens the sealed request with one of the node's keys and
   decodes the inner request. It returns an :class:`Opened` request or an
   :class:`Answer` that refuses it: unsealed 422 (key unknown or destroyed), 400 (does
   not open), 503 (the node has failed closed), or a *sealed* BAD_REQUEST once the
   request has opened (malformed, hostile or too deeply nested input: never an unsealed
   500, whatever the decoder raises).
2. :meth:`NodeCore.run` — admits the task (up to ``concurrency`` run at once; up to
   ``queue`` more wait, first come first served; beyond that an unsealed 503 with a
   small ``Retry-After``), runs it through the injected :class:`TaskExecutor`
   (:mod:`.worker`: a pool of worker processes the node kills at the deadline) and maps
   its :class:`Outcome` to an answer: sealed OK / BAD_REQUEST / DEADLINE / TASK_FAILED,
   or an unsealed 503 with ``Retry-After`` when no worker is free. The deadline counts
   from admission: time spent waiting in the queue is taken from the task's budget
   (:mod:`privproc.budget`), and a task whose budget ran out while it waited is answered
   a sealed DEADLINE without running.
3. :meth:`NodeCore.seal` — seals an inner response to the client; an answer that
   cannot be encoded (too large, not valid Unicode) becomes a sealed TASK_FAILED.

Fail closed: if a key rotation fails (the platform provider raises), or the current
key reaches its advertised expiry without having been rotated, the node destroys every
key it holds and stops serving for good: ``/process`` and ``/evidence`` answer 503 and
``/healthz`` answers 503, so the directory and the operator's supervisor see a dead
node. It never opens a request with a key past its expiry. It can come back only as a
new process, which makes a fresh key with fresh evidence.

Privacy: answers and log lines carry the task, sizes, timings, statuses and error
*types*, never request data; plaintext buffers are overwritten after use where Python
allows.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from privproc.budget import NODE_DEADLINE
from privproc.errors import PrivprocError
from privproc.wire import inner
from privproc.wire.errors import UnknownKeyError

if TYPE_CHECKING:
    from privproc.wire import ohttp

    from .keys import NodeKey, NodeKeys

log = logging.getLogger("privproc.node")

# A task's input is at most three levels deep ({"messages": [{"text": ...}]}); anything
# much deeper is refused before it reaches a decoder, an encoder or a model.
MAX_DEPTH = 16
MEDIA_TYPE_EVIDENCE = "application/privproc-evidence"
_SURROGATE = re.compile("[\ud800-\udfff]")
QUEUE_PER_WORKER = 4  # the default queue: this many waiting tasks per concurrent one
RETRY_AFTER = "1"  # seconds a refused client waits (it adds its own jitter)


class TaskInputError(PrivprocError):
    """The task's input is invalid (the message must not contain the input)."""


@dataclass(frozen=True)
class TaskOutput:
    """A task's result and its details: ``sources`` (per bullet, the indices of the
    messages it came from) and ``flags`` (e.g. "fallback": a rewrite that kept the draft).
    """

    result: list[str]
    details: dict[str, Any]


class TaskRunner(Protocol):
    """Runs one task synchronously (in a worker process, see :mod:`.worker`)."""

    def run(self, task: inner.Task, payload: dict[str, Any]) -> list[str] | TaskOutput: ...


def valid_details(details: object, result_len: int) -> bool:
    """Only these details leave the node: sources (one index list per item) and flags."""
    if not isinstance(details, dict) or set(details) - {"sources", "flags"}:
        return False
    sources = details.get("sources", [])
    flags = details.get("flags", [])
    if not isinstance(sources, list) or (sources and len(sources) != result_len):
        return False
    if not all(isinstance(s, list) and all(isinstance(i, int) and not isinstance(i, bool)
                                            and 0 <= i < 10_000 for i in s) for s in sources):
        return False
    return isinstance(flags, list) and all(
        isinstance(f, str) and f.isascii() and len(f) <= 32 for f in flags)


class OutcomeKind(enum.Enum):
    OK = "ok"
    INPUT = "input"  # the runner refused the input (TaskInputError)
    DEADLINE = "deadline"  # the deadline passed; the model has been stopped
    FAILED = "failed"  # the runner raised or its worker died
    BUSY = "busy"  # no worker was free; nothing ran


@dataclass(frozen=True)
class Outcome:
    """What running a task gave. ``message`` is content-free (an input error's text, or
    the type of a failure)."""

    kind: OutcomeKind
    result: tuple[str, ...] = ()
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, result: list[str] | tuple[str, ...] | TaskOutput,
           details: dict[str, Any] | None = None) -> Outcome:
        if isinstance(result, TaskOutput):
            return cls(OutcomeKind.OK, tuple(result.result), details=dict(result.details))
        return cls(OutcomeKind.OK, tuple(result), details=dict(details or {}))

    @classmethod
    def input_error(cls, message: str) -> Outcome:
        return cls(OutcomeKind.INPUT, message=message)

    @classmethod
    def deadline(cls) -> Outcome:
        return cls(OutcomeKind.DEADLINE)

    @classmethod
    def failed(cls, what: str) -> Outcome:
        return cls(OutcomeKind.FAILED, message=what)

    @classmethod
    def busy(cls) -> Outcome:
        return cls(OutcomeKind.BUSY)


class TaskExecutor(Protocol):
    """Where tasks run. :class:`~privproc.node.worker.WorkerPool` runs them in worker
    processes it kills at the deadline; tests inject fakes."""

    async def start(self) -> None:
        """Get ready to serve (load the model); called before the node serves."""
        ...

    async def run(self, task: inner.Task, payload: dict[str, Any], timeout: float) -> Outcome:
        """Run one task. BUSY at once when no slot is free; DEADLINE only once the task
        has stopped using the CPU; never raises for anything the task does."""
        ...

    async def close(self) -> None: ...

    def healthy(self) -> bool:
        """False when the executor cannot serve and is not about to (e.g. no worker
        can be started)."""
        ...

    def gauges(self) -> dict[str, int]:
        """Content-free numbers for ``/metrics`` (workers ready, restarts, ...)."""
        ...


@dataclass
class NodeConfig:
    node_id: str
    max_request: int = 256 * 1024
    deadline: float = NODE_DEADLINE
    concurrency: int = 2
    queue: int | None = None  # tasks waiting for a slot; None: QUEUE_PER_WORKER each
    rotate_every: int = 3600
    clock: Callable[[], float] = field(default=time.time)
    monotonic: Callable[[], float] = field(default=time.monotonic)  # deadlines, queueing

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.queue is None:
            self.queue = QUEUE_PER_WORKER * self.concurrency
        if self.queue < 0:
            raise ValueError(f"queue must be at least 0, got {self.queue}")

    @property
    def queue_limit(self) -> int:
        return self.queue if self.queue is not None else QUEUE_PER_WORKER * self.concurrency


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, body, media type and extra headers."""

    status: int
    body: bytes
    media_type: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def sealed(self) -> bool:
        return self.media_type == inner.MEDIA_TYPE_RESPONSE


@dataclass(eq=False)
class Opened:
    """A request that opened: only the node reads it. ``repr`` hides the payload."""

    ctx: ohttp.ServerResponseContext
    task: inner.Task
    nonce: bytes
    payload: dict[str, Any] = field(repr=False)
    size: int
    started: float


def wipe(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))


def problem(status: int, title: str, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    """An RFC 9457 problem details answer (as :func:`privproc.service.problem`)."""
    doc = {"type": "about:blank", "title": title, "status": status}
    return Answer(status, json.dumps(doc).encode(), "application/problem+json", headers)


def check_payload(payload: Any) -> str | None:
    """Why a decoded task input is refused before it runs, or None (content-free).

    Walks the value without recursion: no more than :data:`MAX_DEPTH` levels, and every
    string (keys included) valid Unicode (a JSON ``\\ud800`` escape decodes to a lone
    surrogate, which no encoder downstream accepts).
    """
    if not isinstance(payload, dict):
        return "input must be a JSON object"
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return f"input nested deeper than {MAX_DEPTH} levels"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and _SURROGATE.search(key):
                    return "input is not valid Unicode"
                stack.append((item, depth + 1))
        elif isinstance(value, str) and _SURROGATE.search(value):
            return "input is not valid Unicode"
    return None


def _clean_result(result: tuple[str, ...]) -> bool:
    return all(isinstance(r, str) and not _SURROGATE.search(r) for r in result)


class NodeCore:
    """The node's decisions over bytes; see the module docstring."""

    def __init__(self, config: NodeConfig, keys: NodeKeys, executor: TaskExecutor) -> None:
        self.config = config
        self.keys = keys
        self.executor = executor
        self.failed: str | None = None  # why the node failed closed (content-free)
        self.stats = {"ok": 0, "refused": 0, "failed": 0}
        self.admission = {"queued": 0, "full": 0}  # tasks that waited; refused: queue full
        self.running = 0  # admitted tasks holding a slot
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    def now(self) -> int:
        return int(self.config.clock())

    # -- POST /process -------------------------------------------------------------------

    def check_media_type(self, content_type: str) -> Answer | None:
        if content_type.partition(";")[0].strip() != inner.MEDIA_TYPE_REQUEST:
            return problem(415, f"content type must be {inner.MEDIA_TYPE_REQUEST}")
        return None

    def too_large(self) -> Answer:
        self.stats["refused"] += 1
        return problem(413, f"sealed request larger than {self.config.max_request} bytes")

    def open(self, body: bytes) -> Opened | Answer:
        """Open and decode a sealed request, or the answer that refuses it."""
        started = time.perf_counter()
        if len(body) > self.config.max_request:
            return self.too_large()
        if self.failed is not None or not self._key_in_date():
            self.stats["refused"] += 1
            return self.unavailable()
        try:
            plain_bytes, ctx = self.keys.accepted(self.now()).decapsulate_request(
                body, request_label=inner.REQUEST_LABEL, response_label=inner.RESPONSE_LABEL)
        except UnknownKeyError:
            self.stats["refused"] += 1
            log.info("refused: unknown or destroyed key, size=%d", len(body))
            return problem(422, "key unknown or destroyed")
        except Exception as exc:  # noqa: BLE001 - whatever else fails, it did not open
            self.stats["refused"] += 1
            log.info("refused: does not open (%s), size=%d", type(exc).__name__, len(body))
            return Answer(400, b"", "text/plain")
        plain = bytearray(plain_bytes)
        del plain_bytes
        # The client's nonce sits at a fixed place: a malformed request still gets an
        # answer the client can match (task and nonce are only read, never trusted).
        head = bytes(plain[2:2 + inner.NONCE_LEN])
        nonce = head if len(head) == inner.NONCE_LEN else None
        try:
            req = inner.InnerRequest.decode(bytes(plain))
        except inner.InnerFormatError:
            return self._bad_request(ctx, "malformed request", nonce)
        except Exception as exc:  # noqa: BLE001 - e.g. RecursionError on deep nesting
            log.info("refused: decoder raised %s, size=%d", type(exc).__name__, len(body))
            return self._bad_request(ctx, "malformed request", nonce)
        finally:
            wipe(plain)
        why = check_payload(req.payload)
        if why is not None:
            return self._bad_request(ctx, why, nonce)
        return Opened(ctx, req.task, req.nonce, req.payload, len(body), started)

    async def run(self, opened: Opened) -> Answer:
        """Admit an opened request's task (a slot, or a place in the queue), run it
        within what is left of the deadline and seal the answer; 503 when the queue is
        full or no worker is free."""
        if self.failed is not None:
            self.stats["refused"] += 1
            return self.unavailable()
        admitted = self.config.monotonic()
        left = self.config.deadline
        if self.running < self.config.concurrency and not self._waiting:
            self.running += 1
        elif len(self._waiting) < self.config.queue_limit:
            if not await self._wait_for_slot(self.config.deadline):
                return self.finish(opened, Outcome.deadline())
            left = self.config.deadline - (self.config.monotonic() - admitted)
            if left <= 0:  # its budget ran out while it waited: it does not run
                self._release()
                return self.finish(opened, Outcome.deadline())
        else:
            self.admission["full"] += 1
            return self.finish(opened, Outcome.busy())
        try:
            outcome = await self.executor.run(opened.task, opened.payload, left)
        except Exception as exc:  # noqa: BLE001 - an executor fault answers cleanly
            outcome = Outcome.failed(type(exc).__name__)
        finally:
            self._release()
        return self.finish(opened, outcome)

    async def _wait_for_slot(self, budget: float) -> bool:
        """Wait in the queue for a slot, at most ``budget`` seconds; True once one is
        held (a releasing task hands its slot over), False when the wait ran out."""
        self.admission["queued"] += 1
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(slot)
        try:
            async with asyncio.timeout(budget):
                await slot
        except TimeoutError:
            self._leave(slot)
            return False
        except BaseException:  # cancelled (the caller went away): leave the queue
            self._leave(slot)
            raise
        return True

    def _leave(self, slot: asyncio.Future[None]) -> None:
        """A waiter gives up: out of the queue, or, if it was handed a slot at the same
        moment, the slot passes on."""
        if slot.done() and not slot.cancelled():
            self._release()
            return
        slot.cancel()
        with contextlib.suppress(ValueError):
            self._waiting.remove(slot)

    def _release(self) -> None:
        """Free a slot: hand it to the first waiter still waiting, or give it back."""
        while self._waiting:
            slot = self._waiting.popleft()
            if not slot.done():
                slot.set_result(None)  # the slot passes on: ``running`` is unchanged
                return
        self.running -= 1

    def queue_depth(self) -> int:
        return len(self._waiting)

    def finish(self, opened: Opened, outcome: Outcome) -> Answer:
        """The answer for what running gave."""
        nonce = {"nonce": opened.nonce.hex()}
        task = opened.task.name
        if outcome.kind is OutcomeKind.BUSY:
            self.stats["refused"] += 1
            return Answer(503, b"node busy\n", "text/plain", (("retry-after", RETRY_AFTER),))
        if outcome.kind is OutcomeKind.DEADLINE:
            self.stats["failed"] += 1
            log.info("failed: task=%s deadline", task)
            return self.seal(opened, inner.Status.DEADLINE,
                             {"error": "deadline exceeded", **nonce})
        if outcome.kind is OutcomeKind.INPUT:
            self.stats["refused"] += 1
            return self.seal(opened, inner.Status.BAD_REQUEST, {"error": outcome.message, **nonce})
        if outcome.kind is OutcomeKind.FAILED or not _clean_result(outcome.result) or (
                not valid_details(outcome.details, len(outcome.result))):
            self.stats["failed"] += 1
            log.info("failed: task=%s error=%s", task, outcome.message or "bad result")
            return self.seal(opened, inner.Status.TASK_FAILED, {"error": "task failed", **nonce})
        answer, as_asked = self._seal(opened.ctx, opened.nonce, inner.Status.OK,
                                      {"result": list(outcome.result), **outcome.details,
                                       **nonce})
        if as_asked:
            self.stats["ok"] += 1
            log.info("ok: task=%s in=%d out_items=%d ms=%.0f", task, opened.size,
                     len(outcome.result), (time.perf_counter() - opened.started) * 1000)
        else:
            self.stats["failed"] += 1
            log.info("failed: task=%s answer does not encode", task)
        return answer

    async def process(self, content_type: str, body: bytes) -> Answer:
        """Every step for a whole request body (tests drive the core with this)."""
        refused = self.check_media_type(content_type)
        if refused is not None:
            return refused
        opened = self.open(body)
        if isinstance(opened, Answer):
            return opened
        return await self.run(opened)

    def seal(self, opened: Opened, status: inner.Status, payload: dict[str, Any]) -> Answer:
        """Seal an inner response to the client; what cannot be encoded becomes a sealed
        TASK_FAILED (never an exception, never an unsealed answer)."""
        return self._seal(opened.ctx, opened.nonce, status, payload)[0]

    def _seal(self, ctx: ohttp.ServerResponseContext, nonce: bytes | None,
              status: inner.Status, payload: dict[str, Any]) -> tuple[Answer, bool]:
        """The sealed answer, and whether it carries ``status`` (False: TASK_FAILED)."""
        as_asked = True
        try:
            plain = bytearray(inner.InnerResponse(status, payload).encode())
        except Exception:  # noqa: BLE001 - too large, not valid Unicode
            as_asked = False
            echo = {} if nonce is None else {"nonce": nonce.hex()}
            plain = bytearray(inner.InnerResponse(
                inner.Status.TASK_FAILED, {"error": "task failed", **echo}).encode())
        try:
            body = ctx.encapsulate_response(bytes(plain))
        finally:
            wipe(plain)
        return Answer(200, body, inner.MEDIA_TYPE_RESPONSE), as_asked

    def _bad_request(self, ctx: ohttp.ServerResponseContext, error: str,
                     nonce: bytes | None) -> Answer:
        self.stats["refused"] += 1
        echo = {} if nonce is None else {"nonce": nonce.hex()}
        return self._seal(ctx, nonce, inner.Status.BAD_REQUEST, {"error": error, **echo})[0]

    def unavailable(self) -> Answer:
        return problem(503, "node out of service")

    # -- keys: rotation, expiry, failing closed ----------------------------------------

    def seconds_to_rotation(self) -> float:
        """How long until the current key is due for rotation (0 when it is due)."""
        if self.failed is not None:
            return float("inf")
        return max(0.0, self.keys.current.created + self.config.rotate_every
                   - self.config.clock())

    def rotation_due(self) -> bool:
        return self.failed is None and self.seconds_to_rotation() <= 0

    def rotate(self) -> NodeKey | None:
        """Make a new key (blocking: asks the platform for evidence); a failure fails the
        node closed. Returns the new key, or None when the node is (now) out of service."""
        if self.failed is not None:
            return None
        try:
            key = self.keys.rotate(self.now())
        except Exception as exc:  # noqa: BLE001 - any fault of the platform fails closed
            self.fail_closed(f"key rotation failed ({type(exc).__name__})")
            return None
        log.info("rotated: key_id=%d", key.key_id)
        return key

    def expire(self) -> list[int]:
        """Destroy keys past their grace; fail closed if the current one is past expiry."""
        if self.failed is not None:
            return []
        if not self._key_in_date():
            return []
        return self.keys.destroy_expired(self.now())

    def _key_in_date(self) -> bool:
        if self.failed is not None:
            return False
        if self.now() >= self.keys.current.expiry:
            self.fail_closed("current key reached its expiry without a rotation")
            return False
        return True

    def fail_closed(self, reason: str) -> None:
        """Stop serving for good and destroy every key (see the module docstring)."""
        if self.failed is not None:
            return
        self.failed = reason
        destroyed = self.keys.destroy_all()
        log.error("out of service: %s; destroyed key_ids=%s; restart the node for a fresh "
                  "key", reason, destroyed)

    # -- GET /evidence, /healthz, /metrics ----------------------------------------------

    def evidence(self, nonce_hex: str | None) -> Answer:
        """The current evidence bundle, or fresh evidence binding a client's nonce (which
        asks the platform: blocking)."""
        if self.failed is not None or not self._key_in_date():
            return self.unavailable()
        if nonce_hex is None:
            return Answer(200, self.keys.current.bundle, MEDIA_TYPE_EVIDENCE)
        try:
            nonce = bytes.fromhex(nonce_hex)
        except ValueError:
            return problem(400, "nonce must be hex")
        if len(nonce) != 32:
            return problem(400, f"nonce must be 32 bytes, got {len(nonce)}")
        try:
            bundle = self.keys.fresh_bundle(nonce)
        except Exception as exc:  # noqa: BLE001 - the platform may fail; say so, content-free
            log.warning("fresh evidence failed: %s", type(exc).__name__)
            return problem(503, "evidence unavailable")
        return Answer(200, bundle, MEDIA_TYPE_EVIDENCE)

    def healthy(self) -> bool:
        return self.failed is None and self._key_in_date() and self.executor.healthy()

    def health(self) -> Answer:
        if self.healthy():
            return Answer(200, b"ok\n", "text/plain")
        return Answer(503, b"out of service\n", "text/plain")

    def metrics(self) -> Answer:
        lines = [f"privproc_node_requests_{k} {v}\n" for k, v in self.stats.items()]
        lines += [f"privproc_node_{k} {v}\n" for k, v in self.executor.gauges().items()]
        lines += [f"privproc_node_admission_{k} {v}\n" for k, v in self.admission.items()]
        lines.append(f"privproc_node_tasks_admitted {self.running}\n")
        lines.append(f"privproc_node_queue_depth {len(self._waiting)}\n")
        lines.append(f"privproc_node_out_of_service {int(self.failed is not None)}\n")
        return Answer(200, "".join(lines).encode(), "text/plain")
