"""Start ``privproc`` services as child processes, wait until healthy, restart one that
exits (:class:`Restarter`), stop them all.

Used by ``privproc up``, ``make demo`` and the end-to-end tests, which run real uvicorn
processes on loopback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from privproc.errors import PrivprocError
from privproc.service import LISTENING

_LISTENING = re.compile(rb"^" + re.escape(LISTENING.encode()) + rb" (http://\S+)$", re.M)


class ServiceFailed(PrivprocError):
    """A child service exited or did not become healthy in time."""


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int = 0
    started: float = 0.0
    args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: Path | None = None
    timeout: float = 30.0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Supervisor:
    """Owns a set of child services; a context manager that stops them on exit."""

    log_dir: Path
    services: dict[str, Service] = field(default_factory=dict)

    def start(
        self, name: str, args: list[str], url: str | None = None, *, timeout: float = 30.0,
        env: dict[str, str] | None = None, cwd: Path | None = None,
    ) -> Service:
        """``privproc ARGS`` as a child, once healthy. Without ``url`` the service's
        address is read from the ``listening on URL`` line it prints once bound (start it
        with ``--listen HOST:0``: the kernel picks a free port, nothing races for it)."""
        service = self.spawn(name, args, url, env=env, cwd=cwd)
        service.timeout = timeout
        return self.ready(service, timeout)

    def spawn(self, name: str, args: list[str], url: str | None = None, *,
              env: dict[str, str] | None = None, cwd: Path | None = None) -> Service:
        """Start ``privproc ARGS`` as a child without waiting (see :meth:`ready`), so that
        services that do not need each other start side by side."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0  # a restart appends
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "privproc.cli", *args],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                start_new_session=True, cwd=cwd,
            )
        service = Service(name, url or "", proc, log_path, log_offset=offset,
                          started=time.monotonic(), args=list(args), env=env, cwd=cwd)
        self.services[name] = service
        return service

    def ready(self, service: Service, timeout: float = 30.0) -> Service:
        """Wait until a spawned service listens (reading its URL if unknown) and is
        healthy."""
        deadline = service.started + timeout
        while not service.url:
            found = _LISTENING.search(service.log_path.read_bytes(), service.log_offset)
            if found is not None:
                service.url = found.group(1).decode()
                break
            if service.process.poll() is not None:
                raise ServiceFailed(f"{service.name} exited with {service.process.returncode} "
                                    f"before listening:\n{service.log_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise ServiceFailed(f"{service.name} did not listen within {timeout:.0f} s")
            time.sleep(0.01)  # polling the log for the line, not waiting out a time
        self.wait_healthy(service, max(1.0, deadline - time.monotonic()))
        return service

    @staticmethod
    def wait_healthy(service: Service, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise ServiceFailed(
                    f"{service.name} exited with {service.process.returncode}:\n"
                    f"{service.log_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(service.url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise ServiceFailed(f"{service.name} not healthy after {timeout:.0f}s")

    def restart(self, name: str) -> Service:
        """Start service ``name`` again with the arguments it had, on the address it had
        (others, and client.toml, point at it): ``--listen HOST:0`` becomes the port it
        bound. Kills it first if it still runs; returns once healthy again."""
        old = self.services[name]
        if old.process.poll() is None:
            old.process.kill()
        old.process.wait()
        service = self.spawn(name, same_address(old.args, old.url), env=old.env, cwd=old.cwd)
        service.timeout = old.timeout
        self.ready(service, old.timeout)
        if old.url and service.url != old.url:
            raise ServiceFailed(f"{name} came back at {service.url}, not {old.url}")
        return service

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        service = self.services.pop(name)
        if service.process.poll() is None:
            service.process.send_signal(sig)
            try:
                service.process.wait(timeout)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()

    def stop_all(self, timeout: float = 10.0) -> None:
        """Signal every service at once, then wait for each (killing any still running
        after ``timeout``)."""
        services = list(reversed(self.services.values()))
        self.services.clear()
        for service in services:
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in services:
            try:
                service.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def same_address(args: list[str], url: str) -> list[str]:
    """``args`` with the value of ``--listen`` set to the host and port of ``url`` (the
    address a service bound on its first start), if both are there."""
    if not url or "--listen" not in args[:-1]:
        return list(args)
    parts = urllib.parse.urlsplit(url)
    if parts.port is None or parts.hostname is None:
        return list(args)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    at = args.index("--listen") + 1
    return [*args[:at], f"{host}:{parts.port}", *args[at + 1:]]


class GaveUp(ServiceFailed):
    """A service kept exiting: more restarts within the window than the policy allows."""


@dataclass(frozen=True)
class RestartPolicy:
    """Restart an exited service after ``first_delay`` seconds, doubling for each restart
    within ``window`` (at most ``max_delay``); give up after ``max_restarts`` of them."""

    max_restarts: int = 5
    window: float = 60.0
    first_delay: float = 1.0
    max_delay: float = 30.0

    def delay(self, recent: int) -> float:
        """The wait before the next restart, after ``recent`` restarts in the window."""
        return float(min(self.max_delay, self.first_delay * 2 ** recent))


class Restarter:
    """Keeps a :class:`Supervisor`'s services running: call :meth:`poll` now and then.

    An exited service is announced (``gateway exited (code -9); restarting in 1 s``) and
    restarted once its delay has passed; the clock and the announcement are injected.
    Raises :class:`GaveUp` when a service exits more often than the policy allows.
    """

    def __init__(self, sup: Supervisor, policy: RestartPolicy | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 say: Callable[[str], None] = print) -> None:
        self.sup = sup
        self.policy = policy or RestartPolicy()
        self._clock = clock
        self._say = say
        self._due: dict[str, float] = {}
        self._history: dict[str, deque[float]] = {}
        self.restarts = 0

    def poll(self) -> None:
        """Notice exits, and restart every service whose delay has passed."""
        now = self._clock()
        for name, service in list(self.sup.services.items()):
            code = service.process.poll()
            if name in self._due or code is None:
                continue
            recent = self._history.setdefault(name, deque())
            while recent and recent[0] <= now - self.policy.window:
                recent.popleft()
            if len(recent) >= self.policy.max_restarts:
                raise GaveUp(f"{name} exited (code {code}) after {len(recent)} restarts "
                             f"within {self.policy.window:g} s; giving up")
            delay = self.policy.delay(len(recent))
            self._say(f"{name} exited (code {code}); restarting in {delay:g} s")
            recent.append(now)
            self._due[name] = now + delay
        for name, due in sorted(self._due.items(), key=lambda item: item[1]):
            if due > now:
                continue
            del self._due[name]
            try:
                service = self.sup.restart(name)
            except ServiceFailed as exc:
                # Counted as another exit on the next poll.
                failed = self.sup.services[name].process
                if failed.poll() is None:
                    failed.kill()
                    failed.wait()
                self._say(f"{name} failed to restart: {str(exc).splitlines()[0]}")
                continue
            self.restarts += 1
            self._say(f"{name} restarted at {service.url}")
