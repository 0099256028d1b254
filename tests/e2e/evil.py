"""Hostile parties for the end-to-end tests: a relay that wants to read requests.

The relay runs in a thread of the test process (an aiohttp server on a port bound to 0);
everything it talks to is a real privproc process.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from dataclasses import dataclass, field

from aiohttp import web

from privproc.tlog.bundle import LogBundle, ProvenEntry
from privproc.tlog.record import PURPOSE_OHTTP_GATEWAY, KeyRecord, decode_entry
from privproc.wire import bhttp, hpke, ohttp
from privproc.wire.errors import OHTTPError


def _get(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read(), resp.headers.get("content-type", "")


def _is_gateway_record(data: bytes) -> bool:
    record = decode_entry(data)
    return isinstance(record, KeyRecord) and record.purpose == PURPOSE_OHTTP_GATEWAY


@dataclass
class EvilRelay:
    """Serves its own OHTTP key and tries to open what clients send it.

    ``mode``: ``"unlogged"`` puts its key in a key bundle of its own making (with the real
    checkpoint, no valid proof); ``"swapped"`` takes the real bundle and swaps the key
    bytes of the gateway's record for its own; ``"keys-only"`` serves its key at
    ``/ohttp-keys`` but passes the real bundle (and forwards requests, trying to open
    each first); ``"replay"`` serves ``bundle`` instead of the real one, a genuine bundle
    of the log (an old one, or one it asked the log for) that names a key of the gateway
    it would rather clients used, and forwards requests (it records them).
    """

    upstream: str  # the honest relay
    gateway_name: str
    mode: str
    key: ohttp.GatewayKey = field(
        default_factory=lambda: ohttp.GatewayKey.create(0x42, hpke.KeyPair.generate()))
    bundle: bytes = b""  # what "replay" serves
    posts: int = 0
    opened: list[bhttp.Request] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("evil relay did not start")

    # -- what it serves ------------------------------------------------------------------

    def _own_record(self) -> KeyRecord:
        now = int(time.time())
        return KeyRecord(PURPOSE_OHTTP_GATEWAY, self.gateway_name,
                         self.key.config.encode(), now - 60, now + 86400)

    def key_bundle(self) -> bytes:
        if self.mode == "replay":
            return self.bundle
        real = LogBundle.decode(_get(self.upstream + "privproc/keys")[0])
        if self.mode == "keys-only":
            return real.encode()
        if self.mode == "unlogged":  # its own record, with no proof that could hold
            fake = ProvenEntry(0, self._own_record().encode(), ())
            kept = tuple(e for e in real.entries if not _is_gateway_record(e.record))
            return LogBundle(real.checkpoint, (fake, *kept)).encode()
        entries = []
        for entry in real.entries:
            record = decode_entry(entry.record)
            if isinstance(record, KeyRecord) and record.purpose == PURPOSE_OHTTP_GATEWAY:
                swapped = KeyRecord(record.purpose, record.owner, self.key.config.encode(),
                                    record.not_before, record.not_after)
                entries.append(ProvenEntry(entry.index, swapped.encode(), entry.proof))
            else:
                entries.append(entry)
        return LogBundle(real.checkpoint, tuple(entries)).encode()

    async def _ohttp_keys(self, request: web.Request) -> web.Response:
        return web.Response(body=ohttp.encode_key_configs([self.key.config]),
                            content_type=ohttp.MEDIA_TYPE_KEYS)

    async def _bundle(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(self.key_bundle)
        return web.Response(body=body, content_type="application/privproc-log-bundle+json")

    async def _log(self, request: web.Request) -> web.Response:
        body, ctype = await asyncio.to_thread(_get, self.upstream + "log/" +
                                              request.match_info["rest"])
        return web.Response(body=body, headers={"content-type": ctype})

    async def _post(self, request: web.Request) -> web.Response:
        self.posts += 1
        body = await request.read()
        try:
            plain, _ = ohttp.GatewayKeys([self.key]).decapsulate_request(body)
            self.opened.append(bhttp.decode_request(plain))
        except OHTTPError:
            pass
        if self.mode not in ("keys-only", "replay"):
            return web.Response(status=502)
        req = urllib.request.Request(self.upstream, data=body, method="POST",
                                     headers={"Content-Type": ohttp.MEDIA_TYPE_REQUEST})

        def forward() -> tuple[int, bytes, str]:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read(), resp.headers.get("content-type", "")

        status, answer, ctype = await asyncio.to_thread(forward)
        return web.Response(status=status, body=answer, headers={"content-type": ctype})

    # -- plumbing --------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/ohttp-keys", self._ohttp_keys)
        app.router.add_get("/privproc/keys", self._bundle)
        app.router.add_get("/log/{rest:.*}", self._log)
        app.router.add_post("/", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/"
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
