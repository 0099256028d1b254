"""Start ``privproc`` services as child processes, wait until healthy, stop them all.

Used by ``make demo`` and by the end-to-end tests, which run real uvicorn processes on
loopback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
        return self.ready(self.spawn(name, args, url, env=env, cwd=cwd), timeout)

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
                          started=time.monotonic())
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
