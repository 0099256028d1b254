"""Real uvicorn processes on loopback: echo origin, gateway, relay."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from privproc.up.supervisor import Supervisor
from privproc.up.system import System, start

from ..servers import ANY_PORT, HOST, start_service

__all__ = ["HOST", "Stack", "up_system"]


@dataclass
class Stack:
    sup: Supervisor
    state: Path
    origin: str
    gateway: str
    relay: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An echo origin, a gateway in front of it and a relay, on ports bound to 0."""
    tmp = tmp_path_factory.mktemp("stack")
    with Supervisor(tmp / "logs") as sup:
        origin = start_service(sup, "origin", ["echo", "serve", "--listen", ANY_PORT]).url
        gateway = start_service(sup, "gateway", [
            "gateway", "serve", "--listen", ANY_PORT, "--upstream", origin, "--state",
            str(tmp / "gw"), "--timeout", "1"]).url
        relay = start_service(sup, "relay", [
            "relay", "serve", "--listen", ANY_PORT, "--gateway", gateway + "/gateway",
            "--max-body", "65536", "--timeout", "5"]).url
        yield Stack(sup, tmp / "gw", origin, gateway, relay)


def up_system(tmp_path_factory: pytest.TempPathFactory, nodes: int,
              backend: str = "echo") -> Iterator[System]:
    """The whole system (``privproc up``, echo nodes by default) for one test module."""
    system = start(tmp_path_factory.mktemp("up"), nodes=nodes, backend=backend)
    try:
        yield system
    finally:
        system.sup.stop_all()
