"""The lean kept-alive POST client of the two hot hops (relay -> gateway, gateway ->
node): it adds nothing identifying, reuses connections, resends only what a server closing
an idle connection never read, and fails closed on a large, cut, malformed or late answer."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from privproc.upstream import Upstream, UpstreamError

OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/x\r\ncontent-length: 2\r\n\r\nok"


class Server:
    """A loopback server answering each complete request with ``answer(request)``."""

    def __init__(self, answer: Callable[[bytes], bytes | None], *,
                 close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after  # close each connection after one answer, silently
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                out = self.answer(request)
                if out is None:  # never answer
                    await asyncio.sleep(3600)
                writer.write(out or b"")
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[str]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/gateway"
    finally:
        listener.close()


def run(server: Server, body: Callable[[str], object]) -> object:
    async def main() -> object:
        async with serving(server) as url:
            return await body(url)  # type: ignore[misc]
    return asyncio.run(main())


def test_requests_share_a_connection_and_carry_nothing_but_what_was_given() -> None:
    server = Server(lambda request: OK)

    async def body(url: str) -> tuple[list[int], int]:
        upstream = Upstream(url, timeout=5, max_answer=100)
        statuses = []
        for i in range(3):
            answer = await upstream.post("/gateway", b"x%d" % i,
                                         {"Content-Type": "message/ohttp-req"})
            assert answer.headers["content-type"] == "text/x" and answer.body == b"ok"
            statuses.append(answer.status)
        upstream.close()
        return statuses, upstream.opened

    assert run(server, body) == ([200, 200, 200], 1)
    assert server.connections == 1
    head = server.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"POST /gateway HTTP/1.1"
    assert sorted(line.split(b":")[0].lower() for line in head[1:]) == [
        b"content-length", b"content-type", b"host"]  # no user agent, no forwarding


def test_a_connection_the_server_closed_while_idle_is_replaced_once() -> None:
    server = Server(lambda request: OK, close_after=True)

    async def body(url: str) -> int:
        upstream = Upstream(url, timeout=5, max_answer=100)
        await upstream.post("/gateway", b"first", {})
        await asyncio.sleep(0.05)  # let the server's close arrive
        await upstream.post("/gateway", b"second", {})
        return upstream.opened

    assert run(server, body) == 2
    assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in server.requests] == [b"first", b"second"]


def test_connection_close_is_honoured() -> None:
    server = Server(lambda request: OK.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n"))

    async def body(url: str) -> int:
        upstream = Upstream(url, timeout=5, max_answer=100)
        for _ in range(2):
            assert (await upstream.post("/gateway", b"x", {})).body == b"ok"
        return upstream.opened

    assert run(server, body) == 2


def test_a_chunked_answer_is_put_together() -> None:
    server = Server(lambda request: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                                    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")

    async def body(url: str) -> bytes:
        return (await Upstream(url, timeout=5, max_answer=100).post("/g", b"x", {})).body

    assert run(server, body) == b"abcde"


@pytest.mark.parametrize(("answer", "why"), [
    (b"HTTP/1.1 200 OK\r\ncontent-length: 101\r\n\r\n" + b"a" * 101, "too large"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n" + b"a" * 10, "unreachable"),  # cut
    (b"NONSENSE\r\n\r\n", "unreachable"),
    (None, "timed out"),
])
def test_a_bad_answer_fails_closed(answer: bytes | None, why: str) -> None:
    server = Server(lambda request: answer, close_after=True)

    async def body(url: str) -> str:
        upstream = Upstream(url, timeout=0.2, max_answer=100)
        with pytest.raises(UpstreamError) as err:
            await upstream.post("/gateway", b"x", {})
        assert not upstream._idle  # the connection is not kept
        return err.value.why

    assert run(server, body) == why


def test_an_unreachable_upstream_and_bad_input() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"

        async def body() -> str:
            with pytest.raises(UpstreamError) as err:
                await Upstream(url, timeout=5, max_answer=10).post("/", b"", {})
            with pytest.raises(ValueError, match="CR or LF"):
                await Upstream(url, timeout=5, max_answer=10).post(
                    "/", b"", {"x": "a\r\nInjected: 1"})
            return err.value.why

        assert asyncio.run(body()) == "unreachable"
    with pytest.raises(ValueError, match="expected an http or https URL"):
        Upstream("ftp://x/", timeout=1, max_answer=1)


def test_https_upstreams_are_verified(tmp_path: Path) -> None:
    """TLS with the host name checked: a certificate for the address is accepted with
    its issuer trusted, refused without."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "upstream.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    trusting = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    server = Server(lambda request: OK)

    async def main() -> tuple[bytes, str]:
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=served)
        url = f"https://127.0.0.1:{listener.sockets[0].getsockname()[1]}/"
        try:
            answer = await Upstream(url, timeout=5, max_answer=100, tls=trusting).post(
                "/", b"x", {})
            with pytest.raises(UpstreamError) as err:  # the system trust store: refused
                await Upstream(url, timeout=5, max_answer=100).post("/", b"x", {})
            return answer.body, err.value.why
        finally:
            listener.close()

    assert asyncio.run(main()) == (b"ok", "unreachable")
