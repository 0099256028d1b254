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

from privproc import clikit
from privproc.attest.evidence import PlatformProvider, node_id_for
from privproc.budget import NODE_DEADLINE
from privproc.clikit import UsageError, positive_int, seconds
from privproc.secrets import SecretError, resolve

from .core import QUEUE_PER_WORKER
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
    from privproc.service import bind, bound_url, setup_logging

    from .app import NodeConfig, create_app
    from .runner import default_model, worker_spec
    from .worker import WorkerPool

    setup_logging("node", args.log_level.upper())
    if removed:
        log.info("environment: removed %d variables not on the allowlist", removed)
    args.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    node_config, measured_model = release_inputs(args)
    model = args.model or default_model(args.backend)
    measurement = measure_simulated(node_config, measured_model)
    print(f"node measurement: {measurement.hex()}", flush=True)
    provider = _provider(args, measurement)
    # The registration key signs the node's registrations; its evidence binds it, and the
    # directory names the node after it. It lives in memory only, as the HPKE keys do.
    signing_key = Ed25519PrivateKey.generate()
    keys = NodeKeys(provider, lifetime=max(1, int(args.rotate_every)), grace=int(args.grace),
                    registration_key=public_bytes(signing_key))
    keys.rotate(int(time.time()))
    # Tasks run in worker processes the node kills at the deadline; each loads the
    # backend once, before the node serves (the lifespan starts them).
    pool = WorkerPool(worker_spec(args.backend, model, args.openai_url, args.openai_model,
                                  args.concurrency), args.concurrency)
    node_id = node_id_for(public_bytes(signing_key))
    listener = bind(args.listen)  # first: with port 0, the URL names the port it got
    url = args.advertise or bound_url(listener)
    wake = asyncio.Event()
    config = NodeConfig(node_id=node_id, max_request=args.max_body, deadline=args.deadline,
                        concurrency=args.concurrency, queue=args.queue,
                        rotate_every=args.rotate_every)
    background = None
    if args.directory:
        try:
            token = resolve(args.node_token, "--node-token")
        except SecretError as exc:
            raise UsageError(f"{exc} (the node keeps only PRIVPROC_NODE_TOKEN of its "
                             "environment)") from None

        async def background() -> None:
            await register_forever(args.directory, url, keys, signing_key,
                                   interval=args.heartbeat, token=token, wake=wake)

    app = create_app(config, keys, on_rotate=wake.set, background=background, executor=pool)

    print(json.dumps({"node_id": node_id, "url": url}), flush=True)
    sys.dont_write_bytecode = True  # nothing may be written while serving
    clikit.serve(app, args, listener)
    return 0


def configure(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = clikit.group(sub, "node", "A processing node: attested, stateless inference.")
    serve = clikit.leaf(actions, "serve",
                        "Serve attested, stateless summaries and writing help.", run)
    clikit.add_service_options(
        serve, state="the simulated platform's identity (prepared before serving)")
    add_release_options(serve)
    serve.add_argument("--platform", choices=["simulated", "configfs-tsm"], default="simulated",
                       help="where evidence comes from: a simulated platform (development: "
                            "proves no TEE) or the kernel's configfs-tsm (a real SEV-SNP guest)")
    serve.add_argument("--openai-url", metavar="URL",
                       help="with --backend openai: the OpenAI-compatible server")
    serve.add_argument("--openai-model", default="default", metavar="NAME",
                       help="with --backend openai: the model name to ask for")
    serve.add_argument("--directory", metavar="URL", help="the gateway to register with")
    serve.add_argument("--advertise", metavar="URL",
                       help="the URL the gateway reaches this node at (default: from --listen)")
    serve.add_argument("--node-token", default="env:PRIVPROC_NODE_TOKEN", metavar="SECRET",
                       help="the operator credential for the directory: @FILE or env:NAME")
    serve.add_argument("--heartbeat", type=seconds, default=10.0, metavar="SECONDS",
                       help="how often the node renews its registration")
    serve.add_argument("--rotate-every", type=seconds, default=3600.0, metavar="SECONDS",
                       help="lifetime of an attested node key; a new one is made then")
    serve.add_argument("--grace", type=seconds, default=60.0, metavar="SECONDS",
                       help="how long the previous node key stays accepted after a rotation")
    serve.add_argument("--deadline", type=seconds, default=NODE_DEADLINE, metavar="SECONDS",
                       help="seconds a task may take, queueing included; then the model is "
                            "stopped and a sealed DEADLINE answered")
    serve.add_argument("--concurrency", type=positive_int, default=2, metavar="N",
                       help="tasks at once: one worker process each")
    serve.add_argument("--queue", type=_queue_size, default=None, metavar="N",
                       help="tasks that may wait for a worker beyond --concurrency (their "
                            "wait counts in --deadline); more are answered 503 with "
                            f"Retry-After (default: {QUEUE_PER_WORKER} x --concurrency)")
    serve.add_argument("--max-body", type=positive_int, default=256 * 1024, metavar="BYTES",
                       help="the largest sealed request accepted")


def _queue_size(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
    return number


def add_release_options(p: argparse._ActionsContainer) -> None:
    """What a node's measurement covers: its backend, model file and configuration. Shared
    by ``node serve`` and ``measure``, so the same options give the same measurement."""
    p.add_argument("--backend", choices=["llama", "extractive", "openai", "echo"],
                   default="llama", help="what writes the answers")
    p.add_argument("--model", type=Path, metavar="GGUF",
                   help="with --backend llama: the GGUF model file (default: the installed "
                        "default model, python -m privproc.inference.models path default)")
    p.add_argument("--node-config", type=Path, metavar="FILE",
                   help="the node configuration file (measured; default: none)")


def release_inputs(args: argparse.Namespace) -> tuple[bytes, Path]:
    """The node configuration bytes and the model file a node with ``args`` measures."""
    from .runner import default_model

    model = args.model or default_model(args.backend)
    node_config = (clikit.read_input(args.node_config, "node configuration")
                   if args.node_config else b"")
    # A node without a model file (echo, extractive, openai) measures an empty one.
    return node_config, model or Path(os.devnull)
