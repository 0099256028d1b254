"""The witness service (c2sp.org/tlog-witness) over HTTP, and its key on disk.

Routes (submission and monitoring prefix are both the root):

- ``POST /add-checkpoint``: the spec's only call; see :mod:`privproc.tlog.witness` for the
  statuses. Bodies over ``max_body`` (1 MiB by default) get 413 before being read whole.
- ``GET /checkpoint/<url-encoded origin>``: monitoring, the latest cosigned state of a
  configured log as ``text/plain`` ``"<size>\\n<base64 root hash>\\n"`` (unsigned; 404
  for an unknown origin or one with nothing cosigned yet).
- ``GET /healthz``: ``ok``.

Threads: :meth:`Witness.add_checkpoint` and the store's reads run in Starlette's thread
pool (``run_in_threadpool``), because they block on SQLite (an fsync per cosigned
checkpoint) and verify Ed25519 signatures; the event loop never waits on disk. Their
atomicity does not depend on the thread pool: it comes from the store's compare-and-set.

Logs are content-free: the origin (only for configured logs), the sizes, the status and
the time taken; never bodies, signatures, keys or client addresses.

The witness key lives in ``<state>/witness.key`` (mode 0600) as a ``PRIVATE+KEY+...``
signer key string of signature type 0x04 (cosignature/v1), created atomically with a
random seed on first start; ``<state>/witness.vkey`` holds the matching verifier key
string for operators to hand to the logs and clients that trust this witness.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from privproc.errors import PrivprocError
from privproc.service import BodyTooLarge, problem, read_body
from privproc.wire.checkpoint import CosignatureSigner
from privproc.wire.errors import NoteError
from privproc.wire.note import Verifier, check_key_name

from . import keys
from .witness import Witness, WitnessResponse, WitnessStateStore

__all__ = [
    "KEY_FILE",
    "VKEY_FILE",
    "WitnessConfig",
    "WitnessKeyError",
    "create_app",
    "load_or_create_witness_key",
]

log = logging.getLogger("privproc.witness")

KEY_FILE = "witness.key"
VKEY_FILE = "witness.vkey"


class WitnessKeyError(PrivprocError):
    """The witness key file is unusable: unreadable, too open, malformed, or misnamed."""


@dataclass
class WitnessConfig:
    """What :func:`create_app` needs; the caller owns (and closes) ``store``."""

    signer: CosignatureSigner
    logs: Mapping[str, Sequence[Verifier]]
    store: WitnessStateStore
    max_body: int = 1 << 20
    clock: Callable[[], float] = field(default=time.time)


# --------------------------------------------------------------------------- key file


def load_or_create_witness_key(
    state_dir: Path,
    name: str,
    rand: Callable[[int], bytes] = os.urandom,
) -> CosignatureSigner:
    """The witness's cosignature/v1 key, created in ``state_dir`` on first start.

    Reads ``state_dir/witness.key`` (which must have mode 0600 and be for key ``name``),
    or creates it atomically from a 32-byte ``rand`` seed if absent; then (re)writes the
    public ``state_dir/witness.vkey``. Raises :class:`WitnessKeyError`. The key file is
    handled by :mod:`privproc.tlog.keys`, like the log's key.
    """
    try:
        check_key_name(name)
    except NoteError as exc:
        raise WitnessKeyError(f"witness name: {exc}") from None
    state_dir = Path(state_dir)
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise WitnessKeyError(f"cannot create the state directory {state_dir}: {exc}") from None
    if not state_dir.is_dir():
        raise WitnessKeyError(f"{state_dir} is not a directory")
    try:
        return keys.load_or_create_cosigner(state_dir / KEY_FILE, name, rand,
                                            vkey=state_dir / VKEY_FILE, what="witness key")
    except keys.KeyNameError as exc:
        raise WitnessKeyError(
            f"{exc.path} holds the key of witness {exc.found!r}, expected {exc.expected!r}: "
            f"pass --name {exc.found} or use another state directory"
        ) from None
    except keys.KeyFileError as exc:
        raise WitnessKeyError(str(exc)) from None
    except OSError as exc:
        raise WitnessKeyError(f"cannot write the witness key in {state_dir}: {exc}") from None


# --------------------------------------------------------------------------- service


def _to_response(answer: WitnessResponse) -> Response:
    # The content type is set verbatim: Starlette would append a charset to text/* types,
    # and the spec wants exactly text/x.tlog.size.
    return Response(
        answer.body, status_code=answer.status, headers={"content-type": answer.content_type}
    )


def create_app(config: WitnessConfig) -> Starlette:
    """The witness's ASGI app (see the module docstring for routes and threading)."""
    witness = Witness(config.signer, config.logs, config.store)
    known = frozenset(witness.origins)

    async def add_checkpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await read_body(request, config.max_body)
        except BodyTooLarge:
            log.info("add-checkpoint refused: body over %d bytes, status=413", config.max_body)
            return problem(413, f"request body exceeds {config.max_body} bytes")
        now = int(config.clock())
        answer = await run_in_threadpool(witness.add_checkpoint, body, now)
        log.info(
            "add-checkpoint origin=%s old=%s size=%s status=%d ms=%.1f",
            answer.origin if answer.origin is not None else "-",
            "-" if answer.old_size is None else answer.old_size,
            "-" if answer.size is None else answer.size,
            answer.status,
            (time.perf_counter() - started) * 1000,
        )
        return _to_response(answer)

    async def checkpoint(request: Request) -> Response:
        origin = request.path_params["origin"]
        if origin not in known:
            return problem(404, "unknown log origin")
        state = await run_in_threadpool(config.store.get, origin)
        if state is None:
            return problem(404, "nothing cosigned yet for this origin")
        size, root = state
        text = f"{size}\n{base64.b64encode(root).decode('ascii')}\n"
        return Response(
            text.encode("ascii"),
            headers={"content-type": "text/plain; charset=utf-8", "cache-control": "no-store"},
        )

    async def health(request: Request) -> Response:
        return Response(b"ok\n", headers={"content-type": "text/plain; charset=utf-8"})

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/checkpoint/{origin:path}", checkpoint, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
        ],
    )
