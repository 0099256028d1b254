"""``privproc up``: the whole system on one machine, on loopback, simulated platform.

Starts the transparency log and a witness, the token issuer, the gateway (with the node
directory and token redemption), the relay, an origin for plain OHTTP traffic, and one or
more nodes; the issuer and the gateway publish their key records to the log; publishes
the nodes' release; waits until a witness-cosigned checkpoint carries every record and
the relay serves the stapled key bundle; writes the client's trust configuration
(``client.toml``, mode 0600) and prints every URL. Stops everything on Ctrl-C.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from privproc.attest.simulated import SimulatedIdentity
from privproc.demo.supervisor import Supervisor, free_port
from privproc.files import replace_file
from privproc.tlog.bundle import BundleFormatError, LogBundle
from privproc.tlog.keys import load_or_create_signer
from privproc.tlog.publish import publish
from privproc.tlog.record import KeyRecord, RecordError, ReleaseRecord, decode_entry
from privproc.tlog.witness_app import load_or_create_witness_key

HOST = "127.0.0.1"
LOG_ORIGIN = "log.privproc.local"
WITNESS_NAME = "witness.privproc.local"
ISSUER_NAME = "issuer.privproc.local"
ORIGIN_NAME = "gateway.privproc.local"


@dataclass
class System:
    sup: Supervisor
    state: Path
    urls: dict[str, str]
    client_config: Path


def _say(message: str) -> None:
    print(message, flush=True)


def _wait_for_size(log_url: str, size: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(log_url + "/checkpoint", timeout=5) as resp:
            text = resp.read().decode()
        lines = text.split("\n")
        if int(lines[1]) >= size and "\u2014 " + WITNESS_NAME in text:
            return
        time.sleep(0.2)
    raise TimeoutError(f"no cosigned checkpoint of size {size} after {timeout:.0f}s")


KEY_PURPOSES = frozenset({"ohttp-gateway", "privacypass-0001", "privacypass-0002"})


def logged_key_purposes(relay_url: str) -> set[str]:
    """The purposes of the key records the relay's stapled key bundle carries."""
    try:
        with urllib.request.urlopen(relay_url + "/privproc/keys", timeout=5) as resp:
            bundle = LogBundle.decode(resp.read())
    except (OSError, BundleFormatError):
        return set()
    purposes = set()
    for entry in bundle.entries:
        try:
            record = decode_entry(entry.record)
        except RecordError:
            continue
        if isinstance(record, KeyRecord):
            purposes.add(record.purpose)
    return purposes


def _wait_for_key_bundle(relay_url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if logged_key_purposes(relay_url) >= KEY_PURPOSES:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the relay's key bundle lacks key records after {timeout:.0f}s "
                       f"(has {sorted(logged_key_purposes(relay_url))})")


def _model_digest(backend: str) -> bytes:
    digest = hashlib.sha256()
    if backend == "llama":
        from privproc.inference.llama import default_model_path

        with default_model_path().open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.digest()


def start(state: Path, *, nodes: int = 1, backend: str = "llama",
          node_config: Path | None = None, issuer_quota: int = 200,
          node_extra: tuple[str, ...] = (), node_cwd: Path | None = None) -> System:
    """The whole system; ``node_extra`` adds ``privproc node serve`` options (tests)."""
    state.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(state / "logs")
    try:
        return _start(sup, state, nodes, backend, node_config=node_config,
                      issuer_quota=issuer_quota, node_extra=node_extra, node_cwd=node_cwd)
    except BaseException:
        sup.stop_all()
        raise


def _start(sup: Supervisor, state: Path, nodes: int, backend: str, *,
           node_config: Path | None, issuer_quota: int, node_extra: tuple[str, ...],
           node_cwd: Path | None) -> System:
    ports = {name: free_port() for name in ("log", "witness", "issuer", "gateway", "relay",
                                            "origin")}
    urls = {name: f"http://{HOST}:{port}" for name, port in ports.items()}
    log_signer = load_or_create_signer(state / "log" / "log.key", LOG_ORIGIN)
    witness = load_or_create_witness_key(state / "witness", WITNESS_NAME)
    publisher = load_or_create_signer(state / "publisher.key", "releases.privproc.local")
    gateway_publisher = load_or_create_signer(state / "gateway-publisher.key", ORIGIN_NAME)
    issuer_publisher = load_or_create_signer(state / "issuer-publisher.key", ISSUER_NAME)
    account = secrets.token_urlsafe(24)
    # Secrets travel in files (mode 0600), never on a command line.
    replace_file(state / "accounts", f"{account}=demo-user\n".encode(), 0o600)
    operator_token = secrets.token_urlsafe(32)
    replace_file(state / "node-token", operator_token.encode() + b"\n", 0o600)
    # The simulated platform's identity (its roots go into the trust file) exists before
    # the gateway, which checks nodes against the trust file, starts.
    SimulatedIdentity.load_or_create(state / "node" / "simulated")
    client_config = state / "client.toml"
    replace_file(client_config, _client_toml(urls, log_signer.verifier_key,
                                             witness.verifier_key, account), 0o600)

    _say("starting the transparency log and a witness")
    sup.start("witness", ["witness", "serve", "--listen", f"{HOST}:{ports['witness']}",
                          "--state", str(state / "witness"), "--name", WITNESS_NAME,
                          "--log", log_signer.verifier_key], urls["witness"])
    sup.start("log", ["log", "serve", "--listen", f"{HOST}:{ports['log']}", "--state",
                      str(state / "log"), "--origin", LOG_ORIGIN, "--publisher",
                      publisher.verifier_key, "--key-publisher", gateway_publisher.verifier_key,
                      "--key-publisher", issuer_publisher.verifier_key, "--witness",
                      f"{urls['witness']}={witness.verifier_key}", "--quorum", "1"],
              urls["log"])
    _say("starting the token issuer, the origin, the gateway and the relay")
    sup.start("issuer", ["issuer", "serve", "--listen", f"{HOST}:{ports['issuer']}",
                         "--state", str(state / "issuer"), "--static-account",
                         f"@{state / 'accounts'}", "--name", ISSUER_NAME, "--log",
                         urls["log"], "--publisher-key", str(state / "issuer-publisher.key"),
                         "--quota", str(issuer_quota)],
              urls["issuer"])
    sup.start("origin", ["echo", "--listen", f"{HOST}:{ports['origin']}"], urls["origin"])
    sup.start("gateway", ["gateway", "--listen", f"{HOST}:{ports['gateway']}", "--upstream",
                          urls["origin"], "--state", str(state / "gateway"),
                          "--node-directory", "--trust", str(client_config),
                          "--node-url-allow", f"http://{HOST}:*", "--node-token",
                          f"@{state / 'node-token'}", "--issuer-keys", str(state / "issuer"),
                          "--issuer-name", ISSUER_NAME, "--origin-name", ORIGIN_NAME,
                          "--log", urls["log"], "--publisher-key",
                          str(state / "gateway-publisher.key"), "--staple-refresh", "2"],
              urls["gateway"])
    sup.start("relay", ["relay", "--listen", f"{HOST}:{ports['relay']}", "--gateway",
                        urls["gateway"] + "/gateway", "--log", urls["log"]], urls["relay"])
    measurement = b""
    for i in range(nodes):
        port = free_port()
        url = f"http://{HOST}:{port}"
        _say(f"starting node-{i} (simulated platform, backend {backend})")
        service = sup.start(f"node-{i}", [*node_args(state, url, urls["gateway"], backend,
                                                     node_config), *node_extra], url,
                            timeout=180, cwd=node_cwd)
        urls[f"node-{i}"] = url
        measurement = node_measurement_from_log(service.log_text())
    _say(f"publishing the node release (measurement {measurement.hex()[:16]}...) to the log")
    record = ReleaseRecord(measurement=measurement, model_sha256=_model_digest(backend),
                           version="0.1.0", source="local", time=int(time.time()))
    index = publish(urls["log"], publisher, record.encode())
    _wait_for_size(urls["log"], index + 1)
    _say(f"release logged at index {index}; checkpoint cosigned by {WITNESS_NAME}")
    _wait_for_key_bundle(urls["relay"])
    _say("gateway and issuer key records logged; the relay serves them with their proofs")
    wait_for_listed_nodes(urls["gateway"], operator_token, nodes)
    _say(f"{nodes} node(s) attested, verified against the log and listed by the gateway")
    return System(sup, state, urls, client_config)


def node_args(state: Path, url: str, gateway: str, backend: str, node_config: Path | None
              ) -> list[str]:
    """``privproc node serve`` arguments for a node of this system listening at ``url``."""
    listen = url.removeprefix("http://")
    args = ["node", "serve", "--listen", listen, "--state", str(state / "node"), "--backend",
            backend, "--directory", gateway, "--node-token", f"@{state / 'node-token'}",
            "--heartbeat", "2"]
    if node_config is not None:
        args += ["--config", str(node_config)]
    return args


def node_measurement_from_log(text: str) -> bytes:
    return bytes.fromhex(next(line.split(": ", 1)[1] for line in text.splitlines()
                              if line.startswith("node measurement: ")))


def node_id_from_log(text: str) -> str:
    """The id the node's attested registration key gives it (printed at start)."""
    line = next(ln for ln in text.splitlines() if ln.startswith('{"node_id"'))
    node_id: str = json.loads(line)["node_id"]
    return node_id


def listed_nodes(gateway: str, operator_token: str) -> list[str]:
    request = urllib.request.Request(gateway + "/nodes/status",
                                     headers={"Authorization": f"Bearer {operator_token}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        nodes: list[str] = json.loads(resp.read())["nodes"]
        return nodes


def wait_for_listed_nodes(gateway: str, operator_token: str, count: int,
                          timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(listed_nodes(gateway, operator_token)) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the gateway lists {len(listed_nodes(gateway, operator_token))} of "
                       f"{count} nodes after {timeout:.0f}s")


def _client_toml(urls: dict[str, str], log_vkey: str, witness_vkey: str, account: str
                 ) -> bytes:
    return (
        "[service]\n"
        f'relay = "{urls["relay"]}/"\n'
        f'gateway_name = "{ORIGIN_NAME}"\n'
        f'log = "{urls["log"]}"\n\n'
        "[log]\n"
        f'vkey = "{log_vkey}"\n'
        f'witnesses = ["{witness_vkey}"]\n'
        "quorum = 1\n\n"
        "[attestation]\n"
        "allow_simulated = true\n"
        'simulated_roots = "node/simulated/simulated-roots.pem"\n\n'
        "[policy]\n\n"
        "[tokens]\n"
        f'issuer = "{urls["issuer"]}"\n'
        f'account_token = "{account}"\n'
        f'issuer_name = "{ISSUER_NAME}"\n'
        f'origin_name = "{ORIGIN_NAME}"\n'
    ).encode()


def run(state: Path, nodes: int, backend: str, node_config: Path | None) -> int:
    system = start(state, nodes=nodes, backend=backend, node_config=node_config)
    for name, url in system.urls.items():
        _say(f"  {name:10s} {url}")
    _say(f"client configuration: {system.client_config}")
    _say("all services healthy; Ctrl-C stops them")
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop:
            for service in system.sup.services.values():
                if service.process.poll() is not None:
                    print(f"{service.name} exited; stopping everything", file=sys.stderr)
                    stop = True
            time.sleep(0.5)
    finally:
        _say("stopping")
        system.sup.stop_all()
    return 0
