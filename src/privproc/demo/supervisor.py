"""Start ``privproc`` services as child processes, wait until healthy, stop them all.

Used by ``make demo`` and by the end-to-end tests, which run real uvicorn processes on
loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class ServiceFailed(Exception):
    """A child service exited or did not become healthy in time."""


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Supervisor:
    """Owns a set of child services; a context manager that stops them on exit."""

    log_dir: Path
    services: dict[str, Service] = field(default_factory=dict)

    def start(
        self, name: str, args: list[str], url: str, *, timeout: float = 30.0,
        env: dict[str, str] | None = None, cwd: Path | None = None,
    ) -> Service:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("ab")
        child_env = {**os.environ, **(env or {})}
        proc = subprocess.Popen(
            [sys.executable, "-m", "privproc.cli", *args],
            stdout=log, stderr=subprocess.STDOUT, env=child_env, start_new_session=True,
            cwd=cwd,
        )
        log.close()
        service = Service(name, url, proc, log_path)
        self.services[name] = service
        self.wait_healthy(service, timeout)
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

    def stop_all(self) -> None:
        for name in reversed(list(self.services)):
            self.stop(name)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
