"""``privproc node serve``: start a processing node.

At start the node measures itself (as ``privproc measure`` does), makes a fresh HPKE key
and an Ed25519 registration key in memory, obtains evidence binding both, and registers
with the gateway's node directory, signed with the registration key and with the
operator credential (again on every heartbeat and rotation). Its node id is derived from
the registration key. It never writes a file while serving (bytecode
caching is turned off before the service starts; the simulated platform's identity is
prepared before serving).

Environment: before anything else the node removes from its environment every variable
that is neither its own (:data:`ENV_ALLOWLIST`, the only ones its code reads) nor one
Python and the backends need (:data:`~privproc.node.worker.RUNTIME_ENV`), so an inherited
secret never reaches the model; its worker processes start with the runtime variables
alone, without the node's own credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privproc.attest.evidence import PlatformProvider, node_id_for
from privproc.budget import NODE_DEADLINE
from privproc.secrets import SecretError, resolve
from privproc.service import Listen

from .keys import NodeKeys
from .registration import public_bytes, register_forever

# The variables the node's own code reads (through allowed_env): its operator credential
# for the directory, given directly or as a file.
ENV_ALLOWLIST = frozenset({"PRIVPROC_NODE_TOKEN", "PRIVPROC_NODE_TOKEN_FILE"})

log = logging.getLogger("privproc.node")


def allowed_env(name: str) -> str | None:
    """Read an environment variable, only if it is on the node's allowlist."""
    if name not in ENV_ALLOWLIST:
        raise KeyError(f"environment variable {name} is not on the node's allowlist")
    return os.environ.get(name)


def reduce_environment(environ: MutableMapping[str, str] | None = None) -> int:
    """Remove every variable neither on ENV_ALLOWLIST nor needed at run time (RUNTIME_ENV);
    returns how many were removed (their names and values are not logged)."""
    from .worker import runtime_environment

    env = os.environ if environ is None else environ
    keep = set(runtime_environment(env)) | (ENV_ALLOWLIST & set(env))
    removed = [name for name in env if name not in keep]
    for name in removed:
        del env[name]
    return len(removed)


def _listen(value: str) -> Listen:
    try:
        return Listen.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _provider(args: argparse.Namespace, measurement: bytes) -> PlatformProvider:
    if args.platform == "simulated":
        from privproc.attest.simulated import SimulatedIdentity, SimulatedPlatform, warn_simulated

        warn_simulated(sys.stderr)
        identity = SimulatedIdentity.load_or_create(args.state / "simulated")
        return SimulatedPlatform(identity, measurement, gpu=False)
    from privproc.attest.configfs_tsm import ConfigfsTsmProvider

    return ConfigfsTsmProvider()


def run(args: argparse.Namespace) -> int:
    removed = reduce_environment()  # first: nothing below may see an inherited secret
    from privproc.attest.measure import measure_simulated
    from privproc.service import serve, setup_logging

    from .app import NodeConfig, create_app
    from .runner import default_model, worker_spec
    from .worker import WorkerPool

    setup_logging("node", args.log_level.upper())
    if removed:
        log.info("environment: removed %d variables not on the allowlist", removed)
    args.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    model = args.model or default_model(args.backend)
    node_config = args.config.read_bytes() if args.config else b""
    # A node without a model file (echo, extractive, openai) measures an empty one.
    measurement = measure_simulated(node_config, model or Path(os.devnull))
    print(f"node measurement: {measurement.hex()}", flush=True)
    provider = _provider(args, measurement)
    # The registration key signs the node's registrations; its evidence binds it, and the
    # directory names the node after it. It lives in memory only, as the HPKE keys do.
    signing_key = Ed25519PrivateKey.generate()
    keys = NodeKeys(provider, lifetime=args.rotate_every, grace=args.grace,
                    registration_key=public_bytes(signing_key))
    keys.rotate(int(time.time()))
    # Tasks run in worker processes the node kills at the deadline; each loads the
    # backend once, before the node serves (the lifespan starts them).
    pool = WorkerPool(worker_spec(args.backend, model, args.openai_url, args.openai_model,
                                  args.concurrency), args.concurrency)
    node_id = node_id_for(public_bytes(signing_key))
    url = args.advertise or f"http://{args.listen.host}:{args.listen.port}"
    wake = asyncio.Event()
    config = NodeConfig(node_id=node_id, max_request=args.max_request, deadline=args.deadline,
                        concurrency=args.concurrency, rotate_every=args.rotate_every)
    background = None
    if args.directory:
        try:
            token = resolve(args.node_token, "--node-token")
        except SecretError as exc:
            print(f"privproc node serve: {exc} (the node keeps only PRIVPROC_NODE_TOKEN of "
                  "its environment)", file=sys.stderr)
            return 2

        async def background() -> None:
            await register_forever(args.directory, url, keys, signing_key,
                                   interval=args.heartbeat, token=token, wake=wake)

    app = create_app(config, keys, on_rotate=wake.set, background=background, executor=pool)

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
                       help="GGUF model file (default: the installed default model, "
                            "python -m privproc.inference.models path default)")
    serve.add_argument("--config", type=Path, metavar="FILE", help="node configuration file")
    serve.add_argument("--openai-url", metavar="URL", help="OpenAI-compatible server")
    serve.add_argument("--openai-model", default="default")
    serve.add_argument("--directory", metavar="URL", help="the gateway to register with")
    serve.add_argument("--advertise", metavar="URL", help="the URL the gateway reaches us at")
    serve.add_argument("--node-token", default="env:PRIVPROC_NODE_TOKEN", metavar="SECRET",
                       help="the operator credential for the directory: @FILE or "
                            "env:PRIVPROC_NODE_TOKEN (the default)")
    serve.add_argument("--heartbeat", type=float, default=10.0, metavar="SECONDS")
    serve.add_argument("--rotate-every", type=int, default=3600, metavar="SECONDS")
    serve.add_argument("--grace", type=int, default=60, metavar="SECONDS")
    serve.add_argument("--deadline", type=float, default=NODE_DEADLINE, metavar="SECONDS",
                       help="seconds a task may take, queueing included; then the model is "
                            f"stopped and a sealed DEADLINE answered (default {NODE_DEADLINE:.0f})")
    serve.add_argument("--concurrency", type=_positive_int, default=2,
                       help="tasks at once: one worker process each (default 2)")
    serve.add_argument("--max-request", type=int, default=256 * 1024, metavar="BYTES")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=run)
