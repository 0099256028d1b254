"""Real uvicorn processes on loopback: echo origin, gateway, relay."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from privproc.demo.supervisor import Supervisor, free_port
from privproc.demo.up import System, start

HOST = "127.0.0.1"


@dataclass
class Stack:
    sup: Supervisor
    state: Path
    origin: str
    gateway: str
    relay: str
    gateway_port: int

    def start_gateway(self, *extra: str) -> None:
        self.sup.start(
            "gateway",
            ["gateway", "--listen", f"{HOST}:{self.gateway_port}", "--upstream", self.origin,
             "--state", str(self.state), *extra],
            self.gateway,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    ports = [free_port() for _ in range(3)]
    urls = [f"http://{HOST}:{p}" for p in ports]
    with Supervisor(tmp / "logs") as sup:
        sup.start("origin", ["echo", "--listen", f"{HOST}:{ports[0]}"], urls[0])
        s = Stack(sup, tmp / "gw", urls[0], urls[1], urls[2], ports[1])
        s.start_gateway("--timeout", "1")
        sup.start("relay", ["relay", "--listen", f"{HOST}:{ports[2]}",
                            "--gateway", urls[1] + "/gateway", "--max-body", "65536",
                            "--timeout", "5"], urls[2])
        yield s


def up_system(tmp_path_factory: pytest.TempPathFactory, nodes: int,
              backend: str = "echo") -> Iterator[System]:
    """The whole system (``privproc up``, echo nodes by default) for one test module."""
    system = start(tmp_path_factory.mktemp("up"), nodes=nodes, backend=backend)
    try:
        yield system
    finally:
        system.sup.stop_all()
