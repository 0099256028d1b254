"""``privproc up`` keeps services running: an exited one is restarted on the address it
had, with backoff; one that keeps exiting stops everything. Fake processes and an injected
clock for the policy; one real service killed and brought back on its port."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import cast

import pytest

from privproc.up.supervisor import (
    GaveUp,
    Restarter,
    RestartPolicy,
    Service,
    ServiceFailed,
    Supervisor,
    same_address,
)

from ..servers import ANY_PORT


class FakeProcess:
    def __init__(self) -> None:
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def kill(self) -> None:
        self.returncode = -9

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode


class FakeSupervisor(Supervisor):
    """Services that are fake processes; a restart makes a fresh one (or fails)."""

    def __init__(self, log_dir: Path, names: list[str]) -> None:
        super().__init__(log_dir)
        self.started: list[str] = []
        self.fail_next = False
        for name in names:
            self._new(name)

    def _new(self, name: str) -> Service:
        service = Service(name, f"http://127.0.0.1:{1000 + len(self.started)}",
                          cast("subprocess.Popen[bytes]", FakeProcess()), Path("/dev/null"))
        self.services[name] = service
        self.started.append(name)
        return service

    def restart(self, name: str) -> Service:
        service = self._new(name)
        if self.fail_next:
            self.fail_next = False
            cast(FakeProcess, service.process).returncode = 1
            raise ServiceFailed(f"{name} exited with 1 before listening:\nlog")
        return service

    def exit(self, name: str, code: int) -> None:
        cast(FakeProcess, self.services[name].process).returncode = code


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keeper(tmp_path: Path, policy: RestartPolicy | None = None
           ) -> tuple[Restarter, FakeSupervisor, Clock, list[str]]:
    sup = FakeSupervisor(tmp_path, ["gateway", "relay"])
    clock = Clock()
    said: list[str] = []
    return Restarter(sup, policy, clock=clock, say=said.append), sup, clock, said


def test_an_exited_service_is_restarted_after_its_delay_others_untouched(tmp_path: Path
                                                                         ) -> None:
    restarter, sup, clock, said = keeper(tmp_path)
    restarter.poll()
    assert said == []
    sup.exit("gateway", -9)
    restarter.poll()
    assert said == ["gateway exited (code -9); restarting in 1 s"]
    restarter.poll()  # not yet due, and not announced twice
    assert sup.started == ["gateway", "relay"]
    clock.now += 1
    restarter.poll()
    assert sup.started == ["gateway", "relay", "gateway"]
    assert said[-1] == "gateway restarted at http://127.0.0.1:1002"
    assert sup.services["gateway"].process.poll() is None
    assert restarter.restarts == 1


def test_the_delay_doubles_and_up_gives_up_after_k_restarts_in_the_window(tmp_path: Path
                                                                          ) -> None:
    policy = RestartPolicy(max_restarts=3, window=60, first_delay=1, max_delay=3)
    restarter, sup, clock, said = keeper(tmp_path, policy)
    for delay in (1, 2, 3):
        sup.exit("gateway", 1)
        restarter.poll()
        assert said[-1] == f"gateway exited (code 1); restarting in {delay} s"
        clock.now += delay
        restarter.poll()
        assert said[-1].startswith("gateway restarted")
    sup.exit("gateway", 1)
    with pytest.raises(GaveUp, match=r"gateway exited \(code 1\) after 3 restarts within 60 s"):
        restarter.poll()


def test_restarts_older_than_the_window_are_forgotten(tmp_path: Path) -> None:
    policy = RestartPolicy(max_restarts=1, window=10, first_delay=1)
    restarter, sup, clock, said = keeper(tmp_path, policy)
    sup.exit("relay", 3)
    restarter.poll()
    clock.now += 1
    restarter.poll()
    clock.now += 10  # the last restart is out of the window
    sup.exit("relay", 3)
    restarter.poll()
    assert said[-1] == "relay exited (code 3); restarting in 1 s"


def test_a_failed_restart_counts_as_another_exit(tmp_path: Path) -> None:
    policy = RestartPolicy(max_restarts=2, window=60, first_delay=1)
    restarter, sup, clock, said = keeper(tmp_path, policy)
    sup.exit("gateway", 1)
    restarter.poll()
    sup.fail_next = True
    clock.now += 1
    restarter.poll()
    assert said[-1] == "gateway failed to restart: gateway exited with 1 before listening:"
    clock.now += 1
    restarter.poll()
    assert said[-1] == "gateway exited (code 1); restarting in 2 s"
    clock.now += 2
    restarter.poll()
    sup.exit("gateway", 1)
    with pytest.raises(GaveUp):
        restarter.poll()


def test_the_listen_address_is_the_one_bound_first() -> None:
    args = ["relay", "serve", "--listen", "127.0.0.1:0", "--gateway", "http://g"]
    assert same_address(args, "http://127.0.0.1:4711") == [
        "relay", "serve", "--listen", "127.0.0.1:4711", "--gateway", "http://g"]
    assert same_address(["x", "--listen", "[::1]:0"], "http://[::1]:80") == [
        "x", "--listen", "[::1]:80"]
    assert same_address(args, "") == args
    assert same_address(["x"], "http://127.0.0.1:1") == ["x"]


@pytest.mark.slow
def test_a_killed_service_comes_back_on_the_same_port(tmp_path: Path) -> None:
    clock = Clock()
    said: list[str] = []
    with Supervisor(tmp_path / "logs") as sup:
        first = sup.start("origin", ["echo", "serve", "--listen", ANY_PORT])
        restarter = Restarter(sup, clock=clock, say=said.append)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        restarter.poll()
        assert said == ["origin exited (code -9); restarting in 1 s"]
        clock.now += 1
        restarter.poll()
        again = sup.services["origin"]
        assert again.url == first.url and again.process.pid != first.process.pid
        assert said[-1] == f"origin restarted at {first.url}"
        with urllib.request.urlopen(first.url + "/healthz", timeout=5) as resp:
            assert resp.status == 200
