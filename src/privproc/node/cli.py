"""``privproc node serve``: start a processing node.

At start the node measures itself (as ``privproc measure`` does), makes a fresh HPKE key
in memory, obtains evidence binding it, and registers with the gateway's node directory
(again on every heartbeat and rotation). It reads environment variables only from an
allowlist, and never writes a file while serving (bytecode caching is turned off before
the service starts; the simulated platform's identity is prepared before serving).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path

from privproc.attest.evidence import PlatformProvider
from privproc.service import Listen

from .keys import NodeKeys

ENV_ALLOWLIST = frozenset({"PRIVPROC_NODE_TOKEN"})

log = logging.getLogger("privproc.node")


def allowed_env(name: str) -> str | None:
    """Read an environment variable, only if it is on the node's allowlist."""
    if name not in ENV_ALLOWLIST:
        raise KeyError(f"environment variable {name} is not on the node's allowlist")
    return os.environ.get(name)


def _listen(value: str) -> Listen:
    try:
        return Listen.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _provider(args: argparse.Namespace, measurement: bytes) -> PlatformProvider:
    if args.platform == "simulated":
        from privproc.attest.simulated import SimulatedIdentity, SimulatedPlatform, warn_simulated

        warn_simulated(sys.stderr)
        identity = SimulatedIdentity.load_or_create(args.state / "simulated")
        return SimulatedPlatform(identity, measurement, gpu=False)
    from privproc.attest.configfs_tsm import ConfigfsTsmProvider

    return ConfigfsTsmProvider()


async def _register_forever(directory: str, node_id: str, url: str, keys: NodeKeys, *,
                            interval: float, token: str | None, wake: asyncio.Event) -> None:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while True:
            doc = {"node_id": node_id, "url": url,
                   "bundle": base64.b64encode(keys.current.bundle).decode()}
            try:
                async with session.post(directory.rstrip("/") + "/nodes/register",
                                        json=doc, headers=headers) as resp:
                    if resp.status != 200:
                        log.warning("registration refused: status=%d", resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("registration failed: %s", type(exc).__name__)
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval)


def run(args: argparse.Namespace) -> int:
    from privproc.attest.measure import measure_simulated
    from privproc.service import serve, setup_logging

    from .app import NodeConfig, create_app
    from .runner import build_runner, default_model

    setup_logging("node", args.log_level.upper())
    args.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    model = args.model or default_model(args.backend)
    node_config = args.config.read_bytes() if args.config else b""
    # A node without a model file (echo, extractive, openai) measures an empty one.
    measurement = measure_simulated(node_config, model or Path(os.devnull))
    print(f"node measurement: {measurement.hex()}", flush=True)
    provider = _provider(args, measurement)
    keys = NodeKeys(provider, lifetime=args.rotate_every, grace=args.grace)
    keys.rotate(int(time.time()))
    runner = build_runner(args.backend, model, args.openai_url, args.openai_model)
    node_id = args.node_id or f"node-{uuid.uuid4().hex[:12]}"
    url = args.advertise or f"http://{args.listen.host}:{args.listen.port}"
    wake = asyncio.Event()
    config = NodeConfig(node_id=node_id, max_request=args.max_request, deadline=args.deadline,
                        concurrency=args.concurrency, rotate_every=args.rotate_every)
    background = None
    if args.directory:
        token = allowed_env("PRIVPROC_NODE_TOKEN")

        async def background() -> None:
            await _register_forever(args.directory, node_id, url, keys,
                                    interval=args.heartbeat, token=token, wake=wake)

    app = create_app(config, keys, runner, on_rotate=wake.set, background=background)

    print(json.dumps({"node_id": node_id, "url": url}), flush=True)
    sys.dont_write_bytecode = True  # nothing may be written while serving
    serve(app, args.listen, args.log_level)
    return 0


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = sub.add_parser("node", help="Run a processing node.")
    actions = node.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = actions.add_parser("serve",
                               help="Serve attested, stateless summaries and writing help.")
    serve.add_argument("--listen", type=_listen, required=True, metavar="HOST:PORT")
    serve.add_argument("--state", type=Path, required=True, metavar="DIR",
                       help="simulated platform identity (prepared before serving)")
    serve.add_argument("--platform", choices=["simulated", "configfs-tsm"], default="simulated")
    serve.add_argument("--backend", choices=["llama", "extractive", "openai", "echo"],
                       default="llama")
    serve.add_argument("--model", type=Path, metavar="GGUF",
                       help="model file (default: the packaged SmolLM2-135M-Instruct)")
    serve.add_argument("--config", type=Path, metavar="FILE", help="node configuration file")
    serve.add_argument("--openai-url", metavar="URL", help="OpenAI-compatible server")
    serve.add_argument("--openai-model", default="default")
    serve.add_argument("--directory", metavar="URL", help="the gateway to register with")
    serve.add_argument("--advertise", metavar="URL", help="the URL the gateway reaches us at")
    serve.add_argument("--node-id")
    serve.add_argument("--heartbeat", type=float, default=10.0, metavar="SECONDS")
    serve.add_argument("--rotate-every", type=int, default=3600, metavar="SECONDS")
    serve.add_argument("--grace", type=int, default=60, metavar="SECONDS")
    serve.add_argument("--deadline", type=float, default=120.0, metavar="SECONDS")
    serve.add_argument("--concurrency", type=int, default=2)
    serve.add_argument("--max-request", type=int, default=256 * 1024, metavar="BYTES")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=run)
