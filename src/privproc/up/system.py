"""``privproc up``: the whole system on one machine, on loopback, simulated platform.

Starts the transparency log and a witness, the token issuer, the gateway (with the node
directory and token redemption), the relay, an origin for plain OHTTP traffic, and one or
more nodes; the issuer and the gateway publish their key records to the log; publishes
the nodes' release; waits until a witness-cosigned checkpoint carries every record and
the relay serves the stapled key bundle; writes the client's trust configuration
(``client.toml``, mode 0600) and prints every URL. A service that exits is restarted on
the address it had, with backoff (:class:`privproc.up.supervisor.Restarter`); one that
keeps exiting stops everything. Stops everything on Ctrl-C.
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
from importlib import resources
from pathlib import Path

from privproc.attest.simulated import SimulatedIdentity
from privproc.files import replace_file
from privproc.paths import default_trust_file
from privproc.tlog.bundle import BundleFormatError, LogBundle
from privproc.tlog.keys import load_or_create_signer
from privproc.tlog.publish import publish
from privproc.tlog.record import KeyRecord, RecordError, ReleaseRecord, decode_entry
from privproc.tlog.witness_app import load_or_create_witness_key
from privproc.up.lock import StateLock
from privproc.up.supervisor import GaveUp, Restarter, RestartPolicy, Supervisor

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
    lock: StateLock | None = None

    def stop(self) -> None:
        """Stop every service, then free the state directory."""
        try:
            self.sup.stop_all()
        finally:
            if self.lock is not None:
                self.lock.release()


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
    """The whole system; ``node_extra`` adds ``privproc node serve`` options (tests).

    Holds the state directory's lock until :meth:`System.stop`: a second system on the
    same state would share its databases and overwrite its trust file.
    """
    lock = StateLock(state)
    sup = Supervisor(state / "logs")
    try:
        system = _start(sup, state, nodes, backend, node_config=node_config,
                        issuer_quota=issuer_quota, node_extra=node_extra, node_cwd=node_cwd)
    except BaseException:
        sup.stop_all()
        lock.release()
        raise
    system.lock = lock
    return system


def _start(sup: Supervisor, state: Path, nodes: int, backend: str, *,
           node_config: Path | None, issuer_quota: int, node_extra: tuple[str, ...],
           node_cwd: Path | None) -> System:
    # Every service listens on port 0 and says where it bound: no port is picked, freed
    # and bound again (another process could take it in between).
    any_port = f"{HOST}:0"
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

    _say("starting the transparency log and a witness")
    urls: dict[str, str] = {}
    urls["witness"] = sup.start(
        "witness", ["witness", "serve", "--listen", any_port, "--state", str(state / "witness"),
                    "--name", WITNESS_NAME, "--log-vkey", log_signer.verifier_key]).url
    urls["log"] = sup.start(
        "log", ["log", "serve", "--listen", any_port, "--state", str(state / "log"),
                "--origin", LOG_ORIGIN, "--publisher", publisher.verifier_key,
                "--key-publisher", gateway_publisher.verifier_key, "--key-publisher",
                issuer_publisher.verifier_key, "--witness",
                f"{urls['witness']}={witness.verifier_key}", "--quorum", "1"]).url
    _say("starting the token issuer, the origin, the gateway and the relay")
    issuer = sup.spawn(
        "issuer", ["issuer", "serve", "--listen", any_port, "--state", str(state / "issuer"),
                   "--static-account", f"@{state / 'accounts'}", "--name", ISSUER_NAME,
                   "--log", urls["log"], "--publisher-key", str(state / "issuer-publisher.key"),
                   "--quota", str(issuer_quota)])
    origin = sup.spawn("origin", ["echo", "serve", "--listen", any_port])
    urls["issuer"] = sup.ready(issuer).url
    urls["origin"] = sup.ready(origin).url
    # The gateway checks nodes against a trust file of its own: the clients' one names the
    # relay, which starts after the gateway.
    gateway_trust = state / "gateway" / "trust.toml"
    gateway_trust.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    replace_file(gateway_trust, _client_toml({**urls, "relay": urls["log"]},
                                             log_signer.verifier_key, witness.verifier_key,
                                             None, roots="../node/simulated/simulated-roots.pem"),
                 0o600)
    urls["gateway"] = sup.start(
        "gateway", ["gateway", "serve", "--listen", any_port, "--upstream", urls["origin"],
                    "--state", str(state / "gateway"), "--node-directory", "--trust",
                    str(gateway_trust), "--node-url-allow", f"http://{HOST}:*",
                    "--node-token", f"@{state / 'node-token'}", "--issuer-keys",
                    str(state / "issuer"), "--issuer-name", ISSUER_NAME, "--origin-name",
                    ORIGIN_NAME, "--log", urls["log"], "--publisher-key",
                    str(state / "gateway-publisher.key"), "--staple-refresh", "1"]).url
    urls["relay"] = sup.start(
        "relay", ["relay", "serve", "--listen", any_port, "--gateway",
                  urls["gateway"] + "/gateway", "--log", urls["log"]]).url
    client_config = state / "client.toml"
    replace_file(client_config, _client_toml(urls, log_signer.verifier_key,
                                             witness.verifier_key, account), 0o600)
    measurement = b""
    for i in range(nodes):
        _say(f"starting node-{i} (simulated platform, backend {backend})")
        service = sup.start(f"node-{i}", [*node_args(state, f"http://{any_port}",
                                                     urls["gateway"], backend, node_config),
                                          *node_extra], timeout=180, cwd=node_cwd)
        urls[f"node-{i}"] = service.url
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
        args += ["--node-config", str(node_config)]
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


def _client_toml(urls: dict[str, str], log_vkey: str, witness_vkey: str,
                 account: str | None, *,
                 roots: str = "node/simulated/simulated-roots.pem") -> bytes:
    """A trust file for this system; without ``account``, one with no token issuer (the
    gateway's, for checking nodes)."""
    text = (
        "[service]\n"
        f'relay = "{urls["relay"]}/"\n'
        f'gateway_name = "{ORIGIN_NAME}"\n'
        f'log = "{urls["log"]}"\n'
        # every key this system makes is hybrid post-quantum: accept no other
        "require_pq = true\n\n"
        "[log]\n"
        f'vkey = "{log_vkey}"\n'
        f'witnesses = ["{witness_vkey}"]\n'
        "quorum = 1\n\n"
        "[attestation]\n"
        "allow_simulated = true\n"
        f'simulated_roots = "{roots}"\n\n'
        "[policy]\n"
    )
    if account is not None:
        text += (
            "\n[tokens]\n"
            f'issuer = "{urls["issuer"]}"\n'
            f'account_token = "{account}"\n'
            f'issuer_name = "{ISSUER_NAME}"\n'
            f'origin_name = "{ORIGIN_NAME}"\n'
        )
    return text.encode()


def run(state: Path, nodes: int, backend: str, node_config: Path | None,
        policy: RestartPolicy | None = None) -> int:
    """Start the system and keep it running: a service that exits is restarted on the
    address it had (``policy``: backoff, and when to give up and stop everything, exit 1);
    Ctrl-C or SIGTERM stops everything (exit 0)."""
    system = start(state, nodes=nodes, backend=backend, node_config=node_config)
    for name, url in system.urls.items():
        _say(f"  {name:10s} {url}")
    _say(f"client configuration: {system.client_config}")
    sample = resources.files("privproc.demo").joinpath("sample_chat.txt")
    _say("all services healthy; Ctrl-C stops them. In another terminal, try:")
    trust = "" if system.client_config == default_trust_file() else \
        f" --trust {system.client_config}"
    _say(f"  privproc summarize {sample} --me Sam{trust}")
    _say(f"  privproc write \"cant make it tmrw, can we do friday?\" --tone professional{trust}")
    _say(f"  privproc audit{trust}")
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    keeper = Restarter(system.sup, policy or RestartPolicy(), say=_tell)
    code = 0
    try:
        while not stop:
            try:
                keeper.poll()
            except GaveUp as exc:
                _tell(f"{exc}; stopping everything")
                code = 1
                break
            time.sleep(0.5)
    finally:
        _say("stopping")
        system.stop()
    return code


def _tell(message: str) -> None:
    """A service's exit or restart, on the terminal (stderr)."""
    print(message, file=sys.stderr, flush=True)
