"""Attack: a recorded sealed request replayed after the gateway was killed and restarted
must not be opened again. Real processes: a gateway on its own state directory in front
of an echo origin, killed with SIGKILL between the two sendings."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from privproc.client.ohttp import open_response, seal_request
from privproc.gateway import keystore
from privproc.up.supervisor import Supervisor
from privproc.wire import ohttp

from ..servers import ANY_PORT, start_service

pytestmark = pytest.mark.slow


def post(url: str, body: bytes) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": ohttp.MEDIA_TYPE_REQUEST})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers.get("content-type", ""), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read()


def test_a_replay_after_a_gateway_restart_is_refused(tmp_path: Path) -> None:
    with Supervisor(tmp_path / "logs") as sup:
        origin = start_service(sup, "origin", ["echo", "serve", "--listen", ANY_PORT])
        gateway = start_service(sup, "gateway", [
            "gateway", "serve", "--listen", ANY_PORT, "--upstream", origin.url,
            "--state", str(tmp_path / "gateway")])
        config = keystore.load(tmp_path / "gateway").current.gateway_key.config
        sealed, ctx = seal_request(config, "POST", "/v1/echo", authority="gw.test",
                                   content=b"recorded by the relay", now=time.time())
        status, content_type, body = post(gateway.url + "/gateway", sealed)
        assert open_response(ctx, status, content_type, body).status == 200

        sup.stop("gateway", signal.SIGKILL)  # killed: no shutdown, nothing flushed then
        gateway = sup.start(gateway.name, gateway.args)
        status, _, body = post(gateway.url + "/gateway", sealed)  # the same bytes again
        assert status == 400 and b"replayed request" in body
