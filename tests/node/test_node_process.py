"""``privproc node serve`` as a real process: its workers' environment, files and life."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from privproc.attest.evidence import decode_bundle
from privproc.client.node import open_task, seal_task
from privproc.up.supervisor import Supervisor
from privproc.wire import inner, ohttp

from ..servers import ANY_PORT, start_service

pytestmark = pytest.mark.slow
SECRET = "MARKER-env-aws-6c0d"
TOKEN = "MARKER-env-token-91aa"


def workers_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid and (
                b"privproc.node.worker" in cmdline):
            found.append(int(entry.name))
    return sorted(found)


def test_workers_get_no_inherited_secret_and_die_with_the_node(tmp_path: Path) -> None:
    with Supervisor(tmp_path / "logs") as sup:
        node = start_service(sup, "node", [
            "node", "serve", "--listen", ANY_PORT, "--state", str(tmp_path / "node"),
            "--backend", "echo", "--concurrency", "2"],
            timeout=120, env={"AWS_SECRET_ACCESS_KEY": SECRET, "PRIVPROC_NODE_TOKEN": TOKEN})
        url = node.url
        workers = workers_of(node.process.pid)
        assert len(workers) == 2  # started (warm) before /healthz answered
        for pid in workers:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert SECRET.encode() not in environ and TOKEN.encode() not in environ
            assert b"PRIVPROC" not in environ
            # Request data reaches a worker through a socket only: no file is open.
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                assert int(fd.name) in (1, 2) or not target.startswith("/") or (
                    target == "/dev/null"), target

        with urllib.request.urlopen(url + "/evidence", timeout=10) as resp:
            config = ohttp.decode_key_config(decode_bundle(resp.read()).key_config)
        sealed, nonce, ctx = seal_task(config, inner.Task.WRITE,
                                       {"draft": "hey", "tone": "rephrase"})
        request = urllib.request.Request(url + "/process", data=sealed, method="POST",
                                         headers={"content-type": inner.MEDIA_TYPE_REQUEST})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert open_task(ctx, nonce, resp.read()) == ["3 characters"]

        node.process.send_signal(signal.SIGKILL)
        node.process.wait()
        deadline = time.monotonic() + 5
        while any(Path(f"/proc/{pid}").exists() for pid in workers):
            assert time.monotonic() < deadline, "workers outlived the node"
            time.sleep(0.05)
        assert SECRET not in node.log_text() and TOKEN not in node.log_text()
