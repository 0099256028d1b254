"""Tasks in worker processes the node can stop: the model never outlives a deadline.

:class:`WorkerPool` keeps ``size`` worker processes (one per concurrency slot). Each is a
fresh interpreter (``python -I -B -c ...``, exec'd, never forked from the node, so it
shares no memory, threads or keys with it) that loads the task runner once, from a
:class:`WorkerSpec` naming a factory function, before the node serves: the first request
finds a warm model.

- **Deadline.** The node sends a task and waits for the answer until the deadline. At
  the deadline it kills the worker (SIGKILL: a model in native code cannot be
  interrupted any other way) and waits until the process is reaped; only then does the
  request get its DEADLINE answer. The slot stays taken until a replacement worker,
  started in the background, has loaded the runner; meanwhile a request that finds no
  free worker gets BUSY (503 with ``Retry-After``). A worker that dies (crash, OOM) is
  replaced the same way, and its request gets TASK_FAILED.
- **Plaintext hygiene.** Requests and answers cross only a Unix socket pair (never a
  file), as length-prefixed JSON in buffers that are overwritten after use; nothing is
  unpickled on either side, so a compromised worker cannot run code in the node. A
  worker writes no bytecode, dumps no core, reports failures by exception *type* only
  and prints no traceback.
- **Environment.** A worker starts with :func:`runtime_environment` only (what Python and
  the backends need), never the node's own credentials or anything inherited.
- **Lifetime.** A worker dies with the node (``PR_SET_PDEATHSIG``, and end of file on
  its socket), and the pool kills them all on close.

:class:`ThreadExecutor` runs an in-process :class:`~privproc.node.core.TaskRunner` on
threads instead, for tests and benchmarks with runners that return promptly: it cannot
stop a runner, so a slot whose task passed its deadline stays taken until the runner
returns. The node's command line always uses :class:`WorkerPool`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from privproc import jsondoc
from privproc.errors import PrivprocError
from privproc.wire import inner

from .core import Outcome, TaskInputError, TaskOutput, TaskRunner, valid_details, wipe

log = logging.getLogger("privproc.node")

# Environment variables a worker keeps (and, with the node's own, all the node keeps):
RUNTIME_ENV = frozenset({
    "PATH",  # finding executables (ctypes.util.find_library runs ldconfig/gcc)
    "HOME",  # os.path.expanduser and libraries that locate per-user configuration
    "LANG",  # the locale: text encoding of stdio and of file names
    "TZ",  # the time zone of log timestamps
    # Thread counts of the math libraries under llama.cpp and numpy (OpenMP, OpenBLAS);
    # deliberately not every OMP_* variable: OMP_TOOL_LIBRARIES loads code.
    "OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OMP_DYNAMIC", "OMP_PROC_BIND", "OMP_PLACES",
    "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS",
})
RUNTIME_ENV_PREFIXES = ("LC_",)  # the locale's categories (LC_ALL, LC_CTYPE, ...)

MAX_FRAME = 64 << 20  # a request frame (the node checks request sizes long before this)
MAX_REPLY = 8 << 20  # a worker answering more than this is treated as broken
_HEADER = struct.Struct("!I")
_FIRST_READ = 16 << 10
_BOOT = ("import sys; sys.path[:] = sys.argv[3:]; "
         "from privproc.node.worker import child_main; "
         "child_main(int(sys.argv[1]), int(sys.argv[2]))")


def runtime_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of ``environ`` that Python and the backends need (see RUNTIME_ENV)."""
    return {k: v for k, v in environ.items()
            if k in RUNTIME_ENV or k.startswith(RUNTIME_ENV_PREFIXES)}


@dataclass(frozen=True)
class WorkerSpec:
    """How a worker makes its runner: ``factory`` is ``"module:function"``, called once
    with ``kwargs`` (JSON values) in the worker, returning a TaskRunner."""

    factory: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


class WorkerStartError(PrivprocError):
    """A worker could not be started or could not load its runner."""


class _WorkerGone(PrivprocError):
    """The worker closed its socket or broke the protocol."""


# -- frames ------------------------------------------------------------------------------


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                        n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    try:
        while got < n:
            k = await loop.sock_recv_into(sock, view[got:])
            if k == 0:
                raise _WorkerGone("end of file")
            got += k
    except BaseException:
        wipe(buf)
        raise
    return buf


async def _recv_frame(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                      limit: int) -> bytearray:
    # One read usually brings the whole (small) frame; a larger one is read exactly.
    first = bytearray(_FIRST_READ)
    try:
        got = 0
        while got < _HEADER.size:
            k = await loop.sock_recv_into(sock, memoryview(first)[got:])
            if k == 0:
                raise _WorkerGone("end of file")
            got += k
        (length,) = _HEADER.unpack_from(first)
        if length > limit:
            raise _WorkerGone(f"frame of {length} bytes")
        have = min(got - _HEADER.size, length)
        if have == length:
            return first[_HEADER.size:_HEADER.size + length]
        rest = await _recv_exactly(loop, sock, length - have)
        try:
            return first[_HEADER.size:got] + rest
        finally:
            wipe(rest)
    finally:
        wipe(first)


async def _send_frame(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                      frame: bytearray) -> None:
    await loop.sock_sendall(sock, frame)


def _encode(doc: Any) -> bytearray:
    """A frame: length and ASCII JSON (a lone surrogate travels as an escape)."""
    text = json.dumps(doc, ensure_ascii=True, separators=(",", ":"))
    frame = bytearray(_HEADER.size + len(text))
    _HEADER.pack_into(frame, 0, len(text))
    frame[_HEADER.size:] = text.encode("ascii")
    return frame


# -- the pool ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    dead: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pid(self) -> int:
        return self.proc.pid


class WorkerPool:
    """``size`` worker processes running a :class:`WorkerSpec`'s runner; see the module
    docstring. Implements :class:`~privproc.node.core.TaskExecutor`."""

    def __init__(self, spec: WorkerSpec, size: int, *, start_timeout: float = 600.0,
                 env: Mapping[str, str] | None = None, max_backoff: float = 30.0) -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one worker, got {size}")
        self.spec = spec
        self.size = size
        self.start_timeout = start_timeout
        self.env = dict(runtime_environment(os.environ) if env is None else env)
        self.max_backoff = max_backoff
        self.restarts = 0
        self._idle: deque[_Worker] = deque()
        self._busy: set[_Worker] = set()
        self._all: set[_Worker] = set()
        self._starting = 0
        self._failures = 0  # consecutive failed starts
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- TaskExecutor ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker and wait until each has loaded its runner (warm)."""
        results = await asyncio.gather(*(self._spawn() for _ in range(self.size)),
                                       return_exceptions=True)
        workers = [r for r in results if isinstance(r, _Worker)]
        errors = [r for r in results if not isinstance(r, _Worker)]
        if errors:
            for worker in workers:
                await self._kill(worker)
            raise WorkerStartError(f"{len(errors)} of {self.size} workers did not start: "
                                   f"{errors[0]}")
        self._idle.extend(workers)
        log.info("workers ready: %d", len(workers))

    async def run(self, task: inner.Task, payload: dict[str, Any], timeout: float) -> Outcome:
        try:
            frame = _encode({"task": int(task), "payload": payload})
        except Exception as exc:  # noqa: BLE001 - e.g. nesting too deep (the core checks)
            return Outcome.failed(type(exc).__name__)
        worker = self._take()
        if worker is None:
            wipe(frame)
            return Outcome.busy()
        loop = asyncio.get_running_loop()
        reply: bytearray | None = None
        keep = False
        try:
            try:
                async with asyncio.timeout(timeout):
                    await _send_frame(loop, worker.sock, frame)
                    reply = await _recv_frame(loop, worker.sock, MAX_REPLY)
            except TimeoutError:
                return Outcome.deadline()
            except (_WorkerGone, OSError):
                return Outcome.failed("WorkerDied")
            outcome = _parse_reply(reply)
            keep = outcome is not None
            return outcome or Outcome.failed("WorkerProtocolError")
        finally:
            wipe(frame)
            if reply is not None:
                wipe(reply)
            self._busy.discard(worker)
            if keep and not self._closed:
                self._idle.append(worker)
            else:
                # Stop the model now; answer only once the process is gone.
                self._replace(worker)
                await worker.dead.wait()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in list(self._all):
            await self._kill(worker)
        self._idle.clear()
        self._busy.clear()

    def healthy(self) -> bool:
        if self._closed:
            return False
        return bool(self._idle or self._busy) or self._failures == 0

    def gauges(self) -> dict[str, int]:
        return {"workers_ready": len(self._idle), "workers_busy": len(self._busy),
                "workers_starting": self._starting, "worker_restarts": self.restarts}

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and operators)."""
        return sorted(w.pid for w in self._all if w.proc.poll() is None)

    # -- internals ------------------------------------------------------------------------

    def _take(self) -> _Worker | None:
        while self._idle:
            worker = self._idle.popleft()
            if worker.proc.poll() is None:
                self._busy.add(worker)
                return worker
            log.warning("worker %d died while idle", worker.pid)
            self._replace(worker)
        return None

    def _replace(self, worker: _Worker) -> None:
        """Kill ``worker`` now; reap it and start a replacement in the background."""
        with contextlib.suppress(ProcessLookupError):
            worker.proc.kill()
        task = asyncio.get_running_loop().create_task(self._replacement(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replacement(self, worker: _Worker) -> None:
        await self._kill(worker)
        if self._closed:
            return
        self.restarts += 1
        while not self._closed:
            try:
                fresh = await self._spawn()
            except WorkerStartError as exc:
                delay = min(self.max_backoff, 0.5 * 2 ** min(self._failures, 10))
                log.error("worker replacement failed: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            if self._closed:
                await self._kill(fresh)
                return
            self._idle.append(fresh)
            log.info("worker replaced: pid=%d", fresh.pid)
            return

    async def _spawn(self) -> _Worker:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Started from the event loop's thread: PR_SET_PDEATHSIG follows the thread
            # that forked, and this one lives as long as the node.
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _BOOT, str(child_sock.fileno()),
                 str(os.getpid()), *sys.path],
                pass_fds=(child_sock.fileno(),), env=self.env, stdin=subprocess.DEVNULL,
                close_fds=True)
        except OSError as exc:
            parent_sock.close()
            raise WorkerStartError(f"cannot start a worker ({type(exc).__name__})") from None
        finally:
            child_sock.close()
        parent_sock.setblocking(False)
        worker = _Worker(proc, parent_sock)
        self._all.add(worker)
        self._starting += 1
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.start_timeout):
                await _send_frame(loop, parent_sock,
                                  _encode({"factory": self.spec.factory,
                                           "kwargs": dict(self.spec.kwargs)}))
                reply = await _recv_frame(loop, parent_sock, 4096)
            doc = json.loads(reply.decode("ascii"))
            if not isinstance(doc, dict) or doc.get("ready") is not True:
                error = doc.get("error") if isinstance(doc, dict) else None
                raise WorkerStartError(f"worker could not load its runner ({error})")
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._failures += 1
            await self._kill(worker)
            if isinstance(exc, WorkerStartError | asyncio.CancelledError):
                raise
            raise WorkerStartError(f"worker did not start ({type(exc).__name__})") from None
        finally:
            self._starting -= 1
        self._failures = 0
        return worker

    async def _kill(self, worker: _Worker) -> None:
        """SIGKILL ``worker`` and wait until it is reaped."""
        with contextlib.suppress(ProcessLookupError):
            worker.proc.kill()
        delay = 0.001
        while worker.proc.poll() is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        worker.sock.close()
        self._all.discard(worker)
        worker.dead.set()


def _parse_reply(reply: bytearray) -> Outcome | None:
    """A worker's answer as an Outcome; None when the worker broke the protocol."""
    try:
        doc = jsondoc.parse(reply.decode("ascii"))
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if "result" in doc:
        result, details = doc["result"], doc.get("details", {})
        if isinstance(result, list) and all(isinstance(r, str) for r in result) and (
                valid_details(details, len(result))):
            return Outcome.ok(result, details)
        return None
    if isinstance(doc.get("input_error"), str):
        return Outcome.input_error(doc["input_error"][:200])
    if isinstance(doc.get("failed"), str):
        return Outcome.failed(doc["failed"][:64])
    return None


# -- threads (tests, benchmarks) -------------------------------------------------------------


class ThreadExecutor:
    """An in-process runner on threads; see the module docstring (it cannot stop a task)."""

    def __init__(self, runner: TaskRunner, concurrency: int) -> None:
        self.runner = runner
        self.concurrency = concurrency
        self._running = 0
        self._pool: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        return None

    async def run(self, task: inner.Task, payload: dict[str, Any], timeout: float) -> Outcome:
        if self._running >= self.concurrency:
            return Outcome.busy()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="task")
        self._running += 1
        future = asyncio.get_running_loop().run_in_executor(
            self._pool, self.runner.run, task, payload)
        future.add_done_callback(self._done)  # the slot is free once the runner returned
        try:
            result = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return Outcome.deadline()
        except TaskInputError as exc:
            return Outcome.input_error(str(exc))
        except Exception as exc:  # noqa: BLE001 - a crashed task answers cleanly
            return Outcome.failed(type(exc).__name__)
        return Outcome.ok(result)

    def _done(self, future: asyncio.Future[list[str] | TaskOutput]) -> None:
        self._running -= 1
        if not future.cancelled():
            future.exception()  # retrieved: a late failure is not logged with its message

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def healthy(self) -> bool:
        return True

    def gauges(self) -> dict[str, int]:
        return {"tasks_running": self._running}


# -- the worker process ---------------------------------------------------------------------


def _recv_exactly_sync(sock: socket.socket, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            wipe(buf)
            return None
        got += k
    return buf


def _recv_frame_sync(sock: socket.socket) -> bytearray | None:
    header = _recv_exactly_sync(sock, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        return None
    return _recv_exactly_sync(sock, length)


def _send_frame_sync(sock: socket.socket, doc: Any) -> None:
    frame = _encode(doc)
    try:
        sock.sendall(frame)
    finally:
        wipe(frame)


def _die_with_parent(parent: int) -> None:
    if sys.platform == "linux":
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # the node died before the line above
        os._exit(0)


def _load_runner(spec: Any) -> TaskRunner:
    module_name, _, name = str(spec["factory"]).partition(":")
    factory = getattr(importlib.import_module(module_name), name)
    runner: TaskRunner = factory(**spec["kwargs"])
    return runner


def _serve(sock: socket.socket, runner: TaskRunner) -> None:
    while True:
        frame = _recv_frame_sync(sock)
        if frame is None:
            return  # the node closed the socket (or died)
        try:
            request = json.loads(frame.decode("ascii"))
            task, payload = inner.Task(request["task"]), request["payload"]
        except Exception as exc:  # noqa: BLE001
            _send_frame_sync(sock, {"failed": type(exc).__name__})
            continue
        finally:
            wipe(frame)
        try:
            output = runner.run(task, payload)
            reply: dict[str, Any] = (
                {"result": list(output.result), "details": output.details}
                if isinstance(output, TaskOutput) else {"result": list(output)})
        except TaskInputError as exc:
            reply = {"input_error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - reported by type only
            reply = {"failed": type(exc).__name__}
        del payload, request
        _send_frame_sync(sock, reply)
        del reply


def child_main(fd: int, parent: int) -> None:
    """A worker process's whole life (started by :class:`WorkerPool`, never by hand)."""
    try:
        _die_with_parent(parent)
        # Ctrl-C reaches the whole process group: the node decides when a worker stops.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file with plaintext
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                            format="%(asctime)s node-worker %(levelname)s %(message)s")
        sock = socket.socket(fileno=fd)
        spec_frame = _recv_frame_sync(sock)
        if spec_frame is None:
            os._exit(0)
        try:
            runner = _load_runner(json.loads(spec_frame.decode("ascii")))
        except Exception as exc:  # noqa: BLE001 - the node logs the type
            _send_frame_sync(sock, {"error": type(exc).__name__})
            os._exit(1)
        _send_frame_sync(sock, {"ready": True})
        _serve(sock, runner)
    except BaseException:  # noqa: BLE001 - no traceback: it could quote request data
        os._exit(70)
    os._exit(0)
