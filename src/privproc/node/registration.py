"""The node's side of the directory: signed, attested registrations, again and again.

At start the node makes an Ed25519 registration key in memory; every evidence bundle it
obtains binds that key's public half beside the HPKE key, so the directory can check that
a registration comes from the attested node, and names the node after the key. The node
registers at start, after every rotation (``wake``) and every ``interval`` seconds, with
the operator credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from privproc.service import read_up_to
from privproc.wire.registration import MEDIA_TYPE, sign_registration

from .keys import NodeKeys

log = logging.getLogger("privproc.node")


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


async def register_forever(directory: str, url: str, keys: NodeKeys,
                           signing_key: Ed25519PrivateKey, *, interval: float, token: str,
                           wake: asyncio.Event,
                           clock: Callable[[], float] = time.time) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": MEDIA_TYPE}
    target = directory.rstrip("/") + "/nodes/register"
    listed = False
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while True:
            try:
                registration = sign_registration(signing_key, url, int(clock()),
                                                 keys.current.bundle)
                async with session.post(target, data=registration.encode(),
                                        headers=headers) as resp:
                    await read_up_to(resp.content, 65536)  # what it says is not used
                    if resp.status == 200:
                        if not listed:
                            log.info("listed by the directory")
                        listed = True
                    else:
                        listed = False
                        log.warning("registration refused: status=%d", resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                listed = False
                log.warning("registration failed: %s", type(exc).__name__)
            except Exception as exc:  # noqa: BLE001 - registering must go on: tried again
                listed = False
                log.error("registration failed unexpectedly (%s)", type(exc).__name__)
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval)
